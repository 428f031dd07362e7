"""Catalog reloads across processes (``engine.reloads``): one process asks, every other one
rescans before its next use, in place, once."""

from __future__ import annotations

import redis as redis_lib

from engine.catalog import Catalog, LoraEntry
from engine.reloads import CatalogReloads
from engine.settings import Settings


def test_a_reload_asked_by_one_process_reaches_another_once(
    settings: Settings, redis: redis_lib.Redis
) -> None:
    folder: dict[str, LoraEntry] = {}  # what a rescan would find: grows when a file is dropped

    def load() -> Catalog:
        return Catalog.load(
            settings.templates_dir, found=Catalog(templates={}, models={}, loras=dict(folder))
        )

    bot_catalog, worker_catalog = load(), load()
    bot = CatalogReloads(redis=redis, settings=settings, catalog=bot_catalog, load=load)
    worker = CatalogReloads(redis=redis, settings=settings, catalog=worker_catalog, load=load)
    assert worker.refresh() is False  # nothing asked yet: no rescan

    folder["brand-y"] = LoraEntry(
        name="brand-y", source="/loras/brand-y.safetensors", families=["sd15"]
    )
    assert bot.request() is bot_catalog  # in place: desks holding it see the new entry
    assert "brand-y" in bot_catalog.loras
    assert "brand-y" not in worker_catalog.loras
    assert worker.refresh() is True
    assert "brand-y" in worker_catalog.loras
    assert worker.refresh() is False  # once per request
    assert bot.refresh() is False  # the asker is already at the new generation
