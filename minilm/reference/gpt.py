"""NumPy twin of the whole `minilm.gpt.GPT`: forward, backward, and the loss, in float64.

Forward (the same steps as GPT.forward):

    x = wte[idx]                              (B, T, C) token vectors
    x = x + wpe[0..T-1]                       learned or sinusoidal positions (RoPE: inside attention)
    x = Block_i(x) for each of the n_layer blocks
    x = LayerNorm_f(x)
    logits = x W_head^T                       (B, T, V), no bias

Weight tying: with config.tie_weights the head matrix IS the token table, W_head = wte. The
matrix is used twice (read at the bottom, written at the top), so its gradient is the sum of the
gradients of both uses:

    d wte = (scatter of dx into the rows of the tokens)  +  dlogits^T x_final

`gpt_backward` returns it under both state_dict names, "wte.weight" and "lm_head.weight", which
in the PyTorch model are one tensor with one .grad.

`config` is anything with the GPTConfig attributes (a GPTConfig, or a dict of its fields).
The twin models eval mode: no dropout.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from minilm.reference.block import block_backward, block_forward
from minilm.reference.embedding import (
    embedding_backward,
    embedding_forward,
    learned_position_backward,
    learned_position_forward,
    sinusoidal_rows,
)
from minilm.reference.layernorm import layer_norm_backward, layer_norm_forward
from minilm.reference.linear import linear_backward, linear_forward
from minilm.reference.loss import cross_entropy_backward, cross_entropy_forward
from minilm.reference.params import sub, with_prefix


def _config(config):
    return SimpleNamespace(**config) if isinstance(config, dict) else config


def gpt_forward(idx: np.ndarray, p: dict, config, attention_mask: np.ndarray | None = None,
                causal: bool = True):
    """idx (B, T) token ids; p keyed like GPT.state_dict() -> (logits (B, T, V), cache).
    causal=False: bidirectional attention (BERT), as GPT.forward(..., causal=False)."""
    c = _config(config)
    idx = np.asarray(idx)  # (B, T)
    B, T = idx.shape
    if T > c.block_size:
        raise ValueError(f"idx has {T} tokens per sequence, more than block_size={c.block_size}")
    if idx.min() < 0 or idx.max() >= c.vocab_size:  # NumPy would wrap a negative id around silently
        raise ValueError(f"idx holds token ids in [{idx.min()}, {idx.max()}], "
                         f"outside the vocabulary [0, {c.vocab_size})")
    pos = np.arange(T)  # (T,)
    x, wte_cache = embedding_forward(idx, sub(p, "wte"))  # (B, T, C)
    wpe_cache = None
    if c.pos_emb == "learned":
        pe, wpe_cache = learned_position_forward(pos, sub(p, "wpe"))  # (T, C)
        x = x + pe  # (B, T, C) + (T, C)
    elif c.pos_emb == "sinusoidal":
        x = x + sinusoidal_rows(pos, c.n_embd)  # (B, T, C) + (T, C)
    block_caches = []
    for i in range(c.n_layer):
        x, cache = block_forward(x, sub(p, f"h.{i}"), c.n_head, rope=c.pos_emb == "rope", pos=pos,
                                 attention_mask=attention_mask, activation=c.activation,
                                 eps=c.layer_norm_eps, causal=causal)  # (B, T, C)
        block_caches.append(cache)
    x, ln_f_cache = layer_norm_forward(x, sub(p, "ln_f"), c.layer_norm_eps)  # (B, T, C)
    head = {"weight": p["wte.weight"] if c.tie_weights else p["lm_head.weight"]}  # (V, C)
    logits, head_cache = linear_forward(x, head)  # (B, T, V)
    return logits, (c, wte_cache, wpe_cache, block_caches, ln_f_cache, head_cache)


def gpt_backward(dlogits: np.ndarray, cache: tuple) -> tuple[None, dict]:
    """dlogits (B, T, V) -> (None, dp keyed like GPT.state_dict())."""
    c, wte_cache, wpe_cache, block_caches, ln_f_cache, head_cache = cache
    dp = {}
    dx, dp_head = linear_backward(dlogits, head_cache)  # (B, T, C)
    dx, dp_ln_f = layer_norm_backward(dx, ln_f_cache)  # (B, T, C)
    dp.update(with_prefix(dp_ln_f, "ln_f"))
    for i in reversed(range(c.n_layer)):
        dx, dp_block = block_backward(dx, block_caches[i])  # (B, T, C)
        dp.update(with_prefix(dp_block, f"h.{i}"))
    if wpe_cache is not None:
        _, dp_wpe = learned_position_backward(dx.sum(axis=0), wpe_cache)  # (T, C) summed over B
        dp.update(with_prefix(dp_wpe, "wpe"))
    _, dp_wte = embedding_backward(dx, wte_cache)  # (V, C)
    if c.tie_weights:
        d_table = dp_wte["weight"] + dp_head["weight"]  # (V, C): both uses of the one matrix
        dp["wte.weight"] = d_table
        dp["lm_head.weight"] = d_table
    else:
        dp["wte.weight"] = dp_wte["weight"]  # (V, C)
        dp["lm_head.weight"] = dp_head["weight"]  # (V, C)
    return None, dp


def gpt_loss(idx: np.ndarray, targets: np.ndarray, p: dict, config,
             attention_mask: np.ndarray | None = None, causal: bool = True) -> tuple[float, np.ndarray, dict]:
    """One training step's math: forward, mean cross-entropy, and the gradient of every parameter.

    Returns (loss, logits (B, T, V), dp keyed like GPT.state_dict()).
    """
    logits, cache = gpt_forward(idx, p, config, attention_mask, causal)  # (B, T, V)
    loss, loss_cache = cross_entropy_forward(logits, np.asarray(targets))  # scalar, targets (B, T)
    dlogits, _ = cross_entropy_backward(1.0, loss_cache)  # (B, T, V)
    _, dp = gpt_backward(dlogits, cache)
    return loss, logits, dp
