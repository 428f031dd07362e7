"""The ``/imagine`` grammar: text in; an :class:`ImagineRequest`, a :class:`MetaCommand` or a
:class:`BadCommand` out. Pure: no I/O, and no exception escapes :func:`parse` for any text.

Two dialects sit side by side because teams arrive from both: Midjourney flags
(``--ar 3:2 --no text --seed 1``) and Stable Diffusion ones (``--steps --cfg --sampler
--model --lora``), plus A1111 ``<lora:name:0.8>`` tags inside the prompt. When the first word
names a template, ``key=value`` / ``key="quoted value"`` words fill its variables and the
remaining words are appended to its prompt.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from bot.grammar.flags import (
    FLAG_BY_NAME,
    FLAGS,
    SAMPLER_BY_KEY,
    LoraRequest,
    convert,
    lora_request,
    sampler_key,
    unknown_flag_message,
)
from bot.grammar.tokens import Token, TokenizeError, command_tokens
from bot.usage.periods import PERIODS
from bot.usage.report import GROUPS
from engine.catalog import Catalog
from engine.errors import UserError
from engine.settings import Limits

MetaName = Literal[
    "help",
    "templates",
    "loras",
    "models",
    "embeddings",
    "status",
    "cancel",
    "review",
    "repost",
    "reload",
    "usage",
]
META_NAMES: tuple[MetaName, ...] = get_args(MetaName)
_LORA_TAG = re.compile(r"<lora:([^:<>]*)(?::([^<>]*))?>", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=")
# Quotation marks (Unicode's Quotation_Mark, and the inch mark the tokenizer reads as one):
# a prompt of nothing but these, spaces and invisible characters describes no image.
_QUOTE_MARKS = frozenset(
    "\"'\u00ab\u00bb\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2033"
    "\u2039\u203a\u2e42\u300c\u300d\u300e\u300f\u301d\u301e\u301f"
    "\ufe41\ufe42\ufe43\ufe44\uff02\uff07\uff62\uff63"
)
# A whole command carries a prompt and a negative prompt (each up to the prompt limit) plus
# flags, template variables and LoRA tags, for which this many characters is generous.
COMMAND_ALLOWANCE = 2000


@dataclass(frozen=True)
class BadCommand:
    """The text could not be understood; ``message`` says what was wrong and what would work."""

    message: str


@dataclass(frozen=True)
class MetaCommand:
    """A command about the bot rather than an image: ``help``, ``status``, ``cancel <job>``..."""

    name: MetaName
    argument: str | None = None


@dataclass(frozen=True)
class ImagineRequest:
    """What the user asked for, before defaults are filled in (see ``bot.jobs.resolve``).

    ``prompt`` is the free text: the whole prompt, or with a template the words appended to
    it. Fields left None take the template's value, then the model's. ``strength``,
    ``mask``, ``control`` and ``control_scale`` shape jobs with attached images (see
    ``bot.jobs.inputs``). ``flags`` holds the reserved flags (``--variations``) that the
    grammar already understands and other workflows act on.
    """

    prompt: str = ""
    template: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    negative: str | None = None
    seed: int | None = None
    count: int | None = None
    aspect: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    model: str | None = None
    loras: tuple[LoraRequest, ...] = ()
    strength: float | None = None
    mask: str | None = None  # file name of the attached mask (platforms without roles)
    control: str | None = None  # control type or ControlNet name
    control_scale: float | None = None
    flags: Mapping[str, str | int | float] = field(default_factory=dict)


Parsed = ImagineRequest | MetaCommand | BadCommand

EMPTY_MESSAGE = (
    "describe the image you want, e.g. `/imagine a red sports car at dusk --ar 3:2`, "
    "or use a template: `/imagine templates` lists them; `/imagine help` shows every flag"
)


def parse(
    text: str, *, catalog: Catalog, max_prompt_chars: int = Limits().max_prompt_chars
) -> Parsed:
    """Parse what followed ``/imagine`` (the command word itself may be included).

    Text longer than :func:`max_command_chars` of ``max_prompt_chars`` (the setting
    ``limits.max_prompt_chars``) is refused before it is split into words: no prompt that
    long could be rendered, so reading it would only cost time."""
    limit = max_command_chars(max_prompt_chars)
    if len(text) > limit:
        return BadCommand(
            f"the command is {len(text):,} characters; a prompt may have up to "
            f"{max_prompt_chars:,} and a whole command, flags included, up to {limit:,}: "
            "shorten the prompt"
        )
    try:
        return _parse(text, catalog)
    except UserError as exc:
        return BadCommand(exc.message)


def max_command_chars(max_prompt_chars: int) -> int:
    """The longest command text worth reading when prompts have at most ``max_prompt_chars``:
    room for a prompt, a negative prompt and :data:`COMMAND_ALLOWANCE` more."""
    return 2 * max_prompt_chars + COMMAND_ALLOWANCE


def size_for_aspect(
    aspect: tuple[int, int], *, pixels: int, min_side: int = 64, multiple: int = 8
) -> tuple[int, int]:
    """A width and height with ratio ``aspect``, about ``pixels`` in area (the model's
    native size), each a multiple of ``multiple`` and neither side below ``min_side``."""
    ratio = aspect[0] / aspect[1]
    width = math.sqrt(pixels * ratio)
    height = width / ratio
    short = min(width, height)
    if short < min_side:  # tiny models: keep the short side legal, let the area grow
        width, height = width * min_side / short, height * min_side / short

    def snap(value: float) -> int:
        return max(math.ceil(min_side / multiple), round(value / multiple)) * multiple

    return snap(width), snap(height)


def _parse(text: str, catalog: Catalog) -> Parsed:
    text, tags = take_lora_tags(text)
    loras: dict[str, tuple[LoraRequest, str]] = {}  # by name: the request and how it was typed
    for name, weight, tag in tags:
        _add_lora(loras, lora_request(name, weight, catalog, shown=tag), shown=tag)
    try:
        tokens = command_tokens(text)
    except TokenizeError as exc:
        return BadCommand(str(exc))
    if not tokens:
        return BadCommand(EMPTY_MESSAGE)
    meta = _meta(tokens)
    if meta is not None:
        return meta

    template = _template_name(tokens, catalog)
    words: list[str] = []
    variables: dict[str, str] = {}
    values: dict[str, object] = {}
    flags: dict[str, str | int | float] = {}
    rest = tokens[1:] if template else tokens
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.is_flag:
            i = _take_flag(rest, i, values, flags, loras, catalog)
        elif (
            template
            and not token.raw.startswith(('"', "'"))
            and (match := _ASSIGNMENT.match(token.value))
        ):
            key = match.group(1)
            if key in variables:
                return BadCommand(f"`{key}=` is given twice; keep one value")
            variables[key] = token.value[match.end() :].strip()
            i += 1
        else:
            words.append(token.raw)
            i += 1

    if template:
        problem = _check_variables(catalog, template, variables)
        if problem:
            return problem
    prompt = tidy(" ".join(words))
    if not _describes_something(prompt):
        if not template:  # `/imagine ""` or zero-width spaces would render an empty prompt
            return BadCommand(EMPTY_MESSAGE)
        prompt = ""  # the template describes the image; nothing to append to it
    if "aspect" in values and "size" in values:
        return BadCommand("use either --ar or --size, not both (--ar 3:2 or --size 768x512)")
    return ImagineRequest(
        prompt=prompt,
        template=template,
        variables=variables,
        loras=tuple(request for request, _ in loras.values()),
        flags=flags,
        **values,  # type: ignore[arg-type]
    )


def _meta(tokens: list[Token]) -> Parsed | None:
    """``help``, ``status``... only when the word stands alone: "status report of a firm" is
    a prompt."""
    name = tokens[0].value.lower()
    if name not in META_NAMES:
        return None
    if name in ("cancel", "repost"):
        if len(tokens) == 1:
            return BadCommand(
                f"{name} needs a job id, e.g. `/imagine {name} 3f2a9c1b07de`; "
                "`/imagine status` lists your jobs"
            )
        if len(tokens) == 2 and not tokens[1].is_flag:
            return MetaCommand(name, tokens[1].value)
        return None
    if name == "help" and len(tokens) == 2:
        return MetaCommand("help", tokens[1].value)
    if name == "usage":
        return _usage(tokens)
    if len(tokens) == 1:
        return MetaCommand(name)
    return None


def _usage(tokens: list[Token]) -> Parsed | None:
    """``usage [week|month] [by user|template|channel|model]`` as the argument
    ``"PERIOD GROUP"`` (defaults: week, user); other words after ``usage`` make a prompt."""
    if any(token.is_flag for token in tokens[1:]):
        return None
    words = [token.value.lower() for token in tokens[1:]]
    period, by = "week", "user"
    if words and words[0] in PERIODS:
        period = words.pop(0)
    if words and words[0] == "by":
        if len(words) != 2 or words[1] not in GROUPS:
            return BadCommand(
                f"usage groups by {', '.join(GROUPS[:-1])} or {GROUPS[-1]}, e.g. "
                "`/imagine usage month by template`"
            )
        by = words.pop(1)
        words.pop(0)
    if words:
        return None  # "usage of light in a cathedral": a prompt
    return MetaCommand("usage", f"{period} {by}")


def _template_name(tokens: list[Token], catalog: Catalog) -> str | None:
    """The template the first word names; a usage error for a near miss that looks meant
    as a template (hyphenated, or followed by ``key=value`` words)."""
    first = tokens[0]
    if first.is_flag or first.quoted:
        return None
    if catalog.is_template(first.value):
        return first.value
    looks_like_template = "-" in first.value or "_" in first.value
    has_assignments = any(_ASSIGNMENT.match(t.value) for t in tokens[1:] if not t.is_flag)
    if looks_like_template or has_assignments:
        close = difflib.get_close_matches(first.value, list(catalog.templates), n=1, cutoff=0.8)
        if close:
            raise UserError(f"unknown template `{first.value}`; did you mean `{close[0]}`?")
    return None


def _check_variables(catalog: Catalog, template: str, variables: dict[str, str]) -> Parsed | None:
    known = catalog.template(template).variables
    for key in variables:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = (
                f"did you mean `{close[0]}`?"
                if close
                else f"its variables are {catalog.template(template).signature()}"
            )
            return BadCommand(f"template `{template}` has no variable `{key}`; {hint}")
    return None


def _take_flag(
    tokens: list[Token],
    i: int,
    values: dict[str, object],
    flags: dict[str, str | int | float],
    loras: dict[str, tuple[LoraRequest, str]],
    catalog: Catalog,
) -> int:
    """Consume flag ``tokens[i]`` and its value; return the index after them."""
    name, inline = tokens[i].flag_parts()
    flag = FLAG_BY_NAME.get(name.lower())
    if flag is None:
        raise UserError(unknown_flag_message(name))
    if inline is not None:
        arg, end = inline, i + 1
    elif flag.kind in ("text", "sampler"):
        end = i + 1
        while end < len(tokens) and not tokens[end].is_flag:
            end += 1
        arg = " ".join(t.value for t in tokens[i + 1 : end])
        if flag.kind == "sampler":
            arg, end = _sampler_words(tokens, i + 1, end)
    elif i + 1 < len(tokens) and not tokens[i + 1].is_flag:
        arg, end = tokens[i + 1].value, i + 2
    else:
        arg, end = "", i + 1
    arg = arg.strip()
    if not arg:
        raise UserError(f"--{flag.name} needs a value, e.g. {flag.example}")
    value = convert(flag, arg, catalog)
    if flag.kind == "lora":
        _add_lora(loras, value, shown=f"--{flag.name} {arg}")  # type: ignore[arg-type]
        return end
    target = flags if flag.reserved else values
    if flag.field in target:
        raise UserError(f"--{flag.name} is given twice; keep one")
    target[flag.field] = value  # type: ignore[assignment]
    return end


def _add_lora(
    loras: dict[str, tuple[LoraRequest, str]], request: LoraRequest, *, shown: str
) -> None:
    """Add a LoRA; refuse one given twice (by ``--lora`` or ``<lora:...>``) as every other
    repeated flag is refused, rather than keep one of the two weights silently."""
    earlier = loras.get(request.name)
    if earlier is not None:
        raise UserError(
            f"LoRA `{request.name}` is given twice (`{earlier[1]}` and `{shown}`); keep one"
        )
    loras[request.name] = (request, shown)


def _sampler_words(tokens: list[Token], start: int, stop: int) -> tuple[str, int]:
    """Sampler names have spaces (``DPM++ 2M Karras``): take the longest run of words that
    names one; words after it return to the prompt."""
    for end in range(min(stop, start + 5), start, -1):
        words = " ".join(t.value for t in tokens[start:end])
        if sampler_key(words) in SAMPLER_BY_KEY:
            return words, end
    return (tokens[start].value if start < stop else ""), min(stop, start + 1)


def take_lora_tags(text: str) -> tuple[str, list[tuple[str, str | None, str]]]:
    """Remove A1111 ``<lora:name:weight>`` tags from the text; return them as
    ``(name, weight, tag as typed)``. Each tag leaves a space (:func:`tidy` closes the
    gaps); ``weight`` is None when the tag gives none. Shared with the A1111 API
    (``bot.api.a1111.names``), so chat and the API read the tags alike."""
    found: list[tuple[str, str | None, str]] = []

    def keep(match: re.Match[str]) -> str:
        found.append((match.group(1), match.group(2), match.group(0)))
        return " "

    return _LORA_TAG.sub(keep, text), found


def _describes_something(prompt: str) -> bool:
    """Whether the prompt has a visible character other than a quotation mark: ``""``,
    ``' '`` or zero-width spaces (format characters) describe nothing."""
    return any(ch not in _QUOTE_MARKS and unicodedata.category(ch)[0] not in "ZC" for ch in prompt)


def tidy(prompt: str) -> str:
    """Close the gaps that removed ``<lora:...>`` tags leave behind: runs of spaces, spaces
    before a comma, repeated commas, and spaces or commas at either end."""
    prompt = re.sub(r"\s+", " ", prompt)
    prompt = re.sub(r"\s+,", ",", prompt)
    prompt = re.sub(r",(\s*,)+", ",", prompt)
    return prompt.strip(" ,")


__all__ = [
    "FLAGS",
    "ImagineRequest",
    "LoraRequest",
    "MetaCommand",
    "Parsed",
    "BadCommand",
    "max_command_chars",
    "parse",
    "size_for_aspect",
    "take_lora_tags",
    "tidy",
]
