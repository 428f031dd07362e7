"""Requests as Slack sends them: slash commands (form-encoded), Events API callbacks and
interactivity payloads (JSON in a ``payload`` form field), signed with the signing secret
(HMAC-SHA256 of ``v0:{timestamp}:{body}``) and POSTed to the app's real HTTP endpoint."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from tests.bot.adapters.slack.fake_slack import TEAM

APP_ID = "A0PROOF"


@dataclass
class Sent:
    """What the app answered, and how long it took to answer."""

    status: int
    body: str
    elapsed_s: float


@dataclass
class SlackSender:
    """Signs and POSTs requests to ``url`` (the Bolt app's HTTP endpoint)."""

    url: str
    signing_secret: str
    response_url: str  # where respond() answers go (the fake records them)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def post(
        self,
        body: str,
        *,
        content_type: str,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Sent:
        """POST ``body`` signed now (or at ``timestamp``); ``signature`` overrides it."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        verifier = SignatureVerifier(self.signing_secret)
        all_headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature or verifier.generate_signature(timestamp=ts, body=body),
            **(headers or {}),
        }
        request = urllib.request.Request(self.url, data=body.encode(), headers=all_headers)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return Sent(status, text, time.monotonic() - started)

    def command(
        self, text: str, *, user: str = "UALICE", channel: str = "CGENERAL", **kw: Any
    ) -> Sent:
        """``/imagine <text>`` as Slack posts it (application/x-www-form-urlencoded)."""
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": TEAM,
                "team_domain": "test",
                "channel_id": channel,
                "channel_name": "general",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/imagine",
                "text": text,
                "api_app_id": APP_ID,
                "response_url": self.response_url + "commands/1",
                "trigger_id": "1.2.3",
            }
        )
        return self.post(body, content_type="application/x-www-form-urlencoded", **kw)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
        **kw: Any,
    ) -> Sent:
        """An Events API ``event_callback``; ``retry_num`` adds Slack's retry headers."""
        payload = {
            "token": "legacy-verification-token",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": "UPROOFBOT", "is_bot": True}],
        }
        headers = kw.pop("headers", {}) or {}
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post(
            json.dumps(payload), content_type="application/json", headers=headers, **kw
        )

    def block_action(
        self, *, action_id: str, value: str, user: str, channel: str, message_ts: str, **kw: Any
    ) -> Sent:
        """A button click (interactivity: form field ``payload`` holding JSON)."""
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": user, "username": user.lower()},
            "api_app_id": APP_ID,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "channel": {"id": channel, "name": "general"},
            "message": {"ts": message_ts, "type": "message"},
            "response_url": self.response_url + "actions/1",
            "trigger_id": "4.5.6",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, content_type="application/x-www-form-urlencoded", **kw)


def reaction(
    *, name: str, user: str, channel: str, ts: str, removed: bool = False
) -> dict[str, Any]:
    """A ``reaction_added`` / ``reaction_removed`` event on a message."""
    return {
        "type": "reaction_removed" if removed else "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": "UPROOFBOT",
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": f"{time.time():.6f}",
    }


def mention(
    *, text: str, user: str, channel: str, files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An ``app_mention`` event, with files when the message carried some."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@UPROOFBOT> {text}",
        "ts": f"{time.time():.6f}",
        "channel": channel,
        "event_ts": f"{time.time():.6f}",
    }
    if files:
        event["files"] = files
        event["upload"] = False
    return event


def slash_envelope(
    envelope_id: str, *, user: str, text: str, response_url: str, channel: str = "CGENERAL"
) -> dict[str, Any]:
    """``/imagine <text>`` as Slack pushes it over the Socket Mode WebSocket."""
    return {
        "envelope_id": envelope_id,
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": {
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "command": "/imagine",
            "text": text,
            "api_app_id": "A0PROOF",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        },
    }
