"""Tests written against one-line bugs that the rest of the suite let through.

Each test names the bug it is there to catch. `bench/mutants.py` plants these bugs (and others)
one at a time in a copy of the repository and checks that some test fails on each; see
docs/mutation-testing.md.
"""
from __future__ import annotations

import math

import torch

import minilm.sampling
import minilm.training
from minilm.gpt import GPT, GPTConfig
from minilm.sampling import generate, sample_next
from minilm.training import TrainConfig, make_optimizer, train
from tests.tolerances import TOL, assert_close


def relative_error(actual: float, expected: float) -> float:
    return abs(actual - expected) / expected


# ----------------------------------------------------------------------------------------------
# The scale of the initial weights
# Bug caught: c_proj initialised with std 0.02 (no depth scaling), or 0.02 / sqrt(n_layer), or
# the plain weights with another std, or biases/gains left at a random value.
# ----------------------------------------------------------------------------------------------


def test_initial_weights_have_the_gpt2_scales_and_residual_projections_shrink_with_depth():
    n_layer = 4
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=n_layer, n_head=4, n_embd=64, tie_weights=False))
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    checked = set()
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif ".ln_" in name or name.startswith("ln_"):
            assert torch.all(p == 1.0), name
        else:
            expected = residual_std if name.endswith("c_proj.weight") else 0.02
            std = float(p.detach().double().std())
            assert relative_error(std, expected) <= TOL["init_std"], f"{name}: std {std:.5f}, expected {expected:.5f}"
            assert abs(float(p.detach().double().mean())) <= TOL["init_std"] * expected, name
        checked.add(name)
    assert any(name.endswith("mlp.c_proj.weight") for name in checked)
    assert any(name.endswith("attn.c_proj.weight") for name in checked)


# ----------------------------------------------------------------------------------------------
# Which parameters the optimizer decays
# Bug caught: weight decay on every parameter, on none, on the embeddings or LayerNorm gains, or
# the two groups swapped (in GPT.param_groups or in training.make_optimizer).
# ----------------------------------------------------------------------------------------------


def decay_of_each_parameter(model, optimizer) -> dict[str, float]:
    name_of = {id(p): name for name, p in model.named_parameters()}
    decay = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert name_of[id(p)] not in decay, f"{name_of[id(p)]} is in two groups"
            decay[name_of[id(p)]] = group["weight_decay"]
    return decay


def test_the_optimizer_decays_exactly_the_linear_matrices():
    for tie in (True, False):
        model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=8, tie_weights=tie))
        optimizer = make_optimizer(model, TrainConfig(weight_decay=0.25), torch.device("cpu"))
        decay = decay_of_each_parameter(model, optimizer)
        assert set(decay) == {name for name, _ in model.named_parameters()}  # every parameter, once
        linear_matrices = {name for name in decay if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))}
        if not tie:
            linear_matrices.add("lm_head.weight")
        assert {name for name, wd in decay.items() if wd == 0.25} == linear_matrices, f"tie_weights={tie}"
        assert {wd for name, wd in decay.items() if name not in linear_matrices} == {0.0}


# ----------------------------------------------------------------------------------------------
# Temperature changes the distribution that is actually sampled
# Bug caught: the temperature applied after the softmax (sampling normalises again, so it has no
# effect), applied as a product instead of a quotient, or not passed on by `generate`.
# ----------------------------------------------------------------------------------------------


def test_temperature_divides_the_logits_before_the_softmax_that_is_sampled(monkeypatch):
    seen = []

    def recording_draw(probs, generator=None):
        seen.append(probs.clone())
        return torch.argmax(probs, dim=-1, keepdim=True)

    monkeypatch.setattr(minilm.sampling, "draw", recording_draw)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])  # (1, V)
    for temperature in (0.5, 2.0):
        seen.clear()
        sample_next(logits, temperature=temperature)
        (probs,) = seen
        assert_close(probs, torch.softmax(logits / temperature, dim=-1), "torch_builtin_float32", f"t={temperature}")
        assert_close(probs.sum(), torch.tensor(1.0), "torch_builtin_float32", "probabilities sum to one")

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)  # logits far apart, so a temperature makes a visible change
    model.eval()
    prompt = [1, 2, 3]
    seen.clear()
    generate(model, prompt, max_new_tokens=1, temperature=0.5)
    with torch.no_grad():
        last_logits = model(torch.tensor([prompt]))[0][:, -1]  # (1, V)
    assert_close(seen[0], torch.softmax(last_logits / 0.5, dim=-1), "fast_path_float32", "generate at t=0.5")
    assert relative_error(float(seen[0].max()), float(torch.softmax(last_logits, -1).max())) > TOL["init_std"]


# ----------------------------------------------------------------------------------------------
# Gradient accumulation gives the gradient of one big batch
# Bug caught: the loss of each micro-batch not divided by grad_accum (a factor of 2 that clipping
# and AdamW's normalisation hide in the weights), or the gradients zeroed between micro-batches.
# ----------------------------------------------------------------------------------------------


def gradients_of_the_first_step(monkeypatch, **overrides) -> dict[str, torch.Tensor]:
    """Train one step and return the raw gradients that reached optimizer.step (no clipping)."""
    recorded = {}
    real_make_optimizer = minilm.training.make_optimizer

    def recording_make_optimizer(model, config, device):
        optimizer = real_make_optimizer(model, config, device)
        real_step = optimizer.step

        def step(*args, **kwargs):
            if not recorded:
                recorded.update({name: p.grad.detach().clone() for name, p in model.named_parameters()})
            return real_step(*args, **kwargs)

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(minilm.training, "make_optimizer", recording_make_optimizer)
    settings = dict(data="shakespeare", block_size=16, steps=1, eval_interval=1, eval_windows=2, eval_batch_size=2,
                    threads=1, progress=False, verbose=False, grad_clip=0.0, cache_dir="",
                    model_args=dict(n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    train(TrainConfig(**{**settings, **overrides}))
    return recorded


def test_accumulated_gradient_equals_the_gradient_of_one_big_batch(monkeypatch):
    big = gradients_of_the_first_step(monkeypatch, batch_size=8, grad_accum=1)
    accumulated = gradients_of_the_first_step(monkeypatch, batch_size=4, grad_accum=2)
    assert set(big) == set(accumulated)
    for name in big:
        assert_close(accumulated[name], big[name], "fast_path_float32", name)
    assert max(float(g.abs().max()) for g in big.values()) > 10 * TOL["fast_path_float32"]  # not all zero
