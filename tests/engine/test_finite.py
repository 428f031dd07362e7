"""Non-finite renders (issue 12, item 6): a NaN image is never delivered as a success. It
gets one retry in a safe mode (the VAE decode in fp32, or the whole image in fp32), else it
is left out with a sentence; real tiny pipelines throughout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from engine import finite
from engine.catalog import Catalog
from engine.errors import BlankImageError
from engine.pipelines import PipelineCache
from engine.settings import Settings
from engine.spec import Mode

# The reproduction of the issue: `proofroom generate --model tiny --seed 12 --steps 2`.
REPORTED_PROMPT = "@SUM(1+1), x, casual clothes, smiling, urban setting, cinematic lighting"
REPORTED_NEGATIVE = (
    "bad anatomy, extra fingers, worst quality, low quality, blurry, disfigured, ugly"
)
# Whether the reported prompt's weighted chunk divides 0 by 0 (NaN) or 0 by 1e-9 (zeros)
# depends on the CPU's float rounding. A weight beyond the fp32 range makes the NaN certain
# on every machine, through the same weighting path.
OVERFLOWING_PROMPT = REPORTED_PROMPT.replace("(1+1)", "(1+1:1" + "0" * 39 + ")")


def _reported_job(tiny_job: Any, prompt: str, **fields: Any) -> Any:
    return tiny_job(
        prompt=prompt, negative_prompt=REPORTED_NEGATIVE, seed=12, steps=2, cfg_scale=7.0, **fields
    )


def test_an_image_nan_in_fp32_fails_with_a_sentence(tiny_job, run_job, artifact_store) -> None:
    with pytest.raises(BlankImageError) as caught:
        run_job(_reported_job(tiny_job, OVERFLOWING_PROMPT))

    assert caught.value.kind == "blank_image"
    assert caught.value.message == (
        "the image came out blank (the model produced invalid values, NaN) for seed 12; "
        "try another seed, sampler or prompt"
    )
    assert list(artifact_store.root.rglob("*.png")) == []  # nothing stored as a result


def test_the_reported_prompt_is_never_delivered_black(tiny_job, run_job, pixels) -> None:
    # On a machine where this prompt's encoding is NaN it must fail as above; where it is
    # finite, the image is delivered, and it is not the black of a NaN cast to uint8.
    try:
        result = run_job(_reported_job(tiny_job, REPORTED_PROMPT))
    except BlankImageError as exc:
        assert "came out blank" in exc.message
        return
    assert pixels(result.images[0].artifact_id).any()


def test_all_images_blank_fail_the_job_with_every_seed(tiny_job, run_job) -> None:
    with pytest.raises(BlankImageError, match=r"^all 2 images came out blank .* seeds 12 and 13;"):
        run_job(_reported_job(tiny_job, OVERFLOWING_PROMPT, count=2))


def test_a_blank_image_is_left_out_and_the_others_delivered_with_a_note(
    tiny_job, run_job, pipeline_cache, catalog, pixels
) -> None:
    spec = tiny_job(count=2, seed=40, steps=2)
    vae = pipeline_cache.acquire(catalog.model("tiny"))[0].pipe.vae

    def nan_for_image_1(module: Any, args: Any, output: Any) -> Any:
        # A decoder that overflows for one image only, retry included: the second image
        # of the batch's decode, and the decode of that image alone in fp32 after it.
        output = output.clone()
        output[-1] = float("nan")
        return output

    notes: list[str] = []
    hook = vae.decoder.register_forward_hook(nan_for_image_1)
    try:
        result = run_job(spec, on_note=notes.append)
    finally:
        hook.remove()

    assert [image.index for image in result.images] == [0]
    assert pixels(result.images[0].artifact_id).any()
    assert notes == [
        "image 2 of 2 (seed 41) came out blank (the model produced invalid values, NaN) and "
        "is left out; try another seed, sampler or prompt"
    ]


@pytest.fixture()
def half_tiny(engine_settings: Settings, catalog: Catalog) -> Iterator[Any]:
    """A cache of its own holding the tiny model in fp16 on the CPU, as a GPU worker would
    (slow on a CPU, so only the tests of the half-precision retries use it)."""
    cache = PipelineCache(settings=engine_settings)
    cache.dtype = torch.float16
    yield cache


def _overflow_in_fp16(module: torch.nn.Module) -> None:
    """Weights still inside fp16's range whose outputs are not (sums of ~36 terms of up to
    60000): what the SDXL VAE does in fp16, while fp32 carries them to the next norm."""
    with torch.no_grad():
        weight = module.weight
        weight.copy_(weight.float() * (6e4 / weight.float().abs().max()))


@pytest.mark.slow
def test_a_vae_overflowing_in_fp16_is_decoded_again_in_fp32(
    half_tiny, tiny_job, catalog, artifact_store, pixels, caplog
) -> None:
    from engine.render import render

    pipe = half_tiny.acquire(catalog.model("tiny"))[0].pipe
    _overflow_in_fp16(pipe.vae.decoder.conv_in)
    spec = tiny_job(steps=2, cfg_scale=1.0, seed=3)

    result = render(spec, cache=half_tiny, store=artifact_store, catalog=catalog)

    assert pixels(result.images[0].artifact_id).any()
    assert "after the VAE decode; decoding it again in fp32" in caplog.text
    assert pipe.vae.dtype == torch.float16  # back to what the worker runs


@pytest.mark.slow
def test_latents_overflowing_in_fp16_are_rendered_again_in_fp32(
    half_tiny, tiny_job, catalog, artifact_store, pixels, caplog
) -> None:
    from engine.render import render

    pipe = half_tiny.acquire(catalog.model("tiny"))[0].pipe
    _overflow_in_fp16(pipe.unet.conv_in)
    before = {name: t.clone() for name, t in pipe.unet.state_dict().items()}
    # Two images: the batch's latents overflow, and each image is rendered again alone.
    spec = tiny_job(steps=2, cfg_scale=1.0, seed=3, count=2)

    result = render(spec, cache=half_tiny, store=artifact_store, catalog=catalog)

    assert [image.index for image in result.images] == [0, 1]
    assert all(pixels(image.artifact_id).any() for image in result.images)
    assert "after denoising; rendering it again in fp32" in caplog.text
    # Every weight has its own dtype and its very value back (fp16 -> fp32 -> fp16 is exact).
    after = pipe.unet.state_dict()
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
    assert pipe.text_encoder.dtype == torch.float16


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_the_fp32_decode_is_the_pipelines_own_decode(model, pipeline_cache, catalog) -> None:
    loaded = pipeline_cache.acquire(catalog.model(model))[0]
    with loaded.lock:
        pipe = loaded.pipeline(Mode.txt2img)
        tap = finite.LatentTap()
        out = pipe(
            "a red cat",
            num_inference_steps=2,
            width=64,
            height=64,
            output_type="np",
            callback_on_step_end=tap,
            generator=torch.Generator("cpu").manual_seed(5),
        ).images
        assert tap.latents is not None
        np.testing.assert_array_equal(finite.decode_fp32(pipe, tap.latents), out)


def test_full_precision_restores_every_tensor() -> None:
    from engine import tiny

    pipe = tiny.load("tiny")  # a copy of its own: fp16 would round the shared one's weights
    pipe.text_encoder.to(torch.float16)
    before = {n: t.clone() for n, t in pipe.text_encoder.state_dict().items()}
    assert finite.is_half(pipe)
    with finite.full_precision(pipe):
        assert not finite.is_half(pipe)
    assert pipe.text_encoder.dtype == torch.float16 and pipe.unet.dtype == torch.float32
    after = pipe.text_encoder.state_dict()
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())


@pytest.mark.parametrize(
    ("seeds", "count", "sentence"),
    [
        ({0: 7}, 1, "the image came out blank (the model produced invalid values, NaN) for seed 7"),
        (
            {0: 7, 1: 8, 2: 9},
            3,
            "all 3 images came out blank (the model produced invalid values, "
            "NaN) for seeds 7, 8 and 9",
        ),
        (
            {2: 9},
            4,
            "image 3 of 4 (seed 9) came out blank (the model produced invalid values, "
            "NaN) and is left out",
        ),
        (
            {3: 10, 1: 8},
            4,
            "images 2 and 4 of 4 (seeds 8 and 10) came out blank (the model "
            "produced invalid values, NaN) and are left out",
        ),
    ],
)
def test_blank_sentences(seeds: dict[int, int], count: int, sentence: str) -> None:
    assert finite.blank_sentence(seeds=seeds, count=count) == (
        f"{sentence}; try another seed, sampler or prompt"
    )
