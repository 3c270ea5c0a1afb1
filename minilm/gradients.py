"""Do two goals pull a model's weights the same way? The cosine between their loss gradients.

For a loss L_a (one domain's batch, or one objective) the gradient g_a = dL_a/dtheta over all
parameters theta is one long vector: the direction of steepest increase. For two goals a and b,

    cos(a, b) = <g_a, g_b> / (|g_a| |g_b|)

near 1: a step that helps one helps the other; near 0: they are unrelated; negative: a step
that lowers L_a raises L_b, to first order (the goals conflict). The gradients are measured on
fixed batches, with dropout off, and without touching the parameters' `.grad`, so they can be
taken in the middle of a training run.

`spearman_correlation` then relates such cosines to another table (e.g. each pair of domains'
off-domain cost): the correlation of their ranks.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn as nn

Batch = Union[tuple[torch.Tensor, torch.Tensor], Callable[[nn.Module], torch.Tensor]]


def loss_of(model: nn.Module, batch: Batch) -> torch.Tensor:
    """A batch (x, y) -> the model's own loss model(x, y); a function -> function(model)."""
    if callable(batch):
        return batch(model)
    x, y = batch
    _, loss = model(x, y)
    return loss


def flat_gradient(model: nn.Module, batch: Batch) -> torch.Tensor:
    """dL/dtheta over every trainable parameter (a tied matrix once), as one (P,) float64 vector.

    torch.autograd.grad returns the gradient instead of adding it into `.grad`, so a training
    step's accumulated gradients are left as they were. A parameter the loss does not reach
    contributes zeros.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()  # no dropout: the same batch always gives the same gradient
    try:
        with torch.enable_grad():
            loss = loss_of(model, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        model.train(was_training)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).double()
                      for p, g in zip(params, grads, strict=True)])  # (P,)


def gradient_cosines(model: nn.Module, batches: dict[str, Batch]) -> tuple[list[str], torch.Tensor]:
    """Pairwise cosine similarities of the gradients of named batches or losses.

    Returns (names, matrix (n, n) float64) with matrix[i, j] = cos(g_i, g_j): symmetric, ones on
    the diagonal. A zero gradient has no direction: its row and column are nan.
    """
    names = list(batches)
    G = torch.stack([flat_gradient(model, batches[name]) for name in names])  # (n, P)
    norms = G.norm(dim=1)  # (n,)
    unit = G / norms[:, None]  # (n, P); a zero row becomes nan
    matrix = unit @ unit.T  # (n, n)
    return names, matrix


def ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor; tied values share the mean of their ranks."""
    order = values.argsort()
    sorted_values = values[order]
    result = torch.empty(len(values), dtype=torch.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        result[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman_correlation(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the two lists' ranks (ties averaged)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.dim() != 1 or len(a) < 2:
        raise ValueError(f"spearman_correlation needs two 1-D lists of the same length >= 2, got {a.shape}, {b.shape}")
    ra, rb = ranks(a) - (len(a) + 1) / 2, ranks(b) - (len(b) + 1) / 2  # centred ranks
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
