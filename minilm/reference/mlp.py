"""NumPy twin of `minilm.layers.MLP` and its three activations.

    h   = act(x W_fc^T + b_fc)          (B, T, C) -> (B, T, 4C)
    out = h W_proj^T + b_proj           (B, T, 4C) -> (B, T, C)

Activations and their derivatives (the backward multiplies dy by act'(x) elementwise):

    gelu_tanh(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
        d/dx     = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    gelu(x)      = x Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))         (exact)
        d/dx     = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    relu(x)      = max(x, 0)
        d/dx     = 1 where x >= 0 else 0  (PyTorch's clamp_min passes the gradient at x = 0 too)

The twin models eval mode: no dropout.
"""
from __future__ import annotations

import math

import numpy as np

from minilm.reference.linear import linear_backward, linear_forward
from minilm.reference.params import sub, with_prefix

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])  # NumPy has no erf; math.erf, elementwise


def gelu_tanh_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    u = SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)  # (..., n)
    th = np.tanh(u)  # (..., n)
    return 0.5 * x * (1.0 + th), (x, th)  # (..., n)


def gelu_tanh_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, th = cache
    du_dx = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x ** 2)  # (..., n)
    return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th ** 2) * du_dx)  # (..., n)


def gelu_exact_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    Phi = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))  # (..., n), the standard normal CDF
    return x * Phi, (x, Phi)  # (..., n)


def gelu_exact_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, Phi = cache
    phi = np.exp(-0.5 * x ** 2) / math.sqrt(2.0 * math.pi)  # (..., n), the standard normal density
    return dy * (Phi + x * phi)  # (..., n)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    return np.maximum(x, 0.0), (x,)


def relu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    (x,) = cache
    return dy * (x >= 0.0)  # (..., n)


# the same names as minilm.layers.ACTIVATIONS
ACTIVATIONS = {
    "gelu_tanh": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu": (gelu_exact_forward, gelu_exact_backward),
    "relu": (relu_forward, relu_backward),
}


def mlp_forward(x: np.ndarray, p: dict, activation: str = "gelu_tanh") -> tuple[np.ndarray, tuple]:
    """x (B, T, C); p keyed like MLP.state_dict() ("c_fc.weight", ..., "c_proj.bias")."""
    act_forward, act_backward = ACTIVATIONS[activation]
    a, fc_cache = linear_forward(x, sub(p, "c_fc"))  # (B, T, 4C)
    h, act_cache = act_forward(a)  # (B, T, 4C)
    out, proj_cache = linear_forward(h, sub(p, "c_proj"))  # (B, T, C)
    return out, (fc_cache, act_backward, act_cache, proj_cache)


def mlp_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    fc_cache, act_backward, act_cache, proj_cache = cache
    dh, dp_proj = linear_backward(dout, proj_cache)  # (B, T, 4C)
    da = act_backward(dh, act_cache)  # (B, T, 4C)
    dx, dp_fc = linear_backward(da, fc_cache)  # (B, T, C)
    return dx, {**with_prefix(dp_fc, "c_fc"), **with_prefix(dp_proj, "c_proj")}
