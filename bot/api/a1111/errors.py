"""The A1111 routes' refusals in A1111's error shape, ``{"error", "detail", "body",
"errors"}`` (``modules/api/api.py``: ``handle_exception``), with a sentence in ``detail``:
422 for a request that cannot be made, 429 over a quota, 404 for another key's job.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import redis as redis_lib
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.jobs import JobNotFound
from bot.api.native import REDIS_AWAY
from bot.jobs.routing import NoWorkerError
from bot.quotas.desk import QuotaExceeded
from engine.errors import UserError

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
INTERNAL = "something went wrong on our side; the team has the details in the logs"


class A1111Error(Exception):
    """An answer other than 200, in A1111's error shape."""

    def __init__(
        self, status: int, detail: str, *, error: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error = error
        self.headers = headers


def error_response(status: int, detail: str, *, error: str, headers: Any = None) -> JSONResponse:
    """A1111's error body (``modules/api/api.py``: ``handle_exception``)."""
    body = {"error": error, "detail": detail, "body": "", "errors": detail}
    return JSONResponse(body, status_code=status, headers=headers)


def answers(handler: Handler) -> Handler:
    """``handler`` with its refusals answered in A1111's shape: a ``UserError`` sentence is
    a 422 (a quota's 429, a model without workers 503), another key's job a 404, Redis away
    a 503, anything else a logged 500."""

    @wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except A1111Error as exc:
            return error_response(exc.status, exc.detail, error=exc.error, headers=exc.headers)
        except HTTPException as exc:  # 401 without a key, 413 for a body over the limit
            return error_response(
                exc.status_code, str(exc.detail), error="HTTPException", headers=exc.headers
            )
        except QuotaExceeded as exc:
            return error_response(429, exc.message, error=type(exc).__name__)
        except NoWorkerError as exc:
            return error_response(503, exc.message, error=type(exc).__name__)
        except UserError as exc:
            return error_response(422, exc.message, error=type(exc).__name__)
        except JobNotFound as exc:
            return error_response(404, str(exc), error=type(exc).__name__)
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            return error_response(503, REDIS_AWAY, error=type(exc).__name__)
        except Exception as exc:  # ours, not the caller's: logged, and said in A1111's shape
            log.exception("A1111 API: %s %s failed", request.method, request.url.path)
            return error_response(500, INTERNAL, error=type(exc).__name__)

    return answer


__all__ = ["A1111Error", "Handler", "answers", "error_response"]
