"""The ``proofroom`` command. Each subcommand lives in its own module and is imported
only when used, so ``proofroom shell`` never pays for torch and ``proofroom worker``
never pays for the chat SDKs."""

from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError

from engine.logs import configure_logging

# Commands that print their own progress and result: logs stay at WARNING unless -v.
QUIET = frozenset({"generate", "batch", "calendar", "shell", "models", "doctor", "api-key"})
# name -> (module, help). The module provides ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("bot.jobs.generate", "render a prompt or a template locally"),
    "worker": ("engine.worker", "run a GPU worker that serves the queues"),
    "shell": ("bot.adapters.shell.cli", "a local chat channel in your terminal (embedded default)"),
    "batch": ("bot.batch.cli", "render a CSV batch without chat: images and manifest.csv"),
    "calendar": ("bot.calendars.cli", "preview content calendars (`calendar preview NAME`)"),
    "slack": ("bot.adapters.slack.cli", "run the bot on Slack (Socket Mode or HTTP)"),
    "discord": ("bot.adapters.discord.cli", "run the bot on Discord; `discord invite-url` too"),
    "serve": ("bot.serve.cli", "the HTTP service: the API, Slack HTTP mode, /healthz, /metrics"),
    "api-key": ("bot.api.cli", "keys of the HTTP API: `api-key create|list|revoke`"),
    "store": ("bot.storage", "artifact store upkeep: `store prune` removes old artifacts"),
    "models": (
        "bot.jobs.models",
        "list models, LoRAs, embeddings and VAEs, and files that cannot be used",
    ),
    "doctor": ("bot.doctor.cli", "check Redis, tokens, models, GPU, disk and live workers"),
    "usage": ("bot.usage.cli", "images, GPU time and cost per user, template, channel or model"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``proofroom`` console script."""
    parser = argparse.ArgumentParser(prog="proofroom", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, add_help=False)
        sub_parser.set_defaults(_module=module_name)
        # Only the chosen subcommand's module is imported (see below); argument
        # definitions are loaded lazily by re-parsing once the module is known.
    args, rest = parser.parse_known_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    cmd_parser = argparse.ArgumentParser(prog=f"proofroom {args.command}")
    module.add_arguments(cmd_parser)
    # -v is accepted after the command too (`proofroom batch x.csv -v`).
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true")
    late, rest = verbose.parse_known_args(rest)
    configure_logging(verbose=args.verbose or late.verbose, quiet=args.command in QUIET)
    try:
        return int(module.run(cmd_parser.parse_args(rest)) or 0)
    except ValidationError as exc:
        if not exc.title.endswith("Settings"):
            raise  # not a setting from the environment: a bug, with its traceback
        # A bad .env or environment: one line per problem, not a traceback.
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            print(f"proofroom: {where + ': ' if where else ''}{message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
