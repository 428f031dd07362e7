"""Slack's roles are user groups: ``PROOFROOM_ADMIN_ROLES`` naming a group's handle or id makes
its members admins on Slack, as a Discord role does there. Through the real Bolt app over
HTTP; the fake Web API answers ``usergroups.list``. Without the scope, roles grant nothing
(refused, not admitted) and the log says why once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.adapters.slack.groups import members_by_user
from bot.ports import CommandEvent, ReactionEvent
from bot.service import BotService
from bot.settings import BotSettings
from engine.settings import Settings
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.slack_requests import reaction
from tests.security.test_access import NOT_ADMIN, NOT_YOURS, RELOADED, job_of
from tests.waiting import wait_for

GROUPS = [
    {"id": "S0OPS", "handle": "ops-leads", "users": ["UOPS"]},
    {"id": "S0ART", "handle": "art", "users": ["UBOB", "UOPS"]},
    {"id": "S0OLD", "handle": "old-admins", "users": ["UBOB"], "date_delete": 1700000000},
]


@dataclass
class FakeSlackWithGroups(FakeSlack):
    """The recording fake, answering ``usergroups.list`` with ``usergroups``."""

    usergroups: list[dict[str, Any]] = field(default_factory=lambda: list(GROUPS))

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "usergroups.list":
            return {"ok": True, "usergroups": self.usergroups}
        return super().answer(method, args)


@pytest.fixture()
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlackWithGroups().start()
    yield fake
    fake.stop()


def admins(settings: Settings, *roles: str) -> BotSettings:
    return BotSettings(  # type: ignore[call-arg]
        _env_file=None, export_dir=settings.data_dir / "approved", admin_roles=frozenset(roles)
    )


def answerer(slack, fake: FakeSlack):
    def answer(text: str, *, user: str) -> str:
        before = len(fake.calls_to("response"))
        assert slack.send.command(text, user=user).status == 200
        calls = wait_for(
            lambda: (calls := fake.calls_to("response"))[before:] and calls, what="the answer"
        )
        return calls[before].args["text"]

    return answer


def test_a_member_of_an_admin_user_group_is_an_admin_on_slack(
    make_slack, fake_slack: FakeSlack, settings: Settings
) -> None:
    slack = make_slack(bot_settings=admins(settings, "ops-leads"))
    answer = answerer(slack, fake_slack)
    job = job_of(answer("a fox --n 1", user="UALICE"))
    # UBOB is in `art` and in a deleted group that was an admin group: no admin.
    assert answer(f"cancel {job}", user="UBOB").startswith(NOT_YOURS)
    assert answer("reload", user="UBOB").startswith(NOT_ADMIN)
    assert answer("reload", user="UOPS").startswith(RELOADED)
    assert answer(f"cancel {job}", user="UOPS").startswith(f"Cancelling job `{job}`")
    # Read once for all these events, with the members.
    [read] = fake_slack.calls_to("usergroups.list")
    assert str(read.args.get("include_users")).lower() in ("true", "1")


def test_a_user_group_may_be_named_by_id_and_a_missing_scope_grants_nothing(
    make_slack, fake_slack: FakeSlack, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    by_id = answerer(make_slack(bot_settings=admins(settings, "S0OPS")), fake_slack)
    assert by_id("reload", user="UOPS").startswith(RELOADED)

    fake_slack.fail("usergroups.list", "missing_scope")
    caplog.set_level(logging.WARNING, logger="bot.adapters.slack.groups")
    refused = answerer(make_slack(bot_settings=admins(settings, "ops-leads")), fake_slack)
    assert refused("reload", user="UOPS").startswith(NOT_ADMIN)
    warned = [r for r in caplog.records if r.name == "bot.adapters.slack.groups"]
    assert len(warned) == 1 and "usergroups:read" in warned[0].getMessage()


def test_the_groups_are_read_only_when_a_role_is_configured(
    make_slack, fake_slack: FakeSlack, settings: Settings
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None, export_dir=settings.data_dir / "approved", admin_ids=frozenset({"UOPS"})
    )
    answer = answerer(make_slack(bot_settings=bot_settings), fake_slack)
    assert answer("reload", user="UOPS").startswith(RELOADED)
    assert answer("reload", user="UBOB").startswith(NOT_ADMIN)
    assert not fake_slack.calls_to("usergroups.list")


class Recorder:
    """Between the app and the service: keeps the reaction events it passes on."""

    def __init__(self, service: BotService) -> None:
        self.service = service
        self.reactions: list[ReactionEvent] = []

    def handle_command(self, event: CommandEvent) -> str:
        return self.service.handle_command(event)

    def handle_reaction(self, event: ReactionEvent) -> None:
        self.reactions.append(event)
        self.service.handle_reaction(event)


def test_a_reaction_carries_the_reviewers_groups_as_roles(
    make_slack, fake_slack: FakeSlack, settings: Settings
) -> None:
    bot_settings = BotSettings(  # type: ignore[call-arg]
        _env_file=None,
        export_dir=settings.data_dir / "approved",
        approver_roles=frozenset({"art"}),
    )
    recorders: list[Recorder] = []

    def record(service: BotService) -> Recorder:
        recorders.append(Recorder(service))
        return recorders[0]

    slack = make_slack(bot_settings=bot_settings, core=record)
    for user in ("UBOB", "UALICE"):
        vote = reaction(name="white_check_mark", user=user, channel="CGENERAL", ts="1.000001")
        assert slack.send.event(vote).status == 200
    events = wait_for(lambda: len(recorders[0].reactions) == 2 and recorders[0].reactions)
    roles = {event.user: event.roles for event in events}
    assert roles == {"UBOB": frozenset({"S0ART", "art"}), "UALICE": frozenset()}


def test_members_by_user_names_each_group_by_id_and_handle() -> None:
    assert members_by_user(GROUPS) == {
        "UOPS": frozenset({"S0OPS", "ops-leads", "S0ART", "art"}),
        "UBOB": frozenset({"S0ART", "art"}),
    }
