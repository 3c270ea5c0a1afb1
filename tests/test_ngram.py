"""Tests of minilm/ngram.py: interpolated Kneser-Ney against its definition.

The definition (issue text, repeated in the module docstring) is implemented a second time here,
as literally as possible, with Python dictionaries and sets (`BruteForceKneserNey`); the NumPy
model must give the same probabilities on small random texts, and its readable `prob` path must
give the same numbers as its fast `nats` and `distribution` paths.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minilm.cli import UserError
from minilm.ngram import KneserNeyLM, main, stable_argsort, unique_with_ranks
from tests.strategies import examples
from tests.tolerances import assert_close

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# The definition, written out with dictionaries
# ----------------------------------------------------------------------------------------------


class BruteForceKneserNey:
    """The definition of the issue, one sentence at a time, with no attempt at speed."""

    def __init__(self, text: list[int], N: int, V: int):
        self.N, self.V = N, V
        # c[n][g]: at the top order N the number of occurrences of g; for n < N the number of
        # distinct tokens that precede g somewhere in the text (0 for a g seen only at the start)
        self.c: dict[int, dict[tuple, int]] = {}
        for n in range(1, N + 1):
            occurrences = [tuple(text[i:i + n]) for i in range(len(text) - n + 1)]
            if n == N:
                self.c[n] = dict(Counter(occurrences))
            else:
                preceding: dict[tuple, set] = {g: set() for g in occurrences}
                for i in range(1, len(text) - n + 1):
                    preceding[tuple(text[i:i + n])].add(text[i - 1])
                self.c[n] = {g: len(before) for g, before in preceding.items()}
        # D_n = n1 / (n1 + 2 n2); 0.5 if n1 = 0
        self.D: dict[int, float] = {}
        for n in range(1, N + 1):
            n1 = sum(1 for count in self.c[n].values() if count == 1)
            n2 = sum(1 for count in self.c[n].values() if count == 2)
            self.D[n] = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5

    def P(self, n: int, h: tuple, w: int) -> float:
        if n == 0:
            return 1 / self.V
        c_h = sum(count for g, count in self.c[n].items() if g[:-1] == h)  # c(h.)
        if c_h == 0:
            return self.P(n - 1, h[1:], w)
        N1_h = sum(1 for g, count in self.c[n].items() if g[:-1] == h and count > 0)  # N1+(h.)
        D = self.D[n]
        return max(self.c[n].get(h + (w,), 0) - D, 0) / c_h + D * N1_h / c_h * self.P(n - 1, h[1:], w)

    def score(self, tokens: list[int]) -> list[float]:
        """-ln P of each token; a token with k < N-1 tokens before it gets P_{k+1}."""
        nats = []
        for i, w in enumerate(tokens):
            k = min(i, self.N - 1)
            nats.append(-math.log(self.P(k + 1, tuple(tokens[i - k:i]), w)))
        return nats


# ----------------------------------------------------------------------------------------------
# Strategies: small texts over a small alphabet, so that n-grams repeat
# ----------------------------------------------------------------------------------------------


@st.composite
def small_cases(draw, max_len: int = 30):
    """(V, N, training tokens, evaluation tokens), tokens in 0..min(V, 4)-1 so that they repeat."""
    V = draw(st.integers(1, 6))
    N = draw(st.integers(1, 5))
    alphabet = st.integers(0, min(V, 4) - 1)
    train = draw(st.lists(alphabet, min_size=0, max_size=max_len))
    evaluation = draw(st.lists(alphabet, min_size=0, max_size=12))
    return V, N, train, evaluation


def closed_form_order_1(text: np.ndarray, V: int) -> np.ndarray:
    """P_1(w) = max(c(w) - D, 0) / L + D U / L / V with raw counts c, U distinct tokens, L tokens."""
    counts = np.bincount(text, minlength=V).astype(float)
    n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
    D = n1 / (n1 + 2 * n2) if n1 else 0.5
    distinct = np.count_nonzero(counts)
    return np.maximum(counts - D, 0) / len(text) + D * distinct / len(text) / V


# ----------------------------------------------------------------------------------------------
# The definition
# ----------------------------------------------------------------------------------------------


@given(small_cases())
@examples(150)
def test_equals_the_brute_force_definition(case):
    V, N, train, evaluation = case
    lm = KneserNeyLM(N, V).fit(np.array(train, dtype=np.int64))
    reference = BruteForceKneserNey(train, N, V)
    assert_close(lm.nats(np.array(evaluation, dtype=np.int64)), np.array(reference.score(evaluation)),
                 "fast_path_float64", "nats vs the dictionary definition")
    assert lm.discounts == pytest.approx([reference.D[n] for n in range(1, N + 1)], abs=0)
    for context_length in range(N):  # every order, on a context taken from the training text
        context = train[:context_length]
        expected = [reference.P(len(context) + 1, tuple(context), w) for w in range(V)]
        assert_close(lm.distribution(np.array(context, dtype=np.int64)), np.array(expected),
                     "fast_path_float64", f"distribution after {context}")


def test_a_worked_example_by_hand():
    """"abacab", N = 2. Order 1 uses continuation counts: a follows b and c (the a at the start
    has nothing before it), b follows a twice (one distinct), c follows a: c = 2, 1, 1, so
    D_1 = 2 / (2 + 2*1) = 0.5, c(.) = 4, N1+(.) = 3. Order 2 uses raw counts: ab 2, ba 1, ac 1,
    ca 1, so D_2 = 3 / (3 + 2*1) = 0.6."""
    V = 256
    a, b, d = b"abd"
    lm = KneserNeyLM(2, V).fit(np.frombuffer(b"abacab", dtype=np.uint8))
    assert lm.discounts == pytest.approx([0.5, 0.6], abs=1e-15)
    P1 = {a: (2 - 0.5) / 4 + 0.5 * 3 / 4 / V, b: (1 - 0.5) / 4 + 0.5 * 3 / 4 / V, d: 0.5 * 3 / 4 / V}
    expected = {
        ((), d): P1[d],  # the first token of a text is scored with P_1
        ((a,), b): (2 - 0.6) / 3 + 0.6 * 2 / 3 * P1[b],  # c(a.) = ab + ac = 3, N1+(a.) = 2
        ((b,), a): (1 - 0.6) / 1 + 0.6 * 1 / 1 * P1[a],  # b is only ever followed by a
        ((b,), d): 0.6 * 1 / 1 * P1[d],
        ((d,), a): P1[a],  # an unseen context: P_2 = P_1
        ((a, d, b), a): (1 - 0.6) / 1 + 0.6 * P1[a],  # only the last N-1 = 1 token counts
    }
    for (context, token), probability in expected.items():
        assert lm.prob(list(context), token) == pytest.approx(probability, rel=1e-14), (context, token)
    nats = lm.nats(np.frombuffer(b"dab", dtype=np.uint8))
    assert_close(nats, -np.log([P1[d], P1[a], expected[((a,), b)]]), "fast_path_float64", "nats of 'dab'")


@given(st.lists(st.integers(0, 9), min_size=1, max_size=60), st.integers(10, 12), st.integers(2, 4))
@examples(60)
def test_order_1_is_its_closed_form(train, V, other_order):
    text = np.array(train, dtype=np.int64)
    lm = KneserNeyLM(1, V).fit(text)
    expected = closed_form_order_1(text, V)
    assert_close(lm.distribution([]), expected, "fast_path_float64", "order-1 distribution")
    assert_close(lm.distribution(text[:5]), expected, "fast_path_float64", "order 1 ignores the context")
    assert_close(lm.nats(text), -np.log(expected[text]), "fast_path_float64", "order-1 nats")
    # at a higher order, order 1 counts distinct predecessors instead: a text of one repeated
    # token has c = 1 there (one predecessor), whatever its length
    lm_higher = KneserNeyLM(other_order, V).fit(np.full(len(text) + 1, 3))
    assert lm_higher.count((3,)) == 1.0
    assert KneserNeyLM(1, V).fit(np.full(len(text) + 1, 3)).count((3,)) == len(text) + 1


def test_discount_falls_back_to_one_half_when_no_count_is_one():
    # every token twice: n1 = 0, n2 = 2 (D would be 0 by the formula)
    text = np.array([0, 0, 1, 1], dtype=np.int64)
    lm = KneserNeyLM(1, vocab_size=5).fit(text)
    assert lm.discounts == [0.5]
    assert_close(lm.distribution([]), closed_form_order_1(text, 5), "fast_path_float64", "fallback distribution")
    assert lm.prob([], 4) == pytest.approx(0.5 * 2 / 4 / 5, rel=1e-14)  # unseen: all mass from D
    # and per order: order 2 of "aaaa" has c(aa) = 3 (n1 = 0), order 1 has c(a) = 1 (n1 = 1)
    lm2 = KneserNeyLM(2, vocab_size=3).fit(np.zeros(4, dtype=np.int64))
    assert lm2.discounts == [1.0, 0.5]


@given(small_cases(max_len=40), st.lists(st.integers(0, 5), max_size=6))
@examples(120)
def test_probabilities_sum_to_one(case, context):
    V, N, train, _ = case
    lm = KneserNeyLM(N, V).fit(np.array(train, dtype=np.int64))
    context = [t % V for t in context]  # any context: seen, unseen, shorter or longer than N-1
    p = lm.distribution(context)
    assert p.shape == (V,)
    assert np.all(p > 0)
    assert_close(p.sum(), 1.0, "fast_path_float64", "sum of the distribution")
    assert_close(p, np.array([lm.prob(context, w) for w in range(V)]), "fast_path_float64",
                 "distribution vs prob")


@pytest.fixture(scope="module")
def shakespeare_lm():
    data = (REPO / "data" / "shakespeare.txt").read_bytes()[:30_000]
    return KneserNeyLM(6).fit(np.frombuffer(data[:25_000], dtype=np.uint8)), np.frombuffer(data[25_000:], np.uint8)


def test_fast_nats_equal_the_readable_prob_path_on_real_text(shakespeare_lm):
    lm, held_out = shakespeare_lm
    text = held_out[:400]
    readable = [-math.log(lm.prob(text[max(0, i - 5):i], text[i])) for i in range(len(text))]
    assert_close(lm.nats(text), np.array(readable), "fast_path_float64", "nats vs prob on Shakespeare")
    assert_close(lm.nats(text, start=37), np.array(readable[37:]), "fast_path_float64", "nats from start=37")
    probabilities = lm.distribution(text[:50])
    assert_close(probabilities.sum(), 1.0, "fast_path_float64", "sum after a real context")
    assert 1.5 < lm.bits_per_byte(text) < 4.0  # a real model: far below 8 bits, above a perfect one


@given(small_cases(max_len=60))
@examples(60)
def test_fast_nats_equal_the_readable_prob_path(case):
    V, N, train, evaluation = case
    lm = KneserNeyLM(N, V).fit(np.array(train, dtype=np.int64))
    evaluation = train[-8:] + evaluation  # some contexts seen in training, some not
    readable = [-math.log(lm.prob(evaluation[max(0, i - N + 1):i], w)) for i, w in enumerate(evaluation)]
    assert_close(lm.nats(np.array(evaluation, dtype=np.int64)), np.array(readable), "fast_path_float64",
                 "nats vs prob")


@given(st.lists(st.integers(0, 2**62), max_size=40), st.sampled_from([1, 3, 2**16, 2**40, 2**62]))
@examples(80)
def test_the_radix_sort_equals_numpy(keys, modulus):
    """Keys from one 16-bit digit up to four (several radix passes), with ties."""
    keys = np.array(keys, dtype=np.int64) % modulus
    assert np.array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))
    distinct, ranks = unique_with_ranks(keys)
    expected_distinct, expected_ranks = np.unique(keys, return_inverse=True)
    assert np.array_equal(distinct, expected_distinct)
    assert np.array_equal(ranks, expected_ranks.reshape(-1))


def test_bad_arguments_to_the_model():
    with pytest.raises(UserError, match="order"):
        KneserNeyLM(0)
    with pytest.raises(UserError, match="vocab_size"):
        KneserNeyLM(3, vocab_size=0)
    lm = KneserNeyLM(2, vocab_size=4)
    with pytest.raises(RuntimeError, match="fit"):
        lm.nats(np.array([1, 2]))
    with pytest.raises(UserError, match=r"0\.\.3"):
        lm.fit(np.array([1, 4]))
    with pytest.raises(UserError, match="integer"):
        lm.fit(np.array([0.5, 1.0]))
    lm.fit(np.array([1, 2, 3]))
    with pytest.raises(UserError, match="start"):
        lm.nats(np.array([1, 2]), start=3)
    with pytest.raises(UserError, match=r"0\.\.3"):
        lm.prob([1], 7)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("to be or not to be, that is the question. " * 20, encoding="utf-8")
    evaluation = tmp_path / "eval.txt"
    evaluation.write_text("to be or not to be: whether 'tis nobler", encoding="utf-8")
    return train, evaluation


def test_cli_prints_the_bits_per_byte_of_the_model(files, capsys):
    train, evaluation = files
    assert main(["score", "--train", str(train), "--eval", str(evaluation), "--order", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    lm = KneserNeyLM(4).fit(np.frombuffer(train.read_bytes(), dtype=np.uint8))
    assert result["bits_per_byte"] == pytest.approx(lm.bits_per_byte(np.frombuffer(evaluation.read_bytes(), np.uint8)),
                                                    rel=1e-12)
    assert (result["order"], result["train_bytes"], result["eval_bytes"]) == (4, len(train.read_bytes()), 39)
    assert result["seconds"] >= 0
    assert main(["score", "--train", str(train), "--eval", str(evaluation), "--order", "4"]) == 0
    assert f"{result['bits_per_byte']:.4f} bits per byte" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["order 0", "order 9", "order x", "empty train", "empty eval", "not utf-8",
                                  "missing train", "missing eval"])
def test_cli_bad_input_gets_one_line_and_status_2(case, files, tmp_path, capsys):
    train, evaluation = files
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    order, train_arg, eval_arg, expected = {
        "order 0": ("0", train, evaluation, "--order"),
        "order 9": ("9", train, evaluation, "--order"),
        "order x": ("x", train, evaluation, "--order"),
        "empty train": ("3", empty, evaluation, "--train"),
        "empty eval": ("3", train, empty, "--eval"),
        "not utf-8": ("3", latin1, evaluation, "not UTF-8"),
        "missing train": ("3", tmp_path / "nope.txt", evaluation, "does not exist"),
        "missing eval": ("3", train, tmp_path / "nope.txt", "--eval"),
    }[case]
    try:
        status = main(["score", "--train", str(train_arg), "--eval", str(eval_arg), "--order", order])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m minilm.ngram") and expected in lines[0], captured.err


def test_cli_runs_without_importing_torch(files):
    """The CLI in a fresh interpreter; afterwards, torch must not be among the loaded modules."""
    train, evaluation = files
    program = ("import runpy, sys\n"
               f"sys.argv = ['ngram', 'score', '--train', {str(train)!r}, '--eval', {str(evaluation)!r}]\n"
               "try:\n    runpy.run_module('minilm.ngram', run_name='__main__')\n"
               "except SystemExit as exit_:\n    assert exit_.code == 0, exit_.code\n"
               "print('loaded torch:', 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "bits per byte" in done.stdout
    assert done.stdout.strip().endswith("loaded torch: False"), done.stdout
