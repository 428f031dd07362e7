"""One HTTP POST of a delivery, with the standard library (the chat side stays light), and
what its answer means: delivered (2xx), worth another attempt (no answer, a timeout, 5xx,
408, 429) or refused for good (any other status; redirects are not followed, since a
POST that is redirected would lose its body or its signature's meaning)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

# 4xx statuses that say "later", not "never".
RETRYABLE_STATUSES = frozenset({408, 429})
# Enough of a refusal's body to tell an admin why, in the log and the outbox record.
DETAIL_CHARS = 200


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status (None when there was no answer) and a detail."""

    status: int | None
    detail: str
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        """The receiver took it."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Another attempt may succeed."""
        return self.status is None or self.status >= 500 or self.status in RETRYABLE_STATUSES


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, *, body: bytes, headers: dict[str, str], timeout_s: float) -> Answer:
    """POST ``body`` to ``url``; never raises for what the network or the receiver does."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
            return Answer(status=response.status, detail=f"HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        with exc:
            said = exc.read(DETAIL_CHARS).decode("utf-8", "replace").strip()
        detail = f"HTTP {exc.code}" + (f": {said}" if said else "")
        return Answer(status=exc.code, detail=detail, retry_after_s=_retry_after(exc.headers))
    except TimeoutError:
        return Answer(status=None, detail=f"no answer within {timeout_s:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Answer(status=None, detail=f"no answer within {timeout_s:g} s")
        return Answer(status=None, detail=f"could not connect: {reason}")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(status=None, detail=f"connection failed: {exc!r}")


def _retry_after(headers: Message | None) -> float | None:
    """A ``Retry-After`` in seconds (the date form is rare from receivers and ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
