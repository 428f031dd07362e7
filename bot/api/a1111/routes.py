"""The AUTOMATIC1111-compatible routes (``/sdapi/v1/...``) over :class:`ApiJobs` and
:class:`ApiKeys`: each handler takes the key (``bot.api.auth``), reads the body, and hands
the mapping both ways to ``names``, ``request``, ``listing`` and ``response``; refusals are
answered in A1111's shape (``bot.api.a1111.errors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.api.a1111 import listing, response
from bot.api.a1111.errors import A1111Error, Handler, answers
from bot.api.a1111.names import model_name
from bot.api.a1111.request import (
    A1111Payload,
    Img2ImgPayload,
    Txt2ImgPayload,
    read_payload,
    to_request,
)
from bot.api.auth import require_key
from bot.api.jobs import ApiJobs, JobNotFound
from bot.api.keys import ApiKey, ApiKeys
from bot.api.limits import ApiSettings, read_json
from bot.api.status import ApiJobStatus
from engine.catalog import Catalog
from engine.metadata import read_parameters
from engine.spec import JobSpec

log = logging.getLogger(__name__)

# How often a waiting request looks at its job: soon at first (tiny jobs end in a second),
# then every half second.
FIRST_POLL_S = 0.05
MAX_POLL_S = 0.5


class A1111Api:
    """The routes' handlers over one process's :class:`ApiJobs`."""

    def __init__(
        self,
        *,
        jobs: ApiJobs,
        keys: ApiKeys,
        catalog: Catalog,
        api_settings: ApiSettings,
    ) -> None:
        self.jobs = jobs
        self.keys = keys
        self.catalog = catalog
        self.timeout_s = api_settings.wait_timeout_s
        self.max_body_bytes = api_settings.max_body_bytes

    def routes(self) -> list[BaseRoute]:
        """The ``/sdapi/v1`` routes."""
        table: list[tuple[str, Handler, str]] = [
            ("/sdapi/v1/txt2img", self.txt2img, "POST"),
            ("/sdapi/v1/img2img", self.img2img, "POST"),
            ("/sdapi/v1/sd-models", self.sd_models, "GET"),
            ("/sdapi/v1/loras", self.loras, "GET"),
            ("/sdapi/v1/samplers", self.samplers, "GET"),
            ("/sdapi/v1/schedulers", self.schedulers, "GET"),
            ("/sdapi/v1/scripts", self.scripts, "GET"),
            ("/sdapi/v1/options", self.get_options, "GET"),
            ("/sdapi/v1/options", self.set_options, "POST"),
            ("/sdapi/v1/progress", self.progress, "GET"),
            ("/sdapi/v1/interrupt", self.interrupt, "POST"),
        ]
        return [
            Route(path, answers(handler), methods=[method], name=f"a1111-{method}-{path}")
            for path, handler, method in table
        ]

    # -- images --------------------------------------------------------------------------

    async def txt2img(self, request: Request) -> Response:
        return await self._render(request, Txt2ImgPayload)

    async def img2img(self, request: Request) -> Response:
        return await self._render(request, Img2ImgPayload)

    async def _render(self, request: Request, model: type[A1111Payload]) -> Response:
        key = await self._key(request)
        payload = read_payload(model, await read_json(request, limit=self.max_body_bytes))
        await run_in_threadpool(self.jobs.reloads.refresh)  # names as another process reloaded
        default = await run_in_threadpool(self._default_model, key)
        mapped = to_request(
            payload,
            catalog=self.catalog,
            default_model=default,
            max_image_bytes=self.jobs.bot_settings.upload_max_bytes,
            max_input_pixels=self.jobs.settings.limits.max_input_pixels,
        )
        spec = await run_in_threadpool(
            lambda: self.jobs.submit(mapped.request, key=key, images=mapped.images)
        )
        status = await self._wait(spec.id, key)
        if status.state == "failed":
            raise A1111Error(500, status.message or f"job {spec.id} failed", error="JobFailed")
        if status.state == "cancelled":
            raise A1111Error(
                409, status.message or f"job {spec.id} was cancelled", error="JobCancelled"
            )
        if not status.terminal:
            raise A1111Error(
                504,
                f"job {spec.id} is still {status.state} after {self.timeout_s:g} s; it keeps "
                "running: GET /sdapi/v1/progress follows it and GET /v1/jobs/"
                f"{spec.id} returns its images when it is done",
                error="Timeout",
            )
        pngs = await run_in_threadpool(self._pngs, status, key)
        infotexts = [read_parameters(png) or "" for png in pngs]
        info = response.info_text(
            spec,
            seeds=[image.seed for image in status.images],
            infotexts=infotexts,
            batch_size=payload.batch_size or 1,
        )
        return JSONResponse(
            {
                "images": [response.encode_image(png) for png in pngs]
                if payload.send_images
                else [],
                "parameters": response.echoed_parameters(payload),
                "info": info,
            }
        )

    async def _wait(self, job_id: str, key: ApiKey) -> ApiJobStatus:
        """The job's status once it has ended, or at the timeout. Polled from the event loop
        (each look on a pool thread) rather than with ``ApiJobs.wait`` on a thread: a request
        may wait minutes, and waiting requests must not use up Starlette's thread pool."""
        deadline = time.monotonic() + self.timeout_s
        pause = FIRST_POLL_S
        while True:
            status = await run_in_threadpool(lambda: self.jobs.status(job_id, key=key))
            left = deadline - time.monotonic()
            if status.terminal or left <= 0:
                return status
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 1.5, MAX_POLL_S)

    def _pngs(self, status: ApiJobStatus, key: ApiKey) -> list[bytes]:
        return [self.jobs.image_bytes(image.id, key=key) for image in status.images]

    # -- the catalog ---------------------------------------------------------------------

    async def sd_models(self, request: Request) -> Response:
        await self._key(request)
        await run_in_threadpool(self.jobs.reloads.refresh)
        return JSONResponse(listing.sd_models(self.catalog))

    async def loras(self, request: Request) -> Response:
        await self._key(request)
        await run_in_threadpool(self.jobs.reloads.refresh)
        return JSONResponse(listing.loras(self.catalog))

    async def samplers(self, request: Request) -> Response:
        await self._key(request)
        return JSONResponse(listing.samplers())

    async def schedulers(self, request: Request) -> Response:
        await self._key(request)
        return JSONResponse(listing.schedulers())

    async def scripts(self, request: Request) -> Response:
        await self._key(request)
        return JSONResponse({"txt2img": [], "img2img": []})

    # -- per key: options, progress, interrupt -------------------------------------------

    async def get_options(self, request: Request) -> Response:
        key = await self._key(request)
        model = await run_in_threadpool(self._default_model, key)
        return JSONResponse(listing.options(model=model))

    async def set_options(self, request: Request) -> Response:
        """Only ``sd_model_checkpoint`` means something here (this key's default model);
        A1111's other options are accepted and ignored. Answers ``null`` as A1111 does."""
        key = await self._key(request)
        body = await read_json(request, limit=self.max_body_bytes)
        if not isinstance(body, dict):
            raise A1111Error(422, "the options must be a JSON object", error="ValidationError")
        checkpoint = body.get("sd_model_checkpoint")
        if checkpoint is not None:
            model = model_name(self.catalog, str(checkpoint))
            await run_in_threadpool(self.keys.set_default_model, key, model)
            log.info("API key %s (%s): default model %s", key.name, key.id, model)
        return JSONResponse(None)

    async def progress(self, request: Request) -> Response:
        key = await self._key(request)
        return JSONResponse(await run_in_threadpool(self._progress, key))

    async def interrupt(self, request: Request) -> Response:
        """Cancel the key's latest job (A1111 interrupts the one it is rendering)."""
        key = await self._key(request)
        job_id = await run_in_threadpool(self.keys.latest_job, key)
        if job_id is not None:
            with contextlib.suppress(JobNotFound):  # expired: nothing to interrupt
                await run_in_threadpool(lambda: self.jobs.cancel(job_id, key=key))
        return JSONResponse({})

    def _progress(self, key: ApiKey) -> dict[str, Any]:
        """A1111's ``ProgressResponse`` of the key's latest job: idle (progress 0, job_count
        0) once it has ended, as A1111 reports an idle server."""
        job_id = self.keys.latest_job(key)
        if job_id is None:
            return _idle(None)
        try:
            status = self.jobs.status(job_id, key=key)
            spec = self.jobs.spec(job_id, key=key)
        except JobNotFound:
            return _idle(None)
        if status.terminal:
            return _idle(spec, text=status.state)
        step, total = status.step or 0, status.total or spec.steps * spec.count
        fraction = min(step / total, 1.0) if status.state == "running" and total else 0.0
        elapsed = max(time.time() - spec.created_at, 0.0)
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        if status.state == "running":
            text = f"step {step} of {total}"
        else:
            text = "queued" + (f", position {status.position}" if status.position else "")
        return {
            "progress": fraction,
            "eta_relative": eta,
            "state": _state(spec, job_count=1, step=step, steps=total),
            "current_image": None,
            "textinfo": text,
        }

    # -- helpers -------------------------------------------------------------------------

    async def _key(self, request: Request) -> ApiKey:
        return await run_in_threadpool(require_key, request, self.keys)

    def _default_model(self, key: ApiKey) -> str:
        """The key's default model (``POST /sdapi/v1/options``), else the service's."""
        return self.keys.default_model(key) or self.jobs.resolver.default_model


def _idle(spec: JobSpec | None, *, text: str | None = None) -> dict[str, Any]:
    return {
        "progress": 0.0,
        "eta_relative": 0.0,
        "state": _state(spec, job_count=0, step=0, steps=0),
        "current_image": None,
        "textinfo": text,
    }


def _state(spec: JobSpec | None, *, job_count: int, step: int, steps: int) -> dict[str, Any]:
    """A1111's ``shared.state.dict()``; ``job`` is the job id (A1111: the task's name)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(spec.created_at)) if spec else "0"
    return {
        "skipped": False,
        "interrupted": False,
        "job": spec.id if spec else "",
        "job_count": job_count,
        "job_timestamp": stamp,
        "job_no": 0,
        "sampling_step": step,
        "sampling_steps": steps,
    }


def a1111_routes(
    *,
    jobs: ApiJobs,
    keys: ApiKeys,
    catalog: Catalog | None = None,
    api_settings: ApiSettings | None = None,
) -> list[BaseRoute]:
    """The A1111-compatible routes over ``jobs`` (its catalog unless ``catalog`` is given);
    ``api_settings``: the wait timeout and body limit (default: from the environment)."""
    api = A1111Api(
        jobs=jobs,
        keys=keys,
        catalog=catalog if catalog is not None else jobs.catalog,
        api_settings=api_settings or ApiSettings(),
    )
    return api.routes()


__all__ = ["A1111Api", "a1111_routes"]
