"""The NumPy twin of GPT.step (minilm/reference/kv_cache.py): against the twin's own full forward,
against GPT.step and against the fast GPTDecoder. Tolerance "forward_float64" (1e-10 relative to
scale, tests/tolerances.py): all sides are float64, the sums only come in another order."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import examples, gpt_configs, random_params, seeds
from tolerances import assert_close

from minilm import GPT, GPTConfig
from minilm import reference as ref
from minilm.gpt import POSITION_SCHEMES


@pytest.mark.parametrize("pos_emb", POSITION_SCHEMES)
@examples(10)
@given(data=st.data(), seed=seeds, B=st.integers(1, 3))
def test_twin_step_equals_full_forward_and_gpt_step(pos_emb, data, seed, B):
    """Feed one random text in random chunks up to block_size tokens in all. After every chunk,
    the twin's step logits equal (1) the twin's full forward over everything fed so far, and
    (2) GPT.step's logits and (3) the fast decoder's, fed the same chunks; and the three states
    have one format, {"caches": [{"k", "v"} per layer], "tokens"}, holding the same numbers."""
    config = data.draw(gpt_configs(max_block=7, pos_emb=pos_emb))
    model = GPT(config).double().eval()
    p = random_params(model, seed)
    rng = np.random.default_rng(seed)
    text = rng.integers(0, config.vocab_size, size=(B, config.block_size))
    inner = st.lists(st.integers(1, config.block_size - 1), max_size=4) if config.block_size > 1 else st.just([])
    cuts = sorted(set(data.draw(inner))) + [config.block_size]  # chunk ends; the last one fills the block
    state, torch_state, decoder, decoder_state, start = None, None, model.decoder(), None, 0
    for end in cuts:
        chunk = text[:, start:end]  # (B, T_new)
        logits, state = ref.gpt_step(chunk, p, config, state)
        full, _ = ref.gpt_forward(text[:, :end], p, config)
        assert_close(logits, full[:, start:end], "forward_float64", f"twin step vs twin forward, tokens {start}:{end}")
        torch_logits, torch_state = model.step(torch.tensor(chunk), torch_state)
        assert_close(torch_logits, logits, "forward_float64", f"GPT.step vs twin step, tokens {start}:{end}")
        fast_logits, decoder_state = decoder.step(torch.tensor(chunk), decoder_state)
        assert_close(fast_logits, logits, "forward_float64", f"decoder vs twin step, tokens {start}:{end}")
        for other, who in [(torch_state, "GPT.step"), (decoder_state, "decoder")]:
            assert np.array_equal(other["tokens"].numpy(), state["tokens"]), f"{who} state tokens"
            assert len(other["caches"]) == len(state["caches"]) == config.n_layer
            for cache, twin_cache in zip(other["caches"], state["caches"], strict=True):
                for name in ("k", "v"):
                    assert_close(cache[name], twin_cache[name], "forward_float64", f"{who} cache {name}")
        start = end
    assert state["caches"][0]["k"].shape == (B, config.n_head, config.block_size, config.n_embd // config.n_head)


def test_twin_step_refuses_to_pass_block_size():
    config = GPTConfig(vocab_size=5, block_size=3, n_layer=1, n_head=1, n_embd=2)
    p = random_params(GPT(config), 0)
    _, state = ref.gpt_step(np.array([[1, 2]]), p, config)
    with pytest.raises(ValueError, match=r"2 cached \+ 2 new tokens exceed block_size=3"):
        ref.gpt_step(np.array([[3, 4]]), p, config, state)
