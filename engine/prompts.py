"""A1111 prompt syntax: attention weights, BREAK, and prompts longer than 75 tokens.

``parse_weights`` and ``chunk_tokens`` are pure Python (the bot may import them to
check a prompt); ``encode_prompts`` needs torch and imports it only when called.

Encoding follows A1111: the weighted token ids are cut into chunks of 75 (at a
recent comma when one is close, or at BREAK), each chunk is encoded with BOS/EOS
by every text encoder, hidden states are scaled by the token weights, the chunk's
original mean is restored, and the chunks are concatenated. Nothing is truncated.

Textual-inversion embeddings (``engine.embeddings``): ``encode_prompts(..., embeddings=)``
maps each embedding word (matched case-insensitively as a whole word, as A1111 does) to the
tokens loaded for it, ``name name_1 ...`` for a multi-vector one; the word's place in the
prompt gets those token ids with the word's weight, and a chunk that has no room left for
all of them starts a new chunk (A1111). Only the words given are replaced: a word the job's
catalog does not name stays text, whatever tokens the pipeline holds.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
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
        elif weight is not None and round_open and _number(weight):
            multiply(round_open.pop(), float(weight))
        elif weight is not None and round_open:
            # `(red:1.2.3)` is no weight: A1111 raises here and the job would fail in the
            # worker; the text stays text and the bracket counts as a plain `)`.
            res.append([token[:-1].rstrip(), 1.0])
            multiply(round_open.pop(), 1.1)
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


def _number(text: str) -> bool:
    """Whether ``text`` (digits, dots and a sign) reads as a weight: one number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Chunk:
    """Up to :data:`CHUNK` token ids with their weights (no BOS/EOS, no padding)."""

    ids: list[int]
    weights: list[float]


def chunk_tokens(
    pieces: list[tuple[list[int], float]],
    *,
    comma_id: int | None = None,
    whole: Collection[int] = (),
) -> list[Chunk]:
    """Cut weighted token runs into chunks of at most :data:`CHUNK` tokens (A1111's rules).

    A chunk that fills up is cut after its last comma when that comma is at most
    :data:`COMMA_BACKTRACK` tokens back, so a phrase is not split across chunks;
    a weight of -1 (BREAK) starts a new chunk. ``whole``: indices of pieces (an embedding's
    vectors) that start a new chunk rather than be split across two. There is always at
    least one chunk.
    """
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append(Chunk(ids, weights))
        ids, weights, last_comma = [], [], -1

    for index, (tokens, weight) in enumerate(pieces):
        if weight == -1.0:
            close()
            continue
        if index in whole and ids and len(ids) + len(tokens) > CHUNK >= len(tokens):
            close()
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


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern finding any of ``words`` as a whole word, case-insensitively (the longest
    first, so ``bad-hands`` wins over ``bad``); None for no words."""
    unique = sorted({w for w in words if w}, key=lambda w: (-len(w), w))
    if not unique:
        return None
    alternatives = "|".join(re.escape(w) for w in unique)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def token_count(
    tokenizer: Any, text: str, *, embeddings: Mapping[str, Sequence[str]] | None = None
) -> int:
    """How many tokens ``text`` is (without BOS/EOS), weights syntax removed; ``embeddings``
    as for :func:`encode_prompts` (each embedding word counts its vectors)."""
    pieces, _ = _tokenize(tokenizer, text, embeddings)
    return sum(len(ids) for ids, w in pieces if w != -1.0)


def _tokenize(
    tokenizer: Any, text: str, embeddings: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[tuple[list[int], float]], set[int]]:
    """Weighted token runs of ``text`` and the indices of the runs that are embeddings."""
    by_word = {word.lower(): tokens for word, tokens in (embeddings or {}).items()}
    pattern = word_pattern(by_word)
    parts: list[tuple[str | list[int], float]] = []  # text to tokenize, or embedding ids
    for fragment, weight in parse_weights(text):
        if weight == -1.0 or pattern is None:
            parts.append((fragment, weight))
            continue
        at = 0
        for match in pattern.finditer(fragment):
            if match.start() > at:
                parts.append((fragment[at : match.start()], weight))
            parts.append((_token_ids(tokenizer, by_word[match.group(0).lower()]), weight))
            at = match.end()
        if at == 0 or at < len(fragment):
            parts.append((fragment[at:], weight))
    texts = [p for p, w in parts if isinstance(p, str) and w != -1.0]
    encoded = (
        tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)
        if texts
        else None
    )
    ids = iter(encoded.input_ids if encoded is not None else [])
    pieces: list[tuple[list[int], float]] = []
    whole: set[int] = set()
    for part, weight in parts:
        if weight == -1.0:
            pieces.append(([], weight))
        elif isinstance(part, str):
            pieces.append((next(ids), weight))
        else:
            whole.add(len(pieces))
            pieces.append((part, weight))
    return pieces, whole


def _token_ids(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """The ids of added tokens ``tokens`` (an embedding loaded into ``tokenizer``)."""
    added = tokenizer.added_tokens_encoder
    missing = [t for t in tokens if t not in added]
    if missing:
        raise ValueError(f"tokens {missing} are not loaded into this tokenizer")
    return [added[t] for t in tokens]


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


def encode_prompts(
    pipe: Any,
    prompt: str,
    negative: str = "",
    *,
    embeddings: Mapping[str, Sequence[str]] | None = None,
) -> PromptEmbeds:
    """Encode ``prompt`` and ``negative`` for ``pipe`` (SD1.5 or SDXL) with A1111 semantics.

    SD1.5: the last hidden state of the one encoder. SDXL: the penultimate hidden states
    of both encoders side by side, pooled output from the first chunk of encoder 2; an
    empty negative becomes zeros when the pipeline asks for that
    (``force_zeros_for_empty_prompt``), as diffusers does. Prompt and negative are padded
    to the same number of chunks with encodings of the empty prompt.

    ``embeddings``: embedding word -> the tokens loaded for it into the pipeline's
    tokenizer(s) (``engine.embeddings.use_embeddings``); those words become their vectors.
    """
    import torch

    xl = getattr(pipe, "text_encoder_2", None) is not None
    pos, pos_pooled = _encode(pipe, prompt, xl=xl, embeddings=embeddings)
    neg_pooled: torch.Tensor | None
    if pos_pooled is not None and not negative and pipe.config.get("force_zeros_for_empty_prompt"):
        neg, neg_pooled = torch.zeros_like(pos), torch.zeros_like(pos_pooled)
    else:
        neg, neg_pooled = _encode(pipe, negative, xl=xl, embeddings=embeddings)
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


_devices: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def execution_device(pipe: Any) -> Any:
    """Where ``pipe`` runs its modules (the GPU also when they are offloaded to the CPU
    between calls). diffusers works it out by walking every module, 7 ms a time on SD1.5:
    a job's prompts asked twice, 5 % of a 0.5 s render. A pipeline keeps its device from
    its load on, so it is worked out once per pipeline."""
    if pipe not in _devices:
        _devices[pipe] = pipe._execution_device
    return _devices[pipe]


def _encode(
    pipe: Any, text: str, *, xl: bool, embeddings: Mapping[str, Sequence[str]] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states ``[1, 77 * chunks, dim]`` (encoders side by side) and pooled output."""
    import torch

    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if xl:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    pairs = [(tok, enc) for tok, enc in pairs if enc is not None]
    device = execution_device(pipe)
    per_encoder, pooled = [], None
    for tokenizer, encoder in pairs:
        comma = tokenizer.convert_tokens_to_ids(",</w>")
        comma = None if comma == tokenizer.unk_token_id else comma
        pieces, whole = _tokenize(tokenizer, text, embeddings)
        chunks = chunk_tokens(pieces, comma_id=comma, whole=whole)
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
