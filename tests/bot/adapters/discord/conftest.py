"""Fixtures of the Discord tests: the fake REST API, and the real bot logged in against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import discord.http
import pytest
import redis as redis_lib

from bot.adapters.discord.app import ProofroomDiscord
from bot.adapters.discord.settings import DiscordSettings
from bot.service import BotService
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.settings import Settings
from tests.bot.adapters.discord.fake_discord import GUILD_ID, FakeDiscord, role
from tests.bot.adapters.discord.gateway import (
    APPROVER_ROLE,
    APPROVER_ROLE_ID,
    guild_create,
    wait_for,
)
from tests.served import LoopThread


@pytest.fixture()
def fake_discord(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    """The fake API; discord.py's routes (REST and interaction callbacks) point at it."""
    fake = FakeDiscord().start()
    fake.add_role(APPROVER_ROLE_ID, APPROVER_ROLE)
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    yield fake
    fake.stop()


@pytest.fixture()
def discord_settings(fake_discord: FakeDiscord) -> DiscordSettings:
    return DiscordSettings(  # type: ignore[call-arg]
        _env_file=None, token=fake_discord.token, guild_ids=[int(GUILD_ID)], pump_block_ms=100
    )


@pytest.fixture()
def bot_settings(settings: Settings) -> BotSettings:
    """Approval by role name, as a team would configure it; the requester cannot approve."""
    return BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        approver_roles=frozenset({APPROVER_ROLE}),
        requester_may_approve=False,
    )


@pytest.fixture()
def service_factory(
    settings: Settings, redis: redis_lib.Redis, bot_settings: BotSettings
) -> Callable[[Any], BotService]:
    """Makes the real service for an adapter; a fresh set of objects each time, so that only
    Redis carries state across a simulated restart."""

    def make(adapter: Any) -> BotService:
        return BotService.build(
            adapter=adapter, settings=settings, bot_settings=bot_settings, redis=redis
        )

    return make


class BotHarness:
    """A logged-in :class:`ProofroomDiscord` on its own loop thread, fed gateway payloads."""

    def __init__(
        self,
        *,
        fake: FakeDiscord,
        settings: Settings,
        discord_settings: DiscordSettings,
        service_factory: Callable[[Any], Any] | None = None,
    ) -> None:
        self.fake = fake
        self.loop = LoopThread(name="discord")
        self.client = ProofroomDiscord(
            settings=discord_settings,
            catalog=Catalog.load(settings.templates_dir),
            limits=settings.limits,
        )
        self.service = service_factory(self.client.adapter) if service_factory else None
        if self.service is not None:
            self.client.bind(self.service)

    def start(self) -> BotHarness:
        """Log in (command sync, pump) and receive the guild, as after READY."""
        self.loop.run(self.client.login(self.fake.token))
        # What the gateway sends for each guild after READY (roles resolve member names).
        self.dispatch("GUILD_CREATE", guild_create(roles=[role(APPROVER_ROLE_ID, APPROVER_ROLE)]))
        return self

    @property
    def adapter(self):
        return self.client.adapter

    def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        """Hand a gateway dispatch to discord.py's parser, on the client's loop."""
        parser = self.client._connection.parsers[event]
        self.loop.call(lambda: parser(payload))

    def reply_to(self, interaction: dict[str, Any], *, timeout: float = 30) -> str:
        """The text the bot put in the deferred response of ``interaction``."""
        path = (
            f"/webhooks/{interaction['application_id']}/{interaction['token']}/messages/@original"
        )
        call = wait_for(
            lambda: self.fake.calls_to("PATCH", path),
            timeout=timeout,
            what=f"the reply to interaction {interaction['id']}",
        )
        return call[-1].json["content"]

    def close(self) -> None:
        if self.loop.loop.is_closed():
            return
        self.loop.run(self.client.close())
        self.loop.stop()


@pytest.fixture()
def make_bot(
    fake_discord: FakeDiscord,
    settings: Settings,
    discord_settings: DiscordSettings,
    redis: redis_lib.Redis,
) -> Iterator[Callable[..., BotHarness]]:
    """Build (and afterwards close) bots; several in one test simulate restarts. Depends on
    ``redis`` so that bots stop pumping before the test's keys are deleted."""
    bots: list[BotHarness] = []

    def make(**overrides: Any) -> BotHarness:
        kwargs: dict[str, Any] = {
            "fake": fake_discord,
            "settings": settings,
            "discord_settings": discord_settings,
            **overrides,
        }
        bot = BotHarness(**kwargs)
        bots.append(bot)
        return bot.start()

    yield make
    for bot in bots:
        bot.close()
