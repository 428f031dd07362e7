"""The chat processes stay light: no module of the bot package imports torch or diffusers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from engine.settings import REPO_ROOT

PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import bot
    names = [m.name for m in pkgutil.walk_packages(bot.__path__, "bot.")]
    for name in names:
        importlib.import_module(name)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers"))
    print(len(names), "modules;", "heavy:", heavy)
    sys.exit(1 if heavy else 0)
    """
)


def test_importing_every_bot_module_loads_neither_torch_nor_diffusers():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heavy: []" in done.stdout
