"""The native API's job routes on a real HTTP server, the real queue and an embedded worker
rendering ``tiny``: create, poll, stream progress, fetch the images, cancel."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
import redis as redis_lib
from PIL import Image

from bot.api.keys import ApiKeys
from engine.metadata import read_parameters
from engine.queue import JobQueue
from engine.settings import Settings
from tests.bot.api.conftest import Api
from tests.waiting import wait_for


def finished(api: Api, job_id: str, *, timeout: float = 120) -> dict[str, Any]:
    """The job's status once it has ended, polled as a client would."""

    def ended() -> dict[str, Any]:
        answer = api.get(f"/v1/jobs/{job_id}")
        assert answer.status == 200, answer.body
        status = answer.json()
        return status if status["state"] in ("done", "failed", "cancelled") else {}

    return wait_for(ended, timeout=timeout, what=f"job {job_id} to end")


@pytest.mark.usefixtures("worker")
def test_create_poll_and_fetch_the_images(api: Api) -> None:
    answer = api.post(
        "/v1/jobs",
        {"prompt": "a red mug on a table", "n": 2, "seed": 41, "steps": 2, "sampler": "euler a"},
    )
    assert answer.status == 201, answer.body
    created = answer.json()
    assert answer.headers["location"] == f"/v1/jobs/{created['id']}"
    assert created["state"] in ("queued", "running")
    assert (created["model"], created["seed"], created["count"]) == ("tiny", 41, 2)

    status = finished(api, created["id"])
    assert status["state"] == "done", status
    assert status["step"] == status["total"] and status["total"]
    assert [(i["index"], i["seed"]) for i in status["images"]] == [(0, 41), (1, 42)]
    for image in status["images"]:
        assert image["url"] == f"/v1/artifacts/{image['id']}"
        png = api.get(image["url"])
        assert png.status == 200
        assert png.headers["content-type"] == "image/png"
        assert (
            Image.open(io.BytesIO(png.body)).size == (image["width"], image["height"]) == (64, 64)
        )
        assert "Seed: " + str(image["seed"]) in (read_parameters(png.body) or "")


@pytest.mark.usefixtures("worker")
def test_events_stream_progress_and_end_after_the_terminal_event(api: Api) -> None:
    created = api.post("/v1/jobs", {"prompt": "a lighthouse", "n": 2, "steps": 12}).json()
    events = api.events(created["id"])
    names = [name for name, _ in events]
    assert names[-1] == "done", names
    assert names.count("done") == 1
    progress = [data for name, data in events if name == "progress"]
    assert any(0 < p["step"] < p["total"] for p in progress), events
    steps = [p["step"] for p in progress]
    assert steps == sorted(steps)
    assert events[-1][1]["state"] == "done"
    assert len(events[-1][1]["images"]) == 2


@pytest.mark.usefixtures("worker")
def test_cancel_a_running_job(api: Api) -> None:
    created = api.post("/v1/jobs", {"prompt": "a slow one", "n": 8, "steps": 60}).json()
    wait_for(
        lambda: api.get(f"/v1/jobs/{created['id']}").json()["state"] == "running",
        timeout=60,
        what="the job to start",
    )
    answer = api.post(f"/v1/jobs/{created['id']}/cancel")
    assert answer.status == 200, answer.body
    assert answer.json()["cancelled"] is True
    status = finished(api, created["id"])
    assert status["state"] == "cancelled"
    assert status["images"] == []
    again = api.post(f"/v1/jobs/{created['id']}/cancel").json()
    assert again["cancelled"] is False  # it has ended


def test_cancel_a_queued_job(api: Api) -> None:
    created = api.post("/v1/jobs", {"prompt": "a red mug"}).json()  # no worker: it waits
    assert created["state"] == "queued" and created["position"] == 1
    answer = api.post(f"/v1/jobs/{created['id']}/cancel").json()
    assert answer["cancelled"] is True
    assert answer["job"]["state"] == "cancelled"
    assert answer["job"]["message"] == "cancelled before it started"
    events = api.events(created["id"])
    assert [name for name, _ in events] == ["cancelled"]


def test_a_key_sees_only_its_own_jobs(api: Api, keys: ApiKeys) -> None:
    created = api.post("/v1/jobs", {"prompt": "a red mug"}).json()
    _, other_secret = keys.create(name="catalog", user="U2")
    other = api.with_key(other_secret)
    job = created["id"]
    for method, path in (
        ("GET", f"/v1/jobs/{job}"),
        ("GET", f"/v1/jobs/{job}/events"),
        ("POST", f"/v1/jobs/{job}/cancel"),
        ("GET", "/v1/jobs/nosuchjob"),
    ):
        answer = other.call(method, path)
        assert answer.status == 404, (method, path, answer.body)
        assert answer.json()["error"] == "There is no such job or image for this API key"
    assert api.get(f"/v1/jobs/{job}").json()["state"] == "queued"  # not cancelled by the other


@pytest.mark.usefixtures("worker")
def test_img2img_from_a_base64_image(api: Api, redis: redis_lib.Redis, settings: Settings) -> None:
    start = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 30, 30)).save(start, format="PNG")
    encoded = "data:image/png;base64," + base64.b64encode(start.getvalue()).decode()
    answer = api.post(
        "/v1/jobs", {"prompt": "a red square", "init_image": encoded, "strength": 0.4, "seed": 9}
    )
    assert answer.status == 201, answer.body
    job_id = answer.json()["id"]
    spec = JobQueue(redis=redis, settings=settings).spec(job_id)
    assert spec is not None and spec.mode.value == "img2img" and spec.strength == 0.4
    assert spec.init_image is not None
    assert finished(api, job_id)["state"] == "done"
    # What the key sent is one of its job's artifacts too.
    assert api.get(f"/v1/artifacts/{spec.init_image}").body == start.getvalue()
