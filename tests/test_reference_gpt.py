"""The whole GPT against its NumPy twin `minilm.reference.gpt`, over random small configs.

Every position scheme, activation, attention path, bias on/off and tied/untied head; optional
padding masks. Weights are random (not the initial ones) so that every parameter matters.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    central_differences,
    examples,
    gpt_configs,
    padding_masks,
    random_params,
    seeds,
    torch_grads,
)
from tolerances import assert_close

from minilm import GPT, GPTConfig
from minilm import reference as ref


@st.composite
def gpt_cases(draw, **fixed):
    """A config, a batch of token ids, targets (some -1) and an optional padding mask."""
    config = draw(gpt_configs(**fixed))
    B, T = draw(st.integers(1, 3)), draw(st.integers(1, config.block_size))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(-1, config.vocab_size, size=(B, T))
    targets[0, -1] = rng.integers(0, config.vocab_size)  # at least one position counts
    mask = draw(st.none() | padding_masks(B, T))
    causal = draw(st.booleans())
    return config, idx, targets, mask, causal, seed


@examples(30)
@given(case=gpt_cases())
def test_gpt_matches_twin(case):
    """Logits in float64 and float32, and the gradient of every state_dict entry (a tied matrix
    gets the sum of its two uses, under both names). Causal (GPT) and bidirectional (BERT) alike."""
    config, idx, targets, mask, causal, seed = case
    model = GPT(config).double().eval()
    p = random_params(model, seed)
    mask_t = None if mask is None else torch.tensor(mask)
    loss_ref, logits_ref, dp = ref.gpt_loss(idx, targets, p, config, attention_mask=mask, causal=causal)

    logits, loss = model(torch.tensor(idx), torch.tensor(targets), attention_mask=mask_t, causal=causal)
    assert_close(logits, logits_ref, "forward_float64", "logits (float64)")
    assert loss.dtype == torch.float64, "a float64 model computes its loss in float64"
    assert_close(loss, loss_ref, "forward_float64", "loss")
    loss.backward()
    grads = torch_grads(model)
    assert set(grads) == set(dp), f"twin grads {sorted(dp)} vs state_dict {sorted(grads)}"
    for name, g in grads.items():
        assert_close(g, dp[name], "grad_float64", f"d {name}")

    with torch.no_grad():
        logits32, _ = model.float()(torch.tensor(idx), attention_mask=mask_t, causal=causal)
    assert logits32.dtype == torch.float32
    assert_close(logits32, logits_ref, "forward_float32", "logits (float32)")


@examples(6)
@given(case=gpt_cases(max_layer=1, max_block=3))
def test_gpt_backward_finite_differences(case):
    """gpt_loss's gradients against central differences of the loss itself, for every parameter."""
    config, idx, targets, mask, causal, seed = case
    config = GPTConfig(**{**config.to_dict(), "vocab_size": min(config.vocab_size, 5), "mlp_ratio": 1})
    idx, targets = idx % config.vocab_size, np.where(targets < 0, -1, targets % config.vocab_size)
    p = random_params(GPT(config), seed)  # a tied matrix is one array under both names
    _, _, dp = ref.gpt_loss(idx, targets, p, config, mask, causal)
    # perturbing the tied array moves both of its uses, so the numbers see the sum of both gradients
    own = {k: v for k, v in p.items() if not (config.tie_weights and k == "lm_head.weight")}
    numeric = central_differences(lambda: ref.gpt_loss(idx, targets, p, config, mask, causal)[0], own)
    for name in own:
        assert_close(dp[name], numeric[name], "finite_difference", f"d {name}")


def test_params_round_trip():
    """params_to_torch then params_from_torch gives back the same arrays; bad input is refused."""
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4))
    p = random_params(model, 3)
    back = ref.params_from_torch(model)
    assert set(back) == set(p)
    for name in p:
        assert_close(back[name], p[name], "forward_float32", name)  # the model is float32
    with pytest.raises(KeyError, match="missing keys"):
        ref.params_to_torch(model, {k: v for k, v in p.items() if k != "ln_f.weight"})
    with pytest.raises(ValueError, match="ln_f.weight has shape"):
        ref.params_to_torch(model, {**p, "ln_f.weight": np.zeros(5)})
    with pytest.raises(ValueError, match="tied"):
        ref.params_to_torch(model, {**p, "lm_head.weight": p["wte.weight"] + 1.0})


def test_twin_refuses_what_the_model_refuses():
    """NumPy would index a table with -1 (the last row) without complaint; the twin checks."""
    config = GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4)
    p = random_params(GPT(config), 0)
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 5\)"):
        ref.gpt_forward(np.array([[0, -1]]), p, config)
    with pytest.raises(ValueError, match=r"more than block_size=4"):
        ref.gpt_forward(np.zeros((1, 5), dtype=int), p, config)
