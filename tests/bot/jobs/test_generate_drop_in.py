"""Models as teams have them, end to end through ``proofroom models`` and ``proofroom
generate`` (run in this process; ``tests/bot/jobs/test_models_cli.py`` runs the command in
a process of its own): a single-file checkpoint dropped into the models folder (made by converting a
tiny model to the original layout) renders the pixels of the folder it came from; a kohya-ss
LoRA dropped into the LoRA folder renders like its diffusers original; the PNG carries the
A1111 hashes of the checkpoint, the LoRA and the embedding, which a third-party reader reads.
Nothing is downloaded: every file is built here from the offline tiny models."""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from bot.cli import main
from engine import tiny
from engine.metadata import parse_parameters, read_parameters
from engine.settings import get_settings
from tests.engine import single_file_fixtures
from tests.engine.jobs_fixtures import MODEL_CACHE
from tests.engine.lora_fixtures import to_kohya

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMPT = "tinystyle, a red cat"  # the trigger of tiny-style already there: same text for all
TINY_DEFAULTS = (
    "    width: 64\n    height: 64\n    steps: 4\n    cfg_scale: 7\n    sampler: Euler a\n"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A deployment's folders: a checkpoint and a LoRA dropped in, an embedding, and the
    catalog naming the checkpoint's config (models.yaml adds to the found file)."""
    root = tmp_path_factory.mktemp("team")
    models, loras = root / "models", root / "loras"
    folders = {}
    for name, stem, convert in (
        ("tiny", "Tiny_File", single_file_fixtures.sd15_state_dict),
        ("tiny-xl", "Tiny_XL_File", single_file_fixtures.sdxl_state_dict),
    ):
        folders[name] = root / "diffusers" / name
        built = tiny.load(name)
        built.save_pretrained(folders[name])
        single_file_fixtures.save(convert(built), models / f"{stem}.safetensors")
    pipe = tiny.load("tiny")
    loras.mkdir()
    peft = load_file(str(tiny.lora_file("tiny-lora-a", cache_dir=MODEL_CACHE)))
    # kohya-ss writes the base model into the file's metadata, as here.
    save_file(
        to_kohya(peft), str(loras / "kohya-style.safetensors"), {"ss_base_model_version": "sd_v1"}
    )
    width = pipe.text_encoder.config.hidden_size
    embedding = root / "te" / "tinyneg.pt"
    embedding.parent.mkdir()
    vectors = torch.randn(2, width, generator=torch.Generator().manual_seed(3)) * 3
    torch.save({"string_to_param": {"*": vectors}, "name": "tinyneg"}, embedding)
    templates = root / "templates"
    shutil.copytree(REPO_ROOT / "templates", templates, ignore=shutil.ignore_patterns("calendars"))
    with (templates / "models.yaml").open("a", encoding="utf-8") as yaml:
        for name, family in (("tiny", "sd15"), ("tiny-xl", "sdxl")):
            folder, found = folders[name], "tiny-file" if name == "tiny" else "tiny-xl-file"
            yaml.write(f"{found}:\n    config: {folder}\n{TINY_DEFAULTS}")
            yaml.write(f"{name}-folder:\n    source: {folder}\n    family: {family}\n")
            yaml.write(TINY_DEFAULTS)
    (templates / "embeddings.yaml").write_text(
        f"tinyneg:\n    source: {embedding}\n    families: [sd15]\n", encoding="utf-8"
    )
    return {
        "root": root,
        "models": models,
        "loras": loras,
        "templates": templates,
        "embedding": embedding,
    }


@pytest.fixture()
def proofroom(
    team: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., str]]:
    """``proofroom ARGS`` in this process (as tests/bot/jobs/test_generate.py runs it), on the
    team's folders; returns what it printed."""
    env = {
        "PROOFROOM_TEMPLATES_DIR": team["templates"],
        "PROOFROOM_MODEL_DIR": team["models"],
        "PROOFROOM_LORA_DIR": team["loras"],
        "PROOFROOM_DATA_DIR": team["root"] / "data",
        "PROOFROOM_MODEL_CACHE_DIR": MODEL_CACHE,
        "PROOFROOM_DEVICE": "cpu",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    get_settings.cache_clear()
    # One CPU thread, as tests/engine/conftest.py sets for the engine tests: with several, the
    # order of a reduction may move a pixel by one step between two renders.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def run(*args: str) -> str:
        code = main(list(args))
        printed = capsys.readouterr()
        assert code == 0, printed.out + printed.err
        return printed.out

    yield run
    torch.set_num_threads(threads)
    get_settings.cache_clear()


def generate(
    proofroom: Callable[..., str], team: dict[str, Path], name: str, *args: str
) -> tuple[np.ndarray, dict[str, str]]:
    out = team["root"] / "out" / name
    proofroom("generate", "--prompt", PROMPT, "--seed", "7", "-o", str(out), *args)
    [png] = list(out.glob("*.png"))
    data = png.read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    return pixels, parse_parameters(read_parameters(data) or "")


def test_dropped_files_are_listed_by_family(proofroom: Callable[..., str]) -> None:
    lines = proofroom("models").splitlines()
    for name, family in (("tiny-file", "sd15"), ("tiny-xl-file", "sdxl"), ("kohya-style", "sd15")):
        line = next(line for line in lines if f"{name} " in line or line.endswith(name))
        assert family in line, line


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_a_single_file_checkpoint_renders_the_pixels_of_its_folder(
    proofroom: Callable[..., str], team: dict[str, Path], model: str
) -> None:
    from_file, _ = generate(proofroom, team, f"{model}-file", "--model", f"{model}-file")
    from_folder, _ = generate(proofroom, team, f"{model}-folder", "--model", f"{model}-folder")
    # The weights load bit for bit (UNet, VAE, text encoders); the SDXL pipeline built from
    # the file still rounds a few pixels one 8-bit level apart from the folder's, which the
    # tiny models' trained VAE shows and their old random one hid. Within the rendering
    # tolerance; SD1.5 stays bit-identical.
    tolerance = 0 if model == "tiny" else 1
    assert np.abs(from_file - from_folder).max() <= tolerance


def test_a_kohya_lora_renders_like_its_diffusers_original(
    proofroom: Callable[..., str], team: dict[str, Path]
) -> None:
    folder = ("--model", "tiny-folder")
    plain, _ = generate(proofroom, team, "plain", *folder)
    kohya, _ = generate(proofroom, team, "kohya", *folder, "--lora", "kohya-style:0.8")
    original, _ = generate(proofroom, team, "peft", *folder, "--lora", "tiny-style:0.8")
    assert np.abs(kohya - plain).max() > 8  # the LoRA changes the image
    assert np.abs(kohya - original).max() <= 1  # and it is the same LoRA, within rounding


def test_the_png_carries_the_a1111_hashes_that_other_tools_read(
    proofroom: Callable[..., str], team: dict[str, Path]
) -> None:
    from sd_parsers import ParserManager

    out = team["root"] / "out" / "hashes"
    args = ["--model", "tiny-file", "--lora", "kohya-style", "--negative", "tinyneg"]
    proofroom("generate", "--prompt", PROMPT, "--seed", "7", "-o", str(out), *args)
    [png] = list(out.glob("*.png"))
    params = parse_parameters(read_parameters(png.read_bytes()) or "")
    checkpoint = team["models"] / "Tiny_File.safetensors"
    model_hash = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    lora = (team["loras"] / "kohya-style.safetensors").read_bytes()
    header = int.from_bytes(lora[:8], "little")  # A1111's addnet hash: the data after the header
    lora_short = hashlib.sha256(lora[8 + header :]).hexdigest()[:12]
    ti_short = hashlib.sha256(team["embedding"].read_bytes()).hexdigest()[:12]
    assert params["Model hash"] == model_hash
    assert params["Lora hashes"] == f"kohya-style: {lora_short}"
    assert params["TI hashes"] == f"tinyneg: {ti_short}"
    info = ParserManager().parse(png)
    assert info is not None
    assert [m.hash for m in info.models] == [model_hash]
