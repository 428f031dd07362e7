"""``make demo`` (``python -m bot.demo``): a scripted shell session on the embedded default.

No Redis server, no GPU, no download: an in-memory Redis, a worker thread and the tiny
random-weight model. The session asks for two product photos through a template with a
LoRA, shows the thread as it grows (progress bar, then the image files), approves one and
rejects the other, upscales the approved one 2x (⬆️) and approves that too, and ends with
the paths of the exported PNGs and their JSON sidecars.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bot.adapters.shell.cli import Shell
from bot.settings import BotSettings
from engine.logs import configure_logging
from engine.settings import Settings

SCRIPT = """\
/imagine product-photo product="leather handbag" background="marble countertop" --lora tiny-style:0.8 --n 2 --seed 42
:wait
:react 1 approve as ana
:react 2 reject as ben
:react 1 upscale as ana
:wait
:react 3 approve as ben
/imagine review
"""  # noqa: E501


def main(argv: list[str] | None = None) -> int:
    """Run the demo session; print where the approved image and its sidecar are."""
    args = argv if argv is not None else sys.argv[1:]
    data_dir = Path(args[0]) if args else Path("data/demo")
    configure_logging(quiet=True)
    # The embedded default, whatever the environment says: the demo needs nothing running.
    settings = Settings(redis_url=None, data_dir=data_dir, default_model="tiny")
    bot_settings = BotSettings(_env_file=None, export_dir=data_dir / "approved")  # type: ignore[call-arg]
    print("Proofroom demo: a chat channel in your terminal, rendering on the tiny CPU model.")
    with Shell(
        settings=settings, user="you", channel="demo", echo=True, bot_settings=bot_settings
    ) as shell:
        status = shell.run_lines(SCRIPT.splitlines())
        exported = _exports(shell)
    if not exported:
        print("\nNo image was exported; the session above says why.", file=sys.stderr)
        return 1
    for png in exported:
        sidecar = png.with_suffix(".json")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        print(f"\nApproved image: {png}\nSidecar:        {sidecar}")
        loras = ", ".join(f"{lora['name']}:{lora['weight']:g}" for lora in meta["loras"])
        print(
            f"  seed {meta['seed']}, model {meta['model']}, LoRAs {loras}, "
            f"template {meta['template']} {meta['variables']}, approved by {meta['approved_by']}"
        )
    return status


def _exports(shell: Shell) -> list[Path]:
    """The PNGs this session exported (the folder may hold earlier demos' too)."""
    folder = shell.bot_settings.export_path(shell.settings)
    jobs = {
        record.job_id
        for ref in shell.adapter.images
        if (record := shell.service.state.image(ref)) is not None
    }
    return sorted(p for p in folder.glob("*.png") if p.name.split("-", 1)[0] in jobs)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.exit(main())
