"""The soak (``bench/soak.py``) at the smallest size that still shows its invariants: 40
commands from 5 users on the real queue and event stream, a real ``proofroom worker`` killed
mid-render half-way, TTLs of seconds. ``make soak`` runs the same driver at full size.

The seed is fixed so that a failure reproduces (``python bench/soak.py --commands 40
--users 5 --seed 20``); ``PROOFROOM_SOAK_SEED`` runs another.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis as redis_lib

from bench.soak import run_soak
from bot.settings import BotSettings
from engine.settings import Settings

SEED = int(os.environ.get("PROOFROOM_SOAK_SEED", "20"))
TTL_S = 15  # state, results, ledger: longer than a job waits here, short enough to wait out


@pytest.mark.slow
def test_soak_keeps_its_invariants(
    settings: Settings, redis: redis_lib.Redis, tmp_path: Path
) -> None:
    """Every job ends once, every image is posted once, every reaction is counted once
    (re-delivered ones not at all), no key is left without a TTL but the durable ones, and
    the run's Redis memory is back near its start once the TTLs have passed."""
    bot_settings = BotSettings(_env_file=None, export_dir=tmp_path / "approved")  # type: ignore[call-arg]
    soak = run_soak(
        settings=settings,
        redis=redis,
        bot_settings=bot_settings,
        log_dir=tmp_path,
        commands=40,
        users=5,
        seed=SEED,
        ttl_s=TTL_S,
    )
    figures = soak.figures
    assert soak.violations == [], f"seed {SEED}: {soak.violations}\n{figures}"
    # The run did what the invariants are about (else they would hold trivially).
    # The worker died mid-render (those jobs are among the ones that each ended once).
    assert figures["running_at_kill"] >= 1, figures
    assert figures["jobs"] >= 10 and figures["images_posted"] >= 10, figures
    assert figures["reactions"] >= 5 and figures["redelivered"] >= 1, figures
    assert figures["keys_without_ttl"], figures  # the durable ones were there to check
    assert figures["memory_peak_bytes"] > 10 * figures["memory_before_bytes"], figures
