"""The GPU setup of loaded pipelines (engine.gpu) as far as a CPU shows it: the settings, fp32
and unchanged pixels on a CPU, SDPA everywhere, VAE slicing and tiling, the SDXL fp16 VAE
upcast, and offload and compilation off or ignored on a CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from engine import gpu, tiny
from engine.catalog import ModelEntry
from engine.pipelines import PipelineCache
from engine.settings import Settings

TINY = ModelEntry(name="tiny", source="builtin:tiny", family="sd15")
TINY_XL = ModelEntry(name="tiny-xl", source="builtin:tiny-xl", family="sdxl")


def _render(pipe, *, size: int = 64, steps: int = 2, count: int = 1) -> np.ndarray:
    generators = [torch.Generator("cpu").manual_seed(7 + k) for k in range(count)]
    return pipe(
        prompt="a red cat on a wooden table",
        num_inference_steps=steps,
        height=size,
        width=size,
        num_images_per_prompt=count,
        generator=generators,
        output_type="np",
    ).images


def test_settings_defaults_and_environment(monkeypatch) -> None:
    defaults = Settings(_env_file=None)
    assert defaults.cuda_dtype == "fp16"
    assert defaults.cpu_offload == "none"
    assert defaults.compile_unet is False
    assert defaults.vae_slicing is True
    assert defaults.vae_tile_pixels == 1024 * 1024
    monkeypatch.setenv("PROOFROOM_CUDA_DTYPE", "bf16")
    monkeypatch.setenv("PROOFROOM_CPU_OFFLOAD", "sequential")
    monkeypatch.setenv("PROOFROOM_COMPILE_UNET", "true")
    monkeypatch.setenv("PROOFROOM_VAE_SLICING", "false")
    monkeypatch.setenv("PROOFROOM_VAE_TILE_PIXELS", "0")
    read = Settings(_env_file=None)
    assert (read.cuda_dtype, read.cpu_offload, read.compile_unet) == ("bf16", "sequential", True)
    assert (read.vae_slicing, read.vae_tile_pixels) == (False, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROOFROOM_CUDA_DTYPE", "fp8"),
        ("PROOFROOM_CPU_OFFLOAD", "disk"),
        ("PROOFROOM_VAE_TILE_PIXELS", "-1"),
    ],
)
def test_unknown_values_are_refused(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("PROOFROOM_").lower()):
        Settings(_env_file=None)


def test_dtype_per_device(engine_settings: Settings) -> None:
    bf16 = engine_settings.model_copy(update={"cuda_dtype": "bf16"})
    assert gpu.pipeline_dtype(device="cpu", settings=bf16) == torch.float32
    assert gpu.pipeline_dtype(device="mps", settings=bf16) == torch.float32
    assert gpu.pipeline_dtype(device="cuda", settings=engine_settings) == torch.float16
    if not torch.cuda.is_available():  # with a GPU, an old one gets fp16 instead
        assert gpu.pipeline_dtype(device="cuda:0", settings=bf16) == torch.bfloat16


def test_a_cached_pipeline_on_a_cpu_stays_fp32_and_renders_the_same_pixels(
    engine_settings: Settings,
) -> None:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    pipe = PipelineCache(settings=engine_settings).acquire(TINY)[0].pipe
    assert {p.dtype for p in pipe.components["unet"].parameters()} == {torch.float32}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}
    layers = [m for part in (pipe.unet, pipe.vae) for m in part.modules()]
    attention = [m for m in layers if isinstance(m, Attention)]
    assert attention and all(type(m.processor) is AttnProcessor2_0 for m in attention)
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    assert not pipe.vae.use_slicing and not pipe.vae.use_tiling
    assert pipe.unet._compiled_call_impl is None
    assert np.array_equal(_render(pipe, count=2), _render(tiny.load("tiny"), count=2))


def test_an_attention_layer_with_its_own_processor_keeps_it() -> None:
    from diffusers.models.attention_processor import (
        Attention,
        AttnProcessor,
        AttnProcessor2_0,
        SlicedAttnProcessor,
    )

    unet = tiny.load("tiny").unet
    first, second, *rest = [m for m in unet.modules() if isinstance(m, Attention)]
    first.set_processor(AttnProcessor())  # the slow default of old diffusers: replaced
    second.set_processor(SlicedAttnProcessor(slice_size=1))  # a choice of its own: kept
    assert gpu.use_sdpa(unet) == (len(rest) + 1, 1)
    assert type(first.processor) is AttnProcessor2_0
    assert type(second.processor) is SlicedAttnProcessor


def test_vae_tiling_is_on_for_calls_above_the_threshold(engine_settings: Settings) -> None:
    pipe = tiny.load("tiny")  # its VAE's tiles are 64 px
    small = engine_settings.model_copy(update={"vae_tile_pixels": 64 * 64})
    assert not gpu.vae_tiling(width=1024, height=1024, settings=engine_settings)
    assert gpu.vae_tiling(width=1152, height=1024, settings=engine_settings)
    assert not gpu.vae_tiling(
        width=4096, height=4096, settings=small.model_copy(update={"vae_tile_pixels": 0})
    )
    whole = _render(pipe, size=128)
    with gpu.vae_for_call(pipe, width=128, height=128, settings=small) as tiled:
        assert tiled and pipe.vae.use_tiling
        tiles = _render(pipe, size=128)
    assert not pipe.vae.use_tiling  # back as it was
    assert whole.shape == tiles.shape and not np.array_equal(whole, tiles)  # blended seams
    assert np.abs(whole - tiles).mean() < 0.1  # ...of the same picture
    with gpu.vae_for_call(pipe, width=64, height=64, settings=small) as tiled:
        assert not tiled
        assert np.array_equal(_render(pipe), _render(tiny.load("tiny")))


def test_on_cuda_the_vae_decodes_a_batch_as_each_image_alone(engine_settings: Settings) -> None:
    # Set up as for a GPU, run on the CPU: slicing and channels_last need no CUDA to show.
    pipe = tiny.load("tiny")
    setup = gpu.prepare(pipe, model=TINY, device="cuda", settings=engine_settings)
    assert setup.vae_slicing and setup.channels_last and pipe.vae.use_slicing
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        batch = pipe.vae.decode(latents).sample
        alone = torch.cat([pipe.vae.decode(latents[k : k + 1]).sample for k in range(3)])
    assert torch.equal(batch, alone)
    off = engine_settings.model_copy(update={"vae_slicing": False})
    pipe = tiny.load("tiny")
    assert not gpu.prepare(pipe, model=TINY, device="cuda", settings=off).vae_slicing
    assert not pipe.vae.use_slicing
    pipe = tiny.load("tiny")  # on a CPU the decoder takes the whole batch, as before
    assert not gpu.prepare(pipe, model=TINY, device="cpu", settings=engine_settings).vae_slicing


def test_compilation_is_off_by_default_and_ignored_on_a_cpu(
    engine_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert engine_settings.compile_unet is False
    before = gpu.COMPILES.count
    wanted = engine_settings.model_copy(update={"compile_unet": True})
    pipe = tiny.load("tiny")
    with caplog.at_level(logging.INFO, logger="engine.gpu"):
        setup = gpu.prepare(pipe, model=TINY, device="cpu", settings=wanted)
    assert setup.compile_s is None and pipe.unet._compiled_call_impl is None
    assert gpu.COMPILES.count == before
    assert "PROOFROOM_COMPILE_UNET is ignored on cpu" in caplog.text


def test_cpu_offload_on_a_cpu_is_ignored_with_a_log_line(
    engine_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    offload = engine_settings.model_copy(update={"cpu_offload": "model"})
    with caplog.at_level(logging.WARNING, logger="engine.gpu"):
        pipe = PipelineCache(settings=offload).acquire(TINY)[0].pipe
    assert "PROOFROOM_CPU_OFFLOAD=model is ignored on cpu" in caplog.text
    assert not getattr(pipe, "_all_hooks", None)  # no accelerate hooks
    assert not hasattr(pipe.unet, "_hf_hook")
    assert np.array_equal(_render(pipe), _render(tiny.load("tiny")))


def test_an_fp16_sdxl_vae_keeps_decoding_in_fp32(engine_settings: Settings) -> None:
    # Casting only, nothing runs: CPUs have no use for fp16 pipelines.
    pipe = tiny.load("tiny-xl").to(torch.float16)
    pipe.vae.register_to_config(force_upcast=False)  # a config that says fp16 is safe
    setup = gpu.prepare(pipe, model=TINY_XL, device="cpu", settings=engine_settings)
    assert setup.vae_upcast is True and pipe.vae.config.force_upcast is True
    # A VAE the catalog names (the fp16-fix) follows its own config.
    fixed = TINY_XL.model_copy(update={"vae": "sdxl-vae-fp16-fix"})
    pipe = tiny.load("tiny-xl").to(torch.float16)
    pipe.vae.register_to_config(force_upcast=False)
    assert (
        gpu.prepare(pipe, model=fixed, device="cpu", settings=engine_settings).vae_upcast is False
    )
    assert pipe.vae.config.force_upcast is False
    # bf16 has fp32's range, and SD1.5's pipelines never upcast: nothing to keep.
    pipe = tiny.load("tiny-xl").to(torch.bfloat16)
    assert (
        gpu.prepare(pipe, model=TINY_XL, device="cpu", settings=engine_settings).vae_upcast is None
    )
    pipe = tiny.load("tiny").to(torch.float16)
    assert gpu.prepare(pipe, model=TINY, device="cpu", settings=engine_settings).vae_upcast is None


@pytest.mark.slow
def test_compile_unet_compiles_in_place_warms_up_and_counts() -> None:
    pipe = tiny.load("tiny")
    unet = pipe.unet
    expected = _render(pipe)
    before = gpu.COMPILES.count
    # The eager backend runs dynamo's capture without inductor's code generation: the same
    # path as on a GPU, in seconds on a CPU.
    seconds = gpu.compile_unet(pipe, backend="eager")
    assert seconds > 0 and gpu.COMPILES.count == before + 1
    assert pipe.unet is unet and unet._compiled_call_impl is not None
    assert np.array_equal(_render(pipe), expected)
