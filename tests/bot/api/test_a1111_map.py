"""A1111 payloads in Proofroom's terms (``bot.api.a1111``'s pure modules): LoRA tags, sampler and
scheduler names, checkpoint titles, seed -1, batch_size x n_iter, images; and the answers'
lists and ``info``. Pure functions over a catalog built here."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from bot.api.a1111.listing import loras, samplers, sd_models
from bot.api.a1111.names import model_name, sampler_name
from bot.api.a1111.request import Img2ImgPayload, Txt2ImgPayload, read_payload, to_request
from bot.api.a1111.response import echoed_parameters, info_text
from bot.grammar.flags import LoraRequest
from engine.catalog import Catalog, LoraEntry, ModelEntry
from engine.errors import CatalogError, SpecError, UserError
from engine.metadata import format_parameters
from engine.spec import SAMPLERS, JobSpec, LoraRef


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog(
        templates={},
        models={
            "tiny": ModelEntry(name="tiny", source="builtin:tiny", family="sd15", width=64),
            "juggernaut": ModelEntry(
                name="juggernaut",
                source="/srv/models/juggernautXL_v9.safetensors",
                family="sdxl",
                width=1024,
                height=1024,
            ),
            "sd15": ModelEntry(name="sd15", source="org/stable-diffusion-v1-5", family="sd15"),
        },
        loras={
            "tiny-style": LoraEntry(name="tiny-style", source="builtin:a", families=["sd15"]),
            "brand": LoraEntry(
                name="brand", source="/srv/loras/brand_v2.safetensors", families=["sdxl"]
            ),
        },
    )


def _png(color: tuple[int, int, int] | int, *, mode: str = "RGB", size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data: bytes, *, data_url: bool = False) -> str:
    text = base64.b64encode(data).decode()
    return "data:image/png;base64," + text if data_url else text


def test_lora_tags_leave_the_prompt_and_become_catalog_loras(catalog: Catalog) -> None:
    payload = Txt2ImgPayload(prompt="a mug, <lora:tiny-style:0.6>, on a desk <lora:brand>")
    request = to_request(payload, catalog=catalog).request
    assert request.prompt == "a mug, on a desk"
    assert request.loras == (LoraRequest("tiny-style", 0.6), LoraRequest("brand", None))


def test_an_unknown_or_repeated_lora_is_a_sentence(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown LoRA `tiny-stlye`; did you mean `tiny-style`"):
        to_request(Txt2ImgPayload(prompt="a mug <lora:tiny-stlye:1>"), catalog=catalog)
    with pytest.raises(SpecError, match="given twice"):
        to_request(Txt2ImgPayload(prompt="<lora:brand:1> a mug <lora:brand:0.5>"), catalog=catalog)


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("DPM++ 2M", "Karras", "DPM++ 2M Karras"),
        ("DPM++ 2M", "karras", "DPM++ 2M Karras"),
        ("DPM++ 2M SDE", "Karras", "DPM++ 2M SDE Karras"),
        ("DPM++ 2M", "automatic", "DPM++ 2M Karras"),  # A1111's default schedule for it
        ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
        ("DPM++ 2M Karras", "Karras", "DPM++ 2M Karras"),
        ("Euler a", "automatic", "Euler a"),
        ("k_euler_a", None, "Euler a"),
        ("UniPC", "", "UniPC"),
        (None, "Karras", None),  # no sampler: the model's default
    ],
)
def test_sampler_and_scheduler_combine_into_a_proofroom_sampler(
    sampler: str | None, scheduler: str | None, expected: str | None
) -> None:
    assert sampler_name(sampler, scheduler) == expected


def test_an_unknown_sampler_or_schedule_is_a_sentence_listing_the_samplers() -> None:
    with pytest.raises(SpecError, match=r"sampler `DPM2 a` is not available here; choose one of"):
        sampler_name("DPM2 a", None)
    with pytest.raises(SpecError, match=r"`Euler a` with the `Exponential` schedule") as caught:
        sampler_name("Euler a", "Exponential")
    assert all(name in caught.value.message for name in SAMPLERS)


@pytest.mark.parametrize(
    "checkpoint",
    [
        "juggernaut",
        "juggernaut [0123abcdef]",
        "juggernautXL_v9.safetensors",
        "juggernautXL_v9.safetensors [0123abcdef]",
        "juggernautXL_v9",
        "SDXL/juggernautXL_v9.safetensors [0123456789abcdef]",
    ],
)
def test_checkpoint_titles_names_and_file_names_map_to_the_catalog_model(
    catalog: Catalog, checkpoint: str
) -> None:
    assert model_name(catalog, checkpoint) == "juggernaut"
    payload = Txt2ImgPayload(prompt="a mug", override_settings={"sd_model_checkpoint": checkpoint})
    assert to_request(payload, catalog=catalog, default_model="tiny").request.model == "juggernaut"


def test_every_listed_title_maps_back_to_its_model(catalog: Catalog) -> None:
    listed = sd_models(catalog)
    assert [model_name(catalog, item["title"]) for item in listed] == list(catalog.models)
    # Listings show a file's name, never the server's path.
    assert {item["filename"] for item in listed} == {
        "builtin:tiny",
        "juggernautXL_v9.safetensors",
        "org/stable-diffusion-v1-5",
    }
    assert [item["path"] for item in loras(catalog)] == ["builtin:a", "brand_v2.safetensors"]


def test_an_unknown_checkpoint_is_a_sentence_with_a_suggestion(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown model `juggernot`; did you mean `juggernaut`"):
        model_name(catalog, "juggernot.safetensors [0123abcdef]")


def test_without_a_checkpoint_the_keys_default_model_is_used(catalog: Catalog) -> None:
    request = to_request(Txt2ImgPayload(prompt="a mug"), catalog=catalog, default_model="sd15")
    assert request.request.model == "sd15"


def test_seed_minus_one_is_random_and_batches_multiply(catalog: Catalog) -> None:
    random = to_request(
        Txt2ImgPayload(prompt="a", seed=-1, batch_size=2, n_iter=3), catalog=catalog
    )
    assert random.request.seed is None
    assert random.request.count == 6
    fixed = to_request(Txt2ImgPayload(prompt="a", seed=1234), catalog=catalog).request
    assert (fixed.seed, fixed.count) == (1234, 1)


def test_settings_map_and_missing_ones_are_left_to_the_model(catalog: Catalog) -> None:
    payload = Txt2ImgPayload(
        prompt="a mug",
        negative_prompt="text, watermark",
        steps=12,
        cfg_scale=5.5,
        width=768,
        height=512,
        sampler_name="Euler",
    )
    request = to_request(payload, catalog=catalog).request
    assert (request.negative, request.steps, request.cfg, request.size, request.sampler) == (
        "text, watermark",
        12,
        5.5,
        (768, 512),
        "Euler",
    )
    bare = to_request(Txt2ImgPayload(prompt="a mug"), catalog=catalog).request
    assert (bare.steps, bare.cfg, bare.size, bare.sampler, bare.negative) == (None,) * 5
    # One side given: the other is the model's.
    one = to_request(Txt2ImgPayload(prompt="a", width=96), catalog=catalog, default_model="tiny")
    assert one.request.size == (96, 512)


def test_unknown_fields_are_ignored_and_bad_ones_are_sentences() -> None:
    payload = read_payload(Txt2ImgPayload, {"prompt": "a", "restore_faces": True, "eta": 1.0})
    assert payload.prompt == "a"
    with pytest.raises(SpecError, match=r"steps: Input should be a valid integer") as caught:
        read_payload(Txt2ImgPayload, {"prompt": "a", "steps": "many", "cfg_scale": "x"})
    assert "cfg_scale:" in caught.value.message
    with pytest.raises(SpecError, match="JSON object"):
        read_payload(Txt2ImgPayload, ["a"])


def test_hires_fix_and_scripts_are_refused_rather_than_ignored(catalog: Catalog) -> None:
    with pytest.raises(SpecError, match="enable_hr"):
        to_request(Txt2ImgPayload(prompt="a", enable_hr=True), catalog=catalog)
    with pytest.raises(SpecError, match="X/Y/Z plot"):
        to_request(Txt2ImgPayload(prompt="a", script_name="X/Y/Z plot"), catalog=catalog)


def test_img2img_takes_the_init_image_mask_and_strength(catalog: Catalog) -> None:
    init, mask = _png((200, 10, 10)), _png(255, mode="L")
    payload = Img2ImgPayload(
        prompt="a mug",
        init_images=[_b64(init, data_url=True)],
        mask=_b64(mask),
        denoising_strength=0.4,
        mask_blur=8,
        inpainting_fill=1,
    )
    mapped = to_request(payload, catalog=catalog)
    assert mapped.images == {"image": init, "mask": mask}
    assert mapped.request.strength == 0.4
    echoed = echoed_parameters(payload)
    assert (echoed["init_images"], echoed["mask"], echoed["denoising_strength"]) == (
        None,
        None,
        0.4,
    )


def test_an_inverted_mask_swaps_keep_and_repaint(catalog: Catalog) -> None:
    white = _png(255, mode="L")
    payload = Img2ImgPayload(
        prompt="a", init_images=[_b64(_png((1, 2, 3)))], mask=_b64(white), inpainting_mask_invert=1
    )
    mask = to_request(payload, catalog=catalog).images["mask"]
    with Image.open(io.BytesIO(mask)) as image:
        assert image.getextrema() == (0, 0)


def test_img2img_without_one_init_image_or_with_bad_base64_is_refused(catalog: Catalog) -> None:
    with pytest.raises(SpecError, match="init_images"):
        to_request(Img2ImgPayload(prompt="a"), catalog=catalog)
    two = [_b64(_png((1, 1, 1))), _b64(_png((2, 2, 2)))]
    with pytest.raises(SpecError, match="init_images has 2 images; send one per request"):
        to_request(Img2ImgPayload(prompt="a", init_images=two), catalog=catalog)
    with pytest.raises(UserError, match=r"`init_images\[0\]` is not a base64 image"):
        to_request(Img2ImgPayload(prompt="a", init_images=["not base64!"]), catalog=catalog)
    big = Img2ImgPayload(prompt="a", init_images=[_b64(_png((1, 1, 1)))], mask="A" * 4000)
    with pytest.raises(UserError, match="`mask` is .* images may be at most"):
        to_request(big, catalog=catalog, max_image_bytes=1000)


def test_samplers_are_listed_with_a1111_aliases() -> None:
    listed = samplers()
    assert [item["name"] for item in listed] == list(SAMPLERS)
    karras = next(item for item in listed if item["name"] == "DPM++ 2M Karras")
    assert karras == {
        "name": "DPM++ 2M Karras",
        "aliases": ["k_dpmpp_2m_ka"],
        "options": {"scheduler": "karras"},
    }


def test_info_is_a_json_string_of_seeds_settings_and_infotexts() -> None:
    spec = JobSpec(
        prompt="a mug",
        negative_prompt="text",
        model="tiny",
        loras=[LoraRef(name="tiny-style", weight=0.6)],
        sampler="Euler a",
        steps=3,
        cfg_scale=6.0,
        width=64,
        height=64,
        seed=41,
        count=2,
    )
    texts = [
        format_parameters(
            prompt="a mug, tinystyle",
            negative_prompt="text",
            steps=3,
            sampler="Euler a",
            cfg_scale=6.0,
            seed=seed,
            width=64,
            height=64,
            model="tiny",
        )
        for seed in (41, 42)
    ]
    info = json.loads(info_text(spec, seeds=[41, 42], infotexts=texts, batch_size=2))
    assert (info["seed"], info["all_seeds"], info["infotexts"]) == (41, [41, 42], texts)
    assert info["all_prompts"] == ["a mug, tinystyle"] * 2
    assert (info["prompt"], info["negative_prompt"]) == ("a mug, tinystyle", "text")
    assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (64, 64, 3, 6.0)
    assert (info["sampler_name"], info["sd_model_name"], info["batch_size"]) == (
        "Euler a",
        "tiny",
        2,
    )
    assert info["extra_generation_params"] == {"Lora": "tiny-style:0.6"}
    assert info["job_id"] == spec.id
