"""The fast decoder (minilm/gpt_decoder.py) against the readable KV-cache path, GPT.step.

Tolerances: float64 "fast_path_float64" (1e-12 relative to scale: the same sums in another order),
float32 "fast_path_float32" (1e-5); see tests/tolerances.py.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import examples, gpt_configs, random_params, seeds
from tolerances import assert_close

from minilm import GPT, GPTConfig
from minilm.gpt import POSITION_SCHEMES
from minilm.gpt_decoder import GPTDecoder
from minilm.sampling import generate, generate_without_cache, generation_path


@pytest.mark.parametrize("pos_emb", POSITION_SCHEMES)
@examples(10)
@given(data=st.data(), seed=seeds, dtype=st.sampled_from([torch.float64, torch.float32]), B=st.integers(1, 3))
def test_decoder_logits_equal_gpt_step(pos_emb, data, seed, dtype, B):
    """Feed the same random stream to GPT.step and to the decoder: a prompt, then mostly single
    tokens (the decoder's fast case) and now and then a chunk (delegated), for up to 3 blocks,
    so the re-fill beyond block_size happens several times. Every step's logits and the context
    each keeps must agree. Every position scheme, bias on/off, tied or not, each activation."""
    config = data.draw(gpt_configs(max_block=6, kernels="fused", pos_emb=pos_emb))
    model = GPT(config).to(dtype).eval()
    random_params(model, seed)
    decoder = model.decoder()
    assert isinstance(decoder, GPTDecoder)
    rng = np.random.default_rng(seed)
    sizes = data.draw(st.lists(st.sampled_from([1, 1, 1, 2]), min_size=1, max_size=3 * config.block_size + 1))
    kind = "fast_path_float64" if dtype == torch.float64 else "fast_path_float32"
    prompt = torch.tensor(rng.integers(0, config.vocab_size, size=(B, data.draw(st.integers(1, config.block_size)))))
    expected, readable_state = model.step(prompt)
    actual, fast_state = decoder.step(prompt)
    for T_new in sizes:
        T_new = min(T_new, config.block_size)
        new = torch.tensor(rng.integers(0, config.vocab_size, size=(B, T_new)))
        expected, readable_state = model.step(new, readable_state)
        actual, fast_state = decoder.step(new, fast_state)
        assert actual.shape == expected.shape == (B, T_new, config.vocab_size)
        assert actual.dtype == dtype
        assert_close(actual, expected, kind, f"decoder vs GPT.step after {readable_state['tokens'].shape[1]} tokens")
        assert torch.equal(fast_state["tokens"], readable_state["tokens"])
        for fast_cache, readable_cache in zip(fast_state["caches"], readable_state["caches"], strict=True):
            assert_close(fast_cache["k"], readable_cache["k"], kind, "cached keys")
            assert_close(fast_cache["v"], readable_cache["v"], kind, "cached values")


@pytest.mark.parametrize("pos_emb", ["learned", "sinusoidal", "rope", "none"])
def test_generate_with_the_decoder_picks_the_tokens_of_the_full_forward(pos_emb):
    """Greedy generation through `generate` (by default through the decoder) past block_size equals
    greedy decoding with a full forward over the re-fill policy's context at every step."""
    config = GPTConfig(vocab_size=19, block_size=8, n_layer=2, n_head=2, n_embd=8, pos_emb=pos_emb)
    model = GPT(config).double().eval()
    random_params(model, 3)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    fast = generate(model, prompt, 30, greedy=True)
    reference = generate_without_cache(model, prompt, 30, greedy=True, policy="refill")
    assert torch.equal(fast, reference)


@pytest.mark.parametrize("kernels", ["fused", "readable"])
def test_generate_takes_the_path_it_is_told_and_names_it(kernels):
    """decoder="step" runs GPT.step and never builds a GPTDecoder; decoder="fast" (the default)
    builds one and steps it, whatever the model's kernels; generation_path names each; both give
    the same tokens from the same seed. Another value is refused."""
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4, kernels=kernels))
    assert generation_path(model, "step") == "GPT.step"
    assert generation_path(model) == generation_path(model, "fast") == "GPTDecoder.step"
    calls = []
    original_decoder, original_step = GPTDecoder.step, GPT.step

    def count_decoder(self, *args):
        calls.append("GPTDecoder.step")
        return original_decoder(self, *args)

    def count_step(self, *args):
        calls.append("GPT.step")
        return original_step(self, *args)

    with mock.patch.object(GPTDecoder, "step", count_decoder), mock.patch.object(GPT, "step", count_step):
        with mock.patch.object(GPT, "decoder", side_effect=AssertionError("built a decoder")):
            slow = generate(model, [1, 2], 6, generator=torch.Generator().manual_seed(0), decoder="step")
        assert calls and set(calls) == {"GPT.step"}
        calls.clear()
        fast = generate(model, [1, 2], 6, generator=torch.Generator().manual_seed(0))
        # the prompt and the re-fill past block_size go through GPT.step, one-token steps through the decoder
        assert calls.count("GPTDecoder.step") == 6 and calls[1] == "GPT.step"
    assert torch.equal(slow, fast)
    with pytest.raises(ValueError, match=r"decoder must be one of \('fast', 'step'\), got 'gpt'"):
        generate(model, [1, 2], 3, decoder="gpt")


def test_decoder_refuses_token_ids_outside_the_vocabulary():
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)).eval()
    decoder = model.decoder()
    _, state = decoder.step(torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, vocab_size=7\)"):
        decoder.step(torch.tensor([[7]]), state)


def test_decoder_is_a_snapshot_of_the_weights():
    """The decoder copies the weights: a decoder built before a weight change gives the old
    logits, one built after gives the new (generate builds a fresh one per call)."""
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4)).double().eval()
    random_params(model, 0)
    prompt, tok = torch.tensor([[1, 2]]), torch.tensor([[3]])
    old = model.decoder()
    with torch.no_grad():
        model.h[0].mlp.c_fc.weight.mul_(2.0)
    new = model.decoder()
    expected_new = model.step(tok, model.step(prompt)[1])[0]
    assert_close(new.step(tok, new.step(prompt)[1])[0], expected_new, "fast_path_float64", "fresh decoder")
    stale = old.step(tok, old.step(prompt)[1])[0]
    assert not torch.allclose(stale, expected_new), "an old decoder's one-token steps should use the old weights"
