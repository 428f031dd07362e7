"""The A1111-compatible routes over a real HTTP server on 127.0.0.1 (``proofroom serve``'s
service in a thread), the real queue, store and event stream, and the embedded worker
rendering ``tiny``: images whose ``info`` seeds render them again, the catalog's lists,
progress that moves, options per key, A1111's error shape, and a job that outlives the
wait."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import webuiapi
from PIL import Image

from bot.api.keys import ApiKeys
from bot.api.limits import ApiSettings
from engine.merging import BATCH_TOLERANCE
from engine.metadata import parse_parameters, read_parameters
from engine.spec import SAMPLERS
from tests.bot.api.conftest import Api, basic
from tests.waiting import wait_for

TERMINAL = ("done", "failed", "cancelled")

pytestmark = pytest.mark.slow


@dataclass
class Served:
    """The API served with a worker rendering ``tiny``, called by two keys."""

    cms: Api
    shop: Api


@pytest.fixture()
def unrendered(serve_api: Callable[..., Api], keys: ApiKeys) -> Served:
    """The API without a worker: for what is answered before anything renders."""
    cms = serve_api(secret=keys.create(name="cms", user="cms-bot")[1])
    return Served(cms, cms.with_key(keys.create(name="shop", user="shop-bot")[1]))


@pytest.fixture()
def served(unrendered: Served, worker: None) -> Served:
    """The API with the embedded worker rendering ``tiny``."""
    return unrendered


def _pixels(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def _png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _apart(a: str, b: str) -> int:
    return int(np.abs(_pixels(a) - _pixels(b)).max())


TXT2IMG = {
    "prompt": "a red mug on a desk <lora:tiny-style:0.5>",
    "negative_prompt": "text, watermark",
    "seed": -1,
    "batch_size": 2,
    "n_iter": 1,
    "steps": 3,
    "cfg_scale": 6,
    "width": 64,
    "height": 64,
    "sampler_name": "DPM++ 2M",
    "scheduler": "Karras",
    "override_settings": {"sd_model_checkpoint": "tiny [0123456789]"},
    "restore_faces": False,  # an A1111 field Proofroom ignores
}


def test_txt2img_images_render_again_from_the_seeds_in_info(served: Served) -> None:
    answer = served.cms.post("/sdapi/v1/txt2img", TXT2IMG)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert isinstance(result["info"], str)  # a JSON string, as A1111 sends it
    info = json.loads(result["info"])
    first = info["seed"]
    assert info["all_seeds"] == [first, first + 1]
    assert len(result["images"]) == 2
    assert result["parameters"]["prompt"] == TXT2IMG["prompt"]
    assert (info["sampler_name"], info["steps"], info["cfg_scale"]) == ("DPM++ 2M Karras", 3, 6)
    assert (info["width"], info["height"], info["sd_model_name"]) == (64, 64, "tiny")
    assert info["negative_prompt"] == "text, watermark"
    assert info["extra_generation_params"] == {"Lora": "tiny-style:0.5"}
    # The infotexts are the PNGs' own parameters chunks.
    for b64, text, seed in zip(result["images"], info["infotexts"], info["all_seeds"], strict=True):
        assert read_parameters(base64.b64decode(b64)) == text
        assert parse_parameters(text)["Seed"] == str(seed)
        assert "<lora:" not in parse_parameters(text)["Prompt"]

    # Image 1 again, alone, from the seed info gives it.
    again = served.cms.post(
        "/sdapi/v1/txt2img",
        {**TXT2IMG, "seed": info["all_seeds"][1], "batch_size": 1},
    )
    assert again.status == 200, again.body
    assert json.loads(again.json()["info"])["all_seeds"] == [first + 1]
    assert _apart(again.json()["images"][0], result["images"][1]) <= BATCH_TOLERANCE


def test_img2img_and_inpainting_render_again_from_their_seeds(served: Served) -> None:
    start = Image.new("RGB", (64, 64), (30, 90, 200))
    start.paste((240, 200, 20), (16, 16, 48, 48))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {
        "prompt": "a yellow square",
        "init_images": ["data:image/png;base64," + _png_b64(start)],
        "denoising_strength": 0.6,
        "seed": 1234,
        "steps": 4,
        "width": 64,
        "height": 64,
        "sampler_name": "Euler a",
        "mask_blur": 4,
        "inpainting_fill": 1,  # accepted, ignored
    }
    for extra in ({}, {"mask": _png_b64(mask)}):
        first = served.cms.post("/sdapi/v1/img2img", {**body, **extra})
        assert first.status == 200, first.body
        info = json.loads(first.json()["info"])
        assert info["all_seeds"] == [1234]
        assert first.json()["parameters"]["init_images"] is None  # not echoed back
        fields = parse_parameters(info["infotexts"][0])
        assert fields["Denoising strength"] == "0.6"
        assert ("Mask blur" in fields) == bool(extra)
        again = served.cms.post(
            "/sdapi/v1/img2img",
            {**body, **extra, "seed": info["seed"]},
        )
        assert again.status == 200, again.body
        assert _apart(again.json()["images"][0], first.json()["images"][0]) <= BATCH_TOLERANCE


def test_models_loras_and_samplers_list_the_catalog(unrendered: Served) -> None:
    models = unrendered.cms.get("/sdapi/v1/sd-models").json()
    assert {"tiny", "tiny-xl"} <= {m["title"] for m in models}
    assert all(
        set(m) == {"title", "model_name", "hash", "sha256", "filename", "config"} for m in models
    )
    loras = unrendered.cms.get("/sdapi/v1/loras").json()
    tiny_style = next(lora for lora in loras if lora["name"] == "tiny-style")
    assert tiny_style["metadata"]["families"] == ["sd15"]
    samplers = unrendered.cms.get("/sdapi/v1/samplers").json()
    assert [s["name"] for s in samplers] == list(SAMPLERS)
    # Every title listed is accepted back as sd_model_checkpoint.
    for model in models:
        answer = unrendered.shop.post(
            "/sdapi/v1/options",
            {"sd_model_checkpoint": model["title"]},
        )
        assert answer.status == 200, answer.body


def test_progress_moves_during_a_job_and_is_idle_after_it(served: Served) -> None:
    idle = served.cms.get("/sdapi/v1/progress").json()
    assert (idle["progress"], idle["state"]["job_count"]) == (0, 0)
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            seen.append(served.cms.get("/sdapi/v1/progress").json())
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        body = {"prompt": "a lighthouse", "steps": 30, "batch_size": 2, "width": 64, "height": 64}
        answer = served.cms.post("/sdapi/v1/txt2img", body, timeout=120)
    finally:
        done.set()
        poller.join(10)
    assert answer.status == 200, answer.body
    running = [p["progress"] for p in seen if p["state"]["job_count"] == 1 and p["progress"] > 0]
    assert len(set(running)) >= 2, seen  # it moved while the job ran
    assert all(0 < p <= 1 for p in running)
    assert running == sorted(running)
    assert any(p["state"]["sampling_steps"] > 0 for p in seen)
    job_id = json.loads(answer.json()["info"])["job_id"]
    assert {p["state"]["job"] for p in seen if p["state"]["job_count"] == 1} == {job_id}
    after = served.cms.get("/sdapi/v1/progress").json()
    assert (after["progress"], after["state"]["job_count"], after["textinfo"]) == (0, 0, "done")
    # Progress is the key's own: the other key has no job.
    other = served.shop.get("/sdapi/v1/progress").json()
    assert other["state"]["job"] == ""


def test_without_a_valid_key_every_route_answers_401(unrendered: Served) -> None:
    for method, path, body in [
        ("GET", "/sdapi/v1/sd-models", None),
        ("GET", "/sdapi/v1/progress", None),
        ("POST", "/sdapi/v1/txt2img", {"prompt": "a mug"}),
        ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "tiny"}),
    ]:
        for key in (None, "pr_not-a-key"):
            answer = unrendered.cms.call(method, path, body=body, secret=key)
            assert answer.status == 401, (path, answer.body)
            assert set(answer.json()) == {"error", "detail", "body", "errors"}
            assert "Basic" in answer.headers["www-authenticate"]
    # HTTP Basic with the key as the password, as A1111 clients send --api-auth.
    basic_auth = {"Authorization": basic(unrendered.cms.secret or "", user="cms")}
    answer = unrendered.cms.call("GET", "/sdapi/v1/samplers", secret=None, headers=basic_auth)
    assert answer.status == 200


def test_options_set_the_model_of_that_key_only(unrendered: Served) -> None:

    def checkpoint(api: Api) -> str:
        return str(api.get("/sdapi/v1/options").json()["sd_model_checkpoint"])

    assert checkpoint(unrendered.cms) == checkpoint(unrendered.shop) == "tiny"
    answer = unrendered.cms.post("/sdapi/v1/options", {"sd_model_checkpoint": "tiny-xl"})
    assert (answer.status, answer.json()) == (200, None)
    assert (checkpoint(unrendered.cms), checkpoint(unrendered.shop)) == ("tiny-xl", "tiny")
    # The key's requests now use it: an sd15 LoRA does not fit this sdxl model.
    refused = unrendered.cms.post("/sdapi/v1/txt2img", {"prompt": "a mug <lora:tiny-style:1>"})
    assert refused.status == 422
    assert "cannot be used with a sdxl model" in refused.json()["detail"]
    unknown = unrendered.cms.post("/sdapi/v1/options", {"sd_model_checkpoint": "tiny-x"})
    assert unknown.status == 422
    assert "unknown model `tiny-x`; did you mean" in unknown.json()["detail"]


def test_bad_fields_are_422_sentences_in_a1111s_shape(unrendered: Served) -> None:
    cases = [
        ({"prompt": "a mug", "sampler_name": "DPM2 a"}, "sampler `DPM2 a` is not available"),
        ({"prompt": "a mug", "steps": "many"}, "steps: Input should be a valid integer"),
        ({"prompt": "a mug", "width": 100, "height": 64}, "width must be a multiple of 8"),
        ({"prompt": "<lora:nope:1>"}, "unknown LoRA `nope`"),
        ({"prompt": "a mug", "enable_hr": True}, "hires fix"),
    ]
    for body, sentence in cases:
        answer = unrendered.cms.post("/sdapi/v1/txt2img", body)
        assert answer.status == 422, (body, answer.body)
        error = answer.json()
        assert set(error) == {"error", "detail", "body", "errors"}
        assert sentence in error["detail"], error


def test_a_job_past_the_wait_is_504_and_keeps_running_until_interrupted(
    serve_api: Callable[..., Api], keys: ApiKeys, worker: None
) -> None:
    api = serve_api(
        api=ApiSettings(wait_timeout_s=0.3), secret=keys.create(name="cms", user="cms-bot")[1]
    )
    body = {"prompt": "a slow lighthouse", "steps": 60, "batch_size": 8, "width": 64, "height": 64}
    answer = api.post("/sdapi/v1/txt2img", body)
    assert answer.status == 504
    assert set(answer.json()) == {"error", "detail", "body", "errors"}
    assert "keeps running" in answer.json()["detail"]
    progress = api.get("/sdapi/v1/progress").json()
    assert progress["state"]["job_count"] == 1
    job_id = progress["state"]["job"]
    assert api.get(f"/v1/jobs/{job_id}").json()["state"] in ("queued", "running")
    assert api.post("/sdapi/v1/interrupt").json() == {}
    ended = wait_for(
        lambda: (state := api.get(f"/v1/jobs/{job_id}").json()["state"]) in TERMINAL and state,
        timeout=60,
        what="the interrupted job to end",
    )
    assert ended == "cancelled"


def test_the_webuiapi_client_library_works_unchanged(served: Served) -> None:
    """``webuiapi`` (mix1009/sdwebuiapi), the common A1111 client, with the key as the
    password of its HTTP Basic auth."""
    host, port = served.cms.url.removeprefix("http://").split(":")
    client = webuiapi.WebUIApi(
        host=host, port=int(port), username="cms", password=served.cms.secret, steps=3
    )
    assert "tiny" in client.util_get_model_names()
    assert "Euler a" in client.util_get_sampler_names()
    client.util_set_model("tiny")
    assert client.util_get_current_model() == "tiny"
    made = client.txt2img(prompt="a teapot", seed=11, width=64, height=64, batch_size=2)
    assert made.info["all_seeds"] == [11, 12]
    assert [image.size for image in made.images] == [(64, 64), (64, 64)]
    assert made.images[0].info["parameters"] == made.info["infotexts"][0]
    edited = client.img2img(
        images=[made.image], prompt="a teapot", seed=11, width=64, height=64, denoising_strength=0.5
    )
    assert edited.info["all_seeds"] == [11]
    assert "Denoising strength: 0.5" in edited.info["infotexts"][0]
