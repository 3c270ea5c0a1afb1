"""Byte-level BPE: train a tokenizer from scratch, encode, decode, save a `tokenizer.json`.

Byte-pair encoding (BPE) starts from the 256 possible bytes and learns, one at a time, which
pair of adjacent symbols to fuse into a new symbol: always the pair that occurs most often in
the training text. After 1000 merges the vocabulary has 256 + 1000 symbols, common words are
one symbol each, and rare words fall apart into pieces, down to single bytes, so that *any*
text can be encoded and decoded without loss.

A worked example. The text "low lower lowest" is first cut into pre-tokens
("low", " lower", " lowest"), then each pre-token into bytes. The most frequent pairs are
("l", "o") and ("o", "w"), 3 times each; ties go to the pair of smaller ids, so "lo" first,
then ("lo", "w") -> "low" (3 times), then (" ", "low") -> " low" (2 times, tied with
("low", "e")):

    >>> tok = BPETokenizer.train("low lower lowest", vocab_size=256 + 3)
    >>> [tok.token_bytes(a) + tok.token_bytes(b) for a, b in tok.merges]
    [b'lo', b'low', b' low']
    >>> tok.decode(tok.encode("lowly"))
    'lowly'

The ids are not the byte values: the byte "A" (0x41 = 65) is id 32, and "!" is id 0.

    >>> tok.token_to_id["A"], tok.token_to_id["!"], tok.token_bytes(32)
    (32, 0, b'A')
    >>> tok.encode("low"), tok.merges[1]
    ([257], (256, 86))

Ids follow the order of the `tokenizers` library (section 3): special tokens first, then the
256 byte characters sorted by code point ('!', U+0021, first; the space, written 'Ġ' = U+0120,
far down), then one id per merge. We use its order, not byte values, so that the file we save
gives the same ids in `tokenizers` and `transformers`, and so that GPT-2's own `vocab.json`
(built the same way: "!" is 0 there too) loads id for id.

The file reads top to bottom:

1. Bytes as printable characters: the GPT-2 mapping, so a token can be written as a JSON string.
2. Pre-tokenization: the GPT-2 regex cuts text into words; merges never cross a word boundary.
3. The starting vocabulary and the rule that picks the next merge (including ties).
4. The NAIVE trainer: recount every pair after every merge. Read this one first.
5. The INCREMENTAL trainer: the same merges, fast enough for megabytes of text.
6. `BPETokenizer`: encode (merges applied by rank: a NAIVE loop to read, a heap to run, with a
   cache), decode, `tokenizer.json`, and GPT-2's `vocab.json` + `merges.txt`.
7. Reading text files and the command line: `python -m minilm.bpe train|encode|stats`.

The merges (and the ids) are exactly those of the Hugging Face `tokenizers` library's
`BpeTrainer` with a `ByteLevel(add_prefix_space=False, use_regex=True)` pre-tokenizer and
`initial_alphabet=ByteLevel.alphabet()`, trained with `train_from_iterator([text])`, for the
same vocab_size, min_frequency and special_tokens; tests/test_bpe.py proves it on every bundled
corpus. The file we save loads in `tokenizers.Tokenizer.from_file` and encodes identically.
"""
from __future__ import annotations

import codecs
import heapq
import json
import os
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from minilm.cli import OneLineErrorParser, UserError
from minilm.outputs import atomic_write_text, check_output_file, exit_quietly_on_broken_pipe, remove_stale_temp_files

# ------------------------------------------------------------------------------------------
# 1. Bytes as printable characters
# ------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 table from each byte value to one printable Unicode character.

    A token is a sequence of bytes, but `tokenizer.json` stores tokens as JSON strings, and some
    bytes (control characters, the space, bytes >= 0x80 that are not valid UTF-8 alone) would be
    invisible or invalid there. So every byte gets a stand-in character:

    - the 188 bytes whose Latin-1 character is visible ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
      themselves: byte 0x41 is 'A', byte 0xE9 is 'é';
    - the other 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD), in byte order, get the characters
      U+0100, U+0101, ...: the space 0x20 becomes 'Ġ' (U+0120) and the newline 0x0A 'Ċ'.

        >>> table = bytes_to_unicode()
        >>> table[ord(" ")], table[ord("\\n")], table[ord("A")], table[0xE9]
        ('Ġ', 'Ċ', 'A', 'é')

    So " hello" is written 'Ġhello', and the UTF-8 bytes of 'é' (C3 A9) are written 'Ã©'.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
               *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in visible}
    next_free = 256
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(next_free)
            next_free += 1
    return table


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in BYTE_TO_CHAR.items()}
# The 256 byte characters in code-point order: the order in which they get ids 0..255 (after
# any special tokens), exactly as `tokenizers` sorts its initial alphabet.
ALPHABET: list[str] = sorted(BYTE_TO_CHAR.values())
_BYTE_TRANSLATION = {byte: char for byte, char in BYTE_TO_CHAR.items()}  # for str.translate


def to_byte_chars(text: str) -> str:
    """Text -> its UTF-8 bytes -> one stand-in character per byte ('é' -> 'Ã©', ' a' -> 'Ġa')."""
    return text.encode("utf-8").decode("latin-1").translate(_BYTE_TRANSLATION)


# ------------------------------------------------------------------------------------------
# 2. Pre-tokenization
# ------------------------------------------------------------------------------------------

# GPT-2 cuts text into "words" with this regex before any merge is learned; a merge never
# joins two words, so no token spans "dog. The". \p{L} is any letter (of any script, so a line
# of Chinese is one word), \p{N} any digit or numeral, \s any whitespace.
#
#   's|'t|'re|'ve|'m|'ll|'d     English contractions, split off: "don't" -> "don", "'t"
#   | ?\p{L}+                   a run of letters, with the space before it: " hello"
#   | ?\p{N}+                   a run of numerals, with its space: " 2024"
#   | ?[^\s\p{L}\p{N}]+         a run of punctuation/symbols, with its space: " ..." , "!?"
#   |\s+(?!\S)                  whitespace, leaving the last space to the next word
#   |\s+                        whitespace at the very end of the text, or before punctuation
#
# So "Hi  there!\n" -> "Hi", " ", " there", "!", "\n": of the two spaces, the second travels
# with "there". Python's `re` has no \p{L}, and `regex` is not a dependency, so for text with
# non-ASCII characters we ask the `tokenizers` ByteLevel pre-tokenizer for the split (the same
# regex, compiled in Rust). For pure-ASCII text, the usual case and where speed matters, we
# use the same regex spelled with ASCII classes (below), checked against `tokenizers` by the
# tests. The merge learning and the encoder are ours.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# In ASCII, \p{L} is [A-Za-z], \p{N} is [0-9] and \s is [\t\n\v\f\r ] (Unicode White_Space;
# note that 0x1C-0x1F, which Python's \s includes, are not).
_ASCII_SPACE = r"\t\n\x0b\x0c\r "
_ASCII_SPLIT = re.compile(
    rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_ASCII_SPACE}A-Za-z0-9]+"""
    rf"""|[{_ASCII_SPACE}]+(?![^{_ASCII_SPACE}])|[{_ASCII_SPACE}]+""")

# Long texts are pre-tokenized in pieces of about _PIECE_CHARS characters, each sent down the
# fast ASCII path when it can be. A piece ends between a non-space character and a space or
# newline: no word spans that point (only whitespace follows whitespace in a word, and a word
# that starts with whitespace never depends on what came before it), so cutting there
# changes nothing.
_PIECE_CHARS = 1024
_SAFE_CUT = re.compile(r"\S(?=[ \n])")

_rust_pre_tokenizer = None


def _pretokenize_non_ascii(text: str) -> list[str]:
    """The `tokenizers` ByteLevel pre-tokenizer: same regex, Unicode classes, byte chars out."""
    global _rust_pre_tokenizer
    if _rust_pre_tokenizer is None:
        from tokenizers.pre_tokenizers import ByteLevel
        _rust_pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
    return [word for word, _offsets in _rust_pre_tokenizer.pre_tokenize_str(text)]


def _pretokenize_ascii(text: str) -> list[str]:
    return [word.translate(_BYTE_TRANSLATION) for word in _ASCII_SPLIT.findall(text)]


def _pieces(text: str) -> Iterable[str]:
    start = 0
    while start < len(text):
        cut = _SAFE_CUT.search(text, start + _PIECE_CHARS)
        end = cut.end() if cut else len(text)
        yield text[start:end]
        start = end


def pretokenize(text: str) -> list[str]:
    """Cut text into GPT-2 words, each written in byte characters (see `bytes_to_unicode`).

        >>> pretokenize("Hi  there!\\n")
        ['Hi', 'Ġ', 'Ġthere', '!', 'Ċ']
        >>> pretokenize("naïve 2024")
        ['naÃ¯ve', 'Ġ2024']
    """
    words: list[str] = []
    for piece in _pieces(text):
        words += _pretokenize_ascii(piece) if piece.isascii() else _pretokenize_non_ascii(piece)
    return words


def count_words(texts: str | Iterable[str]) -> Counter:
    """How often each distinct pre-token occurs: {'Ġthe': 27378, ...}.

    Training works on these counts, never on the running text: Shakespeare's 300k words are
    only 25k distinct ones. A list of texts is counted as separate documents (no word spans two).
    """
    counts: Counter = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        counts.update(pretokenize(text))
    return counts


# ------------------------------------------------------------------------------------------
# 3. The starting vocabulary, and which pair to merge next
# ------------------------------------------------------------------------------------------
#
# Ids are handed out in this order (the order of `tokenizers`):
#   special tokens (e.g. "<|endoftext|>") first, in the order given: ids 0, 1, ...
#   then the 256 byte characters sorted by code point ('!' first, 'Ń' last),
#   then one new id per merge.
# A merge whose string is already in the vocabulary (e.g. it spells a special token such as
# "ab") reuses that id rather than adding one; training stops when the vocabulary is full.
#
# The next merge is the pair with the highest count; between equal counts, the pair whose
# (left id, right id) is smallest. Because ids follow the order above, this tie-break prefers
# pairs of early-id symbols: ('e', 'l') before ('l', 'o'), and any pair of original bytes
# before a pair involving a merged token. Both trainers implement exactly this rule.


def _start_vocab(special_tokens: list[str]) -> tuple[list[str], dict[str, int]]:
    id_to_token: list[str] = []
    token_to_id: dict[str, int] = {}
    for token in [*special_tokens, *ALPHABET]:
        if token not in token_to_id:
            token_to_id[token] = len(id_to_token)
            id_to_token.append(token)
    return id_to_token, token_to_id


def _add_merged_token(left: int, right: int, id_to_token: list[str],
                      token_to_id: dict[str, int]) -> int:
    """The id of the token spelled left+right, adding it to the vocabulary if it is new."""
    token = id_to_token[left] + id_to_token[right]
    if token not in token_to_id:
        token_to_id[token] = len(id_to_token)
        id_to_token.append(token)
    return token_to_id[token]


def _words_as_ids(word_counts: Counter, token_to_id: dict[str, int]):
    """Each distinct word as a list of symbol ids (one per byte), and the words' counts."""
    words = [[token_to_id[char] for char in word] for word in word_counts]
    return words, list(word_counts.values())


def _progress_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="merges", unit="merge", smoothing=0.1)


def merge_pair_in_word(word: list[int], left: int, right: int, new_id: int) -> list[int]:
    """Replace every occurrence of (left, right) in word, scanning left to right.

        >>> merge_pair_in_word([1, 1, 1, 2, 1, 1], 1, 1, 9)
        [9, 1, 2, 9]
    """
    merged = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


# ------------------------------------------------------------------------------------------
# 4. The naive trainer (the teaching version)
# ------------------------------------------------------------------------------------------


def train_naive(word_counts: Counter, vocab_size: int, min_frequency: int = 0,
                special_tokens: list[str] = (), progress: bool = False):
    """BPE as the textbook states it: count all pairs, merge the best, repeat.

    Each step costs a full pass over every symbol of every distinct word, so training is
    O(merges x total symbols): minutes for a megabyte of text. Use it to read the algorithm
    and to check `train_incremental`, which returns the same merges.

    Returns (id_to_token, merges): the vocabulary as a list of byte-character strings (special
    tokens as their text) and the merges as (left id, right id) pairs, in the order learned.
    """
    id_to_token, token_to_id = _start_vocab(list(special_tokens))
    words, counts = _words_as_ids(word_counts, token_to_id)
    merges: list[tuple[int, int]] = []
    bar = _progress_bar(progress, max(0, vocab_size - len(id_to_token)))
    while len(id_to_token) < vocab_size:
        pair_counts: Counter = Counter()
        for word, count in zip(words, counts, strict=True):
            for pair in zip(word, word[1:], strict=False):
                pair_counts[pair] += count
        if not pair_counts:
            break  # every word is a single token: nothing left to merge
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        if pair_counts[best] < min_frequency:
            break
        new_id = _add_merged_token(*best, id_to_token, token_to_id)
        merges.append(best)
        words = [merge_pair_in_word(word, *best, new_id) for word in words]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return id_to_token, merges


# ------------------------------------------------------------------------------------------
# 5. The incremental trainer
# ------------------------------------------------------------------------------------------


def train_incremental(word_counts: Counter, vocab_size: int, min_frequency: int = 0,
                      special_tokens: list[str] = (), progress: bool = False):
    """The same merges as `train_naive`, without recounting: only touched words are updated.

    Three structures are kept up to date instead of being rebuilt after each merge:

    - `pair_counts[(a, b)]`: how often a is followed by b, summed over words x word counts.
    - `words_with_pair[(a, b)]`: the indices of the distinct words that contain the pair
      (a superset: a word that lost the pair is only noticed, and skipped, when visited).
    - `heap`: entries (-count, a, b), so the smallest entry is the highest count and, among
      equal counts, the smallest (a, b): exactly the rule of section 3. Counts change all the
      time, and a heap cannot update an entry in place, so we use *lazy deletion*: when a pair's
      count goes up we push a fresh entry; when it goes down we do nothing. An entry popped
      whose count differs from `pair_counts` is stale: we push it back with the current count
      (if still > 0) and pop again. Every pair always has an entry at least as large as its
      true count, so the first entry popped that is up to date is the true best pair.

    Merging (a, b) -> ab inside a word "x a b y" removes pairs (x, a) and (b, y) and creates
    (x, ab) and (ab, y); those four count changes, times the word's count, are all the update.

    Cost: the initial count is O(S) for S symbols over the distinct words. Merge number k costs
    O(W_k * L + P_k log H): W_k words contain the pair, each of length <= L, and P_k new pairs
    are pushed onto a heap of H entries (a stale pop costs log H too; there is at most one per
    decrease of a pair's count).
    Since W_k falls off quickly (the first merges touch many words, later ones a handful), the
    total is near O(S + merges x log H) in practice, against O(merges x S) for the naive loop:
    about a second instead of minutes on a megabyte of text.

    (`tokenizers` keeps the set of words inside each heap entry instead of one index per pair,
    and never lowers the count of the pair just merged. That gives the same merges, because a
    pair's count only grows during the merge that creates its left or right token, and no
    token is created twice: wherever a token's bytes end up as one piece, they went through
    the same merges inside that piece, so the first merge that spells the token catches every
    occurrence. The tests compare with the library on every bundled corpus.)
    """
    id_to_token, token_to_id = _start_vocab(list(special_tokens))
    words, counts = _words_as_ids(word_counts, token_to_id)

    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    words_with_pair: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        count = counts[index]
        for pair in zip(word, word[1:], strict=False):
            pair_counts[pair] += count
            words_with_pair[pair].add(index)
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    bar = _progress_bar(progress, max(0, vocab_size - len(id_to_token)))
    while len(id_to_token) < vocab_size and heap:
        negative_count, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if -negative_count != count:  # stale entry: re-queue with the current count
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        if count < min_frequency:
            break
        new_id = _add_merged_token(a, b, id_to_token, token_to_id)
        merges.append((a, b))

        grown = set()  # pairs whose count went up: they need a fresh heap entry
        for index in words_with_pair.pop((a, b)):
            word = words[index]
            word_count = counts[index]
            i = -1
            while True:  # visit each a, left to right; list.index scans at C speed
                try:
                    i = word.index(a, i + 1)
                except ValueError:
                    break
                if i + 1 == len(word) or word[i + 1] != b:
                    continue
                if i > 0:  # "x a b" -> "x ab"
                    x = word[i - 1]
                    pair_counts[x, a] -= word_count
                    pair_counts[x, new_id] += word_count
                    words_with_pair[x, new_id].add(index)
                    grown.add((x, new_id))
                word[i:i + 2] = [new_id]
                if i + 1 < len(word):  # "a b y" -> "ab y"
                    y = word[i + 1]
                    pair_counts[b, y] -= word_count
                    pair_counts[new_id, y] += word_count
                    words_with_pair[new_id, y].add(index)
                    grown.add((new_id, y))
        del pair_counts[a, b]
        for pair in grown:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], *pair))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return id_to_token, merges


TRAINERS = {"naive": train_naive, "incremental": train_incremental}


# ------------------------------------------------------------------------------------------
# 6. The tokenizer
# ------------------------------------------------------------------------------------------


class BPETokenizer:
    """A trained byte-level BPE: encode, decode, and the `tokenizer.json` it round-trips through.

        >>> tok = BPETokenizer.train("the cat sat on the mat<|endoftext|>the end", 270,
        ...                          special_tokens=["<|endoftext|>"])
        >>> ids = tok.encode("the mat<|endoftext|>")
        >>> ids[-1] == tok.special_tokens["<|endoftext|>"] == 0
        True
        >>> tok.decode(ids)
        'the mat<|endoftext|>'

    Attributes: `id_to_token` (each id's string in byte characters; a special token is its
    text), `token_to_id`, `merges` ((left id, right id) in rank order), `special_tokens`
    ({text: id}).
    """

    def __init__(self, id_to_token: list[str], merges: list[tuple[int, int]],
                 special_tokens: dict[str, int] | Iterable[str] = ()):
        self.id_to_token = list(id_to_token)
        self.token_to_id = {token: i for i, token in enumerate(self.id_to_token)}
        if len(self.token_to_id) != len(self.id_to_token):
            raise ValueError("vocabulary has a repeated token")
        if not isinstance(special_tokens, dict):
            special_tokens = {text: self.token_to_id[text] for text in special_tokens}
        self.special_tokens = dict(special_tokens)
        self.merges = [tuple(pair) for pair in merges]
        for text, i in self.special_tokens.items():
            _check_special_token(text)
            if self.id_to_token[i] != text:
                raise ValueError(f"special token {text!r} has id {i}, which is "
                                 f"{self.id_to_token[i]!r}")
        special_ids = set(self.special_tokens.values())

        # The bytes behind each id: a special token stands for its text, any other token for
        # the bytes its characters stand for.
        self._id_to_bytes: list[bytes] = []
        for i, token in enumerate(self.id_to_token):
            if i in special_ids:
                self._id_to_bytes.append(token.encode("utf-8"))
            elif all(char in CHAR_TO_BYTE for char in token):
                self._id_to_bytes.append(bytes(CHAR_TO_BYTE[char] for char in token))
            else:
                raise ValueError(f"token {token!r} (id {i}) is neither a special token nor "
                                 "made of byte characters")
        missing = [char for char in ALPHABET if char not in self.token_to_id]
        if missing:
            raise ValueError(f"vocabulary lacks {len(missing)} of the 256 byte characters, "
                             f"e.g. {missing[0]!r}: not a byte-level BPE")
        # (left, right) -> (rank, id of the merged token): the encoder's lookup table.
        self._merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self.merges):
            merged = self.id_to_token[left] + self.id_to_token[right]
            if merged not in self.token_to_id:
                raise ValueError(f"merge #{rank} ({self.id_to_token[left]!r}, "
                                 f"{self.id_to_token[right]!r}) makes {merged!r}, which is "
                                 "not in the vocabulary")
            self._merge_ranks.setdefault((left, right), (rank, self.token_to_id[merged]))
        self._char_to_id = {char: self.token_to_id[char] for char in ALPHABET}
        # Special tokens are found in the text before anything else: longest first, so that
        # of "<|a|>" and "<|a|><|b|>" the longer one wins where both match.
        by_length = sorted(self.special_tokens, key=len, reverse=True)
        self._special_split = (re.compile("(" + "|".join(map(re.escape, by_length)) + ")")
                               if by_length else None)
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int, min_frequency: int = 0,
              special_tokens: Iterable[str] = (), trainer: str = "incremental",
              progress: bool = False) -> "BPETokenizer":
        """Learn merges from text until the vocabulary has vocab_size tokens.

        text: one string, or a list of documents (no word spans two documents).
        vocab_size: special tokens + 256 bytes + merges. min_frequency: stop once the best
        pair occurs fewer times. Special tokens get ids 0, 1, ... Occurrences of their text in
        the training text are *not* treated specially (as in `tokenizers`): "<|endoftext|>"
        is counted as the words "<|", "endoftext", "|>". trainer: "incremental" or "naive".

        If the text runs out of pairs (or of pairs with min_frequency occurrences) first,
        training stops early with a warning that says how many merges were possible.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        for token in special_tokens:
            _check_special_token(token)
        if trainer not in TRAINERS:
            raise ValueError(f"trainer={trainer!r}: choose one of {sorted(TRAINERS)}")
        smallest = 256 + len(special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < smallest:
            raise ValueError(f"vocab_size={vocab_size!r} is too small: the 256 bytes and "
                             f"{len(special_tokens)} special token(s) need at least {smallest}")
        word_counts = count_words(text)
        if not word_counts:
            raise ValueError("training text is empty")
        id_to_token, merges = TRAINERS[trainer](word_counts, vocab_size, min_frequency,
                                                special_tokens, progress)
        if len(id_to_token) < vocab_size:
            reason = (f"no pair left occurs at least min_frequency={min_frequency} times"
                      if min_frequency > 1 else "no adjacent pair is left to merge")
            warnings.warn(f"vocab_size={vocab_size} is more than this text can reach: only "
                          f"{len(merges)} merges were possible ({reason}); the vocabulary has "
                          f"{len(id_to_token)} tokens", stacklevel=2)
        return cls(id_to_token, merges, special_tokens)

    # -- basic facts ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes behind one id (a special token's are its text's UTF-8 bytes)."""
        if not 0 <= token_id < len(self._id_to_bytes):
            raise ValueError(f"token id {token_id} is out of range 0..{self.vocab_size - 1}")
        return self._id_to_bytes[token_id]

    def num_bytes(self, ids: Iterable[int]) -> int:
        """Total bytes behind ids: len(text.encode()) when ids = encode(text)."""
        return sum(len(self.token_bytes(i)) for i in ids)

    # -- encoding ---------------------------------------------------------------------------

    def encode_word_naive(self, word: str) -> tuple[int, ...]:
        """One pre-token (in byte characters) -> ids, by applying merges in rank order.

        Start from one id per byte; repeatedly find the adjacent pair with the lowest rank
        (the earliest-learned merge) and merge it everywhere in the word, left to right; stop
        when no adjacent pair is a merge. E.g. with merges [('l','o'), ('lo','w'), ('Ġ','l')],
        'Ġlowly' -> Ġ l o w l y -> Ġ lo w l y -> Ġ low l y -> done (('Ġ','l') is no longer
        adjacent anywhere) = ['Ġ', 'low', 'l', 'y'].

        This is the version to read; `encode_word` gives the same ids faster.
        """
        ids = [self._char_to_id[char] for char in word]
        while len(ids) >= 2:
            pairs = set(zip(ids, ids[1:], strict=False))  # (a, b) for each adjacent a, b
            best = min(pairs, key=lambda pair: self._merge_ranks.get(pair, (float("inf"),))[0])
            if best not in self._merge_ranks:
                break  # no adjacent pair is a merge
            _rank, new_id = self._merge_ranks[best]
            ids = merge_pair_in_word(ids, *best, new_id)
        return tuple(ids)

    def encode_word(self, word: str) -> tuple[int, ...]:
        """The same ids as `encode_word_naive`, in O(n log n) for a word of n bytes (the fast path).

        The naive loop scans the whole word for the lowest-rank pair before every merge:
        O(n) per merge, O(n^2) per word; fine for English words, slow for a line of Chinese
        (one word of 60 bytes or more). Here candidate merges wait in a heap keyed by (rank,
        position), and the symbols form a linked list (`after[i]`/`before[i]`: the
        next/previous live position). Popping the lowest (rank, position) merges the leftmost
        occurrence of the lowest-rank pair first, as the naive loop's left-to-right scan does.
        A heap entry whose pair changed since it was pushed is skipped.
        """
        symbols = [self._char_to_id[char] for char in word]
        n = len(symbols)
        if n < 2:
            return tuple(symbols)
        ranks = self._merge_ranks
        after = list(range(1, n + 1))  # after[i] == n: i is the last symbol
        before = list(range(-1, n - 1))  # before[i] == -1: i is the first symbol
        alive = [True] * n
        heap = []
        for i in range(n - 1):
            found = ranks.get((symbols[i], symbols[i + 1]))
            if found is not None:
                heap.append((found[0], i, found[1]))
        heapq.heapify(heap)
        while heap:
            rank, i, new_id = heapq.heappop(heap)
            j = after[i]
            if not alive[i] or j == n or ranks.get((symbols[i], symbols[j])) != (rank, new_id):
                continue  # stale: i was merged away, or its right neighbour changed
            symbols[i] = new_id  # i absorbs j
            alive[j] = False
            after[i] = after[j]
            if after[j] < n:
                before[after[j]] = i
            if before[i] >= 0:
                found = ranks.get((symbols[before[i]], new_id))
                if found is not None:
                    heapq.heappush(heap, (found[0], before[i], found[1]))
            if after[i] < n:
                found = ranks.get((new_id, symbols[after[i]]))
                if found is not None:
                    heapq.heappush(heap, (found[0], i, found[1]))
        return tuple(symbol for symbol, live in zip(symbols, alive, strict=True) if live)

    def _encode_ordinary(self, text: str, ids: list[int]) -> None:
        cache = self._cache
        for word in pretokenize(text):
            word_ids = cache.get(word)
            if word_ids is None:
                word_ids = self.encode_word(word)
                if len(cache) >= 200_000:  # bound the memory; the common words come back
                    cache.clear()
                cache[word] = word_ids
            ids += word_ids

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Text -> ids. The text of a special token becomes its id when allow_special (the
        `tokenizers` default); with allow_special=False it is encoded as ordinary text (like
        `tokenizers`' `encode_special_tokens = True`), e.g. for untrusted input."""
        ids: list[int] = []
        if self._special_split is None or not allow_special:
            self._encode_ordinary(text, ids)
            return ids
        for k, piece in enumerate(self._special_split.split(text)):
            if k % 2:  # odd pieces are the separators: special tokens
                ids.append(self.special_tokens[piece])
            elif piece:
                self._encode_ordinary(piece, ids)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Never raises: the bytes are decoded as UTF-8 with errors="replace",
        so bytes that do not form valid UTF-8 (e.g. the ids end in the middle of a multi-byte
        character) become U+FFFD '�', one per maximal invalid sequence (the same rule as
        Rust's from_utf8_lossy, which `tokenizers` uses). An id outside the vocabulary (say,
        sampled from a model whose output layer is padded) also decodes to '�'."""
        table = self._id_to_bytes
        size = len(table)
        data = b"".join(table[i] if 0 <= i < size else b"\xff" for i in ids)
        return data.decode("utf-8", errors="replace")

    # -- tokenizer.json ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The `tokenizers` file format: a BPE model, ByteLevel pre-tokenizer and decoder, and
        the special tokens as added tokens, so `tokenizers.Tokenizer.from_str` can use it."""
        added = [{"id": i, "content": text, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True}
                 for text, i in sorted(self.special_tokens.items(), key=lambda item: item[1])]
        byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        document = {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", **byte_level},
            "post_processor": None, "decoder": {"type": "ByteLevel", **byte_level},
            "model": {
                "type": "BPE", "dropout": None, "unk_token": None,
                "continuing_subword_prefix": None, "end_of_word_suffix": None,
                "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": self.token_to_id,
                "merges": [[self.id_to_token[a], self.id_to_token[b]] for a, b in self.merges],
            },
        }
        return json.dumps(document, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer json") -> "BPETokenizer":
        """Read what `to_json` writes, or a `tokenizers` file of the same kind (byte-level BPE,
        no normalizer). Anything else is refused with an error that names what is wrong."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error})") from None
        try:
            return cls._from_document(document)
        except (KeyError, TypeError, IndexError, AttributeError) as error:
            raise ValueError(f"{source}: not a byte-level BPE tokenizer.json "
                             f"({type(error).__name__}: {error})") from None
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def _from_document(cls, document: dict) -> "BPETokenizer":
        """GPT-2's own tokenizer.json is of this kind: its ByteLevel post-processor only moves
        character offsets (never ids), and its ByteLevel decoder is what `decode` does."""
        if not isinstance(document, dict) or "model" not in document:
            raise ValueError("not a tokenizer.json (no 'model')")
        model = document["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"model type is {model.get('type')!r}, not 'BPE'")
        pre = document.get("pre_tokenizer") or {}
        if (pre.get("type") != "ByteLevel" or pre.get("add_prefix_space")
                or not pre.get("use_regex", True)):
            raise ValueError("pre_tokenizer must be ByteLevel(add_prefix_space=False, "
                             f"use_regex=True), found {pre!r}")
        if document.get("normalizer") is not None:
            raise ValueError(f"a normalizer is not supported, found {document['normalizer']!r}")
        for key in ("post_processor", "decoder"):
            part = document.get(key)
            if part is not None and part.get("type") != "ByteLevel":
                raise ValueError(f"a {key} of type {part.get('type')!r} is not supported "
                                 "(only ByteLevel)")
        for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout", "ignore_merges"):
            if model.get(key):
                raise ValueError(f"model.{key}={model[key]!r} is not supported")
        vocab = dict(model["vocab"])
        special_tokens = {}
        for added in document.get("added_tokens", []):
            content, i = added["content"], added["id"]
            if added.get("single_word") or added.get("lstrip") or added.get("rstrip"):
                raise ValueError(f"added token {content!r}: single_word/lstrip/rstrip "
                                 "are not supported")
            if vocab.setdefault(content, i) != i:  # an added token may lie beyond the model's vocab
                raise ValueError(f"added token {content!r} has id {i} but the vocab says "
                                 f"{vocab[content]!r}")
            special_tokens[content] = i
        merges = [merge.split(" ") if isinstance(merge, str) else merge for merge in model["merges"]]
        return cls.from_vocab_and_merges(vocab, merges, special_tokens)

    @classmethod
    def from_vocab_and_merges(cls, vocab: dict[str, int], merges: list, special_tokens: dict[str, int]
                              ) -> "BPETokenizer":
        """Build from {token: id}, the merges as [left, right] token strings in rank order, and
        the special tokens {text: id} (each also in vocab, or added to it at its id)."""
        vocab = dict(vocab)
        for text, i in special_tokens.items():
            if vocab.setdefault(text, i) != i:
                raise ValueError(f"special token {text!r} has id {i} but the vocab says {vocab[text]!r}")
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError("vocab ids are not 0..N-1 without gaps")
        id_to_token = [""] * len(ids)
        for token, i in vocab.items():
            id_to_token[i] = token
        pairs = []
        for merge in merges:
            left, right = merge
            if left not in vocab or right not in vocab:
                raise ValueError(f"merge {merge!r} uses a token that is not in the vocab")
            pairs.append((vocab[left], vocab[right]))
        return cls(id_to_token, pairs, special_tokens)

    @classmethod
    def from_gpt2_files(cls, vocab_json: str, merges_txt: str, special_tokens: Iterable[str] = (),
                        source: str = "vocab.json/merges.txt") -> "BPETokenizer":
        """GPT-2's original pair of files: `vocab.json` ({token: id}) and `merges.txt` (an optional
        "#version" line, then one "left right" merge per line, in rank order). Which vocab
        entries are special tokens (e.g. "<|endoftext|>") these files do not say; pass them."""
        try:
            vocab = json.loads(vocab_json)
            lines = [line for line in merges_txt.split("\n") if line.strip()]
            if lines and lines[0].startswith("#version"):
                lines = lines[1:]
            merges = []
            for number, line in enumerate(lines, 1):
                parts = line.split(" ")
                if len(parts) != 2:
                    raise ValueError(f"merges line {number} is {line!r}, not 'left right'")
                merges.append(parts)
            return cls.from_vocab_and_merges(vocab, merges, {text: vocab[text] for text in special_tokens})
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: vocab is not valid JSON ({error})") from None
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{source}: not a GPT-2 vocab and merges ({type(error).__name__}: {error})") from None
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def to_gpt2_files(self) -> tuple[str, str]:
        """(vocab.json text, merges.txt text), as GPT-2 and `transformers` write them."""
        vocab = json.dumps(self.token_to_id, ensure_ascii=False)
        lines = ["#version: 0.2"] + [f"{self.id_to_token[a]} {self.id_to_token[b]}" for a, b in self.merges]
        return vocab, "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: no such tokenizer file")
        return cls.from_json(path.read_text(encoding="utf-8", errors="replace"), str(path))

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")


ORDINARY_WORD = re.compile(r" ?[^\W_]+")  # letters or digits, maybe after one space: what pretokenize keeps whole


def _check_special_token(text: str) -> None:
    """Refuse special tokens that ordinary text or an ordinary token could also spell; warn about words.

    - A single character ("a", "\n", "€") is refused: the `tokenizers` library matches special
      tokens in the text before anything else, so every such character of ordinary text would
      become the special token, and decoding (which drops special tokens by default there)
      could not give it back.
    - An ordinary word ("EOS", "the") gets a warning for the same reason: every occurrence of the
      word in the text turns into the special token. A marker like "<|EOS|>" is safe.
    - Tokens are strings of byte characters, so a special token like 'é' (alone, the byte 0xE9)
      or 'Ã©' (the bytes C3 A9, i.e. the ordinary token for "é") would share its string, and so
      its id, with an ordinary token that stands for other bytes, and decoding would no longer be
      lossless. Text like "<|endoftext|>" or "[SEP]" is fine: ASCII reads the same both ways,
      and "<é>" stands for bytes 3C E9 3E, which no valid UTF-8 text contains.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"special token {text!r} must be a non-empty string")
    if not text.isascii() and all(char in CHAR_TO_BYTE for char in text):
        as_bytes = bytes(CHAR_TO_BYTE[char] for char in text)
        try:
            as_bytes.decode("utf-8")
            spells_text = True
        except UnicodeDecodeError:
            spells_text = False
        if len(text) == 1 or spells_text:
            raise ValueError(f"special token {text!r} is spelled in byte characters and would "
                             f"collide with the ordinary token for bytes {as_bytes!r}; choose another text")
    if len(text) == 1:
        raise ValueError(f"special token {text!r} is a single character: every {text!r} in ordinary text "
                         "would become the special token and could not be decoded back; choose a marker "
                         "such as '<|endoftext|>'")
    if ORDINARY_WORD.fullmatch(text):
        warnings.warn(f"special token {text!r} is an ordinary word: every {text!r} in the text will become the "
                      f"special token (and the `tokenizers` library drops it when decoding); "
                      f"a marker such as '<|{text.strip()}|>' is safer", stacklevel=3)


# ------------------------------------------------------------------------------------------
# 7. Text files and the command line
# ------------------------------------------------------------------------------------------


# Byte-order marks of Unicode encodings other than UTF-8 (UTF-32 LE first: it begins like UTF-16 LE)
OTHER_UNICODE_MARKS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                       (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")]


def read_text(path: str | Path, errors: str = "strict") -> str:
    """A file's text as UTF-8, with one-line errors: missing, empty, UTF-16/UTF-32 (named from
    the byte-order mark), or not UTF-8 (naming the byte offset). errors="replace" turns invalid
    bytes into U+FFFD instead."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not data:
        raise ValueError(f"{path}: file is empty")
    for mark, encoding in OTHER_UNICODE_MARKS:
        if data.startswith(mark):
            raise ValueError(f"{path}: this is {encoding} text (it starts with a {encoding} byte-order mark), "
                             f"not UTF-8; convert it first, e.g. iconv -f {encoding} -t UTF-8")
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 at byte offset {error.start} "
                         f"(byte 0x{data[error.start]:02x}); fix the file or pass "
                         "--errors replace") from None


def _check_train_output(args) -> Path:
    """Before any work: --out must be a writable file path, not one of the input files, and not
    an existing file unless --overwrite."""
    out = check_output_file(args.out, "--out")
    for source in args.files:
        if Path(source).exists() and out.exists() and os.path.samefile(source, out):
            raise UserError(f"--out: {args.out!r} is the input file {source!r}; writing the tokenizer there "
                            "would replace the text it is trained on; choose another --out")
    if out.exists() and not args.overwrite:
        raise UserError(f"--out: {args.out!r} already exists; pass --overwrite to replace it")
    remove_stale_temp_files(out.parent if str(out.parent) else ".", [out.name])
    return out


def _cli_train(args) -> None:
    out = _check_train_output(args)
    text = "".join(read_text(path, args.errors) for path in args.files)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok = BPETokenizer.train(text, args.vocab_size, args.min_frequency, args.special,
                                 args.trainer, progress=not args.quiet)
    seconds = time.perf_counter() - start
    for message in dict.fromkeys(str(warning.message) for warning in caught):  # each once, in order
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    atomic_write_text(out, tok.to_json())
    print(f"trained {tok.vocab_size} tokens ({len(tok.merges)} merges) on "
          f"{len(text.encode()):,} bytes in {seconds:.2f} s -> {args.out}")


def _cli_encode(args) -> None:
    tok = BPETokenizer.load(args.tokenizer)
    text = args.text if args.text is not None else read_text(args.file, args.errors)
    ids = tok.encode(text)
    if args.tokens:
        print(" ".join(repr(tok.token_bytes(i).decode("utf-8", "replace")) for i in ids))
    else:
        print(" ".join(map(str, ids)))


def _show_token(tok: BPETokenizer, token_id: int) -> str:
    return repr(tok.token_bytes(token_id).decode("utf-8", errors="replace"))


def _cli_stats(args) -> None:
    tok = BPETokenizer.load(args.tokenizer)
    print(tok)
    for path in args.files:
        text = read_text(path, args.errors)
        start = time.perf_counter()
        ids = tok.encode(text)
        seconds = time.perf_counter() - start
        n_bytes = len(text.encode("utf-8"))
        print(f"{path}: {n_bytes:,} bytes -> {len(ids):,} tokens = "
              f"{n_bytes / max(1, len(ids)):.3f} bytes/token "
              f"(encoded at {n_bytes / seconds / 1e6:.2f} MB/s)")
    if args.show:
        print(f"first {args.show} merges:")
        for rank, (left, right) in enumerate(tok.merges[:args.show]):
            print(f"  {rank:5d}  {_show_token(tok, left)} + {_show_token(tok, right)}")
        longest = sorted(range(tok.vocab_size), key=lambda i: (-len(tok.token_bytes(i)), i))
        print(f"longest {args.show} tokens:")
        for i in longest[:args.show]:
            print(f"  id {i:5d}  {len(tok.token_bytes(i)):3d} bytes  {_show_token(tok, i)}")


PROG = "python -m minilm.bpe"


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


@exit_quietly_on_broken_pipe
def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog=PROG, description="Byte-level BPE tokenizer: train, encode, stats.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="learn merges from text files")
    train.add_argument("files", nargs="+", help="UTF-8 text files (concatenated)")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--min-frequency", type=int, default=0)
    train.add_argument("--special", action="append", default=[], metavar="TEXT",
                       help="a special token, e.g. '<|endoftext|>' (repeatable)")
    train.add_argument("--trainer", choices=sorted(TRAINERS), default="incremental")
    train.add_argument("--out", required=True, help="where to write tokenizer.json (its folder must exist)")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    encode = commands.add_parser("encode", help="print the ids (or tokens) of a text")
    encode.add_argument("--tokenizer", required=True)
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--text")
    source.add_argument("--file")
    encode.add_argument("--tokens", action="store_true", help="print tokens, not ids")

    stats = commands.add_parser("stats", help="bytes per token on text files")
    stats.add_argument("--tokenizer", required=True)
    stats.add_argument("files", nargs="*")
    stats.add_argument("--show", type=int, default=0, metavar="N",
                       help="also print the first N merges and the N longest tokens")

    for command in (train, encode, stats):
        command.add_argument("--errors", choices=["strict", "replace"], default="strict",
                             help="what to do with bytes that are not UTF-8 (default: fail)")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():  # warnings as one line each, like errors (restored on return)
            warnings.showwarning = _one_line_warning
            {"train": _cli_train, "encode": _cli_encode, "stats": _cli_stats}[args.command](args)
        sys.stdout.flush()  # a closed pipe fails here, inside the broken-pipe guard, not at exit
    except ValueError as error:  # UserError and the tokenizer's own ValueErrors: one line
        sys.stdout.flush()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
