"""``proofroom models``, run as an admin runs it: a process of its own, its folders and
templates named by environment variables, real files in them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from engine.settings import REPO_ROOT
from tests.engine import model_fixtures as fx


def run_models(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PROOFROOM_TEMPLATES_DIR": str(tmp_path / "templates"),
        "PROOFROOM_MODEL_DIR": str(tmp_path / "models"),
        "PROOFROOM_LORA_DIR": str(tmp_path / "loras"),
        "PROOFROOM_EMBEDDING_DIR": str(tmp_path / "embeddings"),
        "PROOFROOM_VAE_DIR": str(tmp_path / "vaes"),
        "PROOFROOM_A1111_DIR": str(tmp_path / "webui"),
        **env,
    }
    return subprocess.run(
        # -X importtime lists every module the command imports (on stderr).
        [sys.executable, "-X", "importtime", "-m", "bot.cli", "models"],
        cwd=tmp_path,  # no .env of the repository
        env=variables,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_lists_every_kind_and_the_files_that_cannot_be_used(tmp_path: Path) -> None:
    (tmp_path / "templates" / "prompts").mkdir(parents=True)
    (tmp_path / "templates" / "models.yaml").write_text(
        "hub-model:\n  source: owner/some-model\n  family: sd2\n"
    )
    fx.write(tmp_path / "models" / "DreamShaper_8.safetensors", fx.SD15)
    fx.write(tmp_path / "models" / "sdxl_refiner.safetensors", fx.REFINER)
    fx.write(tmp_path / "loras" / "Brand Style.safetensors", fx.KOHYA_SDXL)
    fx.write(tmp_path / "webui" / "models" / "Lora" / "soft-light.safetensors", fx.LOHA)
    fx.write(tmp_path / "webui" / "embeddings" / "bad-hands.safetensors", fx.EMBEDDING_SD15)
    fx.write(tmp_path / "vaes" / "mse.safetensors", fx.VAE)
    fx.torch_save(tmp_path / "vaes" / "old.ckpt", fx.VAE)

    done = run_models(tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Models (2):" in out
    assert re.search(r"dreamshaper-8\s+sd15\s+\S*DreamShaper_8\.safetensors", out)
    assert re.search(r"hub-model\s+sd2\s+owner/some-model", out)
    assert re.search(r"brand-style\s+sdxl\s+\S*Brand Style\.safetensors", out)
    assert re.search(r"bad-hands\s+sd15\s+\S*bad-hands\.safetensors", out)
    assert re.search(r"mse\s+sd15/sd2/sdxl\s+\S*mse\.safetensors", out)
    assert "Files that cannot be used (3):" in out
    assert "sdxl_refiner.safetensors (model): an SDXL refiner, not a base model" in out
    assert "soft-light.safetensors (LoRA): LyCORIS LoHa is not supported" in out
    assert "old.ckpt (VAE): pickle checkpoints can run code when loaded" in out
    heavy = re.findall(r"\|\s+(torch|diffusers|transformers)(\.\S+)?\s*$", done.stderr, re.M)
    assert not heavy, "proofroom models imported " + ", ".join(sorted({h[0] for h in heavy}))


def test_empty_folders_say_none(tmp_path: Path) -> None:
    (tmp_path / "templates" / "prompts").mkdir(parents=True)
    done = run_models(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Models: none" in done.stdout
    assert "Files that cannot be used: none" in done.stdout
