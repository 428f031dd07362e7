"""Any ``/imagine`` text through the real service on the real queue: a request (queued,
one job) or a sentence (nothing queued); never a crash, never half a job. And the prompt
syntax the worker reads (A1111 weights) parses for any text."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from bot.grammar.parse import BadCommand, ImagineRequest, MetaCommand, parse
from bot.testing.chat import FakeChat
from engine.prompts import parse_weights
from engine.settings import Settings
from tests.bot.hostile.conftest import assert_answered, catalog_at, outcome
from tests.bot.hostile.strategies import COMMANDS, PURE, REDIS


@REDIS
@given(text=COMMANDS)
def test_every_command_is_queued_whole_or_answered_with_a_sentence(
    quiet_chat: FakeChat, text: str
) -> None:
    result = outcome(quiet_chat, text)
    event(result.text.split(";")[0][:40])  # --hypothesis-show-statistics
    assert_answered(result)
    if result.text.startswith("Queued"):
        assert result.queued == 1, result
        record = quiet_chat.service.state.job(result.text.split("`")[1])
        assert record is not None
        spec, catalog = record.spec, quiet_chat.catalog
        # Whatever was typed, the job names only what the catalog knows.
        assert spec.model in catalog.models
        assert all(lora.name in catalog.loras for lora in spec.loras)
        assert spec.template is None or spec.template in catalog.templates


@PURE
@given(text=COMMANDS)
def test_the_parser_gives_a_request_or_a_sentence_for_any_text(
    hostile_settings: Settings, text: str
) -> None:
    catalog = catalog_at(hostile_settings.templates_dir)
    result = parse(text, catalog=catalog)
    assert isinstance(result, ImagineRequest | MetaCommand | BadCommand)
    if isinstance(result, BadCommand):
        assert result.message.strip()


@PURE
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.lists(
            st.sampled_from(
                ["(", ")", "[", "]", ":", "\\", "a", " ", "1", ".", "-", "BREAK", ":1.2.3)"]
            ),
            max_size=30,
        ).map("".join),
    )
)
def test_prompt_weights_parse_for_any_text(text: str) -> None:
    pieces = parse_weights(text)
    assert pieces and all(isinstance(t, str) and isinstance(w, float) for t, w in pieces)


def test_a_malformed_weight_is_text_not_a_failed_job() -> None:
    # Found by the suite: `(red:1.2.3)` raised ValueError in the worker's prompt encoding,
    # after the job had been queued (A1111 fails the same way).
    assert parse_weights("a (red:1.2.3) cat") == [("a ", 1.0), ("red:1.2.3", 1.1), (" cat", 1.0)]
    assert parse_weights("(x:...)") == [("x:...", 1.1)]
