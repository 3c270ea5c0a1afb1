"""Byte-level augmentation: what each transform changes and what it must not (UTF-8 characters,
the window's length, determinism under a seed), and the --augment parsing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minilm.augment import (
    MAX_WIDTH,
    MIN_WIDTH,
    SPEAKER_TAG,
    TRANSFORMS,
    Augmenter,
    as_bytes,
    as_text,
    change_case,
    draw_row_seeds,
    parse_augment,
    rewrap_lines,
    toggle_speaker_tags,
    typo_noise,
)
from minilm.cli import UserError
from tests.strategies import examples

PLAY = (b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        b"First Citizen:\nYou are all resolved rather to die than to famish?\n")
PROSE = ("Lily went to her mom and said, \"Mom, I found this needle.\" Her mom smiled.\n\n"
         "They sewed the button; ca\u00e7a \u00e0 la fran\u00e7aise, \u79e6\u5ddd\u96c4\u5e1d\u5b85.\n").encode()


def rng(seed=0):
    return np.random.default_rng(seed)


# --- every transform ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRANSFORMS))
@examples(30)
@given(text=st.text(max_size=80), seed=st.integers(0, 2**32))
def test_valid_utf8_stays_valid_and_a_seed_fixes_the_result(name, text, seed):
    transform = TRANSFORMS[name]
    data = text.encode("utf-8")
    out = transform(data, rng(seed))
    out.decode("utf-8")  # raises if a character was split
    assert transform(data, rng(seed)) == out


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_broken_characters_at_the_window_edges_survive_untouched(name):
    """A window cut mid-character starts and ends with stray bytes; they are kept as they are, and
    every valid character of the output is one of the input's (or the tags and case variants it adds)."""
    data = "\u00e9t\u00e9 Caf\u00e9 au lait, \u79e6\u5ddd.".encode()[1:-2]  # half an é in front, a broken 。 at the end
    out = TRANSFORMS[name](data, rng(3))
    assert as_bytes(as_text(out)) == out
    assert out.count(b"\xa9") >= 1  # the stray continuation byte is still there (typos may copy it)
    assert data[-2:-1] in out  # so is the lead byte of the broken last character


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_different_seeds_give_different_outputs(name):
    data = PROSE * 3  # no speaker tags: adding them draws names (dropping them draws nothing)
    outputs = {TRANSFORMS[name](data, rng(seed)) for seed in range(6)}
    assert len(outputs) > 1


def test_as_text_round_trips_any_bytes():
    data = bytes(range(256)) * 2
    assert as_bytes(as_text(data)) == data


# --- case ---------------------------------------------------------------------------------------


@examples(30)
@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=80), seed=st.integers(0, 2**32))
def test_case_changes_only_the_case(text, seed):
    out = change_case(text.encode(), rng(seed)).decode()
    assert out.lower() == text.lower() and len(out) == len(text)


def test_case_makes_all_three_kinds_of_change():
    text = b"Hello brave New World of words"
    outs = {change_case(text, rng(seed)) for seed in range(40)}
    assert text.lower() in outs and text.upper() in outs
    assert len(outs - {text.lower(), text.upper()}) >= 2  # per-word flips


# --- line layout --------------------------------------------------------------------------------


@examples(30)
@given(words=st.lists(st.text(alphabet="abcdé\u79e6", min_size=1, max_size=12), min_size=1, max_size=40),
       seed=st.integers(0, 2**32))
def test_rewrap_keeps_the_words_and_paragraphs_and_changes_only_line_breaks(words, seed):
    text = " ".join(words[: len(words) // 2]) + "\n\n" + "\n".join(words[len(words) // 2:])
    out = rewrap_lines(text.encode(), rng(seed)).decode()
    assert out.split() == text.split()
    assert out.count("\n\n") == text.count("\n\n")
    assert all(len(line) <= MAX_WIDTH or " " not in line for line in out.split("\n"))


def test_rewrap_uses_the_drawn_width():
    text = ("word " * 200).encode()
    for seed in range(5):
        out = rewrap_lines(text, rng(seed)).decode().split("\n")
        width = max(len(line) for line in out)
        assert MIN_WIDTH - 5 <= width <= MAX_WIDTH and len({len(line) for line in out[:-1]}) <= 2


# --- speaker tags -------------------------------------------------------------------------------


def test_speaker_tags_are_dropped_from_a_play():
    out = toggle_speaker_tags(PLAY, rng(0))
    assert SPEAKER_TAG.search(out.decode()) is None
    assert out == b"Before we proceed any further, hear me speak.\n\nSpeak, speak.\n\n" \
                  b"You are all resolved rather to die than to famish?\n"


@examples(30)
@given(paragraphs=st.lists(st.text(alphabet="abc de\u00e9.", min_size=1, max_size=20), min_size=1, max_size=6),
       seed=st.integers(0, 2**32))
def test_added_speaker_tags_start_paragraphs_and_dropping_them_restores_the_text(paragraphs, seed):
    text = "\n\n".join(paragraphs).encode()
    tagged = toggle_speaker_tags(text, rng(seed))
    added = len(SPEAKER_TAG.findall(tagged.decode()))
    assert added == sum(1 for p in paragraphs[1:] if p.strip())
    assert toggle_speaker_tags(tagged, rng(seed)) == text


# --- typos --------------------------------------------------------------------------------------


def test_typos_delete_swap_and_insert_whole_characters_at_about_the_rate():
    """3000 distinct three-byte characters; each is deleted with chance 0.05/3 (expected 50 of them).
    The bounds 25..80 are about +-3.5 standard deviations, a false alarm rate below 1e-3."""
    chars = [chr(0x4E00 + i) for i in range(3000)]
    out = typo_noise("".join(chars).encode(), rng(0)).decode()
    assert set(out) <= set(chars)  # only whole characters of the text
    missing = len(set(chars) - set(out))
    assert 25 <= missing <= 80
    inserted = len(out) - (3000 - missing)
    assert 25 <= inserted <= 80
    swaps = sum(1 for a, b in zip(out, out[1:], strict=False) if ord(b) == ord(a) - 1)
    assert 25 <= swaps <= 80


# --- the augmenter ------------------------------------------------------------------------------


@pytest.mark.parametrize("item, match", [("case", "NAME=P"), ("blur=0.5", "unknown transform 'blur'"),
                                         ("case=1.5", r"\[0, 1\]"), ("case=-0.1", r"\[0, 1\]"),
                                         ("case=nan", r"\[0, 1\]"), ("case=often", r"\[0, 1\]")])
def test_bad_augment_items_are_one_line_errors(item, match):
    with pytest.raises(UserError, match=match) as info:
        parse_augment([item])
    assert "\n" not in str(info.value) and "--augment" in str(info.value)


def test_a_transform_given_twice_is_refused():
    with pytest.raises(UserError, match="twice"):
        parse_augment(["case=0.5", "case=0.2"])
    assert parse_augment(["typos=0.2", "case=1"]) == {"typos": 0.2, "case": 1.0}


@examples(40)
@given(text=st.text(min_size=1, max_size=60), extra=st.integers(0, 60), seed=st.integers(0, 2**62))
def test_every_window_keeps_its_length_and_is_fixed_by_its_seed(text, extra, seed):
    augmenter = Augmenter.from_flags([f"{name}=1" for name in TRANSFORMS])
    span = text.encode()
    length = max(1, len(span) - extra)
    window = augmenter.window(span, length, seed)
    assert len(window) == length
    assert augmenter.window(span, length, seed) == window


def test_probability_zero_leaves_the_window_alone_and_one_always_transforms():
    span = PROSE * 2
    assert Augmenter.from_flags(["case=0", "typos=0"]).window(span, 100, seed=1) == span[:100]
    upper_or_lower = Augmenter.from_flags(["case=1"])
    windows = [upper_or_lower.window(span, 100, seed) for seed in range(10)]
    assert all(w.lower() == span[:100].lower() for w in windows) and all(w != span[:100] for w in windows)


def test_the_share_of_transformed_windows_matches_the_probability():
    """p = 0.3 over 2000 windows: 600 expected, standard deviation 20.5; bounds +-4 sd (false alarm < 1e-4)."""
    augmenter = Augmenter.from_flags(["case=0.3"])
    span = b"Hello World, These Are Twelve Capital Words In One Short Line Of Text " * 2
    changed = sum(augmenter.window(span, 70, seed) != span[:70] for seed in range(2000))
    assert 600 - 82 <= changed <= 600 + 82


def test_a_span_that_shrinks_below_the_window_falls_back_to_the_plain_window():
    span = b"All:\nAy.\n" * 10  # dropping the tags leaves 40 of 90 bytes
    assert Augmenter.from_flags(["speakers=1"]).window(span, 60, seed=0) == span[:60]
    with pytest.raises(ValueError, match="fewer"):
        Augmenter.from_flags(["speakers=1"]).window(span, 91, seed=0)


def test_token_windows_for_the_sampler():
    augmenter = Augmenter.from_flags(["typos=1"])
    span = np.frombuffer(PROSE, dtype=np.uint8).astype(np.uint16)
    assert augmenter.span_length(65) == 130
    window = augmenter.window_tokens(span, 65, seed=7)
    assert window.shape == (65,) and window.dtype == np.int64
    assert bytes(window.astype(np.uint8)) == augmenter.window(PROSE, 65, seed=7)
    with pytest.raises(UserError, match="byte ids"):
        augmenter.window_tokens(np.array([1, 256, 3]), 2, seed=0)


def test_row_seeds_come_from_the_samplers_generator():
    a = draw_row_seeds(torch.Generator().manual_seed(0), 8)
    b = draw_row_seeds(torch.Generator().manual_seed(0), 8)
    assert torch.equal(a, b) and len(set(a.tolist())) == 8


def test_sample_window_reads_a_longer_span_inside_the_corpus():
    tokens = np.frombuffer(PROSE * 4, dtype=np.uint8).astype(np.uint16)  # 4 x ~160 bytes
    plain = Augmenter.from_flags(["case=0"])
    for uniform in (0.0, 0.5, 0.999999):
        window = plain.sample_window(tokens, uniform, 33, seed=0)
        assert window.shape == (33,)
        start = min(int(uniform * (len(tokens) - 66 + 1)), len(tokens) - 66)
        assert np.array_equal(window, tokens[start:start + 33])  # probability 0: the span's first bytes
    short = tokens[:40]  # shorter than the 66-byte span: the whole corpus is the span
    assert np.array_equal(plain.sample_window(short, 0.7, 33, seed=0), short[:33])
    assert Augmenter.from_flags(["typos=1"]).sample_window(short, 0.7, 33, seed=0).shape == (33,)
