"""What a model file is, from real files: safetensors written by ``safetensors`` and pickles
written by ``torch.save``, with the key names of each real layout."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.model_files import PICKLE_PROBLEM, describe
from engine.settings import REPO_ROOT
from engine.tensor_files import FileUnreadable, read_header, read_pickle_shapes
from tests.engine import model_fixtures as fx

# -- reading headers -----------------------------------------------------------------------


def test_read_header_gives_shapes_dtypes_and_metadata(tmp_path: Path) -> None:
    path = fx.write(tmp_path / "x.safetensors", fx.EMBEDDING_SDXL, {"ss_network_dim": "4"})
    header = read_header(path)
    assert header["clip_l"].shape == (3, 768)
    assert header["clip_g"].shape == (3, 1280)
    assert header["clip_l"].dtype == "F16"
    assert "__metadata__" not in header
    assert header.metadata == {"ss_network_dim": "4"}


def test_read_header_never_reads_the_weights(tmp_path: Path) -> None:
    # A 3 GB tensor whose bytes are a hole in a sparse file: only the header is read.
    path = sparse_checkpoint(tmp_path / "big.safetensors", gigabytes=3)
    header = read_header(path)
    assert header["model.diffusion_model.out.2.weight"].shape == (3 * 1024**3 // 2,)


def test_a_truncated_file_is_unreadable_with_a_reason(tmp_path: Path) -> None:
    whole = fx.write(tmp_path / "whole.safetensors", fx.SD15)
    half = tmp_path / "half.safetensors"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(FileUnreadable, match="truncated"):
        read_header(half)
    assert describe(half).problem is not None
    assert "truncated" in (describe(half).problem or "")


def test_a_header_longer_than_the_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b'{"a": 1}')
    with pytest.raises(FileUnreadable, match="header says it is 10000 bytes"):
        read_header(path)


def test_bad_json_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(FileUnreadable, match="not valid JSON"):
        read_header(path)


def test_a_tiny_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"abc")
    with pytest.raises(FileUnreadable, match="too short"):
        read_header(path)


# -- reading pickles without running them ------------------------------------------------


def test_pickle_shapes_of_a_torch_saved_checkpoint(tmp_path: Path) -> None:
    path = fx.torch_save(tmp_path / "model.ckpt", fx.SD15)
    shapes = read_pickle_shapes(path)
    key = "state_dict." + fx.UNET + "input_blocks.1.1." + fx.TO_K
    assert shapes[key].shape == (320, 768)
    assert shapes[key].dtype == "HalfStorage"


def test_pickle_shapes_of_an_a1111_embedding(tmp_path: Path) -> None:
    path = fx.a1111_embedding_pt(tmp_path / "style.pt", vectors=4, width=768)
    assert read_pickle_shapes(path)["string_to_param.*"].shape == (4, 768)


def test_pickle_shapes_of_a_parameter_dict_and_a_legacy_file(tmp_path: Path) -> None:
    import torch

    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.zeros(2, 1024))})
    path = tmp_path / "old.pt"
    torch.save({"string_to_param": params}, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    assert read_pickle_shapes(path)["string_to_param.*"].shape == (2, 1024)
    found = describe(path)
    assert (found.kind, found.families, found.vectors) == ("embedding", ("sd2",), 2)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(2)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(FileUnreadable, match=r"(posix|os)\.system"):
        read_pickle_shapes(path)
    found = describe(path, allow_pickle=True)
    assert found.problem is not None and "cannot be read safely" in found.problem
    assert not marker.exists()


def test_a_plain_pickle_of_other_globals_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"when": __import__("datetime").date(2020, 1, 1)}))
    with pytest.raises(FileUnreadable):
        read_pickle_shapes(path)


def test_reading_files_imports_no_torch(tmp_path: Path) -> None:
    model = fx.write(tmp_path / "m.safetensors", fx.SDXL)
    embedding = fx.a1111_embedding_pt(tmp_path / "e.pt", vectors=1, width=768)
    probe = (
        "import sys; from engine.model_files import describe; "
        f"print(describe({str(model)!r}).families, describe({str(embedding)!r}).families); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'diffusers', 'transformers')]; print('heavy', heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "('sdxl',) ('sd15',)" in done.stdout
    assert "heavy []" in done.stdout


# -- checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "family"), [(fx.SD15, "sd15"), (fx.SD2, "sd2"), (fx.SDXL, "sdxl")]
)
def test_checkpoint_families(tmp_path: Path, shapes: fx.Shapes, family: str) -> None:
    found = describe(fx.write(tmp_path / "Some_Name.safetensors", shapes))
    assert (found.kind, found.families, found.problem) == ("model", (family,), None)


def test_family_comes_from_tensors_not_the_file_name(tmp_path: Path) -> None:
    found = describe(fx.write(tmp_path / "sdxl_base_1.0.safetensors", fx.SD15))
    assert found.families == ("sd15",)


def test_an_sdxl_refiner_is_refused(tmp_path: Path) -> None:
    found = describe(fx.write(tmp_path / "r.safetensors", fx.REFINER))
    assert found.kind == "model"
    assert found.problem == "an SDXL refiner, not a base model"


def test_an_inpainting_checkpoint_is_refused(tmp_path: Path) -> None:
    found = describe(fx.write(tmp_path / "i.safetensors", fx.SD15_INPAINTING))
    assert found.problem is not None and found.problem.startswith("an inpainting model")


def test_a_unet_without_a_text_encoder_is_refused(tmp_path: Path) -> None:
    unet_only = {k: v for k, v in fx.SD15.items() if k.startswith(fx.UNET)}
    found = describe(fx.write(tmp_path / "u.safetensors", unet_only))
    assert found.problem is not None and "no text encoder" in found.problem


def test_a_flux_model_and_a_diffusers_part_are_named(tmp_path: Path) -> None:
    flux = {fx.UNET + "double_blocks.0.img_attn.norm.key_norm.scale": (128,)}
    assert "a Flux model" in (describe(fx.write(tmp_path / "f.safetensors", flux)).problem or "")
    part = describe(fx.write(tmp_path / "d.safetensors", fx.DIFFUSERS_UNET)).problem or ""
    assert "diffusers folder" in part and "conv_in., down_blocks." in part


def test_a_pickled_checkpoint_needs_allow_pickle(tmp_path: Path) -> None:
    path = fx.torch_save(tmp_path / "m.ckpt", fx.SD15)
    assert describe(path).problem == PICKLE_PROBLEM
    allowed = describe(path, allow_pickle=True)
    assert (allowed.kind, allowed.families, allowed.problem) == ("model", ("sd15",), None)


# -- LoRAs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "family", "detail"),
    [
        (fx.KOHYA_SD15, "sd15", "kohya-ss LoRA"),
        (fx.KOHYA_SD2, "sd2", "kohya-ss LoRA"),
        (fx.KOHYA_SDXL, "sdxl", "kohya-ss LoRA"),
        (fx.KOHYA_SDXL_UNET_ONLY, "sdxl", "kohya-ss LoRA"),
        (fx.KOHYA_SD15_TE_ONLY, "sd15", "kohya-ss LoRA"),
        (fx.LOCON_SD15, "sd15", "LyCORIS LoCon"),
        (fx.PEFT_SD15, "sd15", "diffusers/peft LoRA"),
        (fx.PEFT_SDXL, "sdxl", "diffusers/peft LoRA"),
    ],
)
def test_lora_family_and_format(
    tmp_path: Path, shapes: fx.Shapes, family: str, detail: str
) -> None:
    found = describe(fx.write(tmp_path / "l.safetensors", shapes))
    assert (found.kind, found.families, found.detail, found.problem) == (
        "lora",
        (family,),
        detail,
        None,
    )


@pytest.mark.parametrize(("shapes", "name"), [(fx.LOHA, "LoHa"), (fx.LOKR, "LoKr")])
def test_unsupported_lycoris_algorithms(tmp_path: Path, shapes: fx.Shapes, name: str) -> None:
    found = describe(fx.write(tmp_path / "l.safetensors", shapes))
    assert found.kind == "lora"
    assert found.problem == f"LyCORIS {name} is not supported"


def test_a_lora_of_unknown_width_says_so_unless_metadata_tells(tmp_path: Path) -> None:
    odd = fx.kohya("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 4096)
    assert "cannot be told" in (describe(fx.write(tmp_path / "a.safetensors", odd)).problem or "")
    told = fx.write(tmp_path / "b.safetensors", odd, {"ss_base_model_version": "sdxl_base_v1-0"})
    assert describe(told).families == ("sdxl",)


# -- embeddings and VAEs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "family", "vectors"),
    [(fx.EMBEDDING_SD15, "sd15", 2), (fx.EMBEDDING_SD2, "sd2", 1), (fx.EMBEDDING_SDXL, "sdxl", 3)],
)
def test_safetensors_embeddings(
    tmp_path: Path, shapes: fx.Shapes, family: str, vectors: int
) -> None:
    found = describe(fx.write(tmp_path / "e.safetensors", shapes))
    assert (found.kind, found.families, found.vectors, found.problem) == (
        "embedding",
        (family,),
        vectors,
        None,
    )


def test_a_torch_saved_embedding_needs_no_allow_pickle(tmp_path: Path) -> None:
    found = describe(fx.a1111_embedding_pt(tmp_path / "EasyStyle.pt", vectors=5, width=768))
    assert (found.kind, found.families, found.vectors, found.problem) == (
        "embedding",
        ("sd15",),
        5,
        None,
    )


def test_half_an_sdxl_embedding_is_refused(tmp_path: Path) -> None:
    found = describe(fx.write(tmp_path / "g.safetensors", {"clip_g": (2, 1280)}))
    assert found.kind == "embedding"
    assert found.problem is not None and "clip_g alone" in found.problem


@pytest.mark.parametrize("shapes", [fx.VAE, fx.VAE_DIFFUSERS, fx.FIRST_STAGE])
def test_vaes_fit_every_family(tmp_path: Path, shapes: fx.Shapes) -> None:
    found = describe(fx.write(tmp_path / "v.safetensors", shapes))
    assert (found.kind, found.families, found.problem) == ("vae", ("sd15", "sd2", "sdxl"), None)


def test_a_vae_whose_metadata_says_sdxl(tmp_path: Path) -> None:
    meta = {"modelspec.architecture": "stable-diffusion-xl-v1-base/vae"}
    assert describe(fx.write(tmp_path / "v.safetensors", fx.VAE, meta)).families == ("sdxl",)


def test_a_16_channel_vae_is_refused(tmp_path: Path) -> None:
    found = describe(fx.write(tmp_path / "v.safetensors", fx.VAE_16_CHANNELS))
    assert found.problem is not None and "16 latent channels" in found.problem


def test_a_pickled_vae_needs_allow_pickle(tmp_path: Path) -> None:
    path = fx.torch_save(tmp_path / "vae-ft-mse.ckpt", fx.VAE)
    assert describe(path).problem == PICKLE_PROBLEM
    assert describe(path, allow_pickle=True).kind == "vae"


def test_a_file_without_tensors(tmp_path: Path) -> None:
    path = tmp_path / "none.safetensors"
    header = json.dumps({"__metadata__": {"a": "b"}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert describe(path).problem == "it holds no tensors"


def sparse_checkpoint(path: Path, *, gigabytes: int) -> Path:
    """A valid SD 1.5 safetensors file with a ``gigabytes`` tensor whose bytes are a hole."""
    tensors: dict[str, dict[str, object]] = {}
    offset = 0
    for name, shape in fx.SD15.items():
        size = 2
        for dim in shape:
            size *= dim
        tensors[name] = {
            "dtype": "F16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    big = gigabytes * 1024**3
    tensors["model.diffusion_model.out.2.weight"] = {
        "dtype": "F16",
        "shape": [big // 2],
        "data_offsets": [offset, offset + big],
    }
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(header)) + header)
        file.truncate(8 + len(header) + offset + big)
    return path
