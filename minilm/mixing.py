"""Tempered mixing: how often each domain is drawn when one model learns from several.

With domain sizes n_d (e.g. training bytes) and a temperature exponent alpha in [0, 1]:

    p_d = n_d^alpha / sum_e n_e^alpha

alpha = 0 draws every domain equally often (small domains are over-sampled); alpha = 1 draws in
proportion to size (every byte equally often, so large domains dominate); values between trade
the two. The weights go to the batch sampler as the mixture's weights.
"""
from __future__ import annotations

import math

from minilm.cli import UserError


def tempered_weights(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    """{domain: size} and alpha -> {domain: p} with p proportional to size ** alpha, summing to 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise UserError(f"--mix-alpha: expected a number in [0, 1], got {alpha!r}")
    if not sizes:
        raise UserError("--mix-alpha: needs at least one domain")
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not (size > 0 and math.isfinite(size)):
            raise UserError(f"--mix-alpha: domain {name!r} has size {size!r}; expected a positive number")
    # In logs, so sizes of 10^9 bytes raised to alpha stay exact enough and never overflow.
    logs = {name: alpha * math.log(size) for name, size in sizes.items()}
    top = max(logs.values())
    unnormalised = {name: math.exp(value - top) for name, value in logs.items()}
    total = sum(unnormalised.values())
    return {name: value / total for name, value in unnormalised.items()}
