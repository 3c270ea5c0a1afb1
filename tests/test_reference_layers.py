"""Each NumPy twin against its PyTorch layer, and each hand-written backward against numbers.

For every layer, on the same random weights:
  - PyTorch float64 forward == NumPy forward            (TOL forward_float64)
  - PyTorch float32 forward == NumPy forward            (TOL forward_float32)
  - autograd == NumPy backward, for the input and every parameter   (TOL grad_float64)
  - NumPy backward == central finite differences on tiny shapes     (TOL finite_difference)
plus the readable/fused attention paths against each other and our LayerNorm and GELUs against the
torch.nn.functional built-ins. The loss used for gradients is sum(y * R) for a fixed random R,
so dL/dy = R is a generic upstream gradient.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    ACTIVATIONS,
    attention_cases,
    central_differences,
    examples,
    random_params,
    seeds,
    torch_grads,
)
from tolerances import assert_close

from minilm import layers
from minilm import reference as ref


def check_twin(module, x, torch_call, twin_forward, twin_backward, seed, what):
    """Compare a module with its twin on input x (float64 array): forward in float64 and float32,
    and the gradients of the input and of every parameter."""
    module = module.double()
    p = random_params(module, seed)
    y_ref, cache = twin_forward(x, p)
    xt = torch.tensor(x, requires_grad=True)
    y = torch_call(module, xt)
    assert_close(y, y_ref, "forward_float64", f"{what} forward (float64)")
    dy = np.random.default_rng(seed + 1).standard_normal(y_ref.shape)
    y.backward(torch.tensor(dy))
    dx, dp = twin_backward(dy, cache)
    assert_close(xt.grad, dx, "grad_float64", f"{what} d input")
    grads = torch_grads(module)
    assert set(dp) == set(grads), f"{what}: twin grads {sorted(dp)} vs module {sorted(grads)}"
    for name, g in grads.items():
        assert_close(g, dp[name], "grad_float64", f"{what} d {name}")
    with torch.no_grad():
        y32 = torch_call(module.float(), torch.tensor(x, dtype=torch.float32))
    assert y32.dtype == torch.float32
    assert_close(y32, y_ref, "forward_float32", f"{what} forward (float32)")


def check_finite_differences(x, p, twin_forward, twin_backward, seed, what):
    """The twin's backward against central differences of L = sum(forward(x, p) * R)."""
    y, cache = twin_forward(x, p)
    R = np.random.default_rng(seed).standard_normal(y.shape)
    dx, dp = twin_backward(R, cache)
    numeric = central_differences(lambda: float(np.sum(twin_forward(x, p)[0] * R)), {"x": x, **p})
    assert_close(dx, numeric["x"], "finite_difference", f"{what} d input")
    for name in p:
        assert_close(dp[name], numeric[name], "finite_difference", f"{what} d {name}")


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def as_mask(mask):
    return None if mask is None else torch.tensor(mask)


# ---------------------------------------------------------------------------------------------
# embeddings and positions
# ---------------------------------------------------------------------------------------------

@examples(15)
@given(B=st.integers(1, 3), T=st.integers(1, 6), V=st.integers(1, 5), C=st.integers(1, 6), seed=seeds)
def test_token_embedding_matches_torch(B, T, V, C, seed):
    """Small vocabularies make repeated tokens likely: their gradients must add up."""
    emb = nn.Embedding(V, C).double()
    p = random_params(emb, seed)
    idx = np.random.default_rng(seed).integers(0, V, size=(B, T))
    x_ref, cache = ref.embedding_forward(idx, p)
    x = emb(torch.tensor(idx))
    assert_close(x, x_ref, "forward_float64", "embedding")
    dy = randn(seed + 1, B, T, C)
    x.backward(torch.tensor(dy))
    _, dp = ref.embedding_backward(dy, cache)
    assert_close(emb.weight.grad, dp["weight"], "grad_float64", "d wte")


@examples(10)
@given(T=st.integers(1, 6), extra=st.integers(0, 3), C=st.integers(1, 6), seed=seeds)
def test_learned_positions_match_torch(T, extra, C, seed):
    wpe = layers.LearnedPositionEmbedding(T + extra, C).double()
    p = random_params(wpe, seed)
    pos = np.arange(T)
    pe_ref, cache = ref.learned_position_forward(pos, p)
    pe = wpe(torch.arange(T))
    assert_close(pe, pe_ref, "forward_float64", "learned positions")
    dy = randn(seed + 1, T, C)
    pe.backward(torch.tensor(dy))
    _, dp = ref.learned_position_backward(dy, cache)
    assert_close(wpe.weight.grad, dp["weight"], "grad_float64", "d wpe")


@pytest.mark.parametrize("C", [1, 2, 5, 8, 33])
def test_sinusoidal_rows_match_torch(C):
    """Including odd widths, where the last sine channel has no cosine partner, and positions in
    any order."""
    pos = np.array([0, 1, 39, 7, 7, 1000])
    assert_close(layers.sinusoidal_rows(torch.tensor(pos), C), ref.sinusoidal_rows(pos, C), "forward_float64", "rows")


@examples(15)
@given(case=attention_cases(rope=True), seed=seeds)
def test_rope_matches_torch(case, seed):
    x = randn(seed, case.B, case.nh, case.T, case.hs)
    pos = np.random.default_rng(seed).integers(0, 50, size=case.T)  # any positions, not only 0..T-1
    cos_t, sin_t = layers.rope_cos_sin(torch.tensor(pos), case.hs)
    cos, sin = ref.rope_cos_sin(pos, case.hs)
    assert_close(cos_t, cos, "forward_float64", "cos")
    assert_close(sin_t, sin, "forward_float64", "sin")
    y_ref, cache = ref.apply_rope_forward(x, cos, sin)
    xt = torch.tensor(x, requires_grad=True)
    y = layers.apply_rope(xt, cos_t, sin_t)
    assert_close(y, y_ref, "forward_float64", "rope")
    dy = randn(seed + 1, *x.shape)
    y.backward(torch.tensor(dy))
    dx, _ = ref.apply_rope_backward(dy, cache)
    assert_close(xt.grad, dx, "grad_float64", "d rope input")
    y32 = layers.apply_rope(torch.tensor(x, dtype=torch.float32), cos_t, sin_t)
    assert_close(y32, y_ref, "forward_float32", "rope float32")


# ---------------------------------------------------------------------------------------------
# layer norm, activations, MLP
# ---------------------------------------------------------------------------------------------

@examples(20)
@given(B=st.integers(1, 3), T=st.integers(1, 5), C=st.integers(1, 9), bias=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-3]), fused=st.booleans(), seed=seeds)
def test_layernorm_matches_twin_and_functional(B, T, C, bias, eps, fused, seed):
    """Both paths (written out, and fused=True: one F.layer_norm kernel) against the twin,
    forward and backward; the written-out path also against F.layer_norm itself."""
    x = 3.0 * randn(seed, B, T, C) + 1.0
    check_twin(layers.LayerNorm(C, bias=bias, eps=eps, fused=fused), x, lambda m, xt: m(xt),
               lambda x, p: ref.layer_norm_forward(x, p, eps), ref.layer_norm_backward, seed,
               f"LayerNorm (fused={fused})")
    ln = layers.LayerNorm(C, bias=bias, eps=eps).double()
    random_params(ln, seed)
    for dtype, kind in [(torch.float64, "torch_builtin_float64"), (torch.float32, "torch_builtin_float32")]:
        ln = ln.to(dtype)
        xt = torch.tensor(x, dtype=dtype)
        expected = F.layer_norm(xt, (C,), ln.weight, ln.bias, eps)
        assert_close(ln(xt), expected, kind, f"LayerNorm vs F.layer_norm ({dtype})")


@pytest.mark.parametrize("dtype,kind", [(torch.float64, "torch_builtin_float64"),
                                        (torch.float32, "torch_builtin_float32")])
def test_gelus_match_functional(dtype, kind):
    x = torch.linspace(-8, 8, 2001, dtype=dtype)
    assert_close(layers.gelu_tanh(x), F.gelu(x, approximate="tanh"), kind, "gelu_tanh")
    assert_close(layers.gelu_exact(x), F.gelu(x), kind, "gelu exact")
    assert_close(layers.relu(x), F.relu(x), kind, "relu")
    for name in ACTIVATIONS:  # the fused table of the fused path computes the same functions
        assert_close(layers.FUSED_ACTIVATIONS[name](x), layers.ACTIVATIONS[name](x), kind, name)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_twins(name):
    x = np.linspace(-6, 6, 1001) + 1e-3  # avoids x = 0 exactly, where relu has no derivative
    forward, backward = ref.ACTIVATIONS[name]
    xt = torch.tensor(x, requires_grad=True)
    y = layers.ACTIVATIONS[name](xt)
    y_ref, cache = forward(x)
    assert_close(y, y_ref, "forward_float64", name)
    dy = randn(0, x.size)
    y.backward(torch.tensor(dy))
    assert_close(xt.grad, backward(dy, cache), "grad_float64", f"d {name}")
    numeric = central_differences(lambda: float(np.sum(forward(x)[0] * dy)), {"x": x})["x"]
    assert_close(backward(dy, cache), numeric, "finite_difference", f"d {name} (finite differences)")


@examples(15)
@given(B=st.integers(1, 3), T=st.integers(1, 4), C=st.integers(1, 6), ratio=st.integers(1, 4),
       activation=st.sampled_from(ACTIVATIONS), fused=st.booleans(), bias=st.booleans(), seed=seeds)
def test_mlp_matches_torch(B, T, C, ratio, activation, fused, bias, seed):
    check_twin(layers.MLP(C, ratio * C, activation, bias=bias, fused=fused), randn(seed, B, T, C),
               lambda m, xt: m(xt), lambda x, p: ref.mlp_forward(x, p, activation), ref.mlp_backward,
               seed, f"MLP({activation})")


# ---------------------------------------------------------------------------------------------
# attention and the block
# ---------------------------------------------------------------------------------------------

@examples(30)
@given(case=attention_cases(), fused=st.booleans(), causal=st.booleans(), seed=seeds)
def test_attention_matches_torch(case, fused, causal, seed):
    """Causal (GPT) and bidirectional (BERT) attention, on both kernel paths, against the twin."""
    mask_t = as_mask(case.mask)
    check_twin(
        layers.SelfAttention(case.C, case.nh, bias=case.bias, rope=case.rope, fused=fused),
        randn(seed, case.B, case.T, case.C),
        lambda m, xt: m(xt, torch.arange(case.T), mask_t, causal=causal),
        lambda x, p: ref.self_attention_forward(x, p, case.nh, case.rope, attention_mask=case.mask, causal=causal),
        ref.self_attention_backward, seed, f"attention(fused={fused}, causal={causal})")


@examples(30)
@given(case=attention_cases(), causal=st.booleans(), seed=seeds)
def test_readable_and_fused_attention_agree(case, causal, seed):
    """The same weights through both paths, with and without a padding mask, causal or not,
    float64 and float32: outputs and all gradients agree."""
    mask_t = as_mask(case.mask)
    x = randn(seed, case.B, case.T, case.C)
    readable = layers.SelfAttention(case.C, case.nh, bias=case.bias, rope=case.rope, fused=False)
    fast = layers.SelfAttention(case.C, case.nh, bias=case.bias, rope=case.rope, fused=True)
    for dtype, kind in [(torch.float64, "fast_path_float64"), (torch.float32, "fast_path_float32")]:
        readable, fast = readable.to(dtype), fast.to(dtype)
        fast.load_state_dict(readable.state_dict())
        outputs, grads = [], []
        for module in (readable, fast):
            module.zero_grad()
            xt = torch.tensor(x, dtype=dtype, requires_grad=True)
            y = module(xt, torch.arange(case.T), mask_t, causal=causal)
            y.pow(2).sum().backward()
            outputs.append(y)
            grads.append([xt.grad] + [p.grad for p in module.parameters()])
        assert_close(outputs[1], outputs[0], kind, f"fused vs readable ({dtype})")
        for g_fast, g_readable in zip(grads[1], grads[0], strict=True):
            assert_close(g_fast, g_readable, kind, f"fused vs readable gradient ({dtype})")


@examples(15)
@given(case=attention_cases(), activation=st.sampled_from(ACTIVATIONS),
       fused=st.booleans(), causal=st.booleans(), seed=seeds)
def test_block_matches_torch(case, activation, fused, causal, seed):
    mask_t = as_mask(case.mask)
    check_twin(
        layers.Block(case.C, case.nh, 2 * case.C, activation, bias=case.bias, rope=case.rope, fused=fused),
        randn(seed, case.B, case.T, case.C),
        lambda m, xt: m(xt, torch.arange(case.T), mask_t, causal=causal),
        lambda x, p: ref.block_forward(x, p, case.nh, case.rope, attention_mask=case.mask, activation=activation,
                                       causal=causal),
        ref.block_backward, seed, f"Block(fused={fused}, {activation}, causal={causal})")


# ---------------------------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------------------------

@examples(15)
@given(B=st.integers(1, 3), T=st.integers(1, 5), V=st.integers(2, 9), seed=seeds)
def test_cross_entropy_matches_torch(B, T, V, seed):
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.standard_normal((B, T, V))
    targets = rng.integers(-1, V, size=(B, T))
    targets[0, 0] = rng.integers(0, V)  # at least one counted position
    loss_ref, cache = ref.cross_entropy_forward(logits, targets)
    lt = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(lt.view(B * T, V), torch.tensor(targets).view(B * T), ignore_index=-1)
    assert_close(loss, loss_ref, "forward_float64", "loss")
    loss.backward()
    dlogits, _ = ref.cross_entropy_backward(1.0, cache)
    assert_close(lt.grad, dlogits, "grad_float64", "d logits")
    numeric = central_differences(lambda: ref.cross_entropy_forward(logits, targets)[0], {"l": logits})["l"]
    assert_close(dlogits, numeric, "finite_difference", "d logits (finite differences)")


# ---------------------------------------------------------------------------------------------
# finite differences: the hand-written backward passes against numbers alone
# ---------------------------------------------------------------------------------------------

@examples(10)
@given(case=attention_cases(max_T=3, max_hs=4, max_B=2), causal=st.booleans(), seed=seeds)
def test_attention_backward_finite_differences(case, causal, seed):
    module = layers.SelfAttention(case.C, case.nh, bias=case.bias, rope=case.rope).double()
    p = {k: v.copy() for k, v in random_params(module, seed).items()}
    check_finite_differences(
        randn(seed, case.B, case.T, case.C), p,
        lambda x, p: ref.self_attention_forward(x, p, case.nh, case.rope, attention_mask=case.mask, causal=causal),
        ref.self_attention_backward, seed, f"attention (causal={causal})")


@examples(8)
@given(case=attention_cases(max_T=3, max_hs=2, max_B=2), activation=st.sampled_from(ACTIVATIONS), seed=seeds)
def test_block_backward_finite_differences(case, activation, seed):
    module = layers.Block(case.C, case.nh, 2 * case.C, activation, bias=case.bias, rope=case.rope).double()
    p = {k: v.copy() for k, v in random_params(module, seed).items()}
    check_finite_differences(
        randn(seed, case.B, case.T, case.C), p,
        lambda x, p: ref.block_forward(x, p, case.nh, case.rope, attention_mask=case.mask, activation=activation),
        ref.block_backward, seed, "block")


@examples(8)
@given(B=st.integers(1, 2), T=st.integers(1, 3), C=st.integers(1, 4), bias=st.booleans(), seed=seeds)
def test_layernorm_and_mlp_backward_finite_differences(B, T, C, bias, seed):
    ln = layers.LayerNorm(C, bias=bias)
    p = {k: v.copy() for k, v in random_params(ln, seed).items()}
    check_finite_differences(randn(seed, B, T, C), p, ref.layer_norm_forward, ref.layer_norm_backward,
                             seed, "LayerNorm")
    mlp = layers.MLP(C, 2 * C, "gelu", bias=bias)
    p = {k: v.copy() for k, v in random_params(mlp, seed).items()}
    check_finite_differences(randn(seed, B, T, C), p, lambda x, p: ref.mlp_forward(x, p, "gelu"),
                             ref.mlp_backward, seed, "MLP")
