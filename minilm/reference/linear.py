"""NumPy twin of `nn.Linear`: the affine map every projection in the model is made of.

    y = x W^T + b          x: (..., n_in), W: (n_out, n_in) as in PyTorch, b: (n_out,)

Backward, with dy = dL/dy of shape (..., n_out):

    dx = dy W              (each input feeds every output through W)
    dW = sum over all leading positions of dy^T x     (n_out, n_in)
    db = sum over all leading positions of dy         (n_out,)

`p` holds "weight" and, when the layer has one, "bias" (the keys of `nn.Linear.state_dict()`).
"""
from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, p: dict) -> tuple[np.ndarray, tuple]:
    y = x @ p["weight"].T  # (..., n_in) @ (n_in, n_out) -> (..., n_out)
    if "bias" in p:
        y = y + p["bias"]  # (..., n_out)
    return y, (x, p)


def linear_backward(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    x, p = cache
    dx = dy @ p["weight"]  # (..., n_out) @ (n_out, n_in) -> (..., n_in)
    x2 = x.reshape(-1, x.shape[-1])  # (N, n_in), N = all leading positions
    dy2 = dy.reshape(-1, dy.shape[-1])  # (N, n_out)
    dp = {"weight": dy2.T @ x2}  # (n_out, N) @ (N, n_in) -> (n_out, n_in)
    if "bias" in p:
        dp["bias"] = dy2.sum(axis=0)  # (n_out,)
    return dx, dp
