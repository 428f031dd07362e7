"""What the bot says in a thread: the job card, the progress line, image captions and review
lines. Plain text with backticks and ``<@user>`` mentions, which Slack and Discord both show
(an adapter rewrites them where its platform differs). Pure functions of their arguments.

Text from users (prompts, variables, file names, CSV cells, errors quoting them) goes in
through :func:`escape`: its ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;``, as in
Slack's own markup. Raw angle brackets are then the bot's markup alone (the mentions of
:func:`mention`, channel links), so an adapter keeps those live and shows a ``<@U…>`` or
``<!channel>`` someone typed as text (and Discord pings only the users the bot means).
Characters that hide or reorder what is shown are each platform's to handle: Slack and
Discord show them as U+FFFD (:func:`visible`), the terminal drops whole escape sequences."""

from __future__ import annotations

import re
from typing import Any

from bot.ports import VOTE_EMOJI
from bot.records import ImageRecord
from engine.catalog import Catalog
from engine.spec import JobSpec, Mode

BAR_WIDTH = 20
INPUT_NAMES = {"init": "starting image", "mask": "mask", "control": "control image"}
MAX_PROMPT_SHOWN = 600  # chat messages have limits; the full prompt is in the export
_ENTITY = re.compile(r"&(amp|lt|gt);")
_CHARACTERS = {"amp": "&", "lt": "<", "gt": ">"}
# C0 and C1 controls but newline and tab, DEL, and the bidi embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069): text that hides or reorders what is shown.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def mention(user: str) -> str:
    """A user mention in the neutral markup: one the bot means, which notifies ``user``."""
    return f"<@{user}>"


def sentence(text: str) -> str:
    """``text`` trimmed and starting with a capital: errors are built lower-case so they can
    be embedded, and said alone they start a sentence."""
    text = text.strip()
    return text[:1].upper() + text[1:]


def escape(text: str) -> str:
    """User text as data in the neutral markup: ``&``, ``<``, ``>`` as entities, so none of
    it reads as a mention, a channel link or a link (adapters undo this where the platform
    has no such markup)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def visible(text: str) -> str:
    """``text`` with control characters (but newline and tab) and the bidirectional
    overrides as U+FFFD: a NUL or a right-to-left override typed into a name would
    otherwise hide or reorder what a quoted name or prompt reads as. The replacement shows
    that something was there."""
    return _HIDDEN.sub("\ufffd", text)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`, for a platform without such markup (Discord, the
    terminal); in one pass, so ``&amp;lt;`` becomes ``&lt;`` as typed."""
    return _ENTITY.sub(lambda found: _CHARACTERS[found.group(1)], text)


def quoted(text: str) -> str:
    """User text as a block quote: escaped, and every line quoted (a newline in a prompt
    must not end the quote and make the rest look like the bot's own lines)."""
    return "> " + escape(text).replace("\n", "\n> ")


def job_card(spec: JobSpec, *, requester: str, catalog: Catalog) -> str:
    """The first message of a job's thread: everything needed to understand (and repeat) it."""
    lines = [
        f"{mention(requester)} asked for {_images(spec.count)} \u00b7 job `{spec.id}`",
        quoted(clip(spec.prompt)),
    ]
    if spec.negative_prompt:
        lines.append(f"Negative: {escape(clip(spec.negative_prompt))}")
    lines.append(
        f"Model `{spec.model}` \u00b7 {spec.width}x{spec.height} \u00b7 {spec.steps} steps "
        f"\u00b7 CFG {spec.cfg_scale:g} \u00b7 {spec.sampler} \u00b7 seed {spec.seed}"
        + (" (image k uses seed+k)" if spec.count > 1 else "")
    )
    if spec.mode is not Mode.txt2img:
        lines.append(mode_line(spec))
    if spec.loras:
        lines.append(
            "LoRAs: " + ", ".join(_lora(ref.name, ref.weight, catalog) for ref in spec.loras)
        )
    if spec.template:
        values = " ".join(
            f'{k}="{escape(v)}"' if " " in v else f"{k}={escape(v)}"
            for k, v in spec.variables.items()
        )
        lines.append(f"Template `{spec.template}` {values}".rstrip())
    lines.append(f"React on each image: {_legend()}.")
    return "\n".join(lines)


def mode_line(spec: JobSpec) -> str:
    """What a job does with its attached images (the images follow the card)."""
    if spec.mode is Mode.img2img:
        return f"Image-to-image from the image below \u00b7 strength {spec.strength:g}"
    if spec.mode is Mode.inpaint:
        return f"Inpainting the white of the mask below \u00b7 strength {spec.strength:g}"
    window = ""
    if (spec.control_start, spec.control_end) != (0.0, 1.0):
        window = f" \u00b7 steps {spec.control_start:.0%}\u2013{spec.control_end:.0%}"
    return (
        f"ControlNet `{spec.controlnet}` ({spec.control_type} guide below) "
        f"\u00b7 scale {spec.control_scale:g}{window}"
    )


def input_caption(role: str, spec: JobSpec) -> str:
    """The caption of an input image shown in the job's thread."""
    if role == "init":
        return f"input image \u00b7 job `{spec.id}`"
    if role == "mask":
        return f"mask (white = repaint) \u00b7 job `{spec.id}`"
    guide = " (canny edges are taken from it)" if spec.control_type == "canny" else ""
    return f"control ({spec.control_type} guide){guide} \u00b7 job `{spec.id}`"


def not_queued(job_id: str) -> str:
    """The job card, replaced when the job could not be queued after all."""
    return (
        f"\u26a0\ufe0f Job `{job_id}` could not be queued, so nothing will render here. "
        "Please try again."
    )


def queued(job_id: str, spec: JobSpec, *, position: int | None, waiting: str | None) -> str:
    """The reply to a queued ``/imagine``: its place in line, and what it waits for when no
    worker serves its model's pool now (``bot.jobs.routing``)."""
    place = f"place {position} in line" if position else "starting now"
    if waiting:
        place = f"{place}, {waiting}"
    return (
        f"Queued job `{job_id}`: {spec.count} image(s) on `{spec.model}`, {place}. "
        "The images will appear in the thread."
    )


def waiting_for_worker(pools: list[str]) -> str:
    """Said of jobs queued for pools that no live worker serves now (one that did a moment
    ago, or this bot has just started): they wait, and how to end the wait."""
    names = ", ".join(f"`{pool}`" for pool in pools)
    start = f"`proofroom worker --pools {','.join(pools)}`"
    return f"waiting for a worker that serves {names} (none does right now; {start} starts one)"


def no_worker(*, model: str, pool: str, grace_s: float, since_s: float | None) -> str:
    """Why a job was refused: no worker has served its model's pool within the grace window
    (``since_s``: how long ago one last did, if ever). Starts lower-case (the service
    capitalises replies)."""
    last = f" (the last one was seen {_duration(since_s)} ago)" if since_s is not None else ""
    return (
        f"no worker has served model `{model}` (worker pool `{pool}`) in the last "
        f"{_duration(grace_s)}{last}, so nothing was queued. Ask whoever runs Proofroom to "
        f"start one with `proofroom worker --pools {pool}`, or pick another model with "
        "--model (`/imagine models` lists them)"
    )


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 2:
        return f"{round(seconds)} seconds"
    if minutes < 120:
        return f"{minutes} minutes"
    hours = round(minutes / 60)
    return f"{hours} hours" if hours < 48 else f"{round(hours / 24)} days"


def rerender_card(spec: JobSpec, *, image: ImageRecord, requester: str, auto: bool) -> str:
    """The line that opens a re-render inside the original thread."""
    why = "it was rejected" if auto else f"{mention(requester)} asked"
    return (
        f"\U0001f501 Re-rendering image {image.number} (seed {image.seed}) with seed "
        f"{spec.seed} because {why} \u00b7 job `{spec.id}`"
    )


def vary_card(spec: JobSpec, *, image: ImageRecord, requester: str, preset: str) -> str:
    """The line that opens variations of ``image`` inside its thread (``bot.followups``)."""
    return (
        f"\U0001f500 Variations of image {image.number} ({preset}) for {mention(requester)}: "
        f"{_images(spec.count)} at strength {spec.strength:g} from seed {spec.seed} "
        f"\u00b7 job `{spec.id}`"
    )


def upscale_card(spec: JobSpec, *, image: ImageRecord, requester: str) -> str:
    """The line that opens the upscale of ``image`` inside its thread (``bot.followups``)."""
    return (
        f"\u2b06\ufe0f Upscaling image {image.number} {spec.scale}x to {spec.width}x{spec.height} "
        f"for {mention(requester)} (tiles of {spec.tile_size} px) \u00b7 job `{spec.id}`"
    )


def followup_head(kind: str, *, number: int, of: int, parent: int | None, scale: int | None) -> str:
    """The start of a follow-up image's caption: "Variation 1/4 of image 2", "Image 2
    upscaled 4x" (``parent``: the parent's number; None when it is forgotten)."""
    source = f"image {parent}" if parent is not None else "an earlier image"
    if kind == "upscale":
        return sentence(f"{source} upscaled {scale}x")
    return f"Variation {number}/{of} of {source}" if of > 1 else f"Variation of {source}"


def progress_bar(step: int, total: int, *, width: int = BAR_WIDTH) -> str:
    """``███████░░░░░░░░░░░░░`` for step/total (clamped, so odd events never break it)."""
    filled = 0 if total <= 0 else round(width * min(max(step, 0), total) / total)
    return "\u2588" * filled + "\u2591" * (width - filled)


def progress_line(
    *,
    kind: str,
    spec_id: str,
    step: int | None = None,
    total: int | None = None,
    position: int | None = None,
    count: int | None = None,
    seconds: float | None = None,
    message: str = "",
) -> str:
    """The job's single progress message, for each kind of job event."""
    if kind == "queued":
        place = f"place {position} in line" if position else "waiting for a worker"
        return f"\u23f3 Queued ({place}) \u00b7 `/imagine cancel {spec_id}` to cancel"
    if kind == "started":
        return f"\U0001f3a8 Rendering `{progress_bar(0, 1)}` starting"
    if kind == "progress":
        step, total = step or 0, total or 0
        return f"\U0001f3a8 Rendering `{progress_bar(step, total)}` step {step}/{total}"
    if kind == "done":
        took = f" in {seconds:.1f} s" if seconds else ""
        note = f" ({escape(message)})" if message else ""  # e.g. a blank image left out
        return f"\u2705 Done: {_images(count or 0)}{took}{note}. Review them below."
    if kind == "cancelled":
        return f"\U0001f6ab Cancelled{': ' + escape(message) if message else ''}."
    return "\u26a0\ufe0f Stopped: this job failed (see below)."


def caption(image: ImageRecord, *, parent: str | None = None, head: str | None = None) -> str:
    """The text under an image: which one it is, its seed, and how to review it. ``head``:
    what the image is, when it is a follow-up (:func:`followup_head`)."""
    if head is None:
        head = f"Image {image.number}/{image.of}" if image.of > 1 else "Image"
    if parent:
        head += f" (re-render of {parent})"
    return f"{head} \u00b7 seed {image.seed} \u00b7 job `{image.job_id}` \u00b7 {_legend()}"


def flagged(flags: list[dict[str, Any]], *, rerendered: bool = False) -> str:
    """The automated QA's line under an image it flagged ("" when none): each reason with
    its score, escaped (a reason quotes no user text, but it comes over Redis)."""
    if not flags:
        return ""
    found = "; ".join(escape(str(flag.get("reason", flag.get("check", "")))) for flag in flags)
    again = " (after one re-render)" if rerendered else ""
    return f"\n\u26a0\ufe0f QA flagged{again}: {found}"


def failure(message: str) -> str:
    """The thread line for a failed job: the worker's sentence, never a traceback. It may
    quote what the user typed, so it is escaped."""
    return f"\u26a0\ufe0f This job failed: {escape(message)}"


def approved(image: ImageRecord, *, approvers: list[str], filename: str) -> str:
    """Review line: the image is approved and exported."""
    who = ", ".join(mention(u) for u in approvers)
    return f"\u2705 Image {image.number} (seed {image.seed}) approved by {who}; exported as `{filename}`."


def rejected(image: ImageRecord, *, rejecters: list[str]) -> str:
    """Review line: the image is rejected."""
    who = ", ".join(mention(u) for u in rejecters)
    return f"\u274c Image {image.number} (seed {image.seed}) rejected by {who}."


def still_rejected(image: ImageRecord, *, rejecters: list[str]) -> str:
    """Review line: an approval on an image someone rejected (a rejection is a veto)."""
    who = ", ".join(mention(u) for u in rejecters)
    return (
        f"Image {image.number} stays rejected while the \u274c from {who} stands; "
        "it can be approved once that reaction is taken back."
    )


def reopened(image: ImageRecord, *, was: str) -> str:
    """Review line: a vote was taken back and the image waits for a decision again."""
    undone = " and taken out of the export" if was == "approved" else ""
    return (
        f"\u21a9\ufe0f Image {image.number} (seed {image.seed}) is no longer {was}{undone}; "
        "it waits for a decision again."
    )


def votes_needed(image: ImageRecord, *, have: int, need: int) -> str:
    """Review line: approvals so far when more than one is needed."""
    return f"Image {image.number}: {have} of {need} approvals."


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")


def _legend() -> str:
    return (
        f"{VOTE_EMOJI['approve']} approve, {VOTE_EMOJI['reject']} reject, "
        f"{VOTE_EMOJI['rerender']} re-render, {VOTE_EMOJI['vary']} vary, "
        f"{VOTE_EMOJI['upscale']} upscale"
    )


def _lora(name: str, weight: float, catalog: Catalog) -> str:
    entry = catalog.loras.get(name)
    triggers = f" (adds `{', '.join(entry.triggers)}`)" if entry and entry.triggers else ""
    return f"`{name}` {weight:g}{triggers}"


def clip(text: str, limit: int = MAX_PROMPT_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, a visible ellipsis saying so."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def try_again(reference: str) -> str:
    """The answer to a command that failed on our side; ``reference`` finds it in the log."""
    return (
        f"Something went wrong on our side and nothing was queued (reference {reference}); "
        "please try again in a minute."
    )


# -- quotas (bot.quotas) --------------------------------------------------------------------


def channel_not_allowed(channel: str) -> str:
    """The answer in a channel that is not on ``PROOFROOM_ALLOWED_CHANNELS``."""
    return (
        f"Proofroom does not work in this channel (`{escape(channel)}`). Ask an admin which "
        "channels it works in, or to add this one to PROOFROOM_ALLOWED_CHANNELS."
    )


def rate_limited(*, limit: int, wait: str) -> str:
    """The answer to a command over ``PROOFROOM_QUOTAS__COMMANDS_PER_MINUTE``."""
    return (
        f"You have sent {limit} commands this minute, the most allowed; nothing was done. "
        f"Try again in {wait}."
    )


def over_daily_images(
    *, who: str, used: int, limit: int, wanted: int, bulk: bool, resets: str
) -> str:
    """A request whose images would pass a daily limit; ``who``: "you", or a plural
    ("the content calendars")."""
    kind = "bulk images" if bulk else "images"
    owner = f"{who[:1].upper()}{who[1:]} have"
    mine = "your" if who == "you" else "their"
    left = max(0, limit - used)
    ask = f"ask for {left} or fewer, or wait" if left else "wait"
    return (
        f"{owner} used {used} of {mine} {limit} {kind} for today and this needs {wanted} more, "
        f"so nothing was queued; {ask}: the count resets at {resets}."
    )


def too_many_jobs(*, have: int, limit: int, waiting_only: bool) -> str:
    """A command over the cap on a user's jobs in flight (or waiting in line)."""
    what = "waiting in line" if waiting_only else "waiting or rendering"
    return (
        f"You have {have} job{'' if have == 1 else 's'} {what}, and {limit} at once is the "
        "most allowed, so nothing was queued. Try again when one has finished, or cancel one "
        "(`/imagine status` lists them)."
    )
