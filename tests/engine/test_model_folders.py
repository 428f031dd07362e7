"""The drop-in folders, on real files in temporary folders: what is listed under which name,
what is a problem and why, the A1111 layout, the YAML on top, and how fast a scan is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.catalog import FileProblem
from engine.model_files import PICKLE_PROBLEM
from engine.model_folders import load_catalog, scan, slug
from engine.settings import Settings
from engine.sources import single_file_plan
from tests.engine import model_fixtures as fx
from tests.engine.test_model_files import sparse_checkpoint


def folder_settings(root: Path, **extra: object) -> Settings:
    """Settings whose four drop-in folders (and templates) are under ``root``."""
    templates = root / "templates"
    (templates / "prompts").mkdir(parents=True, exist_ok=True)
    base: dict[str, object] = {
        "model_dir": root / "models",
        "lora_dir": root / "loras",
        "embedding_dir": root / "embeddings",
        "vae_dir": root / "vaes",
        "a1111_dir": None,
        "templates_dir": templates,
        "data_dir": root / "data",
    }
    return Settings(**{**base, **extra})  # type: ignore[arg-type]


def problem_for(problems: list[FileProblem], name: str) -> FileProblem:
    matches = [p for p in problems if Path(p.path).name == name]
    assert len(matches) == 1, problems
    return matches[0]


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("DreamShaper_8", "dreamshaper-8"),
        ("juggernautXL_v9 Rundiffusion", "juggernautxl-v9-rundiffusion"),
        ("  --Odd..Name__ ", "odd-name"),
        ("sd_xl_base_1.0", "sd-xl-base-1-0"),
    ],
)
def test_slug(stem: str, name: str) -> None:
    assert slug(stem) == name


def test_scan_lists_each_kind_by_slugged_name_with_its_family(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    model = fx.write(settings.model_dir / "DreamShaper_8.safetensors", fx.SD15)
    fx.write(settings.model_dir / "Juggernaut XL.safetensors", fx.SDXL)
    fx.write(settings.model_dir / "sd21.safetensors", fx.SD2)
    lora = fx.write(settings.lora_dir / "Brand_Style.safetensors", fx.KOHYA_SDXL)
    fx.write(settings.lora_dir / "peft.safetensors", fx.PEFT_SD15)
    fx.write(settings.embedding_dir / "bad-hands.safetensors", fx.EMBEDDING_SD15)
    fx.a1111_embedding_pt(settings.embedding_dir / "EasyStyle.pt", vectors=4, width=768)
    fx.write(settings.vae_dir / "vae-ft-mse.safetensors", fx.VAE)
    # Files of other suffixes (previews, notes) are not looked at.
    (settings.model_dir / "DreamShaper_8.preview.png").write_bytes(b"\x89PNG")
    (settings.lora_dir / "notes.txt").write_text("trained on 50 photos")

    catalog = scan(settings)

    assert catalog.templates == {}
    assert {n: m.family for n, m in catalog.models.items()} == {
        "dreamshaper-8": "sd15",
        "juggernaut-xl": "sdxl",
        "sd21": "sd2",
    }
    entry = catalog.models["dreamshaper-8"]
    assert entry.source == str(model.resolve())
    assert (entry.width, entry.config) == (512, None)
    assert catalog.models["juggernaut-xl"].width == 1024
    assert {n: e.families for n, e in catalog.loras.items()} == {
        "brand-style": ["sdxl"],
        "peft": ["sd15"],
    }
    assert catalog.loras["brand-style"].source == str(lora.resolve())
    assert {n: (e.families, e.vectors) for n, e in catalog.embeddings.items()} == {
        "bad-hands": (["sd15"], 2),
        "easystyle": (["sd15"], 4),
    }
    assert catalog.vaes["vae-ft-mse"].families == ["sd15", "sd2", "sdxl"]
    assert catalog.problems == []


def test_an_a1111_config_beside_a_model_is_what_loads_it(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    fx.write(settings.model_dir / "v2-768.safetensors", fx.SD2)
    config = settings.model_dir / "v2-768.yaml"
    config.write_text("model:\n  params:\n    parameterization: v\n")
    entry = scan(settings).models["v2-768"]
    assert entry.config is None  # `config:` is a diffusers folder; the yaml is found beside
    plan = single_file_plan(Path(entry.source), family=entry.family, config=None, name=entry.name)
    assert plan.original_config == config.resolve() and plan.prediction_type == "v_prediction"


def test_unusable_files_are_problems_and_the_scan_goes_on(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    whole = fx.write(tmp_path / "whole.safetensors", fx.SD15)
    cut = settings.model_dir / "cut-download.safetensors"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    fx.write(settings.model_dir / "refiner.safetensors", fx.REFINER)
    fx.write(settings.model_dir / "good.safetensors", fx.SD15)
    fx.write(settings.model_dir / "a-lora.safetensors", fx.KOHYA_SD15)
    fx.write(settings.lora_dir / "loha.safetensors", fx.LOHA)
    fx.write(settings.embedding_dir / "vae-in-wrong-place.safetensors", fx.VAE)

    catalog = scan(settings)

    assert list(catalog.models) == ["good"]
    assert catalog.loras == {} and catalog.embeddings == {}
    cut_problem = problem_for(catalog.problems, "cut-download.safetensors")
    assert cut_problem.kind == "model"
    assert cut_problem.reason.startswith("unreadable:") and "truncated" in cut_problem.reason
    refiner = problem_for(catalog.problems, "refiner.safetensors")
    assert refiner.reason == "an SDXL refiner, not a base model"
    misplaced = problem_for(catalog.problems, "a-lora.safetensors")
    assert misplaced.reason == (
        f"a LoRA (kohya-ss LoRA, sd15), not a model: move it to {settings.lora_dir}"
    )
    loha = problem_for(catalog.problems, "loha.safetensors")
    assert (loha.kind, loha.reason) == ("LoRA", "LyCORIS LoHa is not supported")
    vae = problem_for(catalog.problems, "vae-in-wrong-place.safetensors")
    assert vae.kind == "embedding" and vae.reason.endswith(f"move it to {settings.vae_dir}")


def test_a_pickled_checkpoint_is_a_problem_unless_allowed(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    fx.torch_save(settings.model_dir / "old-model.ckpt", fx.SD15)

    refused = scan(settings)
    assert refused.models == {}
    assert problem_for(refused.problems, "old-model.ckpt").reason == PICKLE_PROBLEM

    allowed = scan(settings.model_copy(update={"allow_pickle": True}))
    assert allowed.models["old-model"].family == "sd15"
    assert allowed.problems == []


def test_the_second_file_of_a_name_is_a_problem(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path, a1111_dir=tmp_path / "webui")
    first = fx.write(settings.lora_dir / "Brand Style.safetensors", fx.KOHYA_SD15)
    fx.write(settings.lora_dir / "brand_style.safetensors", fx.KOHYA_SD15)
    # The same name in the A1111 folder, scanned after ours.
    fx.write(tmp_path / "webui" / "models" / "Lora" / "BRAND-STYLE.safetensors", fx.PEFT_SD15)

    catalog = scan(settings)

    assert catalog.loras["brand-style"].source == str(first.resolve())
    reasons = {Path(p.path).name: p.reason for p in catalog.problems}
    assert set(reasons) == {"brand_style.safetensors", "BRAND-STYLE.safetensors"}
    assert all(
        r.startswith("another LoRA is already called `brand-style`") for r in reasons.values()
    )


def test_a_name_without_letters_is_a_problem(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    fx.write(settings.vae_dir / "___.safetensors", fx.VAE)
    catalog = scan(settings)
    assert catalog.vaes == {}
    assert "no letters or digits" in problem_for(catalog.problems, "___.safetensors").reason


def test_an_a1111_install_is_scanned_in_place(tmp_path: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    settings = folder_settings(tmp_path, a1111_dir=webui)
    model = fx.write(
        webui / "models" / "Stable-diffusion" / "realisticVision_v51.safetensors", fx.SD15
    )
    (model.with_suffix(".yaml")).write_text("model: {}\n")
    fx.write(webui / "models" / "Lora" / "styles" / "watercolor.safetensors", fx.LOCON_SD15)
    fx.a1111_embedding_pt(webui / "embeddings" / "negative_hand.pt", vectors=2, width=768)
    fx.write(webui / "embeddings" / "xl-embed.safetensors", fx.EMBEDDING_SDXL)
    fx.write(webui / "models" / "VAE" / "sdxl_vae.safetensors", fx.VAE_DIFFUSERS)
    # A diffusers folder inside is not a pile of loose files.
    fx.write(webui / "models" / "Stable-diffusion" / "pipe" / "unet" / "x.safetensors", fx.SD15)
    (webui / "models" / "Stable-diffusion" / "pipe" / "model_index.json").write_text("{}")
    # Our own folders do not exist: that is fine.

    catalog = scan(settings)

    assert catalog.models["realisticvision-v51"].family == "sd15"
    found = catalog.models["realisticvision-v51"]
    assert Path(found.source) == model.resolve()  # used in place; its yaml is read beside it
    assert catalog.loras["watercolor"].families == ["sd15"]
    assert catalog.loras["watercolor"].description.startswith("LyCORIS LoCon")
    assert catalog.embeddings["negative-hand"].vectors == 2
    assert catalog.embeddings["xl-embed"].families == ["sdxl"]
    assert "sdxl-vae" in catalog.vaes
    assert list(catalog.models) == ["realisticvision-v51"]
    assert catalog.problems == []


def test_missing_folders_are_empty(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path / "nowhere", a1111_dir=tmp_path / "no-webui")
    catalog = scan(settings)
    assert (catalog.models, catalog.loras, catalog.embeddings, catalog.vaes) == ({}, {}, {}, {})
    assert catalog.problems == []


def test_load_catalog_puts_the_yaml_over_found_files(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    fx.write(settings.model_dir / "DreamShaper_8.safetensors", fx.SD15)
    lora = fx.write(settings.lora_dir / "brand.safetensors", fx.KOHYA_SDXL)
    fx.write(settings.vae_dir / "mse.safetensors", fx.VAE)
    cut = settings.embedding_dir / "cut.safetensors"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    templates = settings.templates_dir
    (templates / "models.yaml").write_text(
        "dreamshaper-8:\n  description: the team's favourite\n  steps: 25\n  vae: mse\n"
    )
    (templates / "loras.yaml").write_text("brand:\n  triggers: [brandx]\n  weight: 0.6\n")

    catalog = load_catalog(settings)

    model = catalog.model("dreamshaper-8")
    assert (model.family, model.steps, model.vae) == ("sd15", 25, "mse")
    assert model.description == "the team's favourite"
    brand = catalog.lora("brand", family="sdxl")
    assert (brand.source, brand.triggers, brand.weight) == (str(lora.resolve()), ["brandx"], 0.6)
    assert [Path(p.path).name for p in catalog.problems] == ["cut.safetensors"]


def test_a_folder_of_large_checkpoints_scans_in_milliseconds(tmp_path: Path) -> None:
    settings = folder_settings(tmp_path)
    settings.model_dir.mkdir(parents=True)
    for index in range(4):
        sparse_checkpoint(settings.model_dir / f"big-{index}.safetensors", gigabytes=6)
    started = time.perf_counter()
    catalog = scan(settings)
    elapsed = time.perf_counter() - started
    assert sorted(catalog.models) == ["big-0", "big-1", "big-2", "big-3"]
    assert elapsed < 0.5, f"scanning 24 GB of checkpoints took {elapsed:.2f} s"
