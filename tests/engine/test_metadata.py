"""A1111 ``parameters`` text and PNG chunks: layout, quoting, parsing, round trips."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from engine import metadata
from engine.spec import JobSpec, LoraRef

# As written by AUTOMATIC1111 (v1.6) into a PNG's `parameters` chunk.
A1111_SAMPLE = (
    "masterpiece, best quality, (red dress:1.2), <lora:add_detail:0.5>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4)\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54", '
    "Version: v1.6.0"
)


def test_parses_a_literal_a1111_sample() -> None:
    params = metadata.parse_parameters(A1111_SAMPLE)
    assert params["Prompt"] == "masterpiece, best quality, (red dress:1.2), <lora:add_detail:0.5>"
    assert params["Negative prompt"] == "lowres, bad anatomy, (worst quality:1.4)"
    assert params["Steps"] == "20"
    assert params["Sampler"] == "DPM++ 2M Karras"
    assert params["CFG scale"] == "7"
    assert params["Seed"] == "1234567890"
    assert (params["Size-1"], params["Size-2"]) == ("512", "768")
    assert params["Model"] == "v1-5-pruned-emaonly"
    assert params["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert params["Version"] == "v1.6.0"


def test_writes_a1111_line_layout() -> None:
    text = metadata.format_parameters(
        prompt="masterpiece, best quality, (red dress:1.2)",
        negative_prompt="lowres, bad anatomy",
        steps=20,
        sampler="DPM++ 2M Karras",
        cfg_scale=7.0,
        seed=1234567890,
        width=512,
        height=768,
        model="sd15",
    )
    assert text == (
        "masterpiece, best quality, (red dress:1.2)\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
        "Model: sd15"
    )


def test_no_negative_line_when_the_negative_is_empty() -> None:
    text = metadata.format_parameters(
        prompt="a cat", steps=4, sampler="Euler a", cfg_scale=7.5, seed=1, width=64, height=64
    )
    assert text == "a cat\nSteps: 4, Sampler: Euler a, CFG scale: 7.5, Seed: 1, Size: 64x64"
    assert metadata.parse_parameters(text)["Negative prompt"] == ""


def test_values_with_commas_colons_or_newlines_are_json_quoted() -> None:
    assert metadata.quote("plain value") == "plain value"
    assert metadata.quote("a, b") == '"a, b"'
    assert metadata.quote("k: v") == '"k: v"'
    assert metadata.quote("two\nlines") == '"two\\nlines"'
    for value in ("a, b", "k: v", 'say "hi", ok', "two\nlines"):
        assert metadata.unquote(metadata.quote(value)) == value


def test_round_trip_keeps_multiline_prompts_and_tricky_values() -> None:
    prompt = "line one, (gold:1.3)\nSteps: this line is part of the prompt"
    text = metadata.format_parameters(
        prompt=prompt,
        negative_prompt="blurry\nwatermark",
        steps=30,
        sampler="DPM++ 2M SDE Karras",
        cfg_scale=6.5,
        seed=42,
        width=1024,
        height=1024,
        model="sdxl",
        loras=[("brand-x", 0.8), ("tiny-style", 1.0)],
        extra={"Note": "a, b: c"},
    )
    params = metadata.parse_parameters(text)
    assert params["Prompt"] == prompt
    assert params["Negative prompt"] == "blurry\nwatermark"
    assert params["Lora"] == "brand-x:0.8, tiny-style:1"
    assert params["Note"] == "a, b: c"
    assert params["Sampler"] == "DPM++ 2M SDE Karras"


def test_spec_fields_rebuild_the_spec() -> None:
    spec = JobSpec(
        prompt="a red cat",
        negative_prompt="blurry",
        model="tiny",
        seed=7,
        steps=4,
        cfg_scale=5.5,
        width=64,
        height=128,
        sampler="Heun",
        loras=[LoraRef(name="tiny-style", weight=0.8)],
        count=3,
    )
    fields = metadata.spec_fields(metadata.parse_parameters(metadata.parameters_for(spec, 2)))
    again = JobSpec(**fields)
    assert again.seed == 9  # image 2 of the job
    assert again.model_dump(
        include={
            "prompt",
            "negative_prompt",
            "model",
            "steps",
            "cfg_scale",
            "width",
            "height",
            "sampler",
            "loras",
        }
    ) == spec.model_dump(
        include={
            "prompt",
            "negative_prompt",
            "model",
            "steps",
            "cfg_scale",
            "width",
            "height",
            "sampler",
            "loras",
        }
    )


def test_png_chunks_round_trip_including_non_latin_text() -> None:
    image = Image.new("RGB", (8, 8), "white")
    text = (
        "a café sign that reads 東京 🌸\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8"
    )
    png = metadata.png_with_parameters(image, text, proofroom={"spec": {"id": "abc"}, "index": 0})
    assert metadata.read_parameters(png) == text
    assert metadata.read_proofroom(png) == {"spec": {"id": "abc"}, "index": 0}
    assert metadata.parse_parameters(metadata.read_parameters(png))["Seed"] == "1"


def test_png_without_chunks_reads_as_none() -> None:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert metadata.read_parameters(buffer.getvalue()) is None
    assert metadata.read_proofroom(buffer.getvalue()) is None


def test_importing_metadata_does_not_import_torch() -> None:
    code = "import sys, engine.metadata; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_to_image_settings_use_a1111_names() -> None:
    from engine.metadata import parameters_for, parse_parameters
    from engine.spec import JobSpec

    common = {
        "prompt": "a mug",
        "model": "tiny",
        "seed": 5,
        "init_image": "20260101-0123456789abcdef.png",
    }
    img2img = parse_parameters(parameters_for(JobSpec(mode="img2img", strength=0.6, **common), 0))
    assert img2img["Denoising strength"] == "0.6" and "Mask blur" not in img2img
    inpaint = JobSpec(mode="inpaint", mask_image="20260101-0123456789abcdee.png", **common)
    parsed = parse_parameters(parameters_for(inpaint, 0))
    assert parsed["Denoising strength"] == "0.75" and parsed["Mask blur"] == "4"
    assert "Denoising strength" not in parse_parameters(
        parameters_for(JobSpec(prompt="a", model="tiny", seed=1), 0)
    )


def test_an_upscale_says_what_a1111s_sd_upscale_says_and_links_its_parent() -> None:
    spec = JobSpec(
        mode="upscale",
        prompt="a mug",
        model="tiny",
        seed=77,
        width=1024,
        height=768,
        scale=2,
        tile_size=512,
        tile_overlap=128,
        init_image="20260101-0123456789abcdef.png",
        parent="abc123/2",
    )
    parsed = metadata.parse_parameters(metadata.parameters_for(spec, 0))
    assert parsed["Denoising strength"] == "0.3"  # the upscale default
    assert parsed["SD upscale overlap"] == "128"
    assert parsed["SD upscale upscaler"] == "Lanczos"
    assert (parsed["Size-1"], parsed["Size-2"], parsed["Seed"]) == ("1024", "768", "77")
    assert metadata.spec_fields(parsed)["width"] == 1024  # existing readers: unchanged
    assert metadata.upscale_link(spec) == {
        "parent_job": "abc123",
        "parent_index": 2,
        "source": "20260101-0123456789abcdef.png",
        "seed": 77,
        "strength": 0.3,
        "scale": 2,
        "tile_size": 512,
        "tile_overlap": 128,
        "upscaler": "lanczos",
    }
    assert metadata.upscale_link(JobSpec(prompt="a", model="tiny", seed=1)) is None
    img2img = JobSpec(mode="img2img", prompt="a", model="tiny", seed=1, init_image=spec.init_image)
    assert "SD upscale overlap" not in metadata.parse_parameters(
        metadata.parameters_for(img2img, 0)
    )
