"""``engine.redaction.redacted_url``: what a URL shows once its credentials are hidden."""

from __future__ import annotations

import pytest

from engine.redaction import redacted_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://bot:hunter2@cache:6380/1", "rediss://bot:***@cache:6380/1"),
        ("redis://bot:p%40ss@cache/0", "redis://bot:***@cache/0"),  # an escaped "@" too
        ("https://hunter2@git.example/repo", "https://***@git.example/repo"),  # a lone token
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        (
            "unix:///run/redis.sock?password=hunter2&db=2",
            "unix:///run/redis.sock?password=***&db=2",
        ),
        (
            "https://cms.example/hook?token=hunter2&site=shop#top",
            "https://cms.example/hook?token=***&site=shop#top",
        ),
        (
            "https://s3.example/b/k?X-Amz-Credential=AKIA&X-Amz-Signature=abc&x=1",
            "https://s3.example/b/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1",
        ),
        ("redis://:hunter2@cache:notaport/0", "***"),  # unparsable, and it may hold a password
        ("user:hunter2@cache", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_a_url_shows_no_credential(url: str | None, shown: str) -> None:
    assert redacted_url(url) == shown
    assert "hunter2" not in redacted_url(url)
