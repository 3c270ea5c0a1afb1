"""The data pipeline: corpora, the byte-level split, tokenizers, the token cache, batches, val windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.data import (
    BatchSampler,
    ByteTokenizer,
    UserError,
    bundled_corpora,
    cached_tokens,
    load_corpus,
    load_tokenizer,
    read_corpus,
    resolve_corpus,
    split_point,
    token_dtype,
    tokenizer_from_json,
    validation_windows,
)

BUNDLED = ["bible", "legal", "poetry_zh", "shakespeare", "stories", "wikitext"]


# --- corpora ----------------------------------------------------------------------------------


def test_bundled_corpora_are_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bundled_corpora() == BUNDLED
    assert resolve_corpus("shakespeare").name == "shakespeare.txt"
    assert resolve_corpus("shakespeare").is_file()


def test_a_path_is_accepted_and_unknown_or_empty_corpora_are_refused(tmp_path):
    text_file = tmp_path / "mine.txt"
    text_file.write_text("some text\n")
    name, path, data = read_corpus(str(text_file))
    assert (name, data) == ("mine", b"some text\n")
    with pytest.raises(UserError, match="neither a bundled corpus"):
        resolve_corpus(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_corpus(str(empty))


# --- the split ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=200), st.floats(min_value=0.01, max_value=0.9))
def test_split_cuts_at_a_character_boundary_near_the_requested_fraction(text, fraction):
    data = text.encode("utf-8")
    cut = split_point(data, fraction)
    nominal = int(len(data) * (1 - fraction))
    assert nominal <= cut <= nominal + 3  # a UTF-8 character is at most 4 bytes
    data[:cut].decode("utf-8")  # neither half breaks a character
    data[cut:].decode("utf-8")


def test_split_of_the_chinese_corpus_is_the_last_tenth_and_decodes():
    _, _, data = read_corpus("poetry_zh")
    cut = split_point(data)
    assert 0.9 * len(data) - 1 <= cut <= 0.9 * len(data) + 3
    assert (data[cut] & 0xC0) != 0x80  # starts a character
    data[cut:].decode("utf-8")


def test_split_of_an_ascii_file_is_exact():
    data = bytes(range(97, 97 + 20)) * 5  # 100 ASCII bytes
    assert split_point(data) == 90


# --- tokenizers ---------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=100))
def test_byte_tokenizer_round_trips_and_counts_bytes(text):
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.num_bytes(ids) == len(text.encode("utf-8"))
    assert all(tokenizer.token_bytes(i) == bytes([i]) for i in ids[:5])


def test_byte_tokenizer_decodes_broken_utf8_to_replacement_characters():
    assert ByteTokenizer().decode([0xE4, 0xBD]) == "\ufffd"  # half of a 3-byte character


def test_tokenizer_json_round_trip_and_load():
    tokenizer = tokenizer_from_json(ByteTokenizer().to_json())
    assert isinstance(tokenizer, ByteTokenizer) and tokenizer.vocab_size == 256
    assert isinstance(load_tokenizer("bytes"), ByteTokenizer)
    with pytest.raises(UserError, match="--tokenizer"):
        load_tokenizer("/no/such/tokenizer.json")


def test_token_dtype():
    assert token_dtype(256) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


# --- the token cache ----------------------------------------------------------------------------


class TwoBytesPerTokenTokenizer(ByteTokenizer):
    """A stand-in for a non-byte tokenizer: ids 0..65535, one per pair of bytes."""

    vocab_size = 2**16

    def encode(self, text):
        data = text.encode("utf-8")
        return [data[i] * 256 + (data[i + 1] if i + 1 < len(data) else 0) for i in range(0, len(data), 2)]

    def to_json(self):
        return '{"type": "pairs"}'


def test_token_arrays_are_cached_memory_mapped_and_keyed_by_content(tmp_path):
    tokenizer = ByteTokenizer()
    first = cached_tokens(b"hello world", tokenizer, tmp_path, "greeting")
    assert isinstance(first, np.memmap) and first.dtype == np.uint16
    assert bytes(first.astype(np.uint8)) == b"hello world"
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = cached_tokens(b"hello world", tokenizer, tmp_path, "greeting")
    assert files[0].stat().st_mtime_ns == stamp and np.array_equal(first, again)  # read, not rewritten
    cached_tokens(b"hello there", tokenizer, tmp_path, "greeting")  # other bytes, other file
    pairs = cached_tokens(b"hello world", TwoBytesPerTokenTokenizer(), tmp_path, "greeting")  # other tokenizer
    assert len(list(tmp_path.glob("*.npy"))) == 3
    assert pairs[0] == ord("h") * 256 + ord("e")


def test_a_damaged_cache_file_is_rebuilt(tmp_path):
    tokenizer = ByteTokenizer()
    cached_tokens(b"abcdef", tokenizer, tmp_path, "x")
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"not an npy file")
    assert bytes(np.asarray(cached_tokens(b"abcdef", tokenizer, tmp_path, "x")).astype(np.uint8)) == b"abcdef"


def test_load_corpus_tokenizes_the_two_parts_of_the_split(tmp_path):
    corpus = load_corpus("shakespeare", ByteTokenizer(), tmp_path)
    _, _, data = read_corpus("shakespeare")
    cut = split_point(data)
    assert len(corpus.train) == cut == corpus.train_bytes
    assert len(corpus.val) == len(data) - cut == corpus.val_bytes
    assert bytes(np.asarray(corpus.val[:50]).astype(np.uint8)) == data[cut:cut + 50]


# --- batches ------------------------------------------------------------------------------------


def make_source(n=1000, offset=0):
    return (np.arange(n) % 200 + offset).astype(np.uint16)


def test_batches_are_contiguous_windows_with_targets_shifted_by_one():
    tokens = np.arange(5000, dtype=np.uint16)  # every window of a range is a range
    sampler = BatchSampler([tokens], [1.0], block_size=16, batch_size=4, seed=0)
    (x, y), = sampler.next_step()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(4, 15, dtype=torch.int64))
    assert int(y.max()) < 5000


def test_same_seed_same_batches_and_state_restores_the_stream():
    tokens = make_source()
    first = BatchSampler([tokens], [1.0], 8, 3, seed=7)
    second = BatchSampler([tokens], [1.0], 8, 3, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first.next_step()[0], second.next_step()[0], strict=True))
    state = first.state_dict()
    expected = first.next_step(grad_accum=2)
    restored = BatchSampler([tokens], [1.0], 8, 3, seed=999)
    restored.load_state_dict(state)
    got = restored.next_step(grad_accum=2)
    assert all(torch.equal(a, b) for pair_a, pair_b in zip(expected, got, strict=True)
               for a, b in zip(pair_a, pair_b, strict=True))
    assert not torch.equal(BatchSampler([tokens], [1.0], 8, 3, seed=8).next_step()[0][0], second.next_step()[0][0])


def test_ranks_split_the_rows_of_one_global_batch():
    tokens = make_source(3000)
    single = BatchSampler([tokens], [1.0], 8, batch_size=4, seed=3)
    rank0 = BatchSampler([tokens], [1.0], 8, batch_size=2, seed=3, rank=0, world_size=2)
    rank1 = BatchSampler([tokens], [1.0], 8, batch_size=2, seed=3, rank=1, world_size=2)
    for _ in range(3):
        (x, y), = single.next_step()
        (x0, y0), = rank0.next_step()
        (x1, y1), = rank1.next_step()
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_grad_accumulation_splits_the_rows_of_one_step():
    tokens = make_source(3000)
    whole = BatchSampler([tokens], [1.0], 8, batch_size=4, seed=5).next_step()
    parts = BatchSampler([tokens], [1.0], 8, batch_size=2, seed=5).next_step(grad_accum=2)
    assert torch.equal(torch.cat([parts[0][0], parts[1][0]]), whole[0][0])


def test_mixture_draws_rows_from_each_source_by_weight():
    main, other = make_source(2000, offset=0), make_source(2000, offset=1000)  # ids < 200 vs >= 1000
    sampler = BatchSampler([main, other], [0.8, 0.2], 8, batch_size=50, seed=1)
    rows_from_other = 0
    for _ in range(20):
        (x, _), = sampler.next_step()
        from_other = (x >= 1000).all(dim=1)
        assert torch.equal(from_other, (x >= 1000).any(dim=1))  # a row never straddles sources
        rows_from_other += int(from_other.sum())
    assert 0.15 < rows_from_other / 1000 < 0.25  # 200 expected; binomial sd is about 13
    never = BatchSampler([main, other], [1.0, 0.0], 8, batch_size=50, seed=1)
    assert int(never.next_step()[0][0].max()) < 1000


def test_corpus_shorter_than_a_window_is_refused():
    with pytest.raises(UserError, match="block_size \\+ 1 = 17"):
        BatchSampler([np.zeros(16, dtype=np.uint16)], [1.0], 16, 2, seed=0, names=["tiny"])
    BatchSampler([np.zeros(17, dtype=np.uint16)], [1.0], 16, 2, seed=0)  # exactly enough


def test_every_start_offset_can_be_drawn():
    tokens = np.arange(20, dtype=np.uint16)  # 4 possible windows of 17 tokens
    sampler = BatchSampler([tokens], [1.0], 16, batch_size=64, seed=0)
    (x, _), = sampler.next_step()
    assert set(x[:, 0].tolist()) == {0, 1, 2, 3}


# --- validation windows -------------------------------------------------------------------------


def test_validation_windows_are_fixed_non_overlapping_and_capped():
    tokens = np.arange(1001, dtype=np.uint16)
    windows = validation_windows(tokens, block_size=10)
    assert windows.shape == (100, 11)
    targets = windows[:, 1:].reshape(-1)
    assert torch.equal(targets, torch.arange(1, 1001))  # every token after the first, exactly once
    capped = validation_windows(tokens, block_size=10, max_windows=5)
    assert capped[:, 0].tolist() == [0, 250, 500, 740, 990]  # evenly spread over the split
    assert torch.equal(capped, validation_windows(tokens, block_size=10, max_windows=5))


def test_short_validation_split_gives_one_shorter_window_and_too_short_is_refused():
    windows = validation_windows(np.arange(6, dtype=np.uint16), block_size=64)
    assert windows.shape == (1, 6)
    with pytest.raises(UserError, match="at least 2"):
        validation_windows(np.arange(1, dtype=np.uint16), block_size=64)


def test_bpe_tokenizer_json_loads(tmp_path):
    from minilm import bpe

    text = open(resolve_corpus("shakespeare"), encoding="utf-8").read()[:20000]
    tokenizer = bpe.BPETokenizer.train(text, 300)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = load_tokenizer(str(path))
    assert loaded.vocab_size == 300
    assert loaded.decode(loaded.encode("ROMEO: hello")) == "ROMEO: hello"
    assert tokenizer_from_json(loaded.to_json()).encode("to be") == loaded.encode("to be")
    corpus_file = tmp_path / "c.txt"
    corpus_file.write_text(text)
    corpus = load_corpus(str(corpus_file), loaded, tmp_path)
    assert corpus.train.dtype == np.uint16 and len(corpus.train) < corpus.train_bytes
