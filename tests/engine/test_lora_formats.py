"""LoRA files in the formats teams bring, rendered through the real tiny pipelines: kohya-ss
(alphas, text-encoder parts, SDXL's te1/te2 and sgm block names) and LyCORIS LoCon render
exactly like the diffusers/peft file they were made from; LoHa, LoKr, (IA)³, DoRA and unknown
files are refused with a sentence and leave the pipeline as it was.

The fixtures are made here from the project's own tiny LoRAs (``engine.tiny.lora_file``):
the same tensors under kohya-ss names, written to this module's LoRA directory."""

from __future__ import annotations

import io
import logging
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine import tiny
from engine.catalog import Catalog, Family, LoraEntry
from engine.errors import ModelUnavailableError, UserError
from engine.lora_formats import lora_format, module_count, refusal
from engine.pipelines import PipelineCache
from engine.render import render
from engine.settings import REPO_ROOT, Settings
from engine.spec import LoraRef, new_spec
from engine.store import LocalStore
from engine.tensor_files import FileUnreadable, read_header
from tests.engine.lora_fixtures import to_kohya

# Every trigger word of the built-in LoRAs in the prompt, so every job encodes the same text.
PROMPT = "tinystyle tinyxl, a red cat"
WEIGHT = 0.8


@dataclass
class Env:
    """A pipeline cache of this module alone, whose LoRA directory the tests write into."""

    settings: Settings
    cache: PipelineCache
    catalog: Catalog
    store: LocalStore

    @property
    def lora_dir(self) -> Path:
        return Path(self.settings.lora_dir)

    def add(self, name: str, tensors: dict[str, torch.Tensor], *, family: Family = "sd15") -> Path:
        """Write ``tensors`` as LoRA file ``name.safetensors`` and put it in the catalog."""
        path = self.lora_dir / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        self.add_file(name, path, family=family)
        return path

    def add_file(self, name: str, path: Path, *, family: Family = "sd15") -> None:
        self.catalog.loras[name] = LoraEntry(name=name, source=path.name, families=[family])

    def render(self, *loras: str, model: str = "tiny", weight: float = WEIGHT) -> np.ndarray:
        spec = new_spec(
            limits=self.settings.limits,
            prompt=PROMPT,
            model=model,
            sampler="Euler a",
            steps=3,
            width=64,
            height=64,
            seed=1234,
            loras=[LoraRef(name=n, weight=weight) for n in loras],
        )
        result = render(spec, cache=self.cache, store=self.store, catalog=self.catalog)
        data = self.store.get(result.images[0].artifact_id)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def env(
    engine_settings: Settings, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("lora-formats")
    (root / "loras").mkdir()
    settings = engine_settings.model_copy(update={"lora_dir": root / "loras"})
    own = Catalog(templates={}, models=dict(catalog.models), loras=dict(catalog.loras))
    yield Env(settings, PipelineCache(settings=settings), own, LocalStore(root / "artifacts"))


@pytest.fixture(scope="module")
def peft_tensors(engine_settings: Settings) -> Callable[[str], dict[str, torch.Tensor]]:
    """The tensors of a built-in (diffusers/peft layout) tiny LoRA."""

    def read(name: str) -> dict[str, torch.Tensor]:
        return load_file(str(tiny.lora_file(name, cache_dir=Path(engine_settings.model_cache_dir))))

    return read


def only(tensors: dict[str, torch.Tensor], *prefixes: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(prefixes)}


def assert_same_image(a: np.ndarray, b: np.ndarray) -> None:
    assert np.abs(a - b).max() <= 1  # float rounding at most: 1/255


def changed(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).mean() > 1)


# --- lora_format on key sets -------------------------------------------------------------

UNET_ATTN = "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
KOHYA = [
    f"lora_unet_{UNET_ATTN}.lora_down.weight",
    f"lora_unet_{UNET_ATTN}.lora_up.weight",
    f"lora_unet_{UNET_ATTN}.alpha",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight",
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha",
]
CONV = "lora_unet_down_blocks_0_resnets_0_conv1"
SGM_CONV = "lora_unet_input_blocks_1_0_in_layers_2"
KEY_SETS: dict[str, tuple[list[str], str]] = {
    "peft": (["unet.mid_block.attn.to_q.lora_A.weight", "unet.mid_block.attn.to_q.lora_B.weight"], "diffusers"),
    "diffusers-old": (
        [
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight",
            "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.down.weight",
            "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight",
        ],
        "diffusers",
    ),
    "kohya": (KOHYA, "kohya"),
    "kohya-sdxl": (
        [k.replace("lora_te_", "lora_te1_") for k in KOHYA]
        + [k.replace("lora_te_", "lora_te2_") for k in KOHYA if "lora_te_" in k],
        "kohya",
    ),
    "locon": (KOHYA + [f"{CONV}.lora_down.weight", f"{CONV}.lora_up.weight", f"{CONV}.alpha"], "locon"),
    "locon-sgm": ([f"{SGM_CONV}.lora_down.weight", f"{SGM_CONV}.lora_up.weight"], "locon"),
    "loha": ([f"{CONV}.hada_w1_a", f"{CONV}.hada_w1_b", f"{CONV}.hada_w2_a", f"{CONV}.hada_w2_b", f"{CONV}.alpha"], "loha"),
    "lokr": ([f"{CONV}.lokr_w1", f"{CONV}.lokr_w2_a", f"{CONV}.lokr_w2_b", f"{CONV}.alpha"], "lokr"),
    "ia3": ([f"lora_unet_{UNET_ATTN}.weight", f"lora_unet_{UNET_ATTN}.on_input"], "ia3"),
    "dora": (KOHYA + [f"lora_unet_{UNET_ATTN}.dora_scale"], "dora"),
    "locon-tucker": ([f"{CONV}.lora_down.weight", f"{CONV}.lora_mid.weight", f"{CONV}.lora_up.weight"], "unknown"),
    "full-model": (["model.diffusion_model.input_blocks.0.0.weight"], "unknown"),
    "empty": ([], "unknown"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(KEY_SETS))
def test_lora_format_of_each_key_set(case: str) -> None:
    keys, expected = KEY_SETS[case]
    assert lora_format(keys) == expected
    assert (refusal("x", keys) is None) == (expected in {"diffusers", "kohya", "locon"})


def test_module_count_counts_down_weights() -> None:
    assert module_count(KOHYA) == 2
    assert module_count(KEY_SETS["diffusers-old"][0]) == 2
    assert module_count(KEY_SETS["peft"][0]) == 1


def test_lora_formats_is_light_and_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "k.safetensors"
    save_file({"a.lora_down.weight": torch.zeros(2, 3), "b": torch.ones(1)}, str(path))
    assert sorted(read_header(path)) == ["a.lora_down.weight", "b"]
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(FileUnreadable):
        read_header(tmp_path / "bad.safetensors")
    code = "import sys, engine.lora_formats; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "False"


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("alpha", ["rank", "one"])
def test_kohya_lora_renders_like_its_peft_original(env: Env, peft_tensors: Any, alpha: str) -> None:
    name = f"kohya-a-{alpha}"
    kohya = to_kohya(peft_tensors("tiny-lora-a"), alpha=float if alpha == "rank" else lambda r: 1.0)
    assert {float(v) for k, v in kohya.items() if k.endswith(".alpha")} == (
        {4.0} if alpha == "rank" else {1.0}
    )
    assert lora_format(kohya) == "kohya"
    env.add(name, kohya)
    base = env.render()
    original = env.render("tiny-style")  # the same LoRA in the diffusers/peft layout
    converted = env.render(name)
    assert changed(converted, base)
    assert_same_image(converted, original)
    # At another weight too: the alpha scales the delta, the weight scales it again.
    assert_same_image(env.render(name, weight=0.3), env.render("tiny-style", weight=0.3))
    assert np.array_equal(env.render(), base)  # and switched off cleanly


@pytest.mark.slow
def test_kohya_text_encoder_part_is_applied(env: Env, peft_tensors: Any) -> None:
    tensors = peft_tensors("tiny-lora-a")
    env.add("kohya-te-only", only(to_kohya(tensors, alpha=lambda r: r / 2), "lora_te_"))
    env.add("peft-te-only", only(tensors, "text_encoder."))
    loaded, _ = env.cache.acquire(env.catalog.model("tiny"))
    te_only = env.render("kohya-te-only")
    assert changed(te_only, env.render())
    assert_same_image(te_only, env.render("peft-te-only"))
    layers = [m for _, m in loaded.pipe.text_encoder.named_modules() if hasattr(m, "lora_A")]
    assert any("kohya-te-only" in m.lora_A for m in layers)


@pytest.mark.slow
@pytest.mark.parametrize("blocks", ["diffusers", "sgm"])
def test_kohya_sdxl_lora_with_te1_and_te2(env: Env, peft_tensors: Any, blocks: str) -> None:
    name = f"kohya-xl-{blocks}"
    kohya = to_kohya(
        peft_tensors("tiny-xl-lora"), alpha=lambda r: r / 4, sdxl=True, sgm=blocks == "sgm"
    )
    assert any(k.startswith("lora_te2_") for k in kohya) and any("lora_te1_" in k for k in kohya)
    if blocks == "sgm":
        assert any(k.startswith("lora_unet_input_blocks_4_1_") for k in kohya)
    env.add(name, kohya, family="sdxl")
    converted = env.render(name, model="tiny-xl")
    assert changed(converted, env.render(model="tiny-xl"))
    assert_same_image(converted, env.render("tiny-xl-style", model="tiny-xl"))
    loaded, _ = env.cache.acquire(env.catalog.model("tiny-xl"))
    adapter = name.replace(".", "_")
    for encoder in (loaded.pipe.text_encoder, loaded.pipe.text_encoder_2):
        assert any(adapter in getattr(m, "lora_A", {}) for _, m in encoder.named_modules())


@pytest.mark.slow
def test_kohya_lora_in_a_pickled_file(env: Env, peft_tensors: Any) -> None:
    path = env.lora_dir / "kohya-pt.pt"
    torch.save(to_kohya(peft_tensors("tiny-lora-a")), path)
    env.add_file("kohya-pt", path)
    assert_same_image(env.render("kohya-pt"), env.render("tiny-style"))


CONV_LAYERS = re.compile(
    r"(resnets\.\d+\.(conv1|conv2|conv_shortcut|time_emb_proj)|samplers\.0\.conv|proj_in|proj_out"
    r"|attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2)"
    r"|self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$"
)


def locon_layers(pipe: Any) -> dict[str, torch.Tensor]:
    """A random LoRA in the peft layout over the convolutions (ResNets, samplers) as well as
    the attention and MLP layers of ``pipe``'s UNet and text encoder: a LoCon's reach."""
    generator = torch.Generator().manual_seed(11)
    rank = 4
    tensors: dict[str, torch.Tensor] = {}
    for component in ("unet", "text_encoder"):
        for name, layer in getattr(pipe, component).named_modules():
            if not CONV_LAYERS.search(name):
                continue
            if isinstance(layer, torch.nn.Linear):
                fan_in, down_shape = layer.in_features, (rank, layer.in_features)
                up_shape: tuple[int, ...] = (layer.out_features, rank)
            elif isinstance(layer, torch.nn.Conv2d):
                k = layer.kernel_size
                fan_in = layer.in_channels * k[0] * k[1]
                down_shape = (rank, layer.in_channels, *k)  # type: ignore[assignment]
                up_shape = (layer.out_channels, rank, 1, 1)
            else:
                continue
            down = torch.randn(down_shape, generator=generator) / math.sqrt(fan_in)
            tensors[f"{component}.{name}.lora_A.weight"] = down
            tensors[f"{component}.{name}.lora_B.weight"] = torch.randn(
                up_shape, generator=generator
            ) * (0.5 / math.sqrt(rank))
    return tensors


@pytest.mark.slow
def test_locon_reaches_the_convolutions_and_renders_like_its_peft_twin(env: Env) -> None:
    peft = locon_layers(tiny.load("tiny"))  # a pipeline no adapter has wrapped yet
    locon = to_kohya(peft, alpha=lambda r: r / 2)
    assert lora_format(locon) == "locon"
    env.add("locon", locon)
    env.add("locon-peft", peft)
    converted = env.render("locon")
    loaded, _ = env.cache.acquire(env.catalog.model("tiny"))
    conv1 = loaded.pipe.unet.down_blocks[0].resnets[0].conv1
    assert "locon" in conv1.lora_A and isinstance(conv1.lora_A["locon"], torch.nn.Conv2d)
    assert changed(converted, env.render())
    assert_same_image(converted, env.render("locon-peft"))
    # Without its convolution layers it is another LoRA: they count.
    attention_only = {k: v for k, v in locon.items() if "resnets" not in k and "samplers" not in k}
    env.add("locon-attention-only", attention_only)
    assert lora_format(attention_only) == "kohya"
    assert changed(env.render("locon-attention-only"), converted)


REFUSED: dict[str, tuple[list[str], str]] = {
    "loha": (
        [f"{CONV}.hada_w1_a", f"{CONV}.hada_w1_b", f"{CONV}.hada_w2_a", f"{CONV}.hada_w2_b"],
        "is a LyCORIS LoHa file, which Proofroom cannot load; use a LoRA or LoCon version of it",
    ),
    "lokr": ([f"{CONV}.lokr_w1", f"{CONV}.lokr_w2"], "is a LyCORIS LoKr file"),
    "ia3": ([f"lora_unet_{UNET_ATTN}.weight", f"lora_unet_{UNET_ATTN}.on_input"], "(IA)³"),
    "dora": (KOHYA + [f"lora_unet_{UNET_ATTN}.dora_scale"], "DoRA"),
    "tucker": ([f"{CONV}.lora_down.weight", f"{CONV}.lora_mid.weight"], "CP/Tucker"),
    "unknown": (["model.diffusion_model.out.2.weight"], "format Proofroom does not know"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unloadable_formats_are_refused_with_a_sentence(env: Env, case: str) -> None:
    keys, sentence = REFUSED[case]
    name = f"refused-{case}"
    env.add(name, {k: torch.zeros(1) for k in keys})
    base = env.render()
    with pytest.raises(ModelUnavailableError) as refused:
        env.render(name)
    assert isinstance(refused.value, UserError)  # the worker posts its message, no traceback
    assert refused.value.message.startswith(f"LoRA `{name}` ")
    assert sentence in refused.value.message
    loaded, _ = env.cache.acquire(env.catalog.model("tiny"))
    assert name.replace(".", "_") not in loaded.adapters
    assert np.array_equal(env.render(), base)


@pytest.mark.slow
def test_a_lora_that_fits_none_of_the_layers_is_refused_and_leaves_nothing(
    env: Env, peft_tensors: Any
) -> None:
    base = env.render()
    env.add("xl-on-sd15", peft_tensors("tiny-xl-lora"))  # wrong sizes for the tiny model
    wrong_names = {
        k.replace("unet.", "unet.nosuch_"): v
        for k, v in peft_tensors("tiny-lora-a").items()
        if k.startswith("unet.")
    }
    env.add("nowhere", wrong_names)
    for name in ("xl-on-sd15", "nowhere"):
        with pytest.raises(ModelUnavailableError, match=f"LoRA `{name}` does not fit this model"):
            env.render(name)
    loaded, _ = env.cache.acquire(env.catalog.model("tiny"))
    assert not {"xl-on-sd15", "nowhere"} & set(loaded.adapters)
    assert np.array_equal(env.render(), base)
    assert changed(env.render("tiny-style"), base)  # a good LoRA still loads after them


def test_an_unreadable_file_is_an_internal_error_that_names_the_file(env: Env) -> None:
    # Damaged is not a format: ours to fix, so the job fails as internal (tests/engine/
    # test_worker.py shows the user gets a reference, not details) and the log says why.
    path = env.lora_dir / "broken.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    env.add_file("broken", path)
    with pytest.raises(RuntimeError, match="LoRA broken: cannot read .*broken.safetensors"):
        env.render("broken")


@pytest.mark.slow
def test_layers_the_model_lacks_are_logged_and_the_rest_loads(
    env: Env, peft_tensors: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kohya = to_kohya(peft_tensors("tiny-lora-a"))
    extra = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_nosuch"
    some = next(k for k in kohya if k.endswith(".lora_down.weight"))
    module = some.removesuffix(".lora_down.weight")
    for suffix in (".lora_down.weight", ".lora_up.weight", ".alpha"):
        kohya[extra + suffix] = kohya[module + suffix].clone()
    env.add("kohya-extra", kohya)
    with caplog.at_level(logging.WARNING, logger="engine.loras"):
        image = env.render("kohya-extra")
    assert_same_image(image, env.render("tiny-style"))
    assert "1 of its 69 layers match none of the model's" in caplog.text
