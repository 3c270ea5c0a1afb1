"""NumPy twin of the language-model loss: softmax cross-entropy with ignore_index = -1.

    log p[b, t, :] = logits[b, t, :] - logsumexp(logits[b, t, :])
    loss = -(1 / N) sum over counted (b, t) of log p[b, t, target[b, t]]

A position counts when its target is not -1; N is the number of counted positions (with N = 0
the loss is 0 / 0 = nan, as in F.cross_entropy).

Backward: d(-log p_y)/d logits = softmax(logits) - onehot(y), so

    dlogits[b, t] = dloss * (softmax(logits[b, t]) - onehot(target[b, t])) / N    if counted, else 0
"""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = -1


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray) -> tuple[float, tuple]:
    """logits (B, T, V), targets (B, T) ints with -1 = not counted -> scalar mean loss."""
    m = logits.max(axis=-1, keepdims=True)  # (B, T, 1)
    logz = m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))  # (B, T, 1), logsumexp
    logp = logits - logz  # (B, T, V), log-probabilities
    counted = targets != IGNORE_INDEX  # (B, T) booleans
    safe = np.where(counted, targets, 0)  # (B, T), any valid index where not counted
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (B, T)
    n = counted.sum()  # scalar, the number of counted positions N
    with np.errstate(invalid="ignore"):
        loss = -(picked * counted).sum() / n  # scalar; nan when nothing counts
    return float(loss), (logp, safe, counted, n)


def cross_entropy_backward(dloss: float, cache: tuple) -> tuple[np.ndarray, dict]:
    logp, safe, counted, n = cache
    onehot = np.zeros_like(logp)  # (B, T, V)
    np.put_along_axis(onehot, safe[..., None], 1.0, axis=-1)  # onehot[b, t, target] = 1
    dlogits = (np.exp(logp) - onehot) * counted[..., None] * (dloss / max(n, 1))  # (B, T, V)
    return dlogits, {}
