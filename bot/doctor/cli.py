"""``proofroom doctor``: run every check and print a line for each as it is known.

    proofroom doctor            # quick: files and caches are looked at, nothing loaded
    proofroom doctor --load     # also load every model as a worker would (slow)

Exit status 1 when a check failed, so a deploy script can stop on it; warnings pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from bot.doctor.chat import discord_check, slack_check
from bot.doctor.host import disk_check, engine_probe, gpu_check, model_checks
from bot.doctor.qa import qa_check
from bot.doctor.redis_check import redis_check
from bot.doctor.report import Check, exit_code, summary
from bot.doctor.workers import worker_checks
from engine.model_folders import load_catalog
from engine.settings import Settings, get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``proofroom doctor``."""
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument(
        "--load", action="store_true", help="load every model as a worker would (slow)"
    )


def run(args: argparse.Namespace) -> int:
    """Print the checks; 1 when one failed."""
    checks = []
    for check in checks_of(get_settings(), load=args.load):
        print(check.line(), flush=True)
        checks.append(check)
    print(summary(checks))
    return exit_code(checks)


def checks_of(settings: Settings, *, load: bool) -> Iterator[Check]:
    """Every check, in the order an operator fixes things: Redis, tokens, this host's engine
    and disk, then the workers that serve the queues."""
    redis_line, client = redis_check(settings)
    yield redis_line
    yield slack_check()
    yield discord_check()
    facts = engine_probe(load=load)
    yield gpu_check(facts)
    yield from model_checks(facts, loaded=load)
    yield disk_check(folder=settings.data_dir, what="the store and approved exports")
    yield qa_check(settings.qa)
    try:
        catalog = load_catalog(settings)
    except ValueError:
        catalog = None  # the models check above said why
    yield from worker_checks(settings=settings, client=client, catalog=catalog)
