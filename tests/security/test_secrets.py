"""Secrets never show: a whole deployment runs with known secret values (Slack bot and app
tokens, signing secret, Discord token, a Redis password, the AWS secret key of an S3 store, the
webhook secret and a token in the webhook URL, an API key) and everything it shows is searched
for each of them.

The processes are the real commands, run as an operator runs them with ``-v`` (DEBUG logs,
the most a log can say): ``proofroom worker``, ``serve`` (Slack HTTP mode, the HTTP API,
webhook deliveries), ``doctor``, ``batch`` and ``api-key``. Around them only what is outside
is faked: the Slack and Discord Web APIs, the CMS, and S3 (moto's server). The session: a
``/imagine`` through Slack, rendered by the worker into S3 and approved with a reaction (the
webhook fires), the same bot in Socket Mode answering a command, API requests with the key and
with a wrong one, a CSV batch, then failures: a wrong Redis password (a batch, the doctor's
check) and the S3 store gone while a job renders.

Searched: every process's output, every call the Slack and Discord fakes received (what was
posted to chat, what the CMS received), and the ``repr``/``str`` of each settings object and of
a settings error.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis as redis_lib
from pydantic import ValidationError

from bot.adapters.discord.settings import DiscordSettings
from bot.adapters.slack.settings import SlackSettings
from bot.doctor.redis_check import redis_check
from bot.settings import BotSettings
from engine.redaction import redacted_url
from engine.settings import Settings
from tests.bot.adapters.discord.fake_discord import FakeDiscord
from tests.bot.adapters.slack.fake_slack import FakeSlack
from tests.bot.adapters.slack.fake_socket import FakeSocketMode
from tests.bot.adapters.slack.slack_requests import SlackSender, reaction, slash_envelope
from tests.bot.webhooks.receiver import Receiver
from tests.redis_server import free_port
from tests.s3_server import S3Server
from tests.security.leaks import (
    Captured,
    Proofroom,
    Secrets,
    clean_environment,
    redis_user,
    run_proofroom,
    with_login,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

CHANNEL = "CGENERAL"
JOB_TIMEOUT = 180  # a worker process loading the tiny model on two shared CPU cores
ACCESS_KEY_ID = "proofroom-security-test"  # an identifier: signed S3 URLs carry it by design


@pytest.fixture()
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture()
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(workdir=tmp_path).start()
    yield server
    server.stop()


@pytest.fixture()
def socket_mode() -> Iterator[FakeSocketMode]:
    server = FakeSocketMode().start()
    yield server
    server.stop()


@pytest.fixture()
def slack(secrets: Secrets, socket_mode: FakeSocketMode) -> Iterator[FakeSlack]:
    fake = FakeSlack(
        bot_token=secrets.slack_bot_token,
        app_token=secrets.slack_app_token,
        socket_url=socket_mode.url,
    )
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture()
def discord(secrets: Secrets) -> Iterator[FakeDiscord]:
    fake = FakeDiscord(token=secrets.discord_token).start()
    yield fake
    fake.stop()


@pytest.fixture()
def cms() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture()
def login(secrets: Secrets, redis: redis_lib.Redis, redis_url: str) -> Iterator[str]:
    """``REDIS_URL`` with a password: an ACL user of this test on the test server."""
    name = f"proofroom-security-{uuid.uuid4().hex[:8]}"
    with redis_user(redis, url=redis_url, password=secrets.redis_password, name=name) as url:
        yield url


def test_a_whole_session_shows_no_secret_anywhere(
    tmp_path: Path,
    settings: Settings,
    secrets: Secrets,
    login: str,
    s3: S3Server,
    slack: FakeSlack,
    socket_mode: FakeSocketMode,
    discord: FakeDiscord,
    cms: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    captured = Captured()
    bucket = f"proofroom-security-{uuid.uuid4().hex[:8]}"
    credentials = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": secrets.aws_secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client("s3", endpoint_url=s3.endpoint, **_boto(credentials)).create_bucket(Bucket=bucket)
    port = free_port()
    env = {
        **clean_environment(),
        **credentials,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": login,
        "PROOFROOM_KEY_PREFIX": settings.key_prefix,
        "PROOFROOM_DATA_DIR": str(settings.data_dir),
        "PROOFROOM_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "PROOFROOM_TEMPLATES_DIR": str(settings.templates_dir),
        "PROOFROOM_LORA_DIR": str(settings.lora_dir),
        "PROOFROOM_DEVICE": "cpu",
        "PROOFROOM_JOB_RETRIES": "0",
        "PROOFROOM_STORE": "s3",
        "PROOFROOM_S3_BUCKET": bucket,
        "PROOFROOM_S3_ENDPOINT_URL": s3.endpoint,
        "SLACK_BOT_TOKEN": secrets.slack_bot_token,
        "SLACK_APP_TOKEN": secrets.slack_app_token,
        "SLACK_SIGNING_SECRET": secrets.slack_signing_secret,
        "PROOFROOM_SLACK_API_URL": slack.api_url,
        "PROOFROOM_SLACK_SHARE_WAIT_S": "3",
        "PROOFROOM_SLACK_UPDATE_INTERVAL_S": "0",
        "DISCORD_TOKEN": secrets.discord_token,
        "PROOFROOM_DISCORD_API_URL": discord.api_base,
        "PROOFROOM_WEBHOOK_URL": f"{cms.url}?token={secrets.webhook_url_token}",
        "PROOFROOM_WEBHOOK_SECRET": secrets.webhook_secret,
        "PROOFROOM_WEBHOOK_BACKOFF_S": "0.2",
        "PROOFROOM_WEBHOOK_ATTEMPTS": "2",
        "PROOFROOM_EXPORT_DIR": str(tmp_path / "approved"),
        "PROOFROOM_SERVE_HOST": "127.0.0.1",
        "PROOFROOM_SERVE_PORT": str(port),
    }
    logs = tmp_path / "logs"
    logs.mkdir()

    def proofroom(name: str, *args: str, **more: str) -> tuple[int, str]:
        status, output = run_proofroom(
            "-v", *args, env={**env, **more}, log=logs / f"{name}.log", cwd=tmp_path
        )
        captured.add(f"`proofroom {' '.join(args)}` ({name})", output)
        return status, output

    rows = tmp_path / "rows.csv"
    rows.write_text("product\nleather handbag\n")
    batch = ("batch", str(rows), "--template", "product-photo", "--steps", "1")
    # A wrong Redis password: a batch run while the services start, and the doctor's check.
    wrong = login.replace(secrets.redis_password, secrets.wrong_redis_password)
    refused = Proofroom(
        "-v", *batch, "--out", str(tmp_path / "refused"), env={**env, "REDIS_URL": wrong},
        log=logs / "batch-wrong.log", cwd=tmp_path,
    )  # fmt: skip
    # A worker with it: told so at once, instead of waiting for an "outage" that never ends.
    refused_worker = Proofroom(
        "-v", "worker", env={**env, "REDIS_URL": wrong},
        log=logs / "worker-wrong.log", cwd=tmp_path,
    )  # fmt: skip
    check, _ = redis_check(settings.model_copy(update={"redis_url": wrong}))
    captured.add("the doctor's Redis check with a wrong password", check.line())
    assert check.status == "fail" and "invalid username-password pair" in check.detail, check
    worker = Proofroom(
        "-v", "worker", "--name", f"{settings.key_prefix}-w1", env=env,
        log=logs / "worker.log", cwd=tmp_path,
    )  # fmt: skip
    serve = Proofroom("-v", "serve", env=env, log=logs / "serve.log", cwd=tmp_path)
    # The same bot in Socket Mode (the app token), as a second consumer of the job events.
    socket_env = {**env, "PROOFROOM_EVENT_CONSUMER": "socket"}
    socket_bot = Proofroom("-v", "slack", env=socket_env, log=logs / "slack.log", cwd=tmp_path)
    try:
        refused.wait()
        said = refused.output
        captured.add("`proofroom batch` with a wrong Redis password", said)
        assert refused.proc.returncode == 2 and "Traceback" not in said, said
        assert "refused the login" in said and "check the user name and password" in said
        refused_worker.wait()
        said = refused_worker.output
        captured.add("`proofroom worker` with a wrong Redis password", said)
        assert refused_worker.proc.returncode == 2 and "Traceback" not in said, said
        assert "refused the login" in said and "check the user name and password" in said
        # While they start: the doctor, and an API key (printed once, by `create` alone).
        status, doctor_out = proofroom("doctor", "doctor")
        assert "Slack accepts" in doctor_out and "Discord accepts" in doctor_out, doctor_out
        status, created = run_proofroom(
            "api-key", "create", "--name", "cms", "--user", "cms-bot",
            env=env, log=logs / "api-key-create.log", cwd=tmp_path,
        )  # fmt: skip
        assert status == 0, created
        api_key = next(word for word in created.split() if word.startswith("pr_"))
        proofroom("api-key list", "api-key", "list")
        values = {**secrets.values(), "api_key": api_key}

        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(f"{base}/healthz")[0] == 200, timeout=60, what="proofroom serve")
        # Socket Mode: a command pushed over the app-token WebSocket, answered and acked.
        socket_mode.wait_connected(timeout=60)
        socket_mode.send(
            slash_envelope("E1", user="UALICE", text="help", response_url=slack.response_url)
        )
        wait_for(lambda: socket_mode.acks("E1"), what="the Socket Mode ack")
        wait_for(lambda: slack.calls_to("response"), what="the Socket Mode answer")
        sender = SlackSender(
            url=f"{base}/slack/events",
            signing_secret=secrets.slack_signing_secret,
            response_url=slack.response_url,
        )

        # /imagine on Slack: rendered by the worker into S3, approved, sent to the CMS.
        assert sender.command("a red fox --n 1 --steps 1 --seed 3", channel=CHANNEL).status == 200
        card = wait_for(lambda: slack.calls_to("chat.postMessage"), what="the job card")[0]
        thread = card.response["ts"]
        [image] = wait_for(
            lambda: slack.shared_files(thread=thread),
            timeout=JOB_TIMEOUT,
            what=f"the image\n{worker.output[-3000:]}\n{serve.output[-3000:]}",
        )
        vote = reaction(name="white_check_mark", user="UBOB", channel=CHANNEL, ts=image["ts"])
        assert sender.event(vote).status == 200
        wait_for(lambda: cms.requests, timeout=30, what="the webhook delivery")

        # The HTTP API: the key as a bearer token and as Basic auth's password; a wrong key.
        missing = f"{base}/v1/jobs/0123456789abcdef"
        assert _get(missing, headers={"Authorization": f"Bearer {api_key}"})[0] == 404
        basic = base64.b64encode(f"api:{api_key}".encode()).decode()
        assert _get(missing, headers={"Authorization": f"Basic {basic}"})[0] == 404
        status, said = _get(missing, headers={"Authorization": f"Bearer {api_key[:-4]}zzzz"})
        assert status == 401
        captured.add("an API answer", said)

        # A CSV batch on the same queue: it names where it queued, without the password.
        status, batch_out = proofroom("batch", *batch, "--out", str(tmp_path / "out"))
        assert status == 0, batch_out
        assert f"queued on {redacted_url(login)}" in batch_out, batch_out

        # The S3 store gone while a job renders: the thread says so, the logs say why.
        s3.stop()
        assert sender.command("a blue fox --n 1 --steps 1", channel=CHANNEL).status == 200
        wait_for(
            lambda: [c for c in slack.calls if "went wrong" in json.dumps(c.args)],
            timeout=JOB_TIMEOUT,
            what=f"the failure in chat\n{worker.output[-3000:]}",
        )
    finally:
        for process in (serve, socket_bot, worker, refused, refused_worker):
            process.stop()
        captured.add("`proofroom serve`", serve.output)
        captured.add("`proofroom worker`", worker.output)
        captured.add("`proofroom slack` (Socket Mode)", socket_bot.output)

    for call in slack.calls:  # what was posted to chat (the token it was sent with aside)
        captured.add(
            f"Slack call {call.method}", json.dumps([call.args, call.response], default=repr)
        )
    for call in discord.calls:
        captured.add(f"Discord call {call.method} {call.path}", f"{call.path} {call.json}")
    for request in cms.requests:
        captured.add("a webhook delivery", f"{dict(request.headers)} {request.body!r}")

    # Settings as these processes read them, and a settings error, shown every way.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for made in (Settings(), BotSettings(), SlackSettings(), DiscordSettings()):
        captured.add(f"repr({type(made).__name__})", repr(made))
        captured.add(f"str({type(made).__name__})", str(made))
    monkeypatch.setenv("PROOFROOM_WEBHOOK_SECRET", "")
    with pytest.raises(ValidationError) as refused:
        BotSettings()
    captured.add("a settings error", f"{refused.value} {refused.value!r}")

    assert captured.leaks(values) == []
    # The search sees what it is meant to: the key `create` printed, the redacted URL.
    assert api_key in created and "***" in redacted_url(login)


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
        "region_name": credentials["AWS_DEFAULT_REGION"],
    }


def _get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_the_settings_show_no_secret_in_their_repr_or_errors(secrets: Secrets) -> None:
    url = with_login("redis://cache:6379/0", user="bot", password=secrets.redis_password)
    shown = [
        Settings(_env_file=None, redis_url=url),  # type: ignore[call-arg]
        BotSettings(  # type: ignore[call-arg]
            _env_file=None,
            webhook_url=f"https://cms.example/hook?token={secrets.webhook_url_token}",
            webhook_secret=secrets.webhook_secret,
        ),
        SlackSettings(  # type: ignore[call-arg]
            _env_file=None,
            bot_token=secrets.slack_bot_token,
            app_token=secrets.slack_app_token,
            signing_secret=secrets.slack_signing_secret,
        ),
        DiscordSettings(_env_file=None, token=secrets.discord_token),  # type: ignore[call-arg]
    ]
    captured = Captured()
    for made in shown:
        captured.add(f"repr({type(made).__name__})", repr(made))
        captured.add(f"str({type(made).__name__})", str(made))
    # Errors beside the secrets: a bad value next to them, the webhook URL without its secret.
    for build in (
        lambda: Settings(_env_file=None, redis_url=url, job_timeout_s="soon"),  # type: ignore[call-arg]
        lambda: BotSettings(  # type: ignore[call-arg]
            _env_file=None, webhook_url=f"https://cms.example/?token={secrets.webhook_url_token}"
        ),
        lambda: SlackSettings(  # type: ignore[call-arg]
            _env_file=None, bot_token=secrets.slack_bot_token, rate_limit_retries="many"
        ),
        lambda: DiscordSettings(  # type: ignore[call-arg]
            _env_file=None, token=secrets.discord_token, call_timeout_s="long"
        ),
    ):
        with pytest.raises(ValidationError) as refused:
            build()
        captured.add("a settings error", f"{refused.value} {refused.value!r}")
    assert captured.leaks(secrets.values()) == []
    assert "redis_url='redis://bot:***@cache:6379/0'" in repr(shown[0])
    assert "token=***" in repr(shown[1])
