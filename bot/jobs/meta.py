"""Answers to the commands about the bot: ``help``, ``templates``, ``models``, ``loras``,
``embeddings`` (``bot.jobs.listings``), ``status``, ``cancel <job>`` and ``review``. Each
returns the text shown to the person who asked (ephemeral where the platform allows)."""

from __future__ import annotations

from bot.grammar.flags import FLAGS
from bot.grammar.parse import MetaCommand
from bot.jobs.delivery import spec_summary
from bot.jobs.listings import embeddings_text, loras_text, models_text
from bot.jobs.routing import Routing
from bot.ports import VOTE_EMOJI, CommandEvent, requester_key
from bot.state import BotState
from bot.texts import escape
from engine.catalog import Catalog
from engine.queue import JobQueue

MAX_LISTED = 20


def answer(
    command: MetaCommand,
    *,
    event: CommandEvent,
    catalog: Catalog,
    queue: JobQueue,
    state: BotState,
    may_cancel_any: bool,
    routing: Routing | None = None,
) -> str:
    """The reply to ``command`` from the user of ``event``; ``routing`` says which queued
    jobs wait for a worker (``bot.jobs.routing``)."""
    if command.name == "help":
        return template_help(command.argument, catalog) if command.argument else help_text()
    if command.name == "templates":
        return templates_text(catalog)
    if command.name == "models":
        return models_text(catalog)
    if command.name == "loras":
        return loras_text(catalog)
    if command.name == "embeddings":
        return embeddings_text(catalog)
    if command.name == "status":
        return status_text(event, queue, routing=routing)
    if command.name == "cancel":
        return cancel(
            command.argument or "",
            event=event,
            queue=queue,
            state=state,
            may_cancel_any=may_cancel_any,
        )
    return review_text(event, state)


def help_text() -> str:
    """``/imagine help``."""
    flags = [f"\u2022 `{f.example}`: {f.help}" for f in FLAGS if not f.reserved]
    return "\n".join(
        [
            "`/imagine a red sports car at dusk --ar 3:2 --n 4` renders a prompt; "
            '`/imagine product-photo product="leather handbag"` fills a template.',
            "Flags:",
            *flags,
            "\u2022 `<lora:NAME:0.8>` inside the prompt works too (A1111 style).",
            "Commands: `/imagine templates`, `/imagine help TEMPLATE`, `/imagine models`, "
            "`/imagine loras`, `/imagine embeddings`, `/imagine status`, `/imagine cancel JOB`, "
            "`/imagine review`, `/imagine repost JOB`; admins: `/imagine reload`.",
            "Batches: attach a CSV to `/imagine batch TEMPLATE --variations 3 --seed 100` "
            "(one row per product, columns named like the template's variables); "
            "`/imagine batch status [BATCH] [unflagged]`, `/imagine batch retry BATCH`.",
            "Calendars: `/imagine calendar` shows the next weekly threads; "
            "`/imagine calendar digest [NAME]` sums up this week's reviews.",
            "Usage: `/imagine usage [week|month] [by user|template|channel|model]` shows "
            "images, GPU time, cost per image and approval rate, with a chart.",
            f"Review by reacting on an image: {VOTE_EMOJI['approve']} approve, "
            f"{VOTE_EMOJI['reject']} reject, {VOTE_EMOJI['rerender']} re-render with a new seed, "
            f"{VOTE_EMOJI['vary']} variations of it, {VOTE_EMOJI['upscale']} upscale it 2x.",
            "Variations and upscales by command, in the image's channel (JOB#K: the job id and "
            "the image's number in its caption): `/imagine vary JOB#K [--strong] [--n 4]`, "
            "`/imagine upscale JOB#K [--scale 2|4]`.",
        ]
    )


def templates_text(catalog: Catalog) -> str:
    """``/imagine templates``: name, one line of description, variables with defaults."""
    lines = ["Templates (`/imagine NAME key=value ...`):"]
    for template in catalog.templates.values():
        lines.append(f"\u2022 `{template.name}`: {template.description} ({template.signature()})")
    return "\n".join(lines)


def template_help(name: str, catalog: Catalog) -> str:
    """``/imagine help TEMPLATE``: every variable with its description and examples."""
    if not catalog.is_template(name):
        close = catalog.suggest("template", name)
        hint = f"did you mean `{close}`?" if close else "`/imagine templates` lists them."
        return f"There is no template `{escape(name)}`; {hint}"
    template = catalog.template(name)
    lines = [f"`{template.name}`: {template.description}"]
    for key, var in template.variables.items():
        need = "required" if var.required else f"default `{var.default}`"
        examples = f"; e.g. {', '.join(var.examples)}" if var.examples else ""
        lines.append(f"\u2022 `{key}` ({need}) {var.description}{examples}".rstrip())
    example = " ".join(f'{k}="..."' for k, v in template.variables.items() if v.required)
    lines.append(f"Example: `/imagine {template.name} {example}`".rstrip("` ") + "`")
    return "\n".join(lines)


def status_text(event: CommandEvent, queue: JobQueue, *, routing: Routing | None = None) -> str:
    """``/imagine status``: the user's queued and running jobs; a queued job whose model's
    pool no live worker serves says it waits for one."""
    jobs = queue.jobs_for(requester_key(event.platform, event.user))
    if not jobs:
        return "You have no jobs waiting or rendering."
    shown = jobs[:MAX_LISTED]
    queued = [info.spec.model for info in shown if info.position and info.spec.model]
    idle = routing.idle(m for m in queued if m in routing.catalog.models) if routing else {}
    lines = ["Your jobs:"]
    for info in shown:
        where = f"queued, place {info.position}" if info.position else "rendering"
        if info.position and info.spec.model in idle:
            where += f", waiting for a worker that serves `{idle[info.spec.model]}`"
        lines.append(f"\u2022 `{info.job_id}` {where}: {spec_summary(info.spec)}")
    return "\n".join(lines)


def cancel(
    argument: str, *, event: CommandEvent, queue: JobQueue, state: BotState, may_cancel_any: bool
) -> str:
    """``/imagine cancel JOB``: the requester (or an approver) cancels a job; a unique prefix
    of the id is enough."""
    mine = [info.job_id for info in queue.jobs_for(requester_key(event.platform, event.user))]
    matches = [job_id for job_id in mine if job_id.startswith(argument)] if argument else []
    if len(matches) > 1:
        return f"`{escape(argument)}` matches several of your jobs ({', '.join(matches)}); give more of the id."
    job_id = matches[0] if matches else argument
    record = state.job(job_id)
    if not matches and not (record and may_cancel_any):
        return f"You have no job `{escape(argument)}` waiting or rendering; `/imagine status` lists yours."
    if queue.cancel(job_id):
        return f"Cancelling job `{job_id}`; its thread will say when it has stopped."
    return f"Job `{job_id}` has already finished, so there is nothing to cancel."


def review_text(event: CommandEvent, state: BotState) -> str:
    """``/imagine review``: images in this channel still waiting for a decision."""
    pending = state.pending_in(platform=event.platform, channel=event.channel)
    if not pending:
        return "No images in this channel are waiting for a decision."
    lines = [f"{len(pending)} image(s) here wait for a decision:"]
    for image in pending[:MAX_LISTED]:
        lines.append(
            f"\u2022 image {image.number}/{image.of} of job `{image.job_id}` (seed {image.seed}) "
            f"requested by <@{image.requester}>"
        )
    if len(pending) > MAX_LISTED:
        lines.append(f"\u2026 and {len(pending) - MAX_LISTED} more.")
    return "\n".join(lines)
