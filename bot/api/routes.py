"""Every route of the HTTP API, for ``proofroom serve`` (``bot.serve``): the native API
(``bot.api.native``) and the AUTOMATIC1111-compatible one (``bot.api.a1111``), over one
:class:`~bot.api.jobs.ApiJobs` and one :class:`~bot.api.keys.ApiKeys`."""

from __future__ import annotations

import redis as redis_lib
from starlette.routing import BaseRoute

from bot.api.a1111 import a1111_routes
from bot.api.jobs import ApiJobs
from bot.api.keys import ApiKeys
from bot.api.limits import ApiSettings
from bot.api.native import native_routes
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.settings import Settings
from engine.store import ArtifactStore, store_from_settings


def api_routes(
    *,
    jobs: ApiJobs,
    keys: ApiKeys,
    settings: Settings,
    api_settings: ApiSettings | None = None,
) -> list[BaseRoute]:
    """The native and the A1111-compatible routes over ``jobs`` and ``keys``."""
    api_settings = api_settings or ApiSettings()
    return [
        *native_routes(jobs=jobs, keys=keys, api_settings=api_settings),
        *a1111_routes(jobs=jobs, keys=keys, catalog=jobs.catalog, api_settings=api_settings),
    ]


def build_api_routes(
    *,
    settings: Settings,
    bot_settings: BotSettings,
    redis: redis_lib.Redis,
    catalog: Catalog | None = None,
    store: ArtifactStore | None = None,
    api_settings: ApiSettings | None = None,
) -> list[BaseRoute]:
    """:func:`api_routes` on the queue, store and keys of ``settings`` (``proofroom serve``)."""
    jobs = ApiJobs(
        redis=redis,
        settings=settings,
        bot_settings=bot_settings,
        store=store or store_from_settings(settings),
        catalog=catalog,
    )
    keys = ApiKeys(redis=redis, key_prefix=settings.key_prefix)
    return api_routes(jobs=jobs, keys=keys, settings=settings, api_settings=api_settings)


__all__ = ["api_routes", "build_api_routes"]
