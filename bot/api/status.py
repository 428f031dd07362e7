"""Where an API job is, as the API shows it (:class:`ApiJobStatus`, :class:`ApiImage`), and
the job's record in ``bot.api.state`` both ways: :func:`event_fields` folds a job event into
the record's fields, :func:`job_status` reads them back. Pure: the caller reads and writes
the record.
"""

from __future__ import annotations

from typing import Literal, cast

from pydantic import BaseModel, Field

from engine.events import TERMINAL_KINDS, JobEvent
from engine.spec import JobResult, JobSpec

ApiJobState = Literal["queued", "running", "done", "failed", "cancelled"]
STATE_OF_EVENT: dict[str, ApiJobState] = {
    "queued": "queued",
    "started": "running",
    "progress": "running",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


class ApiImage(BaseModel):
    """One image of a finished job. ``id`` is its artifact id: the image's id for
    ``/v1/artifacts/{id}`` and ``/v1/images/{id}/approve``."""

    id: str
    index: int
    seed: int
    width: int
    height: int
    url: str = Field(description="path of the PNG on this service")


class ApiJobStatus(BaseModel):
    """Where a job is. ``step``/``total``: sampling progress while running (``total``
    counts the steps of all of the job's images); ``position``: place in line (1 = next)
    while queued; ``message``: why it failed or was cancelled."""

    id: str
    state: ApiJobState
    position: int | None = None
    step: int | None = None
    total: int | None = None
    message: str = ""
    error_kind: str | None = None
    model: str
    seed: int
    count: int
    width: int
    height: int
    images: list[ApiImage] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (done, failed or cancelled)."""
        return self.state in TERMINAL_KINDS


def stored_state(fields: dict[str, str]) -> ApiJobState:
    """The state a job's record holds (``queued`` before any event)."""
    return cast(ApiJobState, fields.get("state", "queued"))


def event_fields(event: JobEvent) -> dict[str, str]:
    """The fields of a job's record that ``event`` sets: its state, and its position,
    progress, message or result where the event carries one."""
    fields: dict[str, str] = {"state": STATE_OF_EVENT[event.kind]}
    if event.kind == "queued" and event.position is not None:
        fields["position"] = str(event.position)
    if event.kind == "progress" and event.step is not None and event.total is not None:
        fields |= {"step": str(event.step), "total": str(event.total)}
    if event.terminal:
        fields |= {"message": event.message, "error_kind": event.error_kind or ""}
    if event.result is not None:
        fields["result"] = event.result.model_dump_json()
    return fields


def job_status(
    job_id: str, fields: dict[str, str], *, state: ApiJobState, position: int | None
) -> ApiJobStatus:
    """The status of job ``job_id`` from its record's ``fields``; ``state`` and ``position``
    as the caller found them (the record's state may lag behind the job's end)."""
    spec = JobSpec.model_validate_json(fields["spec"])
    result = JobResult.model_validate_json(fields["result"]) if fields.get("result") else None
    step = _int(fields.get("step"))
    total = _int(fields.get("total"))
    if state == "done" and total is not None:
        step = total
    images = [
        ApiImage(
            id=image.artifact_id,
            index=image.index,
            seed=image.seed,
            width=image.width,
            height=image.height,
            url=f"/v1/artifacts/{image.artifact_id}",
        )
        for image in sorted(result.images if result else [], key=lambda i: i.index)
    ]
    return ApiJobStatus(
        id=job_id,
        state=state,
        position=position,
        step=step,
        total=total,
        message=fields.get("message", ""),
        error_kind=fields.get("error_kind") or None,
        model=spec.model,
        seed=spec.seed,
        count=spec.count,
        width=spec.width,
        height=spec.height,
        images=images,
    )


def _int(value: str | None) -> int | None:
    return int(value) if value else None


__all__ = [
    "STATE_OF_EVENT",
    "ApiImage",
    "ApiJobState",
    "ApiJobStatus",
    "event_fields",
    "job_status",
    "stored_state",
]
