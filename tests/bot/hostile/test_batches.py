"""Hostile CSV batches: any file gives the rows or one sentence listing every problem; in
chat, a batch is queued whole (one job per row, as the reply says) or not at all."""

from __future__ import annotations

import csv
import io
import re

from hypothesis import event, given
from hypothesis import strategies as st

from bot.batch.rows import BatchFileError, BatchRow, read_batch_csv
from bot.ports import Attachment
from bot.testing.chat import FakeChat
from engine.settings import Settings
from tests.bot.hostile.conftest import assert_answered, catalog_at, outcome
from tests.bot.hostile.strategies import PURE, REDIS

HOSTILE_COLUMNS = st.sampled_from(
    ["product_name", "Product", "", " product ", "=cmd", "colour", "product\x00", "seed"]
)
OPTIONAL_COLUMNS = ["style", "seed", "lora", "negative", "model"]
HOSTILE_CELLS = st.sampled_from(
    ["", " ", "=HYPERLINK(\"http://x\")", "+1", "@SUM(A1)", "-1", "99999999999999999999",
     "1e3", "tiny-style:99", "tiny-style:x", "../../x", "/root/x", "../loras/x.safetensors:1",
     "x\x00y", "\u202e", "<!channel>", "{product}", "a" * 300, "tiny-style; tiny-style", "\r",
     "\"", "a,b", "tiny-xl"]
)  # fmt: skip
PLAUSIBLE = {
    "product": st.sampled_from(["mug", "lamp", "red chair", "=1+1", "<!here>", "a" * 300]),
    "style": st.sampled_from(["", "bold", "{style}", "%s"]),
    "seed": st.sampled_from(["", "0", "12", "4294967295"]),
    "lora": st.sampled_from(["", "tiny-style", "tiny-style:0.5", "tiny-style:-5"]),
    "negative": st.sampled_from(["", "text", "=cmd|' /C calc'!A0"]),
    "model": st.sampled_from(["", "tiny"]),
}
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)


def cell(column: str) -> st.SearchStrategy[str]:
    """Mostly what the column expects, sometimes anything."""
    usual = PLAUSIBLE.get(column, TEXT)
    return st.one_of(usual, usual, usual, HOSTILE_CELLS, TEXT)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file as a spreadsheet might export it, hostile cells and all, or junk."""
    kind = draw(st.sampled_from(["table"] * 6 + ["text", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "text":
        return draw(st.text(max_size=120)).encode("utf-8")
    header = ["product"] + draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), unique=True))
    if draw(st.integers(0, 4)) == 4:
        header[draw(st.integers(0, len(header) - 1))] = draw(HOSTILE_COLUMNS)
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(cell(column)) for column in header]
        if draw(st.integers(0, 9)) == 9:  # a cell too many, or one missing
            row = row + ["extra"] if draw(st.booleans()) else row[:-1]
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + buffer.getvalue()).encode("utf-8")


@PURE
@given(data=csv_files())
def test_any_file_gives_rows_or_every_problem_in_one_sentence(
    hostile_settings: Settings, data: bytes
) -> None:
    catalog = catalog_at(hostile_settings.templates_dir)
    try:
        rows = read_batch_csv(
            data, template=catalog.template("poster"), catalog=catalog, max_rows=3
        )
    except BatchFileError as exc:
        assert exc.problems and exc.message.startswith("the batch file has")
        assert "nothing was queued" in exc.message
        return
    assert 1 <= len(rows) <= 3 and all(isinstance(row, BatchRow) for row in rows)
    for row in rows:
        assert row.variables.get("product"), "a row has what the template needs"
        assert all(name in catalog.loras for name, _ in row.loras)
        assert row.model is None or row.model in catalog.models


@REDIS
@given(data=csv_files(), variations=st.sampled_from(["", "--variations 2", "--variations 0"]))
def test_a_batch_in_chat_is_queued_whole_or_not_at_all(
    quiet_chat: FakeChat, data: bytes, variations: str
) -> None:
    attachment = Attachment("rows.csv", "text/csv", len(data), data)
    result = outcome(quiet_chat, f"/imagine batch poster {variations}", attachments=(attachment,))
    assert_answered(result, queued_when="Queued batch")
    event(result.text.split(";")[0][:40])  # --hypothesis-show-statistics
    if result.text.startswith("Queued batch"):
        match = re.search(r": (\d+) rows", result.text)
        assert match, result
        assert result.queued == int(match.group(1)), "one job per row, every row"


def test_a_file_of_blank_rows_is_refused_not_a_crash(quiet_chat: FakeChat) -> None:
    # Found by the suite: rows of empty cells left no row to queue and the desk failed on
    # the first of none ("something went wrong on our side").
    for data in (b"product,style\n,\n", b'product\n""\n \n'):
        attachment = Attachment("rows.csv", "text/csv", len(data), data)
        result = outcome(quiet_chat, "/imagine batch poster", attachments=(attachment,))
        assert_answered(result, queued_when="Queued batch")
        assert "every row of the file is empty" in result.text and result.queued == 0


def test_rows_past_the_limit_are_counted_not_checked(hostile_settings: Settings) -> None:
    # Found by the suite: a 7.5 MB CSV (500,000 rows, under the upload limits) took 7 s of
    # the chat handler's CPU to be refused for its length; rows past the limit are now
    # only counted (0.5 s), so their problems are not listed, only the limit.
    catalog = catalog_at(hostile_settings.templates_dir)
    data = b"product,lora\nmug,\nlamp,nope\nchair,nope\nbowl,nope\n"
    try:
        read_batch_csv(data, template=catalog.template("poster"), catalog=catalog, max_rows=2)
    except BatchFileError as exc:
        assert exc.problems == [
            "row 3: unknown LoRA `nope`",
            "the file has 4 rows; the limit is 2 per batch (split it)",
        ]
    else:
        raise AssertionError("a file over the row limit was read")
