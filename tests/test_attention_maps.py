"""Attention maps (minilm/attention.py): the drawn weights are the model's, and bad input is refused.

The weights are the model's when (1) every row is a distribution over the keys, (2) a causal model
gives zero weight to every later token, and (3) weights @ V, with the layer's own values, equals
what the model's attention layer hands to its output projection (captured with a forward hook),
on both kernel paths, for causal and bidirectional attention.
"""
from __future__ import annotations

import sys
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import examples, gpt_configs, random_params, seeds
from tolerances import assert_close

from minilm import GPT, GPTConfig
from minilm.attention import attention_maps, head_profile, main, token_label
from minilm.checkpoint import save_checkpoint


@examples(15)
@given(config=gpt_configs(max_layer=2, max_block=7), causal=st.booleans(), data=st.data(), seed=seeds)
def test_the_drawn_weights_are_the_models(config, causal, data, seed):
    model = GPT(config).double()
    random_params(model, seed)
    T = data.draw(st.integers(1, config.block_size))
    idx = torch.tensor(np.random.default_rng(seed).integers(0, config.vocab_size, size=(2, T)))
    seen = {}  # layer -> (the attention's input and positions, what it hands to c_proj)
    hooks = []
    for i, block in enumerate(model.h):
        hooks.append(block.attn.register_forward_pre_hook(lambda m, args, i=i: seen.setdefault(i, {}).update(x=args)))
        hooks.append(block.attn.c_proj.register_forward_pre_hook(lambda m, args, i=i: seen[i].update(y=args[0])))
    maps = attention_maps(model, idx, causal)
    for h in hooks:
        h.remove()
    assert len(maps) == config.n_layer
    later = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T): key after query
    for i, (block, A) in enumerate(zip(model.h, maps, strict=True)):
        assert A.shape == (2, config.n_head, T, T)
        assert_close(A.sum(-1), torch.ones(2, config.n_head, T, dtype=torch.float64), "forward_float64", "row sums")
        assert bool((A >= 0).all())
        if causal:
            assert bool((A[..., later] == 0).all()), "a causal model gave weight to a later token"
        x, pos = seen[i]["x"][0], seen[i]["x"][1]
        _, _, v = block.attn.qkv_heads(x, pos)  # (B, nh, T, hs)
        y = (A @ v).transpose(1, 2).reshape(2, T, config.n_embd)  # (B, T, C), heads concatenated
        assert_close(y, seen[i]["y"], "fast_path_float64", f"layer {i}: weights @ V vs the layer's output")


def test_a_bidirectional_map_fills_the_square():
    model = GPT(GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=2, n_embd=8)).double()
    random_params(model, 0)
    A = attention_maps(model, torch.tensor([[1, 2, 3, 4, 5]]), causal=False)[0]
    assert bool((A > 0).all()), "without the causal mask every token sees every other"


def profile_by_loops(A: np.ndarray, ids: np.ndarray, boundary_ids) -> dict[str, np.ndarray]:
    """head_profile spelled out query by query: A (L, B, nh, T, T), ids (B, T)."""
    L, B, nh, T, _ = A.shape
    sums = {name: np.zeros((L, nh)) for name in ("self", "previous", "first", "boundary")}
    counts = dict.fromkeys(sums, 0)
    for b in range(B):
        last = -1  # the last boundary strictly before t
        for t in range(T):
            picks = {"self": t}
            if t >= 1:
                picks.update(previous=t - 1, first=0)
            if last >= 0:
                picks["boundary"] = last
            for name, s in picks.items():
                sums[name] += A[:, b, :, t, s]
                counts[name] += 1
            if ids[b, t] in boundary_ids:
                last = t
    return {name: sums[name] / counts[name] if counts[name] else np.full((L, nh), np.nan) for name in sums}


@examples(25)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 7)), seed=seeds)
def test_head_profile_is_the_average_of_the_named_entries(shape, seed):
    L, B, nh, T = shape
    rng = np.random.default_rng(seed)
    A = rng.random((L, B, nh, T, T))  # full rows, so a wrong offset (t + 1 for t - 1) reads a nonzero entry
    A /= A.sum(-1, keepdims=True)
    ids = rng.integers(0, 4, size=(B, T))  # ids 0 and 1 are the boundaries: some texts have none, some many
    got = head_profile(list(torch.from_numpy(A)), torch.from_numpy(ids), {0, 1})
    want = profile_by_loops(A, ids, {0, 1})
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].shape == (L, nh)
        assert np.array_equal(np.isnan(got[name].numpy()), np.isnan(want[name])), name
        if not np.isnan(want[name]).all():
            assert_close(got[name], torch.from_numpy(want[name]), "forward_float64", name)


def test_head_profile_of_a_previous_token_head():
    T = 5
    A = torch.zeros(1, 1, 1, T, T, dtype=torch.float64)
    A[0, 0, 0, 0, 0] = 1.0
    A[0, 0, 0, torch.arange(1, T), torch.arange(T - 1)] = 1.0  # every query on the token before it
    ids = torch.tensor([[5, 0, 5, 5, 5]])  # one boundary, at position 1: b(t) = 1 for t = 2, 3, 4
    got = head_profile(list(A), ids, {0})
    assert got["previous"].item() == 1.0 and got["first"].item() == 0.25 and got["self"].item() == 0.2
    assert got["boundary"].item() == pytest.approx(1 / 3)  # only t = 2 looks at its previous, the space


def test_token_labels():
    assert token_label(b"a b\n") == "a␣b\\n"
    assert token_label("é".encode()) == "é"
    assert token_label(b"\xc3") == "\\xc3"  # half a character: its byte, escaped


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=8, n_layer=2, n_head=2, n_embd=8))
    checkpoint = {"model_kind": "gpt", "model_config": model.config.to_dict(), "model": model.state_dict(),
                  "tokenizer": '{"type": "bytes"}', "train_config": {}}
    return str(save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt.pt", checkpoint))


def run(*argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_the_command_writes_a_png_and_refuses_to_overwrite(ckpt, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="drawing needs the plot extra (pip install -e '.[plot]')")
    out = tmp_path / "attn.png"
    status, text, _ = run("--ckpt", ckpt, "--text", "a cat", "--out", str(out), capsys=capsys)
    assert status == 0 and "2 layer(s) x 2 head(s), 5 tokens, causal" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = out.read_bytes()
    status, _, err = run("--ckpt", ckpt, "--text", "dog", "--out", str(out), capsys=capsys)
    assert status == 2 and "exists; give --overwrite" in err and out.read_bytes() == before
    status, text, _ = run("--ckpt", ckpt, "--text", "dog", "--out", str(out), "--overwrite", "--layer", "1",
                          "--head", "0", "--attention", "bidirectional", capsys=capsys)
    assert status == 0 and "1 layer(s) x 1 head(s), 3 tokens, bidirectional" in text and out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attn.png"], "no temporary file left behind"


@pytest.mark.parametrize("argv,message", [
    (["--text", ""], "--text: the text is empty"),
    (["--text", "123456789"], "--text: 9 tokens, longer than the model's context of block_size=8"),
    (["--text", "ab", "--layer", "2"], "--layer: expected 0 .. 1"),
    (["--text", "ab", "--head", "-1"], "--head: expected 0 .. 1"),
])
def test_bad_input_one_line_and_nothing_written(ckpt, tmp_path, capsys, argv, message):
    out = tmp_path / "attn.png"
    status, _, err = run("--ckpt", ckpt, "--out", str(out), *argv, capsys=capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_missing_matplotlib_is_one_line(ckpt, tmp_path, capsys):
    out = tmp_path / "attn.png"
    with mock.patch.dict(sys.modules, {"matplotlib": None}):  # import matplotlib -> ImportError
        status, _, err = run("--ckpt", ckpt, "--text", "ab", "--out", str(out), capsys=capsys)
    assert status == 2 and "matplotlib is not installed" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
