"""img2img, inpainting and ControlNet with the real tiny pipelines: what each mode does to
the pixels, that derived pipelines share the base pipeline's weights, and that the spec's
mode fields are checked with sentences."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from engine.catalog import Catalog, ModelEntry
from engine.errors import CatalogError, SpecError
from engine.pipelines import PipelineCache
from engine.settings import Settings
from engine.spec import JobSpec, Mode

TINY = ModelEntry(name="tiny", source="builtin:tiny", family="sd15")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene() -> Image.Image:
    """A smooth picture (sky, sun, grass): what img2img is usually given."""
    image = Image.new("RGB", (64, 64), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((12, 12, 52, 52), fill=(230, 200, 40))
    draw.rectangle((0, 48, 64, 64), fill=(60, 140, 60))
    return image


def square_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    return mask


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.fixture()
def put(artifact_store: Any) -> Callable[[Image.Image], str]:
    """Store an input image the way the bot does; its artifact id."""
    return lambda image: artifact_store.put(png(image), suffix=".png")


def round_trip_error(pipe: Any, image: Image.Image) -> float:
    """Mean absolute error (0..255) of the tiny VAE encoding and decoding ``image``."""
    with torch.no_grad():
        latents = pipe.vae.encode(pipe.image_processor.preprocess(image)).latent_dist.mode()
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(latents).sample, "np")[0]
    return mean_error(np.rint(decoded * 255), np.asarray(image))


def test_img2img_strength_0_returns_the_input_and_1_departs_from_it(
    tiny_job, run_job, pixels, put, pipeline_cache, catalog
) -> None:
    picture = scene()
    init = put(picture)
    loaded, _ = pipeline_cache.acquire(catalog.model("tiny"))
    vae_error = round_trip_error(loaded.pipe, picture)
    assert vae_error > 0  # random weights: large, but it is the floor any result can reach

    def render(strength: float) -> np.ndarray:
        spec = tiny_job(mode="img2img", init_image=init, strength=strength, steps=4)
        return pixels(run_job(spec).images[0].artifact_id)

    kept, moved = render(0.0), render(1.0)
    assert kept.shape == moved.shape == (64, 64, 3)
    assert mean_error(kept, np.asarray(picture)) <= vae_error + 0.5
    assert mean_error(moved, kept) > vae_error / 4  # strength 1 is a new image
    assert np.array_equal(render(0.0), kept) and np.array_equal(render(1.0), moved)


def test_img2img_default_strength_and_fitting_to_the_job_size(
    tiny_job, run_job, pixels, put
) -> None:
    spec = tiny_job(mode="img2img", init_image=put(scene().resize((96, 64))))
    assert spec.strength == 0.75  # recorded in the spec, not implied
    image = run_job(spec).images[0]
    assert (image.width, image.height) == (64, 64)


def test_inpainting_leaves_every_pixel_outside_the_mask_unchanged(
    tiny_job, run_job, pixels, put, pipeline_cache, catalog
) -> None:
    picture, mask = scene(), square_mask()
    spec = tiny_job(mode="inpaint", init_image=put(picture), mask_image=put(mask), strength=1.0)
    result = pixels(run_job(spec).images[0].artifact_id)
    original = np.asarray(picture)
    outside, inside = np.asarray(mask) == 0, np.asarray(mask) == 255
    assert np.abs(result[outside].astype(int) - original[outside]).max() == 0
    assert mean_error(result[inside], original[inside]) > 10  # the masked square is repainted

    # Without the overlay the pipeline's own output drifts outside the mask by about the
    # VAE's round-trip error: this is what the overlay removes.
    loaded, _ = pipeline_cache.acquire(catalog.model("tiny"))
    raw = loaded.pipeline(Mode.inpaint)(
        prompt=spec.prompt,
        image=picture,
        mask_image=mask,
        strength=1.0,
        num_inference_steps=3,
        generator=torch.Generator("cpu").manual_seed(spec.seed),
        width=64,
        height=64,
    ).images[0]
    drift = mean_error(np.asarray(raw)[outside], original[outside])
    assert drift > 0.5 * round_trip_error(loaded.pipe, picture)


def test_controlnet_output_follows_the_control_image(tiny_job, run_job, pixels, put) -> None:
    box, ring = Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64))
    ImageDraw.Draw(box).rectangle((12, 12, 52, 52), fill=(255, 255, 255))
    ImageDraw.Draw(ring).ellipse((8, 8, 56, 56), outline=(255, 255, 255), width=4)

    def render(control: Image.Image, **fields: Any) -> np.ndarray:
        spec = tiny_job(
            mode="controlnet",
            control_image=put(control),
            control_type="canny",
            controlnet="tiny-canny",
            **fields,
        )
        return pixels(run_job(spec).images[0].artifact_id)

    with_box, with_ring = render(box), render(ring)
    assert mean_error(with_box, with_ring) > 1.0
    assert np.array_equal(render(box), with_box)  # same guide, same seed: same pixels
    # At scale 0 the guide does nothing: the base model's txt2img image, pixel for pixel.
    txt2img = pixels(run_job(tiny_job()).images[0].artifact_id)
    assert np.array_equal(render(ring, control_scale=0.0), txt2img)
    assert not np.array_equal(with_ring, txt2img)


def test_derived_pipelines_share_the_base_weights(engine_settings: Settings, catalog) -> None:
    cache = PipelineCache(settings=engine_settings)
    loaded, _ = cache.acquire(TINY)
    base, before = loaded.pipe, cache.total_bytes
    assert unique_bytes([base]) == before
    img2img, inpaint = loaded.pipeline(Mode.img2img), loaded.pipeline(Mode.inpaint)
    for derived in (img2img, inpaint):
        assert derived.unet is base.unet and derived.vae is base.vae
        assert derived.text_encoder is base.text_encoder
    assert loaded.pipeline(Mode.img2img) is img2img  # derived once, then kept
    assert cache.total_bytes == before == unique_bytes([base, img2img, inpaint])

    control, _ = cache.acquire_controlnet(catalog.controlnet("tiny-canny"))
    guided = loaded.pipeline(Mode.controlnet, controlnet=control)
    assert guided.unet is base.unet and guided.controlnet is control.module
    # The only new memory is the ControlNet itself, counted once.
    assert cache.total_bytes == before + control.nbytes
    assert cache.total_bytes == unique_bytes([base, img2img, inpaint, guided])
    # Another catalog entry on the same file shares the module and the derived pipeline.
    again, load_s = cache.acquire_controlnet(catalog.controlnet("tiny-depth"))
    assert again is control and load_s == 0.0
    assert loaded.pipeline(Mode.controlnet, controlnet=again) is guided
    assert cache.loads == {"tiny": 1} and cache.controlnet_loads == {"builtin:tiny-controlnet": 1}
    # A new scheduler reaches every pipeline of the model.
    loaded.use_sampler("DDIM")
    assert {type(p.scheduler).__name__ for p in (base, img2img, inpaint, guided)} == {
        "DDIMScheduler"
    }


def test_jobs_of_every_mode_use_one_model_load(
    engine_settings: Settings, catalog: Catalog, artifact_store, tiny_job, put
) -> None:
    from engine.render import render

    cache = PipelineCache(settings=engine_settings)
    picture = put(scene())
    specs = [
        tiny_job(),
        tiny_job(mode="img2img", init_image=picture),
        tiny_job(mode="inpaint", init_image=picture, mask_image=put(square_mask())),
        tiny_job(
            mode="controlnet", control_image=picture, control_type="canny", controlnet="tiny-canny"
        ),
        tiny_job(mode="img2img", init_image=picture, seed=9),
    ]
    for spec in specs:
        render(spec, cache=cache, store=artifact_store, catalog=catalog)
    loaded, load_s = cache.acquire(TINY)
    assert load_s == 0.0 and cache.loads == {"tiny": 1}
    assert {mode for mode, _ in loaded.derived} == {Mode.img2img, Mode.inpaint, Mode.controlnet}


def test_xl_modes_render(tiny_job, run_job, put) -> None:
    picture = put(scene())
    for fields in (
        {"mode": "img2img", "init_image": picture},
        {"mode": "inpaint", "init_image": picture, "mask_image": put(square_mask())},
        {
            "mode": "controlnet",
            "control_image": picture,
            "control_type": "canny",
            "controlnet": "tiny-xl-canny",
        },
    ):
        image = run_job(tiny_job(model="tiny-xl", steps=2, **fields)).images[0]
        assert (image.width, image.height) == (64, 64)


@pytest.mark.parametrize(
    ("fields", "sentence"),
    [
        ({"mode": "img2img"}, "img2img needs an init image; attach the image to start from"),
        ({"mode": "inpaint", "init_image": "ID"}, "inpainting needs a mask"),
        (
            {"mode": "img2img", "init_image": "ID", "strength": 1.5},
            "strength must be between 0 and 1; you asked for 1.5",
        ),
        ({"strength": 0.5}, "strength says how far to move from a starting image"),
        (
            {"mode": "img2img", "init_image": "ID", "mask_image": "ID"},
            "a mask is used only by inpaint jobs, not by img2img jobs",
        ),
        (
            {"mode": "controlnet", "control_image": "ID", "controlnet": "tiny-canny"},
            "a ControlNet job needs a control type: canny, depth, openpose, scribble",
        ),
        (
            {
                "mode": "controlnet",
                "control_image": "ID",
                "control_type": "canny",
                "controlnet": "tiny-canny",
                "control_scale": 3.0,
            },
            "control scale must be between 0 and 2",
        ),
        (
            {
                "mode": "controlnet",
                "control_image": "ID",
                "control_type": "canny",
                "controlnet": "tiny-canny",
                "control_start": 0.6,
                "control_end": 0.4,
            },
            "the control guide must start before it ends; you asked for start 0.6 and end 0.4",
        ),
        (
            {"mode": "img2img", "init_image": "../../etc/passwd"},
            "a starting image must be a stored image; `../../etc/passwd` is not",
        ),
        (
            {
                "mode": "controlnet",
                "control_image": "ID",
                "control_type": "depth",
                "controlnet": "tiny-canny",
            },
            "ControlNet `tiny-canny` reads canny guides, not depth",
        ),
        (
            {
                "mode": "controlnet",
                "control_image": "ID",
                "control_type": "canny",
                "controlnet": "tiny-xl-canny",
            },
            "ControlNet `tiny-xl-canny` is made for sdxl models",
        ),
    ],
)
def test_mode_fields_are_checked_with_sentences(
    fields: dict[str, Any], sentence: str, tiny_job, run_job, put
) -> None:
    picture = put(scene())
    values = {k: picture if v == "ID" else v for k, v in fields.items()}
    spec = JobSpec(**{**tiny_job().model_dump(), **values})
    with pytest.raises(SpecError) as caught:
        run_job(spec)
    assert sentence in caught.value.message


def test_an_input_missing_from_the_store_is_a_sentence(tiny_job, run_job, put) -> None:
    spec = tiny_job(mode="img2img", init_image="20250101-0123456789abcdef.png")
    with pytest.raises(SpecError, match="the init image of this job is no longer stored"):
        run_job(spec)


def test_the_catalog_picks_the_controlnet_for_the_model(catalog: Catalog) -> None:
    assert catalog.controlnet_for(catalog.model("tiny"), "canny").name == "tiny-canny"
    assert catalog.controlnet_for(catalog.model("sd15"), "canny").name == "sd15-canny"
    assert catalog.controlnet_for(catalog.model("sdxl"), "depth").name == "sdxl-depth"
    with pytest.raises(CatalogError, match="no openpose ControlNet for model `sdxl`; available"):
        catalog.controlnet_for(catalog.model("sdxl"), "openpose")
    with pytest.raises(SpecError, match="cannot guide `tiny`"):
        catalog.controlnet("sd15-canny", model=catalog.model("tiny"))


def unique_bytes(pipes: list[Any]) -> int:
    """Bytes of every distinct tensor (by storage) in the pipelines' modules."""
    seen: dict[int, int] = {}
    for pipe in pipes:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in [*component.parameters(), *component.buffers()]:
                    seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())
