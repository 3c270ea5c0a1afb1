"""Incremental decoding with the KV cache (GPT.step), and the errors bad configs and inputs raise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import examples, gpt_configs, random_params, seeds
from tolerances import assert_close

from minilm import GPT, GPTConfig
from minilm.cli import UserError


def full_logits(model, tokens):
    with torch.no_grad():
        return model(tokens)[0]


def crop(context, T_new, block_size):
    """The policy of GPT.step's docstring, written out independently: when the new tokens do not
    fit, keep the last max(block_size // 2, T_new) tokens (new ones included) as the context."""
    if context.shape[1] > block_size:
        return context[:, -max(block_size // 2, T_new):]
    return context


@examples(20)
@given(config=gpt_configs(max_block=6), data=st.data(), seed=seeds)
def test_step_logits_equal_the_full_forward(config, data, seed):
    """Feed a random stream in random chunks (1 to block_size tokens) for up to 2.5 blocks.
    Up to block_size the step logits equal the full forward over everything fed so far; beyond
    it they equal the full forward over the context the policy keeps. Both attention paths."""
    model = GPT(config).double().eval()
    random_params(model, seed)
    rng = np.random.default_rng(seed)
    chunks = data.draw(st.lists(st.integers(1, config.block_size), min_size=1, max_size=2 * config.block_size + 2))
    state, context = None, torch.zeros(2, 0, dtype=torch.long)
    for T_new in chunks:
        new = torch.tensor(rng.integers(0, config.vocab_size, size=(2, T_new)))
        logits, state = model.step(new, state)
        context = crop(torch.cat([context, new], dim=1), T_new, config.block_size)
        assert logits.shape == (2, T_new, config.vocab_size)
        assert_close(logits, full_logits(model, context)[:, -T_new:], "forward_float64",
                     f"step logits, context of {context.shape[1]}")
        assert torch.equal(state["tokens"], context), "the state should hold the context the policy keeps"


@pytest.mark.parametrize("kernels", ["fused", "readable"])
@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
def test_greedy_generation_with_and_without_cache(kernels, pos_emb):
    """Greedy decoding past block_size picks the same tokens with the cache as with a full
    forward over the policy's context at every step."""
    config = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=8, pos_emb=pos_emb, kernels=kernels)
    model = GPT(config).double().eval()
    random_params(model, 1)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    logits, state = model.step(prompt)
    cached, context, uncached = [], prompt, []
    for _ in range(20):
        tok = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        cached.append(tok)
        logits, state = model.step(tok, state)
    for _ in range(20):
        tok = full_logits(model, context)[:, -1].argmax(dim=-1, keepdim=True)
        uncached.append(tok)
        context = crop(torch.cat([context, tok], dim=1), 1, config.block_size)
    assert torch.equal(torch.cat(cached, 1), torch.cat(uncached, 1))


# ---------------------------------------------------------------------------------------------
# bad input: the message names the field and what is allowed
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,pattern", [
    (dict(n_embd=10, n_head=3), r"n_embd=10 must be divisible by n_head=3"),
    (dict(pos_emb="absolute"), r"GPTConfig.pos_emb: expected one of 'learned', 'sinusoidal', 'rope', 'none'"),
    (dict(pos_emb="rope", n_embd=6, n_head=2), r"pos_emb='rope' needs an even head size"),
    (dict(activation="swish"), r"GPTConfig.activation: expected one of"),
    (dict(kernels="fast"), r"GPTConfig.kernels: expected one of 'fused', 'readable', got 'fast'"),
    (dict(n_layer=0), r"GPTConfig.n_layer: expected a positive integer, got 0"),
    (dict(n_layer=True), r"GPTConfig.n_layer: expected a positive integer, got True"),
    (dict(n_head=2.0), r"GPTConfig.n_head: expected a positive integer, got 2.0"),
    (dict(bias=1), r"GPTConfig.bias: expected true or false, got 1"),
    (dict(dropout=1.0), r"GPTConfig.dropout: expected a number in \[0, 1\), got 1.0"),
    (dict(dropout=float("nan")), r"GPTConfig.dropout: expected a number in \[0, 1\]"),
    (dict(layer_norm_eps=0.0), r"GPTConfig.layer_norm_eps: expected a finite number > 0"),
])
def test_bad_config_fails_at_construction(fields, pattern):
    """One line naming the field, what was expected and what was given; a UserError, which is a
    ValueError, so callers that catch ValueError still catch it."""
    with pytest.raises(UserError, match=pattern):
        GPTConfig(**fields)
    assert issubclass(UserError, ValueError)


def test_unknown_config_field_is_rejected():
    with pytest.raises(UserError, match=r"unknown field\(s\) \['n_embed'\]"):
        GPTConfig.from_dict({"n_embed": 64})


def checkpoint_written_before_kernels(attn_impl: str) -> dict:
    """A checkpoint dict as minilm wrote it before `kernels` had its name: the model config
    carries `attn_impl`, and the weights were saved by a model of that config."""
    old_config = dict(vocab_size=11, block_size=6, n_layer=1, n_head=2, n_embd=8, mlp_ratio=4, dropout=0.0,
                      bias=True, pos_emb="learned", activation="gelu_tanh", attn_impl=attn_impl,
                      tie_weights=True, layer_norm_eps=1e-5)
    torch.manual_seed(3)
    weights = GPT(GPTConfig(**{k: v for k, v in old_config.items() if k != "attn_impl"})).state_dict()
    return {"model_config": old_config, "model": weights}


@pytest.mark.parametrize("attn_impl,kernels", [("fast", "fused"), ("readable", "readable")])
def test_a_checkpoint_written_with_attn_impl_still_loads(attn_impl, kernels, tmp_path):
    """The old field name is mapped when read: "fast" -> kernels "fused", "readable" -> "readable";
    the weights load into the model of the mapped config, through torch.save/torch.load."""
    path = tmp_path / "old.pt"
    torch.save(checkpoint_written_before_kernels(attn_impl), path)
    old = torch.load(path, weights_only=True)
    config = GPTConfig.from_dict(old["model_config"])
    assert config.kernels == kernels
    assert "attn_impl" not in config.to_dict()
    model = GPT(config)
    model.load_state_dict(old["model"])
    for name, tensor in old["model"].items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert GPTConfig.from_dict(config.to_dict()) == config, "the new dict round-trips"


def test_old_and_new_names_together_or_an_unknown_old_value_are_refused():
    d = checkpoint_written_before_kernels("fast")["model_config"]
    with pytest.raises(UserError, match=r"both attn_impl .* and kernels"):
        GPTConfig.from_dict({**d, "kernels": "fused"})
    with pytest.raises(UserError, match=r"GPTConfig.attn_impl: expected one of \('fast', 'readable'\), got 'flash'"):
        GPTConfig.from_dict({**d, "attn_impl": "flash"})


@pytest.mark.parametrize("pos_emb", ["learned", "sinusoidal", "rope", "none"])
def test_sequence_longer_than_block_size(pos_emb):
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, pos_emb=pos_emb))
    with pytest.raises(ValueError, match=r"more than block_size=4"):
        model(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"more than block_size=4"):
        model.step(torch.zeros(1, 5, dtype=torch.long))


@pytest.mark.parametrize("bad", [5, -1])
def test_token_ids_outside_the_vocabulary(bad):
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    idx = torch.tensor([[0, 1, bad]])
    with pytest.raises(ValueError, match=r"idx holds token ids .* outside the vocabulary \[0, vocab_size=5\)"):
        model(idx)
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, vocab_size=5\)"):
        model.step(idx)
