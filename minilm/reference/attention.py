"""NumPy twins of `minilm.layers.attention` (the readable path's core) and of the whole
`minilm.layers.SelfAttention` layer, forward and backward:

    attention_forward / attention_backward             softmax(q k^T / sqrt(hs), masked) v
    self_attention_forward / self_attention_backward   projections, heads, RoPE, attention


Forward, with nh heads of size hs = C / nh:

    q, k, v = split(x W_attn^T + b_attn)                  3 x (B, T, C)
    q, k, v -> (B, nh, T, hs)                             one slice of hs channels per head
    (RoPE: rotate q and k by their position)
    S = q k^T / sqrt(hs)                                  (B, nh, T, T) scores
    S[not allowed] = -inf                                 causal (or not) + padding mask
    A = softmax(S) over the keys                          each row sums to 1
    y = A v -> (B, T, C)  (heads concatenated)
    out = y W_proj^T + b_proj

Which keys a query may see (`allowed_keys`, the same rule as the PyTorch layer): query t sees
key s <= t (causal=True, GPT) or every key (causal=False, BERT); with a padding mask (B, T),
1 = real token, padded keys are hidden too, except that a query always sees itself, so no row of
A is empty.

Backward of `attention`, given dy = dL/d(A v):

    dA = dy v^T,   dv = A^T dy
    softmax: A_j = e^{S_j} / sum e^{S}, so dS_j = A_j (dA_j - sum_i dA_i A_i)
             (a masked entry has A_j = 0, so its gradient is exactly 0)
    dq = dS k / sqrt(hs),   dk = dS^T q / sqrt(hs)

The twin models eval mode: no attention or residual dropout.
"""
from __future__ import annotations

import math

import numpy as np

from minilm.reference.linear import linear_backward, linear_forward
from minilm.reference.params import sub, with_prefix
from minilm.reference.rope import apply_rope_backward, apply_rope_forward, rope_cos_sin


def allowed_keys(T: int, attention_mask: np.ndarray | None = None, causal: bool = True) -> np.ndarray:
    """(T, T) or (B, 1, T, T) booleans, True = query (row) may attend to key (column).

    causal=False drops the causal part: every query sees every key (BERT's bidirectional
    attention, `GPT.forward(..., causal=False)`); padding still hides padded keys.
    """
    allowed = np.tril(np.ones((T, T), dtype=bool)) if causal else np.ones((T, T), dtype=bool)  # (T, T)
    if attention_mask is None:
        return allowed
    real_key = np.asarray(attention_mask).astype(bool)[:, None, None, :]  # (B, 1, 1, T)
    itself = np.eye(T, dtype=bool)  # (T, T)
    return allowed & (real_key | itself)  # (B, 1, T, T)


def softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; -inf entries get weight exactly 0."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))  # subtracting the row max avoids overflow
    return e / e.sum(axis=-1, keepdims=True)


def attention_forward(q, k, v, allowed) -> tuple[np.ndarray, tuple]:
    """softmax(q k^T / sqrt(hs), masked) v for q, k, v (B, nh, T, hs) -> y (B, nh, T, hs).
    The cache holds the weights A (B, nh, T, T) as its fourth entry."""
    scale = 1.0 / math.sqrt(q.shape[-1])  # scalar, 1 / sqrt(hs)
    att = q @ k.swapaxes(-2, -1) * scale  # (B, nh, T, T)
    att = np.where(allowed, att, -np.inf)  # (B, nh, T, T)
    att = softmax(att)  # (B, nh, T, T), rows sum to 1
    y = att @ v  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    return y, (q, k, v, att, scale)


def attention_backward(dy, cache):
    """Returns dq, dk, dv, each (B, nh, T, hs)."""
    q, k, v, att, scale = cache
    datt = dy @ v.swapaxes(-2, -1)  # (B, nh, T, hs) @ (B, nh, hs, T) -> (B, nh, T, T)
    dv = att.swapaxes(-2, -1) @ dy  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    ds = att * (datt - (datt * att).sum(axis=-1, keepdims=True))  # (B, nh, T, T), softmax backward
    dq = ds @ k * scale  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    dk = ds.swapaxes(-2, -1) @ q * scale  # (B, nh, T, T) @ (B, nh, T, hs) -> (B, nh, T, hs)
    return dq, dk, dv


def self_attention_forward(x: np.ndarray, p: dict, n_head: int, rope: bool = False,
                      pos: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                      causal: bool = True) -> tuple[np.ndarray, tuple]:
    """x (B, T, C); p keyed like SelfAttention.state_dict(); pos (T,) defaults to 0..T-1."""
    B, T, C = x.shape
    hs = C // n_head
    qkv, c_attn_cache = linear_forward(x, sub(p, "c_attn"))  # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=2)  # 3 x (B, T, C)
    q = q.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    k = k.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    v = v.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    rope_caches = None
    if rope:
        cos, sin = rope_cos_sin(np.arange(T) if pos is None else pos, hs)  # (T, hs/2) each
        q, q_rope = apply_rope_forward(q, cos, sin)  # (B, nh, T, hs)
        k, k_rope = apply_rope_forward(k, cos, sin)  # (B, nh, T, hs)
        rope_caches = (q_rope, k_rope)
    allowed = allowed_keys(T, attention_mask, causal)  # (T, T) or (B, 1, T, T)
    y, core_cache = attention_forward(q, k, v, allowed)  # (B, nh, T, hs)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
    out, c_proj_cache = linear_forward(y, sub(p, "c_proj"))  # (B, T, C)
    return out, (c_attn_cache, rope_caches, core_cache, c_proj_cache, n_head)


def self_attention_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    c_attn_cache, rope_caches, core_cache, c_proj_cache, n_head = cache
    B, T, C = dout.shape
    hs = C // n_head
    dy, dp_proj = linear_backward(dout, c_proj_cache)  # (B, T, C)
    dy = dy.reshape(B, T, n_head, hs).transpose(0, 2, 1, 3)  # (B, T, C) -> (B, nh, T, hs)
    dq, dk, dv = attention_backward(dy, core_cache)  # (B, nh, T, hs) each
    if rope_caches is not None:
        dq, _ = apply_rope_backward(dq, rope_caches[0])  # (B, nh, T, hs)
        dk, _ = apply_rope_backward(dk, rope_caches[1])  # (B, nh, T, hs)
    dq = dq.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    dk = dk.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    dv = dv.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
    dqkv = np.concatenate([dq, dk, dv], axis=2)  # (B, T, 3C)
    dx, dp_attn = linear_backward(dqkv, c_attn_cache)  # (B, T, C)
    return dx, {**with_prefix(dp_attn, "c_attn"), **with_prefix(dp_proj, "c_proj")}
