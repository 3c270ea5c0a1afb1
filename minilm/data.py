"""From a text file to batches of token ids.

Read top to bottom:
1. corpora: a bundled name ("shakespeare", see `data/SOURCES.md`) or a path to any UTF-8 file;
2. the train/validation split: the last 10% of the file's bytes are held out;
3. tokenizers: raw bytes (vocab 256, the default, so every model can score every domain) or a
   byte-level BPE `tokenizer.json` (`minilm.bpe`);
4. token arrays, cached on disk as `.npy` files and memory-mapped;
5. batches: random contiguous windows, drawn from one corpus or a weighted mixture of several,
   by a seeded generator whose state goes into the checkpoint;
6. the validation set: fixed, non-overlapping windows over the held-out split.

Shape letters: B batch size, T block size (context length), N number of windows.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from minilm.augment import draw_row_seeds
from minilm.cli import UserError  # noqa: F401  (re-exported: many modules import it from here)

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "tokens"
VAL_FRACTION = 0.1


# ----------------------------------------------------------------------------------------------
# 1. Corpora
# ----------------------------------------------------------------------------------------------


def bundled_corpora() -> list[str]:
    """Names of the corpora shipped in `data/` (file stems of `data/*.txt`)."""
    return sorted(path.stem for path in DATA_DIR.glob("*.txt"))


def resolve_corpus(spec: str | os.PathLike) -> Path:
    """A bundled corpus name ("shakespeare") or a file path -> the path of the text file."""
    spec = str(spec)
    if spec in bundled_corpora():
        return DATA_DIR / f"{spec}.txt"
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    raise UserError(
        f"--data: {spec!r} is neither a bundled corpus ({', '.join(bundled_corpora())}) nor an existing file"
    )


def read_corpus(spec: str | os.PathLike) -> tuple[str, Path, bytes]:
    """Read a corpus as raw bytes. Returns (short name, path, bytes); empty files are refused."""
    path = resolve_corpus(spec)
    data = path.read_bytes()
    if not data:
        raise UserError(f"--data: corpus file {str(path)!r} is empty; expected some UTF-8 text")
    return path.stem, path, data


# ----------------------------------------------------------------------------------------------
# 2. The train/validation split
# ----------------------------------------------------------------------------------------------


def split_point(data: bytes, val_fraction: float = VAL_FRACTION) -> int:
    """Where the validation part of a corpus starts, as a byte offset.

    The split is by bytes, before tokenization, so every tokenizer sees the same held-out text
    and bits per byte compare across tokenizers. The cut starts at floor((1 - f) * n) and moves
    forward to the next UTF-8 character boundary (a byte that is not a continuation byte
    0b10xxxxxx), so no character is broken in two. train = data[:cut], val = data[cut:].
    """
    cut = int(len(data) * (1.0 - val_fraction))
    while cut < len(data) and (data[cut] & 0b1100_0000) == 0b1000_0000:
        cut += 1
    return cut


# ----------------------------------------------------------------------------------------------
# 3. Tokenizers
# ----------------------------------------------------------------------------------------------


class ByteTokenizer:
    """The simplest tokenizer: one token per UTF-8 byte, id = byte value, vocabulary of 256.

    Extra tokens (a mask token for the masked-LM objective, one tag per domain) are *special
    tokens*: `ByteTokenizer(special_tokens=("<mask>",))` has vocabulary 256 + 1, and the k-th
    special token gets id 256 + k, so the byte ids never move. A special token is text that
    stands for one id:

    - `encode(text)` reads every byte as a byte (so a corpus that happens to contain "<mask>"
      stays ordinary text, and equals the raw bytes); `encode(text, allow_special=True)` turns
      the text of each special token into its id (the keyword of `BPETokenizer.encode`);
    - `decode` and `token_bytes` give a special token's text;
    - `num_bytes` counts only byte tokens: a special token is put in by the program, not read
      from the text, so it covers no text byte and bits per byte stay bits per byte of the text.
    """

    def __init__(self, special_tokens: Sequence[str] = ()):
        special_tokens = tuple(special_tokens)
        for text in special_tokens:
            if not isinstance(text, str) or len(text.encode("utf-8")) < 2:
                raise UserError(f"special token {text!r}: expected a text of at least 2 bytes "
                                f"(an empty or one-byte token would be indistinguishable from the bytes)")
        if len(set(special_tokens)) != len(special_tokens):
            raise UserError(f"special tokens {list(special_tokens)}: expected each text once")
        self.special_tokens = {text: 256 + k for k, text in enumerate(special_tokens)}  # text -> id
        self._special_bytes = [text.encode("utf-8") for text in special_tokens]  # id - 256 -> bytes
        by_length = sorted(special_tokens, key=len, reverse=True)  # longest first: "<a><b>" beats "<a>"
        self._special_split = re.compile("(" + "|".join(map(re.escape, by_length)) + ")") if by_length else None

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def special_id(self, name: str) -> int:
        """The id of the special token `name`, e.g. special_id("<mask>") -> 256."""
        if name not in self.special_tokens:
            raise UserError(f"special token {name!r}: this tokenizer has {list(self.special_tokens) or 'none'}")
        return self.special_tokens[name]

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if self._special_split is None or not allow_special:
            return list(text.encode("utf-8"))
        ids: list[int] = []
        for k, piece in enumerate(self._special_split.split(text)):
            if k % 2:  # odd pieces are the separators: special tokens
                ids.append(self.special_tokens[piece])
            else:
                ids += piece.encode("utf-8")
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes behind one id; a special token's are its text's UTF-8 bytes."""
        token_id = int(token_id)
        if 0 <= token_id < 256:
            return bytes([token_id])
        if 256 <= token_id < self.vocab_size:
            return self._special_bytes[token_id - 256]
        raise ValueError(f"token id {token_id} is out of range 0..{self.vocab_size - 1}")

    def decode(self, ids) -> str:
        """Ids -> text; never raises: broken UTF-8 and ids outside the vocabulary become U+FFFD."""
        size = self.vocab_size
        data = b"".join(self.token_bytes(i) if 0 <= int(i) < size else b"\xff" for i in ids)
        return data.decode("utf-8", errors="replace")

    def num_bytes(self, ids) -> int:
        """Text bytes behind ids: one per byte token, none for a special token (see the class)."""
        if not self.special_tokens:
            return len(ids)  # every id is a byte
        return sum(1 for i in ids if int(i) < 256)

    def to_json(self) -> str:
        description = {"type": "bytes"}
        if self.special_tokens:
            description["special_tokens"] = list(self.special_tokens)  # in id order
        return json.dumps(description)

    @classmethod
    def from_json(cls, text: str) -> "ByteTokenizer":
        """Rebuild from `to_json()`; the plain `{"type": "bytes"}` (no special tokens) gives vocab 256."""
        description = json.loads(text)
        specials = description.get("special_tokens", [])
        if not isinstance(specials, list):
            raise UserError(f"byte tokenizer json: 'special_tokens' must be a list of strings, got {specials!r}")
        return cls(specials)

    def __repr__(self) -> str:
        if not self.special_tokens:
            return "ByteTokenizer()"
        return f"ByteTokenizer(special_tokens={tuple(self.special_tokens)!r})"


def load_tokenizer(spec: str | os.PathLike):
    """`--tokenizer`: "bytes" for the ByteTokenizer, or a path to a BPE `tokenizer.json`."""
    if str(spec) == "bytes":
        return ByteTokenizer()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"--tokenizer: {str(spec)!r} is neither 'bytes' nor an existing tokenizer.json file")
    try:
        return tokenizer_from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"--tokenizer: {str(path)!r} is not a valid tokenizer.json ({error})") from None


def tokenizer_from_json(text: str):
    """Rebuild a tokenizer from its `to_json()` text (as stored in checkpoints)."""
    description = json.loads(text)
    if isinstance(description, dict) and description.get("type") == "bytes":
        return ByteTokenizer.from_json(text)
    from minilm.bpe import BPETokenizer  # only needed for BPE; keeps `bpe` optional for bytes

    return BPETokenizer.from_json(text)


# ----------------------------------------------------------------------------------------------
# 4. Token arrays, cached on disk
# ----------------------------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def tokenize(data: bytes, tokenizer, what: str = "corpus") -> np.ndarray:
    """Encode raw corpus bytes into a 1-D array of token ids."""
    dtype = token_dtype(tokenizer.vocab_size)
    if type(tokenizer) is ByteTokenizer:  # fast path: the bytes are the ids
        return np.frombuffer(data, dtype=np.uint8).astype(dtype)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"--data: {what} is not valid UTF-8 (byte {error.start}); a BPE tokenizer needs text") from None
    return np.asarray(tokenizer.encode(text), dtype=dtype)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_tokens(data: bytes, tokenizer, cache_dir: str | os.PathLike | None, name: str = "corpus") -> np.ndarray:
    """Token ids of `data`, read from (or written to) `cache_dir` and memory-mapped.

    The file name carries the sha256 of the bytes and of the tokenizer's JSON, so a changed
    corpus or tokenizer never reads a stale array. The write is atomic (temp file + rename),
    so two processes (e.g. DDP ranks) may race safely. With cache_dir=None, or when the cache
    cannot be written, the array is simply kept in memory.
    """
    if cache_dir is None:
        return tokenize(data, tokenizer, name)
    key = f"{sha256_hex(data)[:16]}-{sha256_hex(tokenizer.to_json().encode())[:12]}"
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    path = Path(cache_dir) / f"{safe_name}-{key}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            pass  # a damaged cache file is rebuilt below
    tokens = tokenize(data, tokenizer, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            np.save(handle, tokens)
        os.replace(handle.name, path)
        return np.load(path, mmap_mode="r")
    except OSError:
        return tokens


@dataclass
class Corpus:
    """A tokenized corpus with its split: `train` and `val` are 1-D arrays of token ids."""

    name: str
    path: Path
    train: np.ndarray
    val: np.ndarray
    train_bytes: int
    val_bytes: int


def load_corpus(spec: str | os.PathLike, tokenizer, cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
                val_fraction: float = VAL_FRACTION) -> Corpus:
    """Read, split and tokenize a corpus. The two parts are tokenized separately."""
    name, path, data = read_corpus(spec)
    cut = split_point(data, val_fraction)
    train = cached_tokens(data[:cut], tokenizer, cache_dir, f"{name}-train")
    val = cached_tokens(data[cut:], tokenizer, cache_dir, f"{name}-val")
    return Corpus(name=name, path=path, train=train, val=val, train_bytes=cut, val_bytes=len(data) - cut)


# ----------------------------------------------------------------------------------------------
# 5. Batches
# ----------------------------------------------------------------------------------------------


class BatchSampler:
    """Random contiguous windows from one corpus or a weighted mixture of corpora.

    Each row of a batch picks a source with probability proportional to its weight, then a
    uniformly random start offset; x is the window, y the same window shifted by one token.

    Data parallelism: every rank holds the same generator and draws the rows of the whole
    *global* step (grad_accum x world_size x batch_size rows), then keeps its own slice. So a
    2-process run sees exactly the rows that a 1-process run with twice the batch sees, and the
    sampler's state is the same on every rank (one checkpoint serves all ranks).
    """

    def __init__(self, sources: Sequence[np.ndarray], weights: Sequence[float], block_size: int,
                 batch_size: int, seed: int, names: Sequence[str] | None = None,
                 rank: int = 0, world_size: int = 1, augmenter=None, tags: Sequence[int] | None = None):
        if len(sources) != len(weights) or not sources:
            raise ValueError("BatchSampler needs one weight per source and at least one source")
        names = list(names) if names is not None else [f"source {i}" for i in range(len(sources))]
        for name, tokens in zip(names, sources):
            if len(tokens) < block_size + 1:
                raise UserError(
                    f"--data: {name} has {len(tokens)} training tokens; expected at least "
                    f"block_size + 1 = {block_size + 1} (the last {VAL_FRACTION:.0%} is held out)"
                )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError(f"--mix: weights {list(weights)} must be >= 0 with a positive sum")
        self.sources = list(sources)
        self.weights = torch.tensor([float(w) for w in weights], dtype=torch.float64)
        self.block_size = block_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_drawn = 0
        self.window_offsets = np.arange(block_size + 1)  # (T+1,)
        # Optional: a minilm.augment.Augmenter (a transformed span per row, from one seed per row
        # drawn here), and one tag id per source put before the row's T bytes (domain tags).
        self.augmenter = augmenter if augmenter else None
        if tags is not None and len(tags) != len(sources):
            raise ValueError("BatchSampler needs one tag per source")
        self.tags = list(tags) if tags is not None else None

    def next_step(self, grad_accum: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of one optimizer step for this rank: grad_accum pairs of (B, T) int64."""
        rows_per_micro = self.world_size * self.batch_size
        num_rows = grad_accum * rows_per_micro
        if len(self.sources) == 1:
            source_of_row = torch.zeros(num_rows, dtype=torch.long)
        else:
            source_of_row = torch.multinomial(self.weights, num_rows, replacement=True, generator=self.generator)
        uniform = torch.rand(num_rows, generator=self.generator, dtype=torch.float64)  # (rows,)
        # Only an augmented run draws seeds, so a plain run's draws stay exactly as they were.
        seeds = draw_row_seeds(self.generator, num_rows).tolist() if self.augmenter else [None] * num_rows
        self.steps_drawn += 1
        micro_batches = []
        for micro in range(grad_accum):
            first = micro * rows_per_micro + self.rank * self.batch_size
            rows = range(first, first + self.batch_size)
            windows = np.stack([self.window(int(source_of_row[r]), float(uniform[r]), seeds[r])
                                for r in rows])  # (B, T+1)
            windows = torch.from_numpy(windows.astype(np.int64))
            micro_batches.append((windows[:, :-1], windows[:, 1:]))  # x (B, T), y (B, T)
        return micro_batches

    def window(self, source: int, uniform: float, seed: int | None = None) -> np.ndarray:
        """The T + 1 ids of one row: a window of the source at the drawn offset (augmented when the
        sampler has an augmenter), or, with domain tags, the source's tag and then T ids."""
        tokens = self.sources[source]
        length = self.block_size + 1 - (self.tags is not None)  # ids read from the source
        if seed is not None:
            text = self.augmenter.sample_window(tokens, uniform, length, seed)  # (length,)
        else:
            num_starts = len(tokens) - length + 1  # starts 0 .. len - length
            start = min(int(uniform * num_starts), num_starts - 1)
            text = np.asarray(tokens[start:start + length])  # (length,)
        if self.tags is None:
            return text  # (T+1,)
        return np.concatenate([np.array([self.tags[source]], dtype=np.int64), text.astype(np.int64)])  # (T+1,)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "steps_drawn": self.steps_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.steps_drawn = int(state["steps_drawn"])


# ----------------------------------------------------------------------------------------------
# 6. The validation set
# ----------------------------------------------------------------------------------------------


def validation_windows(tokens: np.ndarray, block_size: int, max_windows: int | None = None,
                       what: str = "validation split") -> torch.Tensor:
    """Fixed, non-overlapping windows of T + 1 tokens over `tokens`: a (N, T+1) int64 tensor.

    Window i starts at i * T, so every token after the first is predicted exactly once (the
    tail that does not fill a window is left out). With more than `max_windows` windows, an
    evenly spaced subset is kept. A split shorter than T + 1 tokens gives one shorter window.
    Nothing here is random: the same tokens always give the same set.
    """
    if len(tokens) < 2:
        raise UserError(f"--data: the {what} has {len(tokens)} tokens; expected at least 2 to evaluate")
    width = min(block_size, len(tokens) - 1)
    num_windows = (len(tokens) - 1) // width
    starts = np.arange(num_windows) * width
    if max_windows is not None and num_windows > max_windows:
        starts = starts[np.linspace(0, num_windows - 1, max_windows).round().astype(np.int64)]
    windows = np.stack([np.asarray(tokens[s:s + width + 1]) for s in starts])  # (N, T+1)
    return torch.from_numpy(windows.astype(np.int64))
