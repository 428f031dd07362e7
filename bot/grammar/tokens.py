"""Splitting a chat command into words, the way people type in chat (not ``shlex``).

Differences from a shell, each for a reason:
- an apostrophe inside a word is a letter (``dog's``), so ``'`` quotes only when it opens a
  word (or a ``key=`` value) and a matching ``'`` ends a word;
- ``"`` quotes only when it opens a word or a ``key=`` value, so ``a 12" record`` stays text;
- typographic quotes (“ ”) count as ``"`` and an em or en dash before a flag name counts as
  ``--``: phones and macOS substitute both as people type;
- no backslash escapes: a prompt may contain backslashes.

Linear in the length of the text: a chat message is untrusted input, and one slow message
blocks the handler that parses it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

_DOUBLE_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"'})
_FLAG = re.compile(r"^--[A-Za-z]")
_DASH_FLAG = re.compile(r"^[\u2014\u2013]-?(?=[A-Za-z])")
# A ``'`` that can end a quoted word: followed by whitespace or the end of the text. (``\s``
# of a str pattern is exactly ``str.isspace``, which the word splitting below uses.)
_CLOSING_SINGLE_QUOTE = re.compile(r"'(?=\s|\Z)")


class TokenizeError(ValueError):
    """The text cannot be split into words (an open quote); the message says how to fix it."""


@dataclass(frozen=True)
class Token:
    """One word. ``raw`` is as typed (quotes kept, for prompt text); ``value`` has quotes
    removed (for flag values and template variables)."""

    raw: str
    value: str
    quoted: bool = False

    @property
    def is_flag(self) -> bool:
        """``--name`` or ``--name=value`` (``--name="a b"`` too), unless the word starts
        with a quote: ``"--seed"`` is prompt text."""
        return not self.raw.startswith(("'", '"')) and bool(_FLAG.match(self.value))

    def flag_parts(self) -> tuple[str, str | None]:
        """``("seed", "12")`` for ``--seed=12``; ``("seed", None)`` for ``--seed``."""
        name, sep, inline = self.value[2:].partition("=")
        return name, (inline if sep else None)


COMMAND_WORDS = ("/imagine", "imagine")


def command_tokens(text: str) -> list[Token]:
    """The tokens of a command, without the command word when it was included
    (``/imagine a cat`` and ``a cat`` give the same); :class:`TokenizeError` as
    :func:`tokenize`."""
    tokens = tokenize(text)
    return tokens[1:] if tokens and tokens[0].value.lower() in COMMAND_WORDS else tokens


def first_word(text: str) -> str:
    """The command's first word, lower-cased ("" for none), without tokenizing: enough to
    route ``batch ...`` and ``calendar ...`` (their words carry no quotes)."""
    words = text.split(maxsplit=2)
    if words and words[0].lower() in COMMAND_WORDS:
        words = words[1:]
    return words[0].lower() if words else ""


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; raise :class:`TokenizeError` for a quote left open."""
    text = text.translate(_DOUBLE_QUOTES)
    closers = [match.start() for match in _CLOSING_SINGLE_QUOTE.finditer(text)]
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, quoted = i, False
        parts: list[str] = []
        while i < n and not text[i].isspace():
            ch = text[i]
            opens = not parts or parts[-1].endswith("=")
            if ch == '"' and opens:
                end = text.find('"', i + 1)
                if end < 0:
                    raise TokenizeError(
                        f"a quote opened at `{text[i : i + 20].strip()}` is not closed; "
                        'add the closing ", e.g. product="leather handbag"'
                    )
                parts.append(text[i + 1 : end])
                quoted, i = True, end + 1
            elif ch == "'" and opens and (end := _closing_single_quote(closers, i)) > 0:
                parts.append(text[i + 1 : end])
                quoted, i = True, end + 1
            else:
                parts.append(ch)
                i += 1
        value = "".join(parts)
        if text[start] not in "'\"":
            value = _DASH_FLAG.sub("--", value)
        tokens.append(Token(raw=text[start:i], value=value, quoted=quoted))
    return tokens


def _closing_single_quote(closers: list[int], start: int) -> int:
    """Index of the ``'`` that ends a word opened at ``start``, or -1 (then ``'`` is a
    letter). ``closers`` are the indexes of every ``'`` that can end a word, in order: one
    scan of the text for all the words, where a scan per word made ``'a 'a 'a ...``
    quadratic (issue 12: 36 KB took 10 s)."""
    k = bisect_right(closers, start)
    return closers[k] if k < len(closers) else -1
