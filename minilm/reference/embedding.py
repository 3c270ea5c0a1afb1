"""NumPy twins of the token embedding and the two additive position schemes.

Token embedding (`nn.Embedding`, key "weight", shape (V, C)): a table lookup,

    x[b, t] = W[idx[b, t]]

Its backward scatters each upstream gradient row back into the row it was read from; a token
that occurs several times collects the sum of all its gradients:

    dW[v] = sum over (b, t) with idx[b, t] = v of dy[b, t]

Learned positions (`LearnedPositionEmbedding`, key "weight", shape (block_size, C)) are the same
lookup with idx = pos = 0, 1, ..., T-1. Sinusoidal positions have no parameters at all:

    PE[t, 2i] = sin(t / 10000^(2i / C)),   PE[t, 2i+1] = cos(t / 10000^(2i / C))

There is no "dx" for an integer input: the backward functions return None in its place.
"""
from __future__ import annotations

import numpy as np


def embedding_forward(idx: np.ndarray, p: dict) -> tuple[np.ndarray, tuple]:
    """idx (B, T) ints, p["weight"] (V, C) -> (B, T, C)."""
    x = p["weight"][idx]  # (V, C)[(B, T)] -> (B, T, C)
    return x, (idx, p["weight"].shape)


def embedding_backward(dx: np.ndarray, cache: tuple) -> tuple[None, dict]:
    idx, shape = cache
    dW = np.zeros(shape)  # (V, C)
    np.add.at(dW, idx, dx)  # dW[idx[b, t]] += dx[b, t]; repeated tokens accumulate
    return None, {"weight": dW}


def learned_position_forward(pos: np.ndarray, p: dict) -> tuple[np.ndarray, tuple]:
    """pos (T,) ints, p["weight"] (block_size, C) -> (T, C)."""
    return embedding_forward(pos, p)  # (T,) -> (T, C)


def learned_position_backward(dpe: np.ndarray, cache: tuple) -> tuple[None, dict]:
    """dpe (T, C): the gradient of the position vectors, already summed over the batch."""
    return embedding_backward(dpe, cache)


def sinusoidal_rows(pos: np.ndarray, n_embd: int) -> np.ndarray:
    """The rows `pos` (T,) of the fixed sin/cos table -> (T, C); for odd C the last sine has no
    cosine partner."""
    inv_freq = 10000.0 ** (-np.arange(0, n_embd, 2, dtype=np.float64) / n_embd)  # (ceil(C/2),)
    angle = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq  # (T, ceil(C/2))
    rows = np.zeros((len(angle), n_embd))  # (T, C)
    rows[:, 0::2] = np.sin(angle)  # even channels: sines
    rows[:, 1::2] = np.cos(angle[:, : n_embd // 2])  # odd channels: cosines
    return rows
