"""Review from applications, on a real HTTP server and an embedded worker rendering
``tiny``: votes through the API count like reactions (decision, export with its sidecar,
policy), and a key with a review channel gets its jobs a thread in that channel from the
platform's bot (here the project's fake chat platform, named ``slack``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from bot.api.keys import ApiKey, ApiKeys
from bot.settings import BotSettings
from bot.testing.chat import FakeAdapter, FakeChat
from engine.queue import JobQueue
from engine.settings import Settings
from tests.bot.api.conftest import Api
from tests.bot.api.test_jobs import finished


@pytest.mark.usefixtures("worker")
def test_approve_and_reject_export_like_a_reaction(
    api: Api, keys: ApiKeys, bot_settings: BotSettings, settings: Settings
) -> None:
    created = api.post("/v1/jobs", {"prompt": "a red mug", "n": 2, "seed": 5}).json()
    first, second = finished(api, created["id"])["images"]

    approved = api.post(f"/v1/images/{first['id']}/approve")
    assert approved.status == 200, approved.body
    stem = f"{created['id']}-0-5"
    assert approved.json() == {
        "id": first["id"],
        "job_id": created["id"],
        "index": 0,
        "state": "approved",
        "exported": [f"{stem}.png", f"{stem}.json"],
    }
    folder = bot_settings.export_path(settings)
    assert (folder / f"{stem}.png").read_bytes() == api.get(first["url"]).body
    sidecar = json.loads((folder / f"{stem}.json").read_text())
    assert sidecar["approved_by"] == ["U1"]
    assert sidecar["requested_by"] == "api:U1"
    assert sidecar["seed"] == 5 and sidecar["job_id"] == created["id"]

    rejected = api.post(f"/v1/images/{second['id']}/reject").json()
    assert rejected["state"] == "rejected" and rejected["exported"] == []
    # Changing one's mind takes the image back out of the export, as with reactions.
    assert api.post(f"/v1/images/{first['id']}/reject").json()["state"] == "rejected"
    assert not (folder / f"{stem}.png").exists()

    # Another key sees neither the images nor their votes.
    _, other = keys.create(name="other", user="U2")
    for path in (first["url"], f"/v1/images/{first['id']}/approve"):
        method = "GET" if path.startswith("/v1/artifacts") else "POST"
        assert api.with_key(other).call(method, path).status == 404
    assert api.post("/v1/images/not-an-id/approve").status == 404


@pytest.mark.usefixtures("worker")
def test_a_vote_the_policy_does_not_count_is_refused(
    serve_api: Callable[..., Api], cms_key: tuple[ApiKey, str], bot_settings: BotSettings
) -> None:
    strict = bot_settings.model_copy(update={"requester_may_approve": False})
    api = serve_api(bot=strict, secret=cms_key[1])
    created = api.post("/v1/jobs", {"prompt": "a red mug"}).json()
    image = finished(api, created["id"])["images"][0]
    answer = api.post(f"/v1/images/{image['id']}/approve")
    assert answer.status == 403
    assert "someone other than the person who asked" in answer.json()["error"]


@pytest.fixture()
def slack_chat(
    settings: Settings, redis: redis_lib.Redis, bot_settings: BotSettings
) -> Iterator[FakeChat]:
    """The bot on a fake platform named ``slack`` (its own worker), as the Slack bot
    process that follows the event stream."""
    chat = FakeChat(settings=settings, redis=redis, bot_settings=bot_settings)
    chat.adapter = FakeAdapter(platform="slack")
    chat.restart()
    try:
        yield chat
    finally:
        chat.close()


def test_a_review_channel_gets_a_thread_and_api_votes_land_on_its_messages(
    serve_api: Callable[..., Api],
    keys: ApiKeys,
    slack_chat: FakeChat,
    settings: Settings,
    redis: redis_lib.Redis,
    bot_settings: BotSettings,
) -> None:
    key, secret = keys.create(
        name="catalog", user="U7", review_channel="C9", review_platform="slack"
    )
    api = serve_api(secret=secret)
    created = api.post("/v1/jobs", {"prompt": "a leather handbag", "seed": 3}).json()
    spec = JobQueue(redis=redis, settings=settings).spec(created["id"])
    assert spec is not None
    assert spec.requested_by == "slack:U7"
    assert {k: spec.origin[k] for k in ("platform", "channel", "requester", "api_key")} == {
        "platform": "slack",
        "channel": "C9",
        "requester": "U7",
        "api_key": key.id,
    }

    def posted() -> list:
        return [
            m for m in slack_chat.adapter.messages.values() if m.is_image and m.ref.channel == "C9"
        ]

    image_message = slack_chat.wait_for(posted)[0]
    image = finished(api, created["id"])["images"][0]
    voted = api.post(f"/v1/images/{image['id']}/approve").json()
    assert voted["state"] == "approved"
    # The vote is on the chat message, beside the reactions there, by the key's user.
    assert slack_chat.service.state.votes(image_message.ref) == {"U7": "approve"}
    assert slack_chat.service.state.image_state(image_message.ref) == "approved"
    assert (Path(bot_settings.export_path(settings)) / voted["exported"][0]).exists()
