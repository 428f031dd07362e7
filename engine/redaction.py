"""Secrets kept out of what a process shows: logs, printed lines, chat messages, exception
texts and the ``repr`` of settings.

Tokens and signing secrets are ``SecretStr`` in the settings (their ``repr`` is
``**********``). URLs are plain strings because every client library takes them so, and a
URL can carry a password (``redis://:pw@host:6379/0``), a user name or a token in its
query (``https://cms.example/hook?token=...``): :func:`redacted_url` is the one place
that turns such a URL into something safe to show, and :func:`redacted_repr_args` applies
it to a settings object's ``repr``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

HIDDEN = "***"

# Query parameters whose values are credentials (compared lower-cased, "-" read as "_").
_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "api_key",
        "apikey",
        "auth",
        "code",
        "key",
        "password",
        "secret",
        "sig",
        "signature",
        "token",
        "x_amz_credential",
        "x_amz_security_token",
        "x_amz_signature",
    }
)


def redacted_url(url: str | None) -> str:
    """``url`` with its password (or a lone user part, often a token) and credential query
    values replaced by ``***``, safe to log or print (``redis://:***@cache:6379/0``). Not a
    URL with a host: ``***`` when it could hide a password (it holds ``@``), else as is."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a malformed port
    except ValueError:
        return HIDDEN if "@" in url else url
    if not parts.scheme or (not parts.netloc and "@" in parts.path):
        # Not a URL with a host (``user:pw@host`` reads as scheme "user"): nothing to keep.
        return HIDDEN if "@" in url else url
    # Only the parts that change are replaced: urlunsplit would also rewrite what it does
    # not round-trip (unix:///path loses its empty host).
    shown, netloc, query = url, _netloc(parts), _query(parts.query)
    if netloc != parts.netloc:
        shown = shown.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def redacted_repr_args(
    pairs: Iterable[tuple[str | None, Any]], *, url_fields: frozenset[str]
) -> list[tuple[str | None, Any]]:
    """A pydantic model's ``__repr_args__`` with the values of ``url_fields`` redacted
    (see :func:`redacted_url`), so ``repr(settings)`` and ``str(settings)`` show no password."""
    return [
        (name, redacted_url(value) if name in url_fields and isinstance(value, str) else value)
        for name, value in pairs
    ]


def _netloc(parts: SplitResult) -> str:
    if "@" not in parts.netloc:
        return parts.netloc
    userinfo, _, host = parts.netloc.rpartition("@")
    if ":" not in userinfo:  # one value before "@": often a token (https://TOKEN@host)
        return f"{HIDDEN}@{host}"
    # A user name beside a password is a name (a Redis ACL user): shown, it helps.
    return f"{userinfo.partition(':')[0]}:{HIDDEN}@{host}"


def _query(query: str) -> str:
    if not query:
        return query
    pieces = []
    for piece in query.split("&"):
        name, sep, _ = piece.partition("=")
        if sep and name.lower().replace("-", "_") in _SECRET_PARAMS:
            piece = f"{name}={HIDDEN}"
        pieces.append(piece)
    return "&".join(pieces)


__all__ = ["HIDDEN", "redacted_repr_args", "redacted_url"]
