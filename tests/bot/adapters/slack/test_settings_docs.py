"""Every Slack setting is where an operator looks for it: ``.env.example`` and
``docs/slack.md``; and ``.env.example`` as shipped is a valid ``.env``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import AliasChoices

from bot.adapters.slack.settings import SlackSettings

ROOT = Path(__file__).resolve().parents[4]


def variable(name: str) -> str:
    """The environment variable of a setting (Slack's own name for the tokens)."""
    alias = SlackSettings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"PROOFROOM_SLACK_{name.upper()}"


@pytest.mark.parametrize("name", sorted(SlackSettings.model_fields))
@pytest.mark.parametrize("document", [".env.example", "docs/slack.md"])
def test_each_setting_is_documented(name: str, document: str) -> None:
    assert variable(name) in (ROOT / document).read_text(encoding="utf-8")


def test_the_example_env_file_reads_as_the_defaults(tmp_path: Path, monkeypatch) -> None:
    for name in SlackSettings.model_fields:
        monkeypatch.delenv(variable(name), raising=False)
    settings = SlackSettings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.model_dump() == SlackSettings(_env_file=None).model_dump()  # type: ignore[call-arg]
    assert settings.api_url == "https://slack.com/api/"
