"""Content calendars in chat: the weekly thread ("Week 49 · Productivity") filled with the
week's images for review, the end-of-week digest, and ``/imagine calendar``.

The service hands the desk the calendars of its folder (``templates/calendars/*.yaml``,
``bot.calendars.model``); only those for this bot's platform run here. :meth:`CalendarDesk.tick`
is called from the event pump (``bot.jobs.pump``), so every adapter runs schedules without
code of its own; ``bot.calendars.scheduler`` makes each week post once.

A week's images are charged to the pseudo-user ``calendar`` of the platform, against the
bulk images of its day (``PROOFROOM_QUOTAS__BULK_IMAGES_PER_DAY``, ``bot.quotas``): never to
a person. A week over that limit is not posted at all; the channel is told once, and the
log, and the week is not tried again.
"""

from __future__ import annotations

import logging
import time

from bot.calendars.model import Calendar, WeekRun, run_for
from bot.calendars.scheduler import CalendarScheduler, Clock, utc_now
from bot.calendars.state import CalendarState
from bot.grammar.parse import ImagineRequest
from bot.grammar.tokens import TokenizeError, command_tokens
from bot.jobs.resolve import JobResolver
from bot.ports import ChatAdapter, CommandEvent, MessageRef, Submit, requester_key
from bot.quotas.desk import QuotaDesk, QuotaExceeded
from bot.state import BotState
from bot.usage.desk import UsageFigures
from engine.catalog import Catalog
from engine.errors import CatalogError
from engine.spec import JobSpec

log = logging.getLogger(__name__)
TICK_EVERY_S = 30.0
CALENDAR_USER = "calendar"


class CalendarDesk:
    """Runs this platform's calendars and answers ``/imagine calendar [digest [NAME]]``."""

    def __init__(
        self,
        *,
        adapter: ChatAdapter,
        state: BotState,
        weeks: CalendarState,
        resolver: JobResolver,
        submit: Submit,
        calendars: dict[str, Calendar],
        clock: Clock = utc_now,
        quotas: QuotaDesk | None = None,
        usage: UsageFigures | None = None,
    ) -> None:
        self.adapter = adapter
        self.state = state
        self.weeks = weeks
        self.resolver = resolver
        self.submit = submit
        self.quotas = quotas  # None: no limits
        self.usage = usage  # the week's GPU time and cost in the digest (bot.usage)
        platform = adapter.platform
        here = [c for c in calendars.values() if c.platform == platform]
        # Idle calendars (the shipped examples until a channel is set) are said once, at
        # start, so an operator sees why nothing is posted without a line every tick.
        self.idle = {c.name: reason for c in here if (reason := c.idle_reason) is not None}
        for name, reason in self.idle.items():
            log.info("calendar %s posts nothing: %s", name, reason)
        self.calendars = {
            c.name: c for c in here if c.name not in self.idle and _usable(c, resolver.catalog)
        }
        self.scheduler = CalendarScheduler(
            calendars=self.calendars,
            state=weeks,
            post_week=self.post_week,
            post_digest=self.post_digest,
            clock=clock,
        )
        self._next_tick = 0.0

    # -- schedule -----------------------------------------------------------------------

    def tick(self, *, force: bool = False) -> list[str]:
        """Post what is due (at most every 30 s unless ``force``); return what was posted."""
        if not self.calendars or (not force and time.monotonic() < self._next_tick):
            return []
        self._next_tick = time.monotonic() + TICK_EVERY_S
        return self.scheduler.tick()

    def post_week(self, run: WeekRun) -> bool:
        """Open the week's thread and queue its images (bulk priority). A theme whose model
        no worker has rendered for a while is not posted (``bot.jobs.routing``): the
        scheduler tries again on its next tick, within the catch-up window. A week over the
        calendar's quota is not posted and not tried again (False; the channel is told)."""
        calendar, theme = run.calendar, run.theme
        request = ImagineRequest(
            template=theme.template,
            variables=theme.variables,
            count=theme.variations,
            model=theme.model,
        )
        spec = self.resolver.resolve(
            request, requested_by=requester_key(self.adapter.platform, CALENDAR_USER)
        ).spec
        assert calendar.channel is not None  # idle calendars are never scheduled
        spec = spec.model_copy(
            update={"priority": "bulk", "origin": {"calendar": calendar.name, "week": run.key}}
        )
        reservation = None
        if self.quotas is not None:
            try:
                reservation = self.quotas.reserve(
                    [spec], requester=CALENDAR_USER, who="the content calendars"
                )
            except QuotaExceeded as exc:
                log.warning("calendar %s %s not posted: %s", calendar.name, run.key, exc.message)
                self.adapter.post(
                    channel=calendar.channel,
                    text=f"\U0001f5d3\ufe0f {run.title} was not posted: {exc.message}",
                )
                return False
        try:
            self._post_week(run, spec)
        except BaseException:
            if self.quotas is not None and reservation is not None:
                self.quotas.release(reservation)  # the scheduler tries the week again
            raise
        return True

    def _post_week(self, run: WeekRun, spec: JobSpec) -> None:
        calendar, theme = run.calendar, run.theme
        assert calendar.channel is not None
        thread = self.adapter.post(
            channel=calendar.channel,
            text=(
                f"\U0001f5d3\ufe0f {run.title} \u00b7 {calendar.description or calendar.name}\n"
                f"{theme.variations} images from template `{theme.template}` for this week. "
                "React on each image to approve or reject it; the digest follows at the end of the week."
            ),
        )
        self.submit(spec, thread=thread, requester=CALENDAR_USER)
        self.weeks.add_week(calendar.name, run.key, thread=thread, title=run.title, job_id=spec.id)

    def post_digest(self, run: WeekRun) -> bool:
        """Post the week's digest into its thread; False when the week was never posted."""
        found = self._digest(run.calendar.name, run.key)
        if found is None:
            return False
        thread, text = found
        self.adapter.post(channel=thread.channel, thread=thread.thread_id, text=text)
        return True

    def digest(self, calendar: str, week: str) -> str | None:
        """Approved, rejected and pending images of a posted week, approved ones listed."""
        found = self._digest(calendar, week)
        return found[1] if found else None

    def _digest(self, calendar: str, week: str) -> tuple[MessageRef, str] | None:
        """The week's thread and its digest; None for a week never posted."""
        posted = self.weeks.week(calendar, week)
        if posted is None:
            return None
        thread, title, job_ids = posted
        counts = {"approved": 0, "rejected": 0, "pending": 0}
        approved: list[str] = []
        for outcome in self.state.outcomes(job_ids, thread=thread):
            for image in outcome.images or ():  # no result yet: nothing to count
                counts[image.state] += 1
                if image.state == "approved":
                    shown = image.exports[0].rsplit("/", 1)[-1] if image.exports else None
                    approved.append(
                        f"\u2022 image {image.index + 1} (seed {image.seed}): "
                        f"`{shown or image.artifact_id}`"
                    )
        lines = [
            f"\U0001f4ca Digest \u00b7 {title}: {counts['approved']} approved, "
            f"{counts['rejected']} rejected, {counts['pending']} waiting for review."
        ]
        lines += approved or ["No image is approved yet."]
        if self.usage is not None:
            lines.append(self.usage.line(job_ids))
        return thread, "\n".join(lines)

    # -- commands -----------------------------------------------------------------------

    def command(self, event: CommandEvent) -> str | None:
        """``calendar`` (next runs), ``calendar digest [NAME]``; None for anything else
        ("calendar with flowers" is a prompt)."""
        try:
            words = [t.value for t in command_tokens(event.text)]
        except TokenizeError:
            return None
        if not words or words[0].lower() != "calendar":
            return None
        if len(words) == 1:
            return self.next_runs_text()
        if words[1].lower() == "digest" and len(words) <= 3:
            return self._digest_command(words[2] if len(words) == 3 else None)
        return None

    def next_runs_text(self) -> str:
        """The next scheduled runs, for ``/imagine calendar``."""
        idle = [f"\u2022 `{name}` posts nothing: {reason}." for name, reason in self.idle.items()]
        if not self.calendars:
            return "\n".join(
                [
                    "No content calendar runs on this platform; add one under "
                    "`templates/calendars/` (see `marketing.yaml`).",
                    *idle,
                ]
            )
        lines = ["Next calendar runs:"]
        for run in self.scheduler.next_runs(count=2):
            when = run.due.strftime("%a %d %b %H:%M %Z")
            lines.append(
                f"\u2022 `{run.calendar.name}`: {run.title} ({run.theme.variations} images), "
                f"{when} in <#{run.calendar.channel}>"
            )
        return "\n".join(lines + idle)

    def _digest_command(self, name: str | None) -> str:
        names = [name] if name else list(self.calendars)
        unknown = [n for n in names if n not in self.calendars]
        if unknown:
            return f"There is no calendar `{unknown[0]}` here; known: {', '.join(self.calendars) or 'none'}."
        posted = []
        for calendar_name in names:
            calendar = self.calendars[calendar_name]
            run = run_for(calendar, calendar.cron.last_at_or_before(self.scheduler.clock()))
            if run is not None and self.post_digest(run):
                posted.append(f"`{calendar_name}` {run.title}")
        if not posted:
            return "No calendar week has been posted yet, so there is nothing to sum up."
        return "Posted the digest of " + ", ".join(posted) + " in its thread."


def _usable(calendar: Calendar, catalog: Catalog) -> bool:
    """Whether every theme of ``calendar`` resolves in the catalog; checked once at start,
    so a typo is one clear log line instead of a failed post every tick of the catch-up."""
    try:
        calendar.check(catalog)
    except CatalogError as exc:
        log.error(
            "calendar %s will not post: %s; fix its file and restart", calendar.name, exc.message
        )
        return False
    return True
