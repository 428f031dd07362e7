"""An approved upscale's sidecar renders the same image again (``proofroom generate --from``):
the chain parent -> upscale is in the sidecar, and the parent image in the store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bot.adapters.shell.cli import Shell
from bot.cli import main
from bot.settings import BotSettings
from engine.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]
SESSION = """\
/imagine a leather handbag on marble --model tiny --n 2 --seed 42 --steps 4
:wait
:react 2 upscale as ana
:wait
:react 3 approve as ben
"""


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"), dtype=np.int16)


def test_an_approved_upscale_renders_again_from_its_sidecar(cli_env: Path, capsys) -> None:
    data_dir = cli_env
    settings = Settings(
        redis_url=None,
        data_dir=data_dir,
        device="cpu",
        model_cache_dir=REPO_ROOT / ".proofroom" / "models",
    )
    bot_settings = BotSettings(_env_file=None, export_dir=data_dir / "approved")  # type: ignore[call-arg]
    with Shell(settings=settings, user="ana", channel="c", bot_settings=bot_settings) as shell:
        assert shell.run_lines(SESSION.splitlines()) == 0
    [sidecar_path] = (data_dir / "approved").glob("*.json")
    sidecar = json.loads(sidecar_path.read_text())
    chain = sidecar["chain"]
    assert chain["mode"] == "upscale"
    assert (chain["scale"], chain["tile_size"], chain["tile_overlap"]) == (2, 64, 16)
    assert chain["parent"].endswith("/1") and chain["seed"] == 43  # image 2: seed 42 + 1
    assert (sidecar["params"]["width"], sidecar["params"]["height"]) == (128, 128)
    out = data_dir.parent / "again"
    capsys.readouterr()
    assert main(["generate", "--from", str(sidecar_path), "-o", str(out)]) == 0
    [again] = out.glob("*.png")
    assert "128x128" in capsys.readouterr().out
    exported = sidecar_path.with_suffix(".png")
    assert np.array_equal(_pixels(again), _pixels(exported))
