"""``proofroom api-key``: make, list and revoke the keys of the HTTP API (``bot.api.keys``).

    proofroom api-key create --name cms --user U024BE7LH
    proofroom api-key create --name catalog --user U024BE7LH --review-channel C0123 --platform slack
    proofroom api-key list
    proofroom api-key revoke cms        # by name or id; the key stops working at once

The key is printed once, by ``create``; Redis keeps only its SHA-256. ``--user``: whose
quotas and ledger entries the key's jobs count as (``api:<user>``; with ``--platform`` the
platform's user, ``slack:<user>``, who shares their chat quotas with the key).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import redis as redis_lib

from bot.api.keys import PLATFORMS, ApiKey, ApiKeys
from bot.settings import BotSettings
from engine.embedded import open_chat_redis
from engine.errors import UserError
from engine.private_redis import PrivateRedisError
from engine.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define ``api-key create|list|revoke``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="make a key and print it once")
    create.add_argument("--name", required=True, help="what the key is for, e.g. cms")
    create.add_argument("--user", required=True, help="the user its quotas and ledger count")
    create.add_argument("--review-channel", help="post the key's jobs for review in this channel")
    create.add_argument("--platform", choices=PLATFORMS, help="the review channel's platform")
    sub.add_parser("list", help="the keys (never their secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by name or id")
    revoke.add_argument("key", metavar="NAME|ID")


def run(args: argparse.Namespace) -> int:
    """0 when done; 1 when ``revoke`` finds no such key; 2 on a refusal or without Redis."""
    settings = get_settings()
    try:
        chat_redis = open_chat_redis(settings)
    except PrivateRedisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with chat_redis:
        if not chat_redis.durable:
            print(
                "error: API keys need the Redis that `proofroom serve` uses: set REDIS_URL "
                "(a key kept in memory would be gone when this command exits)",
                file=sys.stderr,
            )
            return 2
        keys = ApiKeys(redis=chat_redis.client, key_prefix=settings.key_prefix)
        try:
            return _act(args, keys)
        except UserError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        except redis_lib.ConnectionError as exc:
            print(f"error: Redis ({chat_redis.where}) cannot be reached: {exc}", file=sys.stderr)
            return 2


def _act(args: argparse.Namespace, keys: ApiKeys) -> int:
    if args.action == "create":
        key, secret = keys.create(
            name=args.name,
            user=args.user,
            review_channel=args.review_channel,
            review_platform=args.platform,
        )
        print(created(key, secret, port=BotSettings().serve_port))
        return 0
    if args.action == "list":
        print(listing(keys.list()))
        return 0
    if keys.revoke(args.key):
        print(f"Revoked `{args.key}`: requests with it now get 401.")
        return 0
    print(
        f"error: no API key named or numbered `{args.key}` (see `proofroom api-key list`)",
        file=sys.stderr,
    )
    return 1


def created(key: ApiKey, secret: str, *, port: int) -> str:
    """What ``create`` prints: the key once, and how to use it."""
    review = (
        f"; its images go for review to {key.review_platform} channel {key.review_channel}"
        if key.review_channel
        else ""
    )
    base = f"http://localhost:{port}"
    return "\n".join(
        [
            f"Created API key `{key.name}` (id {key.id}) for user {key.user} "
            f"(quotas and ledger as {key.requested_by}){review}.",
            "",
            "The key, shown this once (Proofroom keeps only its hash; store it now):",
            "",
            f"    {secret}",
            "",
            "Use it as a Bearer token:",
            f"    curl -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\",
            f'         -d \'{{"prompt": "a red mug on a table"}}\' {base}/v1/jobs',
            "or as the password of HTTP Basic auth (A1111 clients: --api-auth api:<key>).",
            f"The API is described in docs/api.md and at {base}/v1/openapi.json.",
        ]
    )


def listing(keys: list[ApiKey]) -> str:
    """What ``list`` prints: one line per key, no secrets."""
    if not keys:
        return "No API keys (`proofroom api-key create --name NAME --user ID` makes one)."
    lines = [f"{'ID':<9} {'NAME':<20} {'USER':<24} {'CREATED':<17} REVIEW"]
    for key in keys:
        when = datetime.fromtimestamp(key.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        review = f"{key.review_platform} {key.review_channel}" if key.review_channel else "-"
        lines.append(f"{key.id:<9} {key.name:<20} {key.requested_by:<24} {when:<17} {review}")
    return "\n".join(lines)
