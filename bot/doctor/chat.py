"""The chat tokens: present, and accepted by Slack (``auth.test``, and for Socket Mode
``apps.connections.open``) and Discord (``GET /users/@me``, the call discord.py's login makes).
A platform without its token is skipped: a team may run only one of them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from bot.doctor.report import Check

DISCORD_DOCS = "copy the bot token again from the developer portal (docs/discord.md)"


def slack_check() -> Check:
    """Slack's tokens; skipped when ``SLACK_BOT_TOKEN`` is not set."""
    try:
        from bot.adapters.slack.cli import connection_problem  # noqa: PLC0415
        from bot.adapters.slack.settings import SlackSettings  # noqa: PLC0415
    except ImportError:  # an image without the slack extra
        return Check("slack", "skip", "the Slack SDK is not installed here (extra `slack`)")
    settings = SlackSettings()
    if settings.bot_token is None:
        return Check("slack", "skip", "SLACK_BOT_TOKEN is not set (needed by `proofroom slack`)")
    socket_mode = settings.app_token is not None
    if not socket_mode and settings.signing_secret is None:
        return Check(
            "slack",
            "fail",
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
            "SLACK_SIGNING_SECRET (HTTP mode) is",
            fix="set one of them from the app's settings page (docs/slack.md)",
        )
    problem = connection_problem(settings, socket_mode=socket_mode)
    if problem is not None:
        return Check("slack", "fail", problem, fix="see docs/slack.md")
    mode = "Socket Mode (SLACK_APP_TOKEN)" if socket_mode else "HTTP mode (SLACK_SIGNING_SECRET)"
    return Check("slack", "ok", f"Slack accepts SLACK_BOT_TOKEN; {mode}")


def discord_check() -> Check:
    """Discord's bot token; skipped when ``DISCORD_TOKEN`` is not set."""
    from bot.adapters.discord.settings import DiscordSettings  # noqa: PLC0415

    settings = DiscordSettings()
    if settings.token is None:
        return Check("discord", "skip", "DISCORD_TOKEN is not set (needed by `proofroom discord`)")
    request = urllib.request.Request(
        settings.api_url.rstrip("/") + "/users/@me",
        headers={
            "Authorization": f"Bot {settings.token.get_secret_value()}",
            "User-Agent": "DiscordBot (https://github.com/proofroom, 0.1) proofroom-doctor",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            user = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return Check("discord", "fail", "Discord refused DISCORD_TOKEN (401)", DISCORD_DOCS)
        return Check(
            "discord",
            "fail",
            f"Discord answered HTTP {exc.code} to the login check",
            fix="try again later; check PROOFROOM_DISCORD_API_URL if it is set",
        )
    except (OSError, ValueError) as exc:  # URLError, timeouts, a body that is not JSON
        reason = getattr(exc, "reason", exc)
        return Check(
            "discord",
            "fail",
            f"cannot reach Discord at {settings.api_url} ({reason})",
            fix="check the network or proxy, and PROOFROOM_DISCORD_API_URL if it is set",
        )
    name = user.get("username", "?") if isinstance(user, dict) else "?"
    return Check("discord", "ok", f"Discord accepts DISCORD_TOKEN (bot user {name})")
