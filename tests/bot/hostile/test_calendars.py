"""Hostile calendar files: a file loads, or is refused with a ``ValueError`` naming it; a
calendar that loads never breaks the scheduler's tick or ``/imagine calendar``, on a fixed
date, and a posted week queues exactly its one job."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from bot.calendars.model import Calendar, load_calendars
from bot.testing.chat import FakeChat
from tests.bot.conftest import queued_jobs
from tests.bot.hostile.conftest import assert_answered, outcome
from tests.bot.hostile.strategies import FILES, REDIS

MONDAY = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)  # ten minutes after a 09:20 run
GOOD_SCHEDULES = st.sampled_from(["20 9 * * MON", "0 9 * * *", "0-59/7 0-23 1-31 * *"])
BAD_SCHEDULES = st.sampled_from(
    ["*/0 9 * * MON", "0 9 30 2 *", "0 9 29 2 *", "0 9 13 * FRI", "0 \u00b2 * * MON",
     "61 9 * * MON", "0 9 * *", "", "0 9 * * FUNDAY", "0 9 31 * *", "0 9 * * 7", "30 2 * * SUN"]
)  # fmt: skip
BAD_ZONES = st.sampled_from(
    ["America/St_Johns", "Mars/Olympus", "../../etc/passwd", "", "x\x00y", "/etc/localtime",
     "Etc/GMT+14", "Europe/Berlin"]
)  # fmt: skip
ANY = st.one_of(st.none(), st.integers(-5, 10**6), st.floats(), st.text(max_size=6), st.booleans())


def usually(good: st.SearchStrategy[object], bad: st.SearchStrategy[object]) -> st.SearchStrategy:
    """``good`` seven times in eight, else ``bad``: files with one or two faults, mostly."""
    return st.integers(0, 7).flatmap(lambda n: bad if n == 7 else good)


@st.composite
def themes(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 9)) == 9:
        return draw(ANY)
    theme: dict[str, object] = {
        "title": draw(
            usually(st.just("Productivity"), st.sampled_from(["", "<!channel>", "x" * 500]))
        ),
        "template": draw(usually(st.just("poster"), st.sampled_from(["../../x", "nope", "a/b"]))),
        "variables": draw(
            usually(
                st.just({"product": "mug"}),
                st.sampled_from([{}, {"product": "mug", "colour": "red"}, {"product": 5}]),
            )
        ),
    }
    if draw(st.booleans()):
        theme["variations"] = draw(usually(st.just(2), st.sampled_from([0, -1, 1000, "many"])))
    if draw(st.booleans()):
        theme["model"] = draw(usually(st.just("tiny"), st.sampled_from(["/root/x", "../tiny"])))
    return theme


@st.composite
def calendar_files(draw: st.DrawFn) -> bytes:
    """A calendar file: mostly a calendar with a hostile field or two, sometimes not YAML."""
    kind = draw(st.sampled_from(["calendar"] * 6 + ["text", "bytes", "list"]))
    if kind == "text":
        return draw(st.text(max_size=60)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "list":
        return b"- one\n- two\n"
    body: dict[str, object] = {
        "platform": draw(usually(st.just("fake"), st.just("slack"))),
        "channel": draw(usually(st.just("C9"), st.sampled_from([None, "", "<!here>"]))),
        "schedule": draw(usually(GOOD_SCHEDULES, BAD_SCHEDULES)),
        "timezone": draw(usually(st.just("UTC"), BAD_ZONES)),
    }
    weeks = draw(
        st.lists(
            usually(st.sampled_from([1, 2, 5]), st.sampled_from([0, 6, "x", -1])),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    body["weeks_of_month"] = {week: draw(themes()) for week in weeks}
    if draw(st.booleans()):
        body["iso_weeks"] = {draw(st.sampled_from([49, 1, 53, 99])): draw(themes())}
    for field, values in (
        ("digest", usually(st.sampled_from([None, "0 17 * * FRI"]), BAD_SCHEDULES)),
        (
            "catch_up_hours",
            usually(st.just(72), st.sampled_from([-1, float("nan"), float("inf"), 1e308, "x"])),
        ),
        ("enabled", usually(st.just(True), st.sampled_from([False, "no", None]))),
        ("unknown_field", ANY),
    ):
        if draw(st.booleans()):
            body[field] = draw(values)
    return yaml.safe_dump(body, allow_unicode=True).encode("utf-8")


_FILES = itertools.count(1)


def load(folder: Path, data: bytes) -> dict[str, Calendar]:
    """The calendars of a folder holding ``data`` as ``calN.yaml`` (a new name each time: a
    calendar's weeks are posted once per name); a refusal must name the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cal{next(_FILES)}.yaml"
    path.write_bytes(data)
    try:
        return load_calendars(folder)
    except ValueError as exc:
        assert str(path) in str(exc), exc
        event("refused at load")
        return {}


@FILES
@given(data=calendar_files())
def test_a_calendar_file_loads_or_is_refused_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    calendars = load(tmp_path_factory.mktemp("calendars"), data)
    for calendar in calendars.values():
        event("loaded")
        # What the scheduler asks of a loaded calendar, on any date: answers, not errors.
        assert calendar.cron.next_after(MONDAY) > MONDAY
        assert calendar.cron.last_at_or_before(MONDAY) <= MONDAY
        if calendar.digest_cron is not None:
            assert calendar.digest_cron.last_at_or_before(MONDAY) <= MONDAY
        calendar.theme_for(MONDAY.date())


@REDIS
@given(data=calendar_files())
def test_a_loaded_calendar_never_breaks_the_tick_or_the_calendar_command(
    quiet_chat: FakeChat, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    calendars = load(tmp_path_factory.mktemp("calendars"), data)
    chat = quiet_chat
    desk = chat.service.calendar_desk(calendars=calendars, clock=lambda: MONDAY)
    chat.service.calendars = desk
    before = queued_jobs(chat.settings, chat.redis)
    posted = desk.tick(force=True)
    weeks = [p for p in posted if not p.endswith("digest")]
    event(f"posted {len(weeks)} week(s)")
    assert queued_jobs(chat.settings, chat.redis) - before == len(weeks)
    names = [*calendars, "../../x"]
    for text in (
        "/imagine calendar",
        "/imagine calendar digest",
        *(f"/imagine calendar digest {n}" for n in names),
    ):
        assert_answered(outcome(chat, text))


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("schedule", "0 9 30 2 *", "never fires"),
        ("schedule", "0 9 29 2 *", "goes 1461 days without firing"),
        ("digest", "0 17 13 * FRI", "goes 427 days without firing"),
        ("schedule", "*/0 9 * * MON", "bad step `0`"),
        ("catch_up_hours", float("nan"), "finite number"),
        ("catch_up_hours", 1e308, "less than or equal to 8784"),
    ],
)
def test_a_schedule_that_would_break_the_tick_is_refused_at_load(
    tmp_path: Path, field: str, value: object, said: str
) -> None:
    # Found by the suite: these loaded, then every tick (or `/imagine calendar`) raised:
    # the cron search found no time within 400 days, or timedelta(hours=nan) failed. Feb 29
    # and Friday the 13th failed on some dates only.
    body = {
        "platform": "fake",
        "channel": "C9",
        "weeks_of_month": {1: {"title": "t", "template": "poster"}},
        field: value,
    }
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(ValueError, match=str(tmp_path / "cal.yaml")) as refused:
        load_calendars(tmp_path)
    assert said in str(refused.value)
