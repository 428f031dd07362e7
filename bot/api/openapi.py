"""The OpenAPI 3.1 document of the native API (``GET /v1/openapi.json``).

The schemas come from the pydantic models the routes read and write (``JobRequest``,
``ApiJobStatus``, ``ApiVoteResult``), so the document cannot drift from the code; the
paths, parameters and answers are written out here, next to each other, as
``bot.api.native`` serves them. ``tests/bot/api/test_openapi.py`` runs schemathesis
against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bot.api.requests import JobRequest
from bot.api.status import ApiJobStatus
from bot.api.votes import ApiVoteResult

REF = "#/components/schemas/{model}"


class Error(BaseModel):
    """Every error answer: a sentence to show, and the request field at fault (or null)."""

    error: str
    field: str | None = None


class CancelAnswer(BaseModel):
    """``cancelled``: false when the job had already ended."""

    cancelled: bool
    job: ApiJobStatus


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    meanings = {
        401: "no valid API key (Bearer, or the password of HTTP Basic)",
        403: "the review policy does not count this vote",
        404: "no such job or image for this key",
        409: "the image is not in its review thread yet",
        413: "the body is over PROOFROOM_API_MAX_BODY_BYTES",
        422: "a field cannot be used; `error` says why",
        429: "over a quota or the rate limit",
        503: "Redis cannot be reached, or no worker renders the model",
    }
    return {str(code): _json("Error", meanings[code]) for code in codes}


# One server-sent event (before OpenAPI 3.2, a text/event-stream schema describes each
# event): ``data`` is the job's status as JSON, or an error that ends the stream.
_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["queued", "started", "progress", "done", "failed", "cancelled", "error"],
        },
        "id": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    {"$ref": REF.format(model="ApiJobStatus")},
                    {"$ref": REF.format(model="Error")},
                ]
            },
        },
    },
}


def _job_id() -> dict[str, Any]:
    return {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
    }


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def openapi_document() -> dict[str, Any]:
    """The document, as a dict ready for JSON."""
    _, defs = models_json_schema(
        [(m, "validation" if m is JobRequest else "serialization") for m in _MODELS],
        ref_template=REF,
    )
    schemas = defs["$defs"]
    vote = {
        "tags": ["review"],
        "parameters": [_path_id("image_id", "an image's id: `images[].id` of its job")],
        "responses": {
            "200": _json("ApiVoteResult", "the image's review state after the vote"),
            **_errors(401, 403, 404, 409, 503),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Proofroom native API",
            "version": "1",
            "description": "Queue Stable Diffusion jobs on the team's workers, follow them, "
            "fetch their images and review them. See docs/api.md.",
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/v1/jobs": {
                "post": {
                    "tags": ["jobs"],
                    "summary": "Queue a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": REF.format(model="JobRequest")}}
                        },
                    },
                    "responses": {
                        "201": _json("ApiJobStatus", "queued; Location names the job"),
                        **_errors(401, 413, 422, 429, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "tags": ["jobs"],
                    "summary": "A job's state, progress and images",
                    "parameters": [_job_id()],
                    "responses": {
                        "200": _json("ApiJobStatus", "the job"),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}/events": {
                "get": {
                    "tags": ["jobs"],
                    "summary": "Server-sent events until the job ends",
                    "description": "`event:` queued, started, progress, done, failed or "
                    "cancelled; `data:` the job's status (ApiJobStatus) as JSON. The stream "
                    "ends after the terminal event.",
                    "parameters": [_job_id()],
                    "responses": {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": _EVENT}},
                        },
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/v1/jobs/{job_id}/cancel": {
                "post": {
                    "tags": ["jobs"],
                    "summary": "Cancel a job (queued: at once; running: at its next step)",
                    "parameters": [_job_id()],
                    "responses": {
                        "200": _json("CancelAnswer", "whether it was cancelled, and the job"),
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/v1/artifacts/{artifact_id}": {
                "get": {
                    "tags": ["images"],
                    "summary": "An image of the key's jobs",
                    "parameters": [_path_id("artifact_id", "`images[].id` of a job")],
                    "responses": {
                        "200": {
                            "description": "the image file",
                            "content": {
                                "image/png": {"schema": {"type": "string", "format": "binary"}}
                            },
                        },
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/v1/images/{image_id}/approve": {
                "post": {**vote, "summary": "Approve an image (a vote by the key's user)"}
            },
            "/v1/images/{image_id}/reject": {
                "post": {**vote, "summary": "Reject an image (a vote by the key's user)"}
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }


_MODELS: list[type[BaseModel]] = [JobRequest, ApiJobStatus, ApiVoteResult, CancelAnswer, Error]

__all__ = ["CancelAnswer", "Error", "openapi_document"]
