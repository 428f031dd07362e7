"""The webhook's settings, its backoff, and deliveries without a chat around them: a store
that signs download URLs, a receiver that is down, a redirect, an image gone from the store.
Real Redis and a real local receiver; no worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from pydantic import ValidationError

from bot.ports import MessageRef
from bot.records import ImageRecord
from bot.settings import BotSettings
from bot.testing.chat import FakeAdapter
from bot.webhooks import WebhookDeliverer, WebhookState, WebhookTarget, backoff_s
from engine.outage import Outage
from engine.settings import REPO_ROOT, Settings
from engine.store import LocalStore
from tests.bot.webhooks.conftest import SECRET
from tests.bot.webhooks.receiver import Receiver, Reply
from tests.waiting import wait_for

# -- settings -----------------------------------------------------------------------------


def test_a_webhook_url_without_a_secret_stops_the_bot_with_a_sentence_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("PROOFROOM_WEBHOOK_URL", "https://cms.example.com/hooks/proofroom")
    with pytest.raises(ValidationError) as caught:
        BotSettings(_env_file=None)  # type: ignore[call-arg]
    assert "PROOFROOM_WEBHOOK_SECRET is not" in str(caught.value)

    monkeypatch.setenv("PROOFROOM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PROOFROOM_WEBHOOK_ATTEMPTS", "3")
    settings = BotSettings(_env_file=None)  # type: ignore[call-arg]
    target = WebhookTarget.from_settings(settings)
    assert target is not None
    assert (target.url, target.secret, target.attempts) == (
        "https://cms.example.com/hooks/proofroom",
        SECRET,
        3,
    )
    assert SECRET not in repr(target) + repr(settings)


def test_the_command_line_says_so_in_one_line_without_a_traceback(tmp_path: Path):
    env = {**os.environ, "PROOFROOM_WEBHOOK_URL": "https://cms.example.com/hooks/proofroom"}
    env.pop("PROOFROOM_WEBHOOK_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "shell"],
        cwd=tmp_path,  # no .env here
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("proofroom: PROOFROOM_WEBHOOK_URL is set but PROOFROOM_WEBHOOK_")
    assert "Traceback" not in done.stderr


def test_an_empty_webhook_url_is_off_and_other_schemes_are_refused(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("PROOFROOM_WEBHOOK_URL", "")
    assert WebhookTarget.from_settings(BotSettings(_env_file=None)) is None  # type: ignore[call-arg]
    monkeypatch.setenv("PROOFROOM_WEBHOOK_URL", "ftp://cms.example.com/in")
    monkeypatch.setenv("PROOFROOM_WEBHOOK_SECRET", SECRET)
    with pytest.raises(ValidationError, match="must start with https:// or http://"):
        BotSettings(_env_file=None)  # type: ignore[call-arg]


def test_backoff_doubles_up_to_its_ceiling_and_draws_between_half_and_all_of_it():
    waits = [backoff_s(n, base_s=2, max_s=20, rand=lambda: 0.999999) for n in range(1, 6)]
    assert [round(w, 3) for w in waits] == [2, 4, 8, 16, 20]
    assert backoff_s(3, base_s=2, max_s=20, rand=lambda: 0.0) == 4.0


# -- deliveries without a chat --------------------------------------------------------------


class SigningStore(LocalStore):
    """An S3-like store's one extra: a signed download URL (the S3 store is not ours to run
    here; its URL signing is tested with it)."""

    def url(self, artifact_id: str, *, expires_s: int | None = None) -> str | None:
        return f"https://bucket.example.com/{artifact_id}?X-Amz-Expires={expires_s}"


def image_in(store: LocalStore, *, seed: int = 5) -> ImageRecord:
    artifact = store.put(b"\x89PNG fake image bytes", suffix=".png")
    message = MessageRef("fake", "C1", f"m{seed}", "m1")
    return ImageRecord(
        message=message,
        job_id="0123456789ab",
        index=0,
        seed=seed,
        artifact_id=artifact,
        width=64,
        height=64,
        requester="U1",
        root=message.key,
    )


def deliverer(
    *, redis: redis_lib.Redis, settings: Settings, store: LocalStore, url: str, **target: Any
) -> tuple[WebhookDeliverer, FakeAdapter]:
    adapter = FakeAdapter()
    webhook = WebhookDeliverer(
        target=WebhookTarget(url=url, secret=SECRET, backoff_s=0.01, backoff_max_s=0.05, **target),
        outbox=WebhookState(redis=redis, key_prefix=settings.key_prefix, ttl_s=3600),
        store=store,
        adapter=adapter,
        outage=Outage(name="test"),
    )
    return webhook, adapter


def run_until_finished(webhook: WebhookDeliverer, key: str) -> str:
    stop = threading.Event()
    with webhook.running(stop):
        record = wait_for(
            lambda: (r := webhook.outbox.record(key)) and r.status != "pending" and r,
            what="the delivery to finish",
        )
        stop.set()
    return record.status


def test_a_store_that_signs_urls_sends_a_link_instead_of_the_bytes(
    redis: redis_lib.Redis, settings: Settings, tmp_path: Path, receiver: Receiver
):
    store = SigningStore(tmp_path / "artifacts")
    webhook, _ = deliverer(
        redis=redis, settings=settings, store=store, url=receiver.url, image_url_expires_s=3600
    )
    image = image_in(store)
    webhook.approved(image, metadata={"approved_by": ["U2"], "seed": 5})
    assert run_until_finished(webhook, "0123456789ab-0-5") == "delivered"
    (request,) = receiver.requests
    assert request.json["image"] == {
        "filename": "0123456789ab-0-5.png",
        "content_type": "image/png",
        "url": f"https://bucket.example.com/{image.artifact_id}?X-Amz-Expires=3600",
        "url_expires_s": 3600,
    }
    assert request.json["metadata"] == {"approved_by": ["U2"], "seed": 5}


def test_a_receiver_that_is_down_is_retried_then_the_thread_is_told(
    redis: redis_lib.Redis, settings: Settings, tmp_path: Path
):
    gone = Receiver()
    url = gone.url
    gone.server.server_close()  # nothing listens on that port any more
    store = LocalStore(tmp_path / "artifacts")
    webhook, adapter = deliverer(redis=redis, settings=settings, store=store, url=url, attempts=3)
    webhook.approved(image_in(store), metadata={})
    assert run_until_finished(webhook, "0123456789ab-0-5") == "failed"
    assert webhook.outbox.record("0123456789ab-0-5").attempts == 3
    (said,) = [m for m in adapter.messages.values()]
    assert said.ref.thread == "m1"
    assert "after 3 attempts, the last one got no answer" in said.text


def test_a_redirect_is_not_followed_and_an_image_gone_from_the_store_is_not_retried(
    redis: redis_lib.Redis, settings: Settings, tmp_path: Path, receiver: Receiver
):
    store = LocalStore(tmp_path / "artifacts")
    webhook, adapter = deliverer(redis=redis, settings=settings, store=store, url=receiver.url)
    receiver.script(Reply(302, headers={"Location": receiver.url + "/elsewhere"}))
    webhook.approved(image_in(store, seed=5), metadata={})
    assert run_until_finished(webhook, "0123456789ab-0-5") == "failed"
    assert [(r.status, r.headers["X-Proofroom-Attempt"]) for r in receiver.requests] == [(302, "1")]

    lost = image_in(store, seed=6)
    store.path(lost.artifact_id).unlink()
    webhook.approved(lost, metadata={})
    assert run_until_finished(webhook, "0123456789ab-0-6") == "failed"
    assert len(receiver.requests) == 1
    told = [m.text for m in adapter.messages.values()]
    assert "the webhook refused it with HTTP 302" in told[0]
    assert "the image is no longer in the artifact store" in told[1]
