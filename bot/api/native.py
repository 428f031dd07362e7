"""The native API's routes (``/v1/...``, ``docs/api.md``), over ``bot.api.jobs``:

- ``POST /v1/jobs``: queue a job (``bot.api.requests``); 201 with its status.
- ``GET /v1/jobs/{id}``: its status; ``GET /v1/jobs/{id}/events``: the same as server-sent
  events, one per change, ending after the terminal one.
- ``POST /v1/jobs/{id}/cancel``.
- ``GET /v1/artifacts/{id}``: a PNG of the key's jobs.
- ``POST /v1/images/{id}/approve`` and ``.../reject``: a vote (``bot.api.votes``).
- ``GET /v1/openapi.json``: the OpenAPI document (``bot.api.openapi``), without a key.

Every answer but a PNG, an event stream and the document is JSON; errors are
``{"error": "<sentence>", "field": <name or null>}`` (:func:`guarded`). Blocking calls
(Redis, the store) run on Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any

import redis as redis_lib
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from bot import texts
from bot.api.auth import require_key
from bot.api.jobs import ApiJobs, JobNotFound
from bot.api.keys import ApiKey, ApiKeys
from bot.api.limits import ApiSettings, FieldError, read_json
from bot.api.openapi import openapi_document
from bot.api.requests import field_error, parse_body, to_request
from bot.api.status import ApiJobStatus
from bot.api.votes import ApiVote, ApiVotes, NotPostedYet, VoteRefused
from bot.jobs.routing import NoWorkerError
from bot.quotas.desk import QuotaExceeded
from bot.state import BotState
from engine.errors import UserError
from engine.outage import CONNECTION_ERRORS, Outage
from engine.store.base import is_id

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
REDIS_AWAY = "the job database (Redis) cannot be reached; try again in a minute"
EVENT_POLL_S = 0.25  # how often an event stream looks for a change
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}


def error(status: int, message: str, *, field: str | None = None, **extra: Any) -> JSONResponse:
    """An error answer: ``{"error": <sentence>, "field": ...}``."""
    return JSONResponse(
        {"error": texts.sentence(message), "field": field, **extra}, status_code=status
    )


def guarded(endpoint: Endpoint, *, outage: Outage | None = None) -> Endpoint:
    """``endpoint`` with the API's errors as answers: 401/413 (``HTTPException``), 404
    (:class:`JobNotFound`), 422 (a ``UserError``: the chat's sentence), 429 (quotas), 503
    (no worker for the model, Redis away), 500 with a reference into the log. ``outage``:
    where a Redis outage is logged, once when it starts and once when it ends."""

    @wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            response = await endpoint(request)
            if outage is not None:
                outage.recovered()
            return response
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read an answer
        except HTTPException as exc:
            response = error(exc.status_code, str(exc.detail))
            response.headers.update(exc.headers or {})
            return response
        except JobNotFound:
            return error(404, "there is no such job or image for this API key")
        except QuotaExceeded as exc:
            return error(429, exc.message, limit=exc.limit)
        except NoWorkerError as exc:
            return error(503, exc.message)
        except VoteRefused as exc:
            return error(403, exc.message)
        except NotPostedYet as exc:
            return error(409, exc.message)
        except FieldError as exc:
            return error(422, exc.message, field=exc.field)
        except UserError as exc:
            return error(422, exc.message)
        except ValidationError as exc:  # a spec the request made: still the request's fault
            problem = field_error(exc)
            return error(422, problem.message, field=problem.field)
        except CONNECTION_ERRORS as exc:
            if outage is not None:
                outage.failed(exc)
            return error(503, REDIS_AWAY)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception(
                "API request %s %s failed (%s)", request.method, request.url.path, reference
            )
            return error(500, f"something went wrong on our side (reference {reference})")

    return answer


def native_routes(*, jobs: ApiJobs, keys: ApiKeys, api_settings: ApiSettings) -> list[BaseRoute]:
    """The ``/v1`` routes over ``jobs`` for the callers that ``keys`` knows."""
    votes = ApiVotes(
        jobs=jobs,
        state=_bot_state(jobs),
        export_dir=jobs.bot_settings.export_path(jobs.settings),
    )
    document = openapi_document()
    outage = Outage(name="HTTP API", logger=log)

    def guard(endpoint: Endpoint) -> Endpoint:
        return guarded(endpoint, outage=outage)

    async def key_of(request: Request) -> ApiKey:
        return await run_in_threadpool(require_key, request, keys)

    @guard
    async def create(request: Request) -> Response:
        key = await key_of(request)
        data = await read_json(request, limit=api_settings.max_body_bytes)
        body = parse_body(data)
        made, images = to_request(
            body, catalog=jobs.catalog, max_image_bytes=jobs.bot_settings.upload_max_bytes
        )
        spec = await run_in_threadpool(lambda: jobs.submit(made, key=key, images=images))
        status = await run_in_threadpool(jobs.status, spec.id, key=key)
        return JSONResponse(
            status.model_dump(mode="json"),
            status_code=201,
            headers={"Location": f"/v1/jobs/{spec.id}"},
        )

    @guard
    async def show(request: Request) -> Response:
        key = await key_of(request)
        status = await run_in_threadpool(jobs.status, request.path_params["job_id"], key=key)
        return JSONResponse(status.model_dump(mode="json"))

    @guard
    async def events(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        first = await run_in_threadpool(jobs.status, job_id, key=key)  # 404 before streaming
        return StreamingResponse(
            _stream(jobs, job_id, key=key, first=first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @guard
    async def cancel(request: Request) -> Response:
        key = await key_of(request)
        job_id = request.path_params["job_id"]
        cancelled = await run_in_threadpool(jobs.cancel, job_id, key=key)
        status = await run_in_threadpool(jobs.status, job_id, key=key)
        return JSONResponse({"cancelled": cancelled, "job": status.model_dump(mode="json")})

    @guard
    async def artifact(request: Request) -> Response:
        key = await key_of(request)
        artifact_id = request.path_params["artifact_id"]
        if not is_id(artifact_id):
            raise JobNotFound(artifact_id)
        data = await run_in_threadpool(jobs.image_bytes, artifact_id, key=key)
        suffix = artifact_id[artifact_id.rfind(".") :]
        return Response(data, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"))

    def voting(vote: ApiVote) -> Endpoint:
        @guard
        async def endpoint(request: Request) -> Response:
            key = await key_of(request)
            image_id = request.path_params["image_id"]
            if not is_id(image_id):
                raise JobNotFound(image_id)
            result = await run_in_threadpool(votes.vote, image_id, key=key, vote=vote)
            return JSONResponse(result.model_dump(mode="json"))

        return endpoint

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/v1/jobs", create, methods=["POST"]),
        Route("/v1/jobs/{job_id}", show, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events", events, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/artifacts/{artifact_id}", artifact, methods=["GET"]),
        Route("/v1/images/{image_id}/approve", voting("approve"), methods=["POST"]),
        Route("/v1/images/{image_id}/reject", voting("reject"), methods=["POST"]),
    ]


async def _stream(
    jobs: ApiJobs, job_id: str, *, key: ApiKey, first: ApiJobStatus
) -> AsyncIterator[bytes]:
    """Server-sent events: ``event:`` :func:`event_name` with the job's status as ``data``,
    whenever it changes; the terminal one last. A Redis outage mid-stream ends it with ``event: error``."""
    status: ApiJobStatus | None = first
    seen: str | None = None
    number = 0
    quiet_s = 0.0
    while status is not None:
        shown = status.model_dump_json()
        if shown != seen:
            seen, quiet_s = shown, 0.0
            number += 1
            yield f"id: {number}\nevent: {event_name(status)}\ndata: {shown}\n\n".encode()
            if status.terminal:
                return
        elif quiet_s >= KEEPALIVE_S:
            quiet_s = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(EVENT_POLL_S)
        quiet_s += EVENT_POLL_S
        try:
            status = await run_in_threadpool(jobs.status, job_id, key=key)
        except (redis_lib.ConnectionError, redis_lib.TimeoutError, JobNotFound) as exc:
            message = REDIS_AWAY if not isinstance(exc, JobNotFound) else "the job expired"
            yield f"event: error\ndata: {json.dumps({'error': message})}\n\n".encode()
            return


def event_name(status: ApiJobStatus) -> str:
    """The SSE event of a status: the job event kinds, ``queued``, ``started``,
    ``progress``, ``done``, ``failed``, ``cancelled``."""
    if status.state == "running":
        return "progress" if status.step is not None else "started"
    return status.state


def _bot_state(jobs: ApiJobs) -> BotState:
    return BotState(redis=jobs.redis, key_prefix=jobs.settings.key_prefix, ttl_s=jobs.ttl_s)


__all__ = ["error", "guarded", "native_routes"]
