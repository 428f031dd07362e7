"""A1111 prompt syntax: attention weights, BREAK, and prompts longer than 75 tokens.

``parse_weights`` and ``chunk_tokens`` are pure Python (the bot may import them to
check a prompt); ``encode_prompts`` needs torch and imports it only when called.

Encoding follows A1111: the weighted token ids are cut into chunks of 75 (at a
recent comma when one is close, or at BREAK), each chunk is encoded with BOS/EOS
by every text encoder, hidden states are scaled by the token weights, the chunk's
original mean is restored, and the chunks are concatenated. Nothing is truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CHUNK = 75  # tokens per chunk, plus BOS and EOS = the encoders' 77 positions
COMMA_BACKTRACK = 20  # A1111: cut at the last comma if it is at most this far back
BREAK = "BREAK"

_ATTENTION = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\] | \\\\ | \\ |   # escapes
    \( | \[ |                                 # openers
    :\s*([+-]?[.\d]+)\s*\) |                  # explicit weight closing a (
    \) | ] |                                  # closers
    [^\\()\[\]:]+ |                           # plain text
    :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_weights(text: str) -> list[tuple[str, float]]:
    """Split A1111 prompt ``text`` into ``(fragment, weight)`` pairs.

    ``(a)`` multiplies by 1.1, ``[a]`` divides by 1.1, ``(a:1.3)`` sets 1.3 (nested
    brackets multiply), ``\\(`` is a literal bracket, and ``BREAK`` is returned as
    ``("BREAK", -1.0)``. Unbalanced brackets still apply to the rest of the text, as in
    A1111. Adjacent fragments of equal weight are merged.

    >>> parse_weights("a (red:1.5) cat")
    [('a ', 1.0), ('red', 1.5), (' cat', 1.0)]
    """
    res: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for item in res[start:]:
            item[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            res.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(res))
        elif token == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), 1.1)
        elif token == "]" and square_open:
            multiply(square_open.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i > 0:
                    res.append([BREAK, -1.0])
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, 1.1)
    for start in square_open:
        multiply(start, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    merged: list[list[Any]] = [res[0]]
    for text_, weight_ in res[1:]:
        if weight_ == merged[-1][1] and weight_ != -1.0:
            merged[-1][0] += text_
        else:
            merged.append([text_, weight_])
    return [(t, w) for t, w in merged if t or w == -1.0] or [("", 1.0)]


@dataclass
class Chunk:
    """Up to :data:`CHUNK` token ids with their weights (no BOS/EOS, no padding)."""

    ids: list[int]
    weights: list[float]


def chunk_tokens(
    pieces: list[tuple[list[int], float]], *, comma_id: int | None = None
) -> list[Chunk]:
    """Cut weighted token runs into chunks of at most :data:`CHUNK` tokens (A1111's rules).

    A chunk that fills up is cut after its last comma when that comma is at most
    :data:`COMMA_BACKTRACK` tokens back, so a phrase is not split across chunks;
    a weight of -1 (BREAK) starts a new chunk. There is always at least one chunk.
    """
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append(Chunk(ids, weights))
        ids, weights, last_comma = [], [], -1

    for tokens, weight in pieces:
        if weight == -1.0:
            close()
            continue
        for token in tokens:
            if token == comma_id:
                last_comma = len(ids)
            elif len(ids) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                carry_ids, carry_weights = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = carry_ids, carry_weights
            if len(ids) == CHUNK:
                close()
            ids.append(token)
            weights.append(weight)
    if ids or not chunks:
        close()
    return chunks


def token_count(tokenizer: Any, text: str) -> int:
    """How many tokens ``text`` is (without BOS/EOS), weights syntax removed."""
    return sum(len(ids) for ids, w in _tokenize(tokenizer, text) if w != -1.0)


def _tokenize(tokenizer: Any, text: str) -> list[tuple[list[int], float]]:
    parsed = parse_weights(text)
    texts = [t for t, w in parsed if w != -1.0]
    encoded = (
        tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)
        if texts
        else None
    )
    ids = iter(encoded.input_ids if encoded is not None else [])
    return [([], w) if w == -1.0 else (next(ids), w) for _, w in parsed]


@dataclass
class PromptEmbeds:
    """Conditioning for one image, ready to pass to the pipeline as keyword arguments."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def kwargs(self) -> dict[str, torch.Tensor]:
        """The non-empty fields, named as the diffusers pipelines expect them."""
        return {k: v for k, v in vars(self).items() if v is not None}


def encode_prompts(pipe: Any, prompt: str, negative: str = "") -> PromptEmbeds:
    """Encode ``prompt`` and ``negative`` for ``pipe`` (SD1.5 or SDXL) with A1111 semantics.

    SD1.5: the last hidden state of the one encoder. SDXL: the penultimate hidden states
    of both encoders side by side, pooled output from the first chunk of encoder 2; an
    empty negative becomes zeros when the pipeline asks for that
    (``force_zeros_for_empty_prompt``), as diffusers does. Prompt and negative are padded
    to the same number of chunks with encodings of the empty prompt.
    """
    import torch

    xl = getattr(pipe, "text_encoder_2", None) is not None
    pos, pos_pooled = _encode(pipe, prompt, xl=xl)
    neg_pooled: torch.Tensor | None
    if pos_pooled is not None and not negative and pipe.config.get("force_zeros_for_empty_prompt"):
        neg, neg_pooled = torch.zeros_like(pos), torch.zeros_like(pos_pooled)
    else:
        neg, neg_pooled = _encode(pipe, negative, xl=xl)
    if pos.shape[1] != neg.shape[1]:
        # The UNet needs cond and uncond of one length: pad the shorter with empty
        # chunks, as A1111 does (zeroed negatives are already the prompt's length).
        empty, _ = _encode(pipe, "", xl=xl)
        length = max(pos.shape[1], neg.shape[1])
        pos, neg = (_pad(e, length, empty) for e in (pos, neg))
    if not xl:
        return PromptEmbeds(pos, neg)
    return PromptEmbeds(pos, neg, pos_pooled, neg_pooled)


def _pad(embeds: torch.Tensor, length: int, filler: torch.Tensor) -> torch.Tensor:
    import torch

    missing = (length - embeds.shape[1]) // filler.shape[1]
    return torch.cat([embeds, filler.repeat(1, missing, 1)], dim=1) if missing else embeds


def _encode(pipe: Any, text: str, *, xl: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states ``[1, 77 * chunks, dim]`` (encoders side by side) and pooled output."""
    import torch

    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if xl:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    pairs = [(tok, enc) for tok, enc in pairs if enc is not None]
    device = pipe._execution_device
    per_encoder, pooled = [], None
    for tokenizer, encoder in pairs:
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        comma = None if comma == tokenizer.unk_token_id else comma
        chunks = chunk_tokens(_tokenize(tokenizer, text), comma_id=comma)
        states = []
        for i, chunk in enumerate(chunks):
            pad = [tokenizer.pad_token_id] * (CHUNK - len(chunk.ids))
            ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id, *pad]
            weights = [1.0, *chunk.weights, 1.0, *[1.0] * len(pad)]
            with torch.no_grad():
                out = encoder(torch.tensor([ids], device=device), output_hidden_states=xl)
            hidden = out.hidden_states[-2] if xl else out[0]
            if xl and encoder is pipe.text_encoder_2 and i == 0:
                pooled = out[0]  # projected text embeds, A1111 takes the first chunk's
            if any(w != 1.0 for w in weights):
                # Scale by weight, then restore the chunk's mean so emphasis changes
                # direction, not overall magnitude (A1111's method).
                mean = hidden.mean()
                scale = torch.tensor(weights, device=device, dtype=hidden.dtype).view(1, -1, 1)
                weighted = hidden * scale
                new_mean = weighted.mean()
                # Real CLIP encoders have a mean well away from zero. One whose mean is ~0
                # (a final layer norm without bias: the random tiny encoders) has no
                # magnitude to restore; dividing by ~0 would give zeros or NaN.
                floor = 1e-4 * hidden.abs().mean()
                if mean.abs() > floor and new_mean.abs() > floor:
                    weighted = weighted * (mean / new_mean)
                hidden = weighted
            states.append(hidden)
        per_encoder.append(torch.cat(states, dim=1))
    if len({s.shape[1] for s in per_encoder}) > 1:
        raise ValueError("the two tokenizers cut this prompt into different chunk counts")
    return torch.cat(per_encoder, dim=-1), pooled
