"""Tests of minilm.sampling and sample.py.

- the KV-cache path (`generate`, through GPT.step) gives the logits of a full forward over the same
  context at every step, up to block_size and beyond it (the re-fill policy), and the same tokens
  as the no-cache reference `generate_without_cache(policy="refill")`;
- seeds make sampling repeatable; greedy = temperature 0 = argmax;
- top-k and top-p keep the right set, renormalise, and always keep the most likely token;
- streaming never emits half a UTF-8 character and adds up to the full decode;
- novelty against a brute-force count;
- every bad sampling input: a ValueError from the library, exit status 2 and one line from sample.py.
"""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from minilm.checkpoint import save_checkpoint
from minilm.gpt import GPT, GPTConfig
from minilm.sampling import (
    NgramIndex,
    TextStreamer,
    Utf8Stream,
    apply_temperature,
    draw,
    generate,
    generate_without_cache,
    incomplete_utf8_tail,
    next_context_length,
    novelty,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from tests.strategies import examples
from tests.tolerances import assert_close

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


class Bytes:
    """A stand-in byte tokenizer (the contract of minilm.data.ByteTokenizer, nothing more)."""

    vocab_size = 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id):
        return bytes([int(token_id)])


def tiny_gpt(dtype=torch.float64, block_size=8, seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=32, block_size=block_size, n_layer=2, n_head=2, n_embd=16, **overrides)
    model = GPT(config).to(dtype).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so logits differ clearly between tokens
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.5)
    return model


class StepRecorder(torch.nn.Module):
    """Wraps a model and records the next-token logits (B, V) of each `step` call."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.seen = model, model.config, []

    def step(self, idx, state=None):
        logits, state = self.model.step(idx, state)
        self.seen.append(logits[:, -1, :].clone())
        return logits, state


# ----------------------------------------------------------------------------------------------
# KV cache == full forward
# ----------------------------------------------------------------------------------------------


def test_refill_policy_context_lengths():
    """The context the refill policy reads, step by step, for block_size 8 from a 3-token prompt."""
    lengths, n = [3], 3
    for _ in range(12):
        n = next_context_length(n, 8, "refill")
        lengths.append(n)
    assert lengths == [3, 4, 5, 6, 7, 8, 4, 5, 6, 7, 8, 4, 5]
    assert [next_context_length(n, 8, "slide") for n in (3, 7, 8)] == [4, 8, 8]
    assert next_context_length(1, 1, "refill") == 1  # block_size 1: half a block rounds up to 1 token


@pytest.mark.parametrize("pos_emb,kernels", [("learned", "fused"), ("learned", "readable"),
                                               ("sinusoidal", "fused"), ("rope", "fused"), ("none", "fused")])
def test_cached_generation_matches_full_forward(pos_emb, kernels):
    """Every step's logits (up to and well beyond block_size) and the greedy tokens agree."""
    model = tiny_gpt(pos_emb=pos_emb, kernels=kernels)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])  # (B=2, T=3)
    steps = 20  # block_size 8: the cache is re-filled twice
    recorder = StepRecorder(model)
    cached = generate(recorder, prompt, steps, greedy=True)  # (2, 23)
    full_logits = []
    reference = generate_without_cache(model, prompt, steps, greedy=True, policy="refill",
                                       on_logits=lambda logits: full_logits.append(logits.clone()))
    assert torch.equal(cached, reference)
    assert len(recorder.seen) == len(full_logits) == steps  # no wasted step after the last token
    for i, (a, b) in enumerate(zip(recorder.seen, full_logits, strict=True)):
        assert_close(a, b, "fast_path_float64", f"step {i} ({pos_emb}, {kernels})")


def test_cached_generation_float32():
    """The same in float32, as sample.py runs it (tolerance for a different order of operations)."""
    model = tiny_gpt(torch.float32)
    recorder, full_logits = StepRecorder(model), []
    cached = generate(recorder, [7], 18, greedy=True)
    reference = generate_without_cache(model, [7], 18, greedy=True, policy="refill",
                                       on_logits=lambda logits: full_logits.append(logits.clone()))
    assert torch.equal(cached, reference)
    for i, (a, b) in enumerate(zip(recorder.seen, full_logits, strict=True)):
        assert_close(a, b, "fast_path_float32", f"step {i}")


def test_long_prompt_is_cropped_and_policies_agree_within_the_block():
    """A prompt longer than block_size: the model reads its last block_size tokens; the returned
    sequence still holds the whole prompt. Until the context first overflows, "slide" (nanoGPT)
    and "refill" (the cache) read the same tokens; after that they may differ (documented)."""
    model = tiny_gpt()
    prompt = list(range(1, 13))  # 12 tokens > block_size 8
    out = generate(model, prompt, 5, greedy=True)
    assert out[0, :12].tolist() == prompt
    assert torch.equal(out, generate_without_cache(model, prompt, 5, greedy=True, policy="refill"))
    assert torch.equal(generate(model, prompt[-8:], 5, greedy=True)[0, 8:], out[0, 12:])
    short = [3, 1]  # 2 tokens: steps 1..7 read <= 8 tokens under both policies
    slide = generate_without_cache(model, short, 7, greedy=True, policy="slide")
    assert torch.equal(slide, generate(model, short, 7, greedy=True))


def test_generate_with_carried_state_model():
    """Any model with the step contract works, e.g. one without block_size (an RNN-like model)."""

    class Counter(torch.nn.Module):  # next-token logits peak at (sum of all tokens so far) mod V
        def __init__(self):
            super().__init__()
            self.config = type("Config", (), {"vocab_size": 5})()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, idx, targets=None):
            total = torch.cumsum(idx, dim=1) % 5  # (B, T)
            return torch.nn.functional.one_hot(total, 5).double() * 10, None

        def step(self, idx, state=None):
            carried = torch.zeros(idx.shape[0], 1, dtype=torch.long) if state is None else state
            total = (carried + torch.cumsum(idx, dim=1)) % 5  # (B, T)
            return torch.nn.functional.one_hot(total, 5).double() * 10, total[:, -1:]

    out = generate(Counter(), [1, 2], 6, greedy=True)
    assert torch.equal(out, generate_without_cache(Counter(), [1, 2], 6, greedy=True))
    assert out[0].tolist() == [1, 2, 3, 1, 2, 4, 3, 1]  # each new token = (sum so far) mod 5


def test_lstm_generation_matches_full_forward():
    import minilm.lstm as lstm
    torch.manual_seed(0)
    model = lstm.LSTMLM(lstm.LSTMConfig(vocab_size=32, n_embd=8, n_hidden=16, n_layer=2)).double().eval()
    recorder, full_logits = StepRecorder(model), []
    cached = generate(recorder, [3, 4], 12, greedy=True)
    reference = generate_without_cache(model, [3, 4], 12, greedy=True,
                                       on_logits=lambda logits: full_logits.append(logits.clone()))
    assert torch.equal(cached, reference)
    for i, (a, b) in enumerate(zip(recorder.seen, full_logits, strict=True)):
        assert_close(a, b, "fast_path_float64", f"LSTM step {i}")


def test_generate_restores_training_mode_and_batches_rows_independently():
    model = tiny_gpt().train()
    both = generate(model, torch.tensor([[1, 2], [3, 4]]), 10, greedy=True)
    assert model.training
    assert torch.equal(both[0], generate(model, [1, 2], 10, greedy=True)[0])
    assert torch.equal(both[1], generate(model, [3, 4], 10, greedy=True)[0])


# ----------------------------------------------------------------------------------------------
# Seeds, greedy, temperature
# ----------------------------------------------------------------------------------------------


def test_same_seed_same_text_and_another_seed_differs():
    model = tiny_gpt(torch.float32)

    def run(seed, **kw):
        return generate(model, [1], 40, temperature=1.5, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(3), run(3))
    assert torch.equal(run(3, top_k=5, top_p=0.9), run(3, top_k=5, top_p=0.9))
    assert not torch.equal(run(3), run(4))
    # the reference path consumes the generator the same way, so it also repeats
    a = generate_without_cache(model, [1], 20, temperature=1.5, generator=torch.Generator().manual_seed(5))
    b = generate_without_cache(model, [1], 20, temperature=1.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_greedy_equals_temperature_zero_equals_argmax():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    argmax = logits.argmax(dim=-1, keepdim=True)
    assert torch.equal(sample_next(logits, greedy=True), argmax)
    assert torch.equal(sample_next(logits, temperature=0.0), argmax)
    assert torch.equal(sample_next(logits, temperature=1.0, top_k=1), argmax)  # one candidate left
    assert torch.equal(sample_next(logits, temperature=1.0, top_p=1e-9), argmax)
    model = tiny_gpt(torch.float32)
    assert torch.equal(generate(model, [2], 15, greedy=True), generate(model, [2], 15, temperature=0))


def test_temperature_scales_logits():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.equal(apply_temperature(logits, 1.0), logits)
    assert torch.allclose(apply_temperature(logits, 0.5), logits * 2)
    p_sharp = torch.softmax(apply_temperature(logits, 0.5), -1)
    p_flat = torch.softmax(apply_temperature(logits, 2.0), -1)
    assert p_sharp[0, 2] > torch.softmax(logits, -1)[0, 2] > p_flat[0, 2]


def test_sampling_never_picks_a_filtered_token():
    logits = torch.tensor([[0.0, 3.0, 2.9, 2.8, -1.0, 1.0]]).repeat(500, 1)  # (500, 6)
    g = torch.Generator().manual_seed(0)
    picks = sample_next(logits, temperature=2.0, top_k=3, generator=g)[:, 0]
    assert set(picks.tolist()) == {1, 2, 3}  # all three candidates appear in 500 draws, nothing else
    # top-p 0.5 on probabilities (0.5, 0.3, 0.2): token 0 alone reaches 0.5
    picks = sample_next(torch.tensor([[0.5, 0.3, 0.2]]).log().repeat(200, 1), top_p=0.5, generator=g)
    assert set(picks[:, 0].tolist()) == {0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draw_follows_the_distribution(dtype):
    """40,000 draws from p = (0.4, 0, 0.25, 0.2, 0.1, 0.05, 0): the zero-probability tokens never
    come up, and Pearson's chi-square over the 5 others (4 degrees of freedom, whose tail is
    exp(-x/2) (1 + x/2) exactly) is not in its one-in-a-million tail. Seeded, so not flaky; a
    sampler that is off by a few percent on any token fails (drawing from p^0.9 gave a tail of 2e-27)."""
    p = torch.tensor([0.4, 0.0, 0.25, 0.2, 0.1, 0.05, 0.0], dtype=dtype)
    n = 40_000
    picks = draw(p.repeat(n, 1), torch.Generator().manual_seed(0))[:, 0]  # (n,)
    counts = torch.bincount(picks, minlength=len(p)).double()
    assert counts[p == 0].sum() == 0
    expected = n * p[p > 0].double()
    chi_square = float(((counts[p > 0] - expected) ** 2 / expected).sum())
    tail = math.exp(-chi_square / 2) * (1 + chi_square / 2)
    assert tail > 1e-6, f"chi-square {chi_square:.1f} (tail {tail:.1e}): the draws do not follow p"


# ----------------------------------------------------------------------------------------------
# top-k and top-p filters (property tests)
# ----------------------------------------------------------------------------------------------

logit_rows = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=40)


@given(rows=st.lists(logit_rows, min_size=1, max_size=3).filter(lambda r: len({len(x) for x in r}) == 1),
       k=st.integers(1, 45))
@examples(60)
def test_top_k_keeps_the_k_largest(rows, k):
    logits = torch.tensor(rows, dtype=torch.float64)  # (B, V)
    filtered = top_k_filter(logits, k)
    V = logits.shape[1]
    for row, out in zip(logits, filtered, strict=True):
        kept = torch.isfinite(out)
        assert int(kept.sum()) == min(k, V)
        assert torch.equal(out[kept], row[kept])  # kept logits unchanged
        assert row[kept].max() == row.max()  # a most likely token is always kept (ties: any one)
        if not kept.all():
            assert row[kept].min() >= row[~kept].max()  # nothing dropped beats anything kept
        p = torch.softmax(out, -1)
        assert_close(p.sum(), torch.tensor(1.0), "torch_builtin_float64")
        assert_close(p[kept], torch.softmax(row, -1)[kept] / torch.softmax(row, -1)[kept].sum(),
                     "torch_builtin_float64", "renormalised probabilities")


@given(row=logit_rows, p=st.floats(0.0, 1.0, exclude_min=True))
@examples(80)
def test_top_p_keeps_the_smallest_set_reaching_p(row, p):
    logits = torch.tensor([row], dtype=torch.float64)  # (1, V)
    probs = np.sort(torch.softmax(logits, -1)[0].numpy())[::-1]  # descending
    cumulative = np.cumsum(probs)
    assume(np.all(np.abs(cumulative - p) > 1e-9))  # stay away from rounding ties at the boundary
    expected_count = int(np.searchsorted(cumulative, p) + 1) if p < 1 else len(row)  # first index reaching p
    filtered = top_p_filter(logits, p)[0]
    kept = torch.isfinite(filtered)
    assert int(kept.sum()) == min(expected_count, len(row))
    kept_probs = torch.softmax(logits, -1)[0][kept]
    assert kept_probs.max() == torch.softmax(logits, -1).max()  # top-1 always kept (ties: any one)
    assert float(kept_probs.sum()) >= p or p == 1.0  # reaches p ...
    assert float(kept_probs.sum() - kept_probs.min()) < p  # ... and is the smallest such set
    renormalised = torch.softmax(filtered, -1)
    assert_close(renormalised[kept], kept_probs / kept_probs.sum(), "torch_builtin_float64")
    assert float(renormalised[~kept].sum()) == 0.0


def test_top_p_one_and_large_top_k_keep_everything():
    logits = torch.randn(2, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    assert torch.equal(top_k_filter(logits, 10), logits)
    assert torch.equal(top_k_filter(logits, 99), logits)


# ----------------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------------


def test_incomplete_tail_examples():
    euro = "€".encode()  # e2 82 ac
    assert incomplete_utf8_tail(b"abc") == 0
    assert incomplete_utf8_tail(euro[:1]) == 1
    assert incomplete_utf8_tail(b"a" + euro[:2]) == 2
    assert incomplete_utf8_tail(euro) == 0
    assert incomplete_utf8_tail("😀".encode()[:3]) == 3
    assert incomplete_utf8_tail(b"\x80\x80") == 0  # stray continuation bytes: nothing to wait for


@given(text=st.text(max_size=30), cuts=st.lists(st.integers(0, 200), max_size=10))
@examples(80)
def test_streaming_valid_utf8_never_emits_replacement_characters(text, cuts):
    data = text.encode("utf-8")
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    stream, pieces = Utf8Stream(), []
    for a, b in zip(bounds, bounds[1:], strict=False):
        pieces.append(stream.push(data[a:b]))
    pieces.append(stream.flush())
    assert all("\ufffd" not in piece for piece in pieces if "\ufffd" not in text)
    assert "".join(pieces) == text


@given(data=st.binary(max_size=30), cuts=st.lists(st.integers(0, 40), max_size=10))
@examples(80)
def test_streaming_any_bytes_adds_up_to_the_full_decode(data, cuts):
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    stream, pieces = Utf8Stream(), []
    for a, b in zip(bounds, bounds[1:], strict=False):
        pieces.append(stream.push(data[a:b]))
    pieces.append(stream.flush())
    assert "".join(pieces) == data.decode("utf-8", errors="replace")


def test_text_streamer_one_byte_per_token():
    text = "héllo € 😀 ok"
    pieces = []
    streamer = TextStreamer(Bytes(), pieces.append)
    for byte in text.encode():
        streamer(torch.tensor([byte]))
    streamer.finish()
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    assert "😀" in pieces  # the 4-byte character came out whole, once its last byte arrived


def test_text_streamer_with_bpe_tokens_that_split_characters():
    """A byte-level BPE token can hold the end of one character and the start of the next."""
    import minilm.bpe as bpe
    tokenizer = bpe.BPETokenizer.train("日本語の文章。日本の本。明日早春是星期" * 20, 258)
    text = "日本の本。the cat"
    ids = tokenizer.encode(text)
    assert any(b"\xa5\xe6" == tokenizer.token_bytes(i) for i in ids)  # "日" ends, "本" starts mid-token
    pieces = []
    streamer = TextStreamer(tokenizer, pieces.append)
    for i in ids:
        streamer(torch.tensor([i]))
    streamer.finish()
    assert "".join(pieces) == text == tokenizer.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)


def test_streamed_generation_equals_decoded_output():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        model.wte.weight.normal_(0, 1.0)  # near-random bytes: plenty of invalid UTF-8
    pieces = []
    streamer = TextStreamer(Bytes(), pieces.append)
    out = generate(model, [104, 105], 60, temperature=1.0, generator=torch.Generator().manual_seed(0),
                   on_token=streamer)
    streamer.finish()
    assert "".join(pieces) == Bytes().decode(out[0, 2:].tolist())


# ----------------------------------------------------------------------------------------------
# Novelty
# ----------------------------------------------------------------------------------------------


def test_novelty_known_strings():
    train = "the cat sat on the mat"
    assert novelty("the cat sat", train, n=8) == 1.0  # all 4 windows are in the training text
    assert novelty("zzzzzzzzzz", train, n=8) == 0.0
    # "the cat sat" + "!!": 13 bytes, 6 windows; the 4 inside "the cat sat" occur, the 2 with "!" do not
    assert novelty("the cat sat!!", train, n=8) == pytest.approx(4 / 6)
    assert novelty(b"sat on the mat", train.encode(), n=3) == 1.0
    assert novelty("é", "café", n=2) == 1.0  # bytes, not characters: é is 2 bytes
    with pytest.raises(ValueError, match="at least n=8"):
        novelty("short", train, n=8)
    assert novelty("abcdefgh", "", n=8) == 0.0


@given(gen=st.text("ab c", min_size=1, max_size=40), train=st.text("ab c", max_size=200), n=st.integers(1, 12))
@examples(60)
def test_novelty_matches_a_brute_force_count(gen, train, n):
    g, t = gen.encode(), train.encode()
    assume(len(g) >= n)
    windows = [g[i:i + n] for i in range(len(g) - n + 1)]
    training_windows = {t[i:i + n] for i in range(len(t) - n + 1)}
    expected = sum(w in training_windows for w in windows) / len(windows)
    assert novelty(gen, train, n) == pytest.approx(expected)


def test_ngram_index_is_reusable():
    index = NgramIndex("abcdefghijklmnop", n=4)
    assert index.share("abcdXXXX") == pytest.approx(1 / 5)
    assert index.share("mnop") == 1.0


# ----------------------------------------------------------------------------------------------
# Bad inputs: the library
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    ({"temperature": -0.1}, "temperature"), ({"temperature": math.nan}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_p": -1.0}, "top_p"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
])
def test_bad_sampling_arguments_raise(kwargs, match):
    model = tiny_gpt(torch.float32)
    args = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(model, [1], **args)
    with pytest.raises(ValueError, match=match):
        generate_without_cache(model, [1], **args)


def test_a_diverged_model_is_refused_instead_of_sampled():
    """Nan weights give nan logits; the draw would then pick a meaningless token, so generation
    refuses them with a message that says what is wrong (checked once, on the prompt)."""
    model = tiny_gpt(torch.float32)
    with torch.no_grad():
        model.h[0].mlp.c_fc.weight.fill_(float("nan"))
    for fn in (generate, generate_without_cache):
        with pytest.raises(ValueError, match=r"logits for the prompt are not finite"):
            fn(model, [1, 2], 3)


def model_that_overflows_at_position(position: int) -> GPT:
    """Finite logits up to `position`, nan from there on: the position embedding of that one
    position is nan (like an overflow that shows only deep into a generation)."""
    model = tiny_gpt(torch.float32)
    with torch.no_grad():
        model.wpe.weight[position].fill_(float("nan"))
    return model


@pytest.mark.parametrize("fn", [generate, generate_without_cache])
def test_logits_that_turn_non_finite_later_are_refused(fn):
    """Prompt at positions 0-1: finite. The 2nd new token is drawn from position 2's logits
    (finite); the 3rd would be drawn from position 3's, which are nan."""
    model = model_that_overflows_at_position(3)
    assert fn(model, [1, 2], 2).shape == (1, 4)  # stops before position 3 is fed
    with pytest.raises(ValueError, match=r"turned non-finite \(nan or inf\) during generation"):
        fn(model, [1, 2], 3)


def test_streaming_never_hands_out_a_token_drawn_from_non_finite_logits():
    model = model_that_overflows_at_position(3)
    streamed = []
    with pytest.raises(ValueError, match="turned non-finite"):
        generate(model, [1, 2], 6, on_token=lambda tok: streamed.append(int(tok[0])))
    assert len(streamed) == 2  # the tokens drawn from positions 1 and 2; none from position 3


def test_empty_prompt_ids_raise():
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(tiny_gpt(torch.float32), [], 3)


# ----------------------------------------------------------------------------------------------
# Bad inputs and behaviour: sample.py
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny untrained byte-level GPT checkpoint, written through minilm.checkpoint."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16))
    (folder / "cats.txt").write_text("the cat sat on the mat. " * 40)
    checkpoint = {"model_kind": "gpt", "model_config": model.config.to_dict(),
                  "model": model.state_dict(), "tokenizer": '{"type": "bytes"}',
                  "train_config": {"data": str(folder / "cats.txt")}}
    return Path(save_checkpoint(folder / "ckpt.pt", checkpoint))


def run_main(*argv):
    """sample.main in this process: (exit status, stdout, stderr)."""
    import sample

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = sample.main(list(argv))
        except SystemExit as exit_:  # argparse errors
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv,names", [
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "abc"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.01"], "--top-p"),
    (["--prompt", ""], "--prompt"),
    (["--prompt", "a\udcff"], "--prompt"),  # what Python makes of invalid UTF-8 bytes in argv
    (["--prompt-file", "/nonexistent/prompt.txt"], "--prompt-file"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
    (["--device", "tpu"], "--device"),
    (["--seed", str(2**70)], "--seed"),
    (["--novelty", "--data", "/nonexistent/corpus.txt"], "--data"),
])
def test_cli_bad_inputs_one_line_status_2(ckpt, argv, names):
    status, out, err = run_main("--ckpt", str(ckpt), *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sample.py: error:") and names in lines[0], err
    assert "Traceback" not in err


def test_cli_bad_checkpoints(tmp_path):
    status, _, err = run_main("--ckpt", str(tmp_path / "missing.pt"))
    assert status == 2 and "--ckpt" in err and len(err.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    status, _, err = run_main("--ckpt", str(corrupt))
    assert status == 2 and "--ckpt" in err and len(err.strip().splitlines()) == 1


def test_cli_diverged_checkpoint_one_line_status_2(ckpt, tmp_path):
    import minilm.checkpoint as checkpoint_module
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["model"] = {k: torch.full_like(v, float("nan")) for k, v in checkpoint["model"].items()}
    diverged = Path(checkpoint_module.save_checkpoint(tmp_path / "nan.pt", checkpoint))
    status, _, err = run_main("--ckpt", str(diverged), "--prompt", "the cat")
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "--ckpt" in lines[0] and "not finite" in lines[0], err


def test_cli_checkpoint_that_overflows_later_one_line_status_2(ckpt, tmp_path):
    """Finite for the prompt, nan from position 3: refused with one line naming --ckpt, and the
    two tokens streamed before it are the only output after the prompt."""
    import minilm.checkpoint as checkpoint_module
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["model"]["wpe.weight"][3] = float("nan")
    overflowing = Path(checkpoint_module.save_checkpoint(tmp_path / "late_nan.pt", checkpoint))
    status, out, err = run_main("--ckpt", str(overflowing), "--prompt", "ab", "--max-new-tokens", "10")
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "--ckpt" in lines[0] and "turned non-finite" in lines[0], err
    assert out.startswith("ab") and len(out.encode()) <= len("ab") + 2


def test_cli_empty_prompt_file(ckpt, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    status, _, err = run_main("--ckpt", str(ckpt), "--prompt-file", str(empty))
    assert status == 2 and "--prompt-file" in err and "empty" in err


def test_cli_same_seed_same_text_streamed_or_not(ckpt):
    common = ["--ckpt", str(ckpt), "--prompt", "the ", "--max-new-tokens", "40", "--num-samples", "2"]
    status, streamed, _ = run_main(*common, "--seed", "7")
    assert status == 0
    assert run_main(*common, "--seed", "7")[1] == streamed
    assert run_main(*common, "--seed", "7", "--no-stream")[1] == streamed
    assert run_main(*common, "--seed", "8")[1] != streamed
    assert streamed.startswith("the ") and streamed.count("-" * 40) == 1  # 2 samples, 1 separator


def test_cli_long_prompt_warns_and_novelty_reports(ckpt):
    status, out, err = run_main("--ckpt", str(ckpt), "--prompt", "x" * 40, "--max-new-tokens", "20",
                                "--greedy", "--novelty")
    assert status == 0
    assert "warning" in err and "40 tokens" in err and "16" in err
    assert out.startswith("x" * 40)
    assert "[novelty]" in out and "training text of cats" in out  # the corpus the checkpoint names


def test_cli_subprocess_exit_codes(ckpt, tmp_path):
    """The real script: a bad flag value and a missing checkpoint give status 2 and one line."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for argv, name in ((["--ckpt", str(ckpt), "--top-p", "2"], "--top-p"),
                       (["--ckpt", str(tmp_path / "none.pt")], "--ckpt")):
        bad = subprocess.run([sys.executable, str(REPO / "sample.py"), *argv], capture_output=True, text=True,
                             env=env, timeout=120)
        assert bad.returncode == 2, bad.stderr
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sample.py: error:") and name in lines[0], bad.stderr
        assert bad.stdout == ""


def test_cli_lstm_with_bpe_tokenizer(tmp_path):
    """sample.py with the other model and the other tokenizer: carried state, no block_size."""
    import minilm.bpe as bpe
    import minilm.checkpoint as checkpoint_module
    import minilm.lstm as lstm
    tokenizer = bpe.BPETokenizer.train("日本語の文章。日本の本。the cat sat on the mat. " * 10, 262)
    torch.manual_seed(0)
    model = lstm.LSTMLM(lstm.LSTMConfig(vocab_size=tokenizer.vocab_size, n_embd=8, n_hidden=8, n_layer=1))
    path = checkpoint_module.save_checkpoint(tmp_path / "lstm.pt", {
        "model_kind": "lstm", "model_config": model.config.to_dict(), "model": model.state_dict(),
        "tokenizer": tokenizer.to_json(), "train_config": {}})
    argv = ["--ckpt", str(path), "--prompt", "日本", "--max-new-tokens", "30", "--temperature", "1.5"]
    status, out, err = run_main(*argv)
    assert status == 0, err
    assert out.startswith("日本") and run_main(*argv)[1] == out
    status, _, err = run_main(*argv, "--novelty")  # this checkpoint records no training data
    assert status == 2 and "--data" in err


def test_novelty_on_a_bundled_corpus():
    """A 1 MB corpus: a passage of the training text is fully 'memorised', random bytes are not."""
    data = (REPO / "data" / "shakespeare.txt").read_bytes()
    index = NgramIndex(data[: len(data) * 9 // 10], n=8)
    assert index.share(data[5000:6000]) == 1.0
    assert index.share(bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8))) == 0.0
