"""NumPy twin of `minilm.layers.LayerNorm`: `layer_norm_forward` and `layer_norm_backward`.

Forward, over the last axis (C channels) of each position:

    mu    = mean_c x_c
    var   = mean_c (x_c - mu)^2          (biased variance)
    x_hat = (x - mu) / sqrt(var + eps)
    y     = x_hat * weight + bias

Backward. Write r = 1 / sqrt(var + eps) and g = dy * weight (the gradient reaching x_hat).
x_hat depends on every x_c of its row through mu and var; differentiating and simplifying gives

    dx = r * (g - mean_c(g) - x_hat * mean_c(g * x_hat))

The two means remove the parts of g that a shift (mu) or a rescaling (var) of the row would
undo. The parameters are elementwise: dweight = sum over positions of dy * x_hat, dbias = sum dy.
"""
from __future__ import annotations

import numpy as np


def layer_norm_forward(x: np.ndarray, p: dict, eps: float = 1e-5) -> tuple[np.ndarray, tuple]:
    """x (B, T, C); p: "weight" (C,) and optionally "bias" (C,) -> y (B, T, C)."""
    mu = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # (B, T, 1)
    x_hat = (x - mu) / np.sqrt(var + eps)  # (B, T, C)
    y = x_hat * p["weight"]  # (B, T, C)
    if "bias" in p:
        y = y + p["bias"]  # (B, T, C)
    return y, (x_hat, var, eps, p)


def layer_norm_backward(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    x_hat, var, eps, p = cache
    C = x_hat.shape[-1]
    dp = {"weight": (dy * x_hat).reshape(-1, C).sum(axis=0)}  # (C,)
    if "bias" in p:
        dp["bias"] = dy.reshape(-1, C).sum(axis=0)  # (C,)
    r = 1.0 / np.sqrt(var + eps)  # (B, T, 1)
    g = dy * p["weight"]  # (B, T, C), gradient reaching x_hat
    dx = r * (g - g.mean(axis=-1, keepdims=True)
              - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))  # (B, T, C)
    return dx, dp
