"""From a text file to batches of token ids.

Read top to bottom:
1. corpora: a bundled name ("shakespeare", see `data/SOURCES.md`) or a path to any UTF-8 file
   (checked: a file that is not UTF-8 is refused naming the byte offset, unless allow_binary);
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

import codecs
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from minilm.augment import draw_row_seeds
from minilm.cli import UserError  # noqa: F401  (re-exported: many modules import it from here)
from minilm.outputs import DiskFullError, atomic_write, atomic_write_bytes

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


def resolve_corpus(spec: str | os.PathLike, flag: str = "--data") -> Path:
    """A bundled corpus name ("shakespeare") or a file path -> the path of the text file.
    `flag` is the command-line flag that named the corpus, for error messages."""
    spec = str(spec)
    if spec in bundled_corpora():
        return DATA_DIR / f"{spec}.txt"
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"{flag}: {spec!r} is a folder; expected a text file or a bundled corpus "
                        f"({', '.join(bundled_corpora())})")
    raise UserError(
        f"{flag}: {spec!r} is neither a bundled corpus ({', '.join(bundled_corpora())}) nor an existing file"
    )


# Byte-order marks of the Unicode encodings that are not UTF-8; UTF-32 first (its LE mark
# begins with UTF-16 LE's).
BYTE_ORDER_MARKS = [(codecs.BOM_UTF32_LE, "UTF-32 little-endian"), (codecs.BOM_UTF32_BE, "UTF-32 big-endian"),
                    (codecs.BOM_UTF16_LE, "UTF-16 little-endian"), (codecs.BOM_UTF16_BE, "UTF-16 big-endian")]
CHECK_CHUNK = 1 << 24  # UTF-8 is validated 16 MiB at a time, so no decoded copy of a big corpus is kept


def first_invalid_utf8(data: bytes) -> int | None:
    """The offset of the first byte of `data` that is not part of valid UTF-8, or None.

    Checked a chunk at a time with the incremental decoder: a character cut at the end of a
    chunk is not an error, it is left for the next chunk (`consumed` stops before it). A chunk
    of at least 4 bytes always consumes something, since no UTF-8 character is longer.
    """
    view = memoryview(data)
    start = 0
    while True:
        end = min(start + max(CHECK_CHUNK, 4), len(data))
        last = end == len(data)
        try:
            _, consumed = codecs.utf_8_decode(view[start:end], "strict", last)
        except UnicodeDecodeError as error:
            return start + error.start
        if last:
            return None
        start += consumed


def check_utf8(data: bytes, path: Path, flag: str = "--data", hint: str = "") -> None:
    """Refuse bytes that are not UTF-8 text with one line: the file, the absolute byte offset and
    the byte there; UTF-16 and UTF-32 files (with a byte-order mark) are named as such. `hint`
    is added to the message about invalid bytes."""
    for mark, encoding in BYTE_ORDER_MARKS:
        if data.startswith(mark):
            raise UserError(f"{flag}: {str(path)!r} is {encoding} text (it starts with that byte-order mark); "
                            f"minilm reads UTF-8: convert it first, e.g. iconv -f {encoding.split()[0]} -t UTF-8")
    offset = first_invalid_utf8(data)
    if offset is not None:
        raise UserError(f"{flag}: {str(path)!r} is not valid UTF-8: byte {offset} (0x{data[offset]:02x}) does not "
                        f"belong to a UTF-8 character; fix or convert the file{hint}")
    if data.count(0) * 4 > len(data):
        raise UserError(f"{flag}: {str(path)!r} is more than a quarter NUL bytes: UTF-16 or UTF-32 text without a "
                        "byte-order mark, or a binary file; convert it to UTF-8 first")


def read_corpus(spec: str | os.PathLike, allow_binary: bool = False, flag: str = "--data") -> tuple[str, Path, bytes]:
    """Read a corpus as raw bytes. Returns (short name, path, bytes).

    Empty files are refused, and so are files that are not UTF-8 text (see `check_utf8`) unless
    `allow_binary` (only the raw-byte tokenizer can take arbitrary bytes). `flag` names the
    command-line flag that gave `spec`, for the error messages.
    """
    path = resolve_corpus(spec, flag)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{flag}: cannot read {str(path)!r} ({error.strerror or error})") from None
    if not data:
        raise UserError(f"{flag}: corpus file {str(path)!r} is empty; expected some UTF-8 text")
    if not allow_binary:
        check_utf8(data, path, flag, hint=" (train.py --allow-binary lets the raw-byte tokenizer take any bytes)")
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


def array_sha256(tokens: np.ndarray) -> str:
    """sha256 of an array's raw bytes (a memory-mapped array is read from the file)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(tokens)).cast("B")).hexdigest()


def cached_tokens(data: bytes, tokenizer, cache_dir: str | os.PathLike | None, name: str = "corpus") -> np.ndarray:
    """Token ids of `data`, read from (or written to) `cache_dir` and memory-mapped.

    The file name carries the sha256 of the bytes and of the tokenizer's JSON, so a changed
    corpus or tokenizer never reads a stale array. Next to each array, `NAME.npy.sha256` holds
    the sha256 of the array's contents, checked every time the array is mapped: a damaged file
    (zeroed, truncated, edited) is rebuilt with a warning instead of being trained on. The writes
    are atomic (temp file + rename), so two processes (e.g. DDP ranks) may race safely. With
    cache_dir=None, or when the cache cannot be written, the array is simply kept in memory.
    """
    if cache_dir is None:
        return tokenize(data, tokenizer, name)
    key = f"{sha256_hex(data)[:16]}-{sha256_hex(tokenizer.to_json().encode())[:12]}"
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
    path = Path(cache_dir) / f"{safe_name}-{key}.npy"
    checksum_path = path.with_name(path.name + ".sha256")
    if path.is_file() and checksum_path.is_file():
        try:
            tokens = np.load(path, mmap_mode="r")
            if array_sha256(tokens) == checksum_path.read_text(encoding="ascii").strip():
                return tokens
            problem = "its contents do not match their checksum"
        except (OSError, ValueError, UnicodeDecodeError):
            problem = "it cannot be read"
        print(f"minilm: warning: the cached token array {str(path)!r} is damaged ({problem}); rebuilding it",
              file=sys.stderr)
    tokens = tokenize(data, tokenizer, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda handle: np.save(handle, tokens))
        atomic_write_bytes(checksum_path, array_sha256(tokens).encode("ascii"))
        return np.load(path, mmap_mode="r")
    except (OSError, DiskFullError):  # the cache is an optimisation: without it, keep the array in memory
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
                val_fraction: float = VAL_FRACTION, allow_binary: bool = False, flag: str = "--data") -> Corpus:
    """Read, split and tokenize a corpus. The two parts are tokenized separately.

    `allow_binary` lets the raw-byte tokenizer take a file that is not UTF-8 text; a BPE
    tokenizer needs text, so with one the file is checked regardless. `flag` names the
    command-line flag that gave `spec` (--data, --mix, ...), for error messages.
    """
    name, path, data = read_corpus(spec, allow_binary=allow_binary and type(tokenizer) is ByteTokenizer, flag=flag)
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
        for name, tokens in zip(names, sources, strict=True):
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
