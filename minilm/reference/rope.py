"""NumPy twin of `minilm.layers.apply_rope`, rotary position embedding (RoPE), "rotate-half" layout.

Each head vector x (hs wide) is split into halves x1 = x[:hs/2], x2 = x[hs/2:]; pair i, made of
(x1_i, x2_i), is rotated by the angle theta_{t,i} = t * base^(-2i / hs) at position t:

    y1 = x1 cos - x2 sin
    y2 = x2 cos + x1 sin

A rotation R is orthogonal, so the backward pass rotates the gradient back by -theta (R^T):

    dx1 =  dy1 cos + dy2 sin
    dx2 = -dy1 sin + dy2 cos

RoPE has no parameters: the backward returns an empty dict for them.
"""
from __future__ import annotations

import numpy as np


def rope_cos_sin(pos: np.ndarray, head_size: int, base: float = 10000.0):
    """cos and sin of theta_{t,i} for positions pos (T,): two (T, hs/2) arrays."""
    inv_freq = base ** (-np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (hs/2,)
    angle = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return np.cos(angle), np.sin(angle)


def apply_rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, tuple]:
    """x (B, nh, T, hs), cos and sin (T, hs/2) -> rotated x (B, nh, T, hs)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (B, nh, T, hs/2) each
    y = np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)  # (B, nh, T, hs)
    return y, (cos, sin)


def apply_rope_backward(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    cos, sin = cache
    half = dy.shape[-1] // 2
    dy1, dy2 = dy[..., :half], dy[..., half:]  # (B, nh, T, hs/2) each
    dx = np.concatenate([dy1 * cos + dy2 * sin, dy2 * cos - dy1 * sin], axis=-1)  # (B, nh, T, hs)
    return dx, {}
