"""Data augmentation: on-the-fly byte-level transforms of the training windows.

A model trained on one kind of text does worse on another. One remedy is to change the
training distribution so that it covers more of what the model may meet: the same text in
other cases, with another line layout, without (or with) speaker tags, with typos.

Every transform has the same shape, `transform(data: bytes, rng: np.random.Generator) -> bytes`,
and the same rules:
- it works on characters, never on the bytes inside one: the bytes are read as UTF-8 with
  `surrogateescape` (a byte that is not part of a valid character, e.g. half a character at the
  edge of a window, becomes one opaque stand-in that no transform looks inside), so valid UTF-8
  in gives valid UTF-8 out;
- every random draw comes from `rng`, so the same seed gives the same bytes.

A transform may change the length, so `Augmenter` transforms a longer span (SPAN_FACTOR times
the window) and cuts the result to the window: every window keeps its length T + 1. The batch
sampler draws one seed per row of the global batch from its own generator and passes it in,
so a resumed run and a data-parallel run see the same augmented windows as one plain run.
"""
from __future__ import annotations

import re
import textwrap
from typing import Callable

import numpy as np
import torch

from minilm.cli import UserError

SPAN_FACTOR = 2  # the span read for one window is this many times the window's length


def as_text(data: bytes) -> str:
    """Bytes -> characters; a byte outside any valid character becomes one lone surrogate."""
    return data.decode("utf-8", errors="surrogateescape")


def as_bytes(text: str) -> bytes:
    """The inverse of `as_text`: as_bytes(as_text(b)) == b for every b."""
    return text.encode("utf-8", errors="surrogateescape")


# ----------------------------------------------------------------------------------------------
# 1. The transforms
# ----------------------------------------------------------------------------------------------

WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script)


def change_case(data: bytes, rng: np.random.Generator) -> bytes:
    """Case changes, one of three at random: all lower case, all upper case, or each word's case
    flipped (lower <-> upper) with probability 1/2. Letters without case (Chinese) stay."""
    text = as_text(data)
    mode = int(rng.integers(3))
    if mode == 0:
        return as_bytes(text.lower())
    if mode == 1:
        return as_bytes(text.upper())
    words = list(WORD.finditer(text))
    flips = rng.random(len(words)) < 0.5  # (words,)
    pieces, end = [], 0
    for word, flip in zip(words, flips, strict=True):
        pieces += [text[end:word.start()], word.group().swapcase() if flip else word.group()]
        end = word.end()
    pieces.append(text[end:])
    return as_bytes("".join(pieces))


MIN_WIDTH, MAX_WIDTH = 20, 100  # range of line widths when re-wrapping
PARAGRAPH_BREAK = re.compile(r"(\n[ \t]*\n+)")  # a blank line (kept as it is)


def rewrap_lines(data: bytes, rng: np.random.Generator) -> bytes:
    """Line layout: every paragraph (text between blank lines) is re-wrapped at a random width of
    20 to 100 characters, breaking only at spaces; runs of spaces inside a paragraph become one."""
    text = as_text(data)
    width = int(rng.integers(MIN_WIDTH, MAX_WIDTH + 1))
    pieces = PARAGRAPH_BREAK.split(text)  # paragraph, break, paragraph, ...
    for k in range(0, len(pieces), 2):
        if pieces[k].strip():
            pieces[k] = textwrap.fill(pieces[k], width=width, break_long_words=False, break_on_hyphens=False)
    return as_bytes("".join(pieces))


SPEAKER_TAG = re.compile(r"^[A-Z][A-Za-z']*(?: [A-Z][A-Za-z']*){0,3}:\n", re.MULTILINE)  # "First Citizen:\n"
SPEAKER_NAMES = ("First Citizen", "ROMEO", "All", "Narrator", "Speaker")


def toggle_speaker_tags(data: bytes, rng: np.random.Generator) -> bytes:
    """Speaker tags (a line "Name:" before a speech, as in a play): text that has them loses them
    all; text that has none gets one, of a random name, at the start of every paragraph."""
    text = as_text(data)
    if SPEAKER_TAG.search(text):
        return as_bytes(SPEAKER_TAG.sub("", text))
    pieces = PARAGRAPH_BREAK.split(text)
    names = rng.integers(len(SPEAKER_NAMES), size=len(pieces))  # (pieces,)
    for k in range(2, len(pieces), 2):  # every paragraph after a blank line (the first may start mid-line)
        if pieces[k].strip():
            pieces[k] = f"{SPEAKER_NAMES[names[k]]}:\n{pieces[k]}"
    return as_bytes("".join(pieces))


TYPO_RATE = 0.05  # chance per character of a typo (a third each: deleted, swapped, inserted)


def typo_noise(data: bytes, rng: np.random.Generator) -> bytes:
    """Typos on characters: each character independently is deleted, swapped with the next one, or
    preceded by an inserted copy of a random character of the same text, each with chance TYPO_RATE/3."""
    chars = list(as_text(data))
    n = len(chars)
    if n == 0:
        return data
    fate = rng.random(n)  # (n,)
    picks = rng.integers(n, size=n)  # (n,) which character an insertion copies
    out, i = [], 0
    while i < n:
        if fate[i] < TYPO_RATE / 3:  # deleted
            i += 1
        elif fate[i] < 2 * TYPO_RATE / 3 and i + 1 < n:  # swapped with the next character
            out += [chars[i + 1], chars[i]]
            i += 2
        elif fate[i] < TYPO_RATE:  # a character inserted before this one
            out += [chars[picks[i]], chars[i]]
            i += 1
        else:
            out.append(chars[i])
            i += 1
    return as_bytes("".join(out))


TRANSFORMS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "case": change_case,
    "layout": rewrap_lines,
    "speakers": toggle_speaker_tags,
    "typos": typo_noise,
}


# ----------------------------------------------------------------------------------------------
# 2. The augmenter the batch sampler calls
# ----------------------------------------------------------------------------------------------


def parse_augment(items: list[str]) -> dict[str, float]:
    """`--augment NAME=P` items (repeatable) -> {name: probability}, in the order given."""
    probabilities: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--augment {item!r}: expected NAME=P, e.g. case=0.5")
        if name not in TRANSFORMS:
            raise UserError(f"--augment {item!r}: unknown transform {name!r}; expected one of {', '.join(TRANSFORMS)}")
        if name in probabilities:
            raise UserError(f"--augment {item!r}: transform {name!r} given twice")
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if not 0.0 <= p <= 1.0:  # also refuses nan
            raise UserError(f"--augment {item!r}: expected a probability in [0, 1], got {value!r}")
        probabilities[name] = p
    return probabilities


class Augmenter:
    """Applies each chosen transform with its probability to a span and cuts it to the window.

        augmenter = Augmenter.from_flags(["case=0.5", "typos=0.2"])
        span = tokens[start:start + augmenter.span_length(T + 1)]      # read a longer span
        window = augmenter.window_tokens(span, T + 1, seed)            # exactly T + 1 byte ids

    or, in one call with the sampler's draws for a row, `sample_window(tokens, uniform, T + 1, seed)`.

    The transforms run in the order of TRANSFORMS (not the order of the flags), each once at
    most. When the transforms shrink the span below the window (deleting all speaker tags of a
    short span can), the window is the span's first T + 1 bytes, untransformed.
    """

    def __init__(self, probabilities: dict[str, float]):
        self.probabilities = {name: probabilities[name] for name in TRANSFORMS if name in probabilities}

    @classmethod
    def from_flags(cls, items: list[str]) -> Augmenter:
        return cls(parse_augment(items))

    def __bool__(self) -> bool:
        return any(p > 0 for p in self.probabilities.values())

    def span_length(self, window_length: int) -> int:
        return SPAN_FACTOR * window_length

    def transform(self, data: bytes, rng: np.random.Generator) -> bytes:
        for name, p in self.probabilities.items():
            if rng.random() < p:
                data = TRANSFORMS[name](data, rng)
        return data

    def window(self, span: bytes, length: int, seed: int) -> bytes:
        """The hook: a span of at least `length` bytes -> exactly `length` bytes, drawn from `seed`."""
        if len(span) < length:
            raise ValueError(f"the span has {len(span)} bytes, fewer than the window's {length}")
        transformed = self.transform(span, np.random.default_rng(seed))
        return transformed[:length] if len(transformed) >= length else span[:length]

    def window_tokens(self, span: np.ndarray, length: int, seed: int) -> np.ndarray:
        """`window` on byte ids: span (S,) ids in 0..255 -> (length,) int64 ids."""
        span = np.asarray(span)
        if span.size and int(span.max()) > 255:
            raise UserError("--augment: works on byte ids only (the bytes tokenizer, without special tokens)")
        data = self.window(bytes(span.astype(np.uint8)), length, seed)
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)  # (length,)


    def sample_window(self, tokens: np.ndarray, uniform: float, length: int, seed: int) -> np.ndarray:
        """What `BatchSampler.window` returns, augmented: a span starting at a uniformly drawn
        offset (`uniform` in [0, 1), the sampler's draw for the row), transformed and cut to
        `length` ids. A corpus shorter than the span gives a shorter span (at least `length`)."""
        span_length = min(self.span_length(length), len(tokens))
        num_starts = len(tokens) - span_length + 1
        start = min(int(uniform * num_starts), num_starts - 1)
        return self.window_tokens(tokens[start:start + span_length], length, seed)  # (length,)


def draw_row_seeds(generator: torch.Generator, num_rows: int) -> torch.Tensor:
    """One seed per row of the global batch, from the sampler's generator: (num_rows,) int64."""
    return torch.randint(0, 2**62, (num_rows,), generator=generator)
