"""Catalog reloads across processes: an admin's ``/imagine reload`` bumps a counter in Redis
(``{prefix}:catalog:generation``), and every process holding a catalog (bots, workers)
compares it with the generation it loaded before it uses the catalog, rescanning the
drop-in folders when it moved. One ``GET`` per command or job; a scan reads only file
headers, so a reload costs milliseconds, and nobody restarts a worker to see a new LoRA.

The catalog object is updated in place (:meth:`Catalog.replace`), so every desk and cache
that holds it sees the new entries without being rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis as redis_lib

from engine.catalog import Catalog
from engine.outage import CONNECTION_ERRORS
from engine.settings import Settings

log = logging.getLogger(__name__)


class CatalogReloads:
    """Keeps ``catalog`` at the generation in Redis; ``load`` rescans (``load_catalog``)."""

    def __init__(
        self,
        *,
        redis: redis_lib.Redis,
        settings: Settings,
        catalog: Catalog,
        load: Callable[[], Catalog],
    ) -> None:
        self.redis = redis
        self.key = f"{settings.key_prefix}:catalog:generation"
        self.catalog = catalog
        self.load = load
        # The catalog was just loaded: it is at least as new as the generation now. With
        # Redis away (a service or worker may start during an outage and wait it out), the
        # first refresh adopts the generation it reads.
        self.seen: int | None
        try:
            self.seen = self._generation()
        except CONNECTION_ERRORS:
            self.seen = None

    def request(self) -> Catalog:
        """Reload here now and make every other process reload before its next use."""
        self.seen = int(self.redis.incr(self.key))
        self._reload()
        return self.catalog

    def refresh(self) -> bool:
        """Reload when another process asked for it since; whether this reloaded."""
        generation = self._generation()
        if self.seen is None or generation == self.seen:
            self.seen = generation
            return False
        self.seen = generation
        self._reload()
        return True

    def _reload(self) -> None:
        fresh = self.load()
        self.catalog.replace(fresh)
        log.info(
            "catalog reloaded: %d models, %d LoRAs, %d embeddings, %d files that cannot be used",
            len(fresh.models),
            len(fresh.loras),
            len(fresh.embeddings),
            len(fresh.problems),
        )

    def _generation(self) -> int:
        raw = self.redis.get(self.key)
        return int(raw) if raw is not None else 0
