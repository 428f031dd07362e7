"""The ``/imagine`` grammar: words as people type them in chat (``tokens``), the flag table
shared by the parser, help and the Discord options (``flags``), and the parser (``parse``):
text in, an :class:`ImagineRequest`, a :class:`MetaCommand` or a :class:`BadCommand` out.
Pure: no I/O."""

from bot.grammar.flags import FLAG_BY_NAME, FLAGS, Flag, LoraRequest, convert, lora_request
from bot.grammar.parse import (
    BadCommand,
    ImagineRequest,
    MetaCommand,
    Parsed,
    max_command_chars,
    parse,
    size_for_aspect,
)
from bot.grammar.tokens import Token, TokenizeError, command_tokens, first_word, tokenize

__all__ = [
    "BadCommand",
    "FLAGS",
    "FLAG_BY_NAME",
    "Flag",
    "ImagineRequest",
    "LoraRequest",
    "MetaCommand",
    "Parsed",
    "Token",
    "TokenizeError",
    "command_tokens",
    "convert",
    "first_word",
    "lora_request",
    "max_command_chars",
    "parse",
    "size_for_aspect",
    "tokenize",
]
