"""``proofroom serve`` serves the API: the command as deployed, in a process of its own."""

from __future__ import annotations

from collections.abc import Callable

from bot.api.keys import ApiKeys
from tests.bot.api.conftest import Api
from tests.bot.serve.conftest import ServeProcess, run_serve  # noqa: F401


def test_proofroom_serve_serves_the_api(
    run_serve: Callable[..., ServeProcess],  # noqa: F811
    keys: ApiKeys,
) -> None:
    _, secret = keys.create(name="cms", user="U1")
    served = run_serve()
    api = Api(str(served.url), secret)
    assert api.get("/v1/jobs/abc", secret=None).status == 401
    assert api.get("/v1/openapi.json", secret=None).status == 200
    created = api.post("/v1/jobs", {"prompt": "a red mug", "n": 2})
    assert created.status == 201, created.body
    status = api.get(f"/v1/jobs/{created.json()['id']}").json()
    assert (status["state"], status["count"]) == ("queued", 2)  # no worker in this test
    assert served.terminate() == 0
