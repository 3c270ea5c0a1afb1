"""The one table of numerical tolerances the tests use.

Every comparison between two computations of the same quantity (PyTorch vs the NumPy twin,
autograd vs a hand-written backward, a fast path vs a readable path) takes its tolerance from
here, keyed by what is compared and in which dtype, so that no test invents its own constant.

How to read an entry: `assert_close(actual, expected, kind)` passes when

    max |actual - expected| <= TOL[kind] * max(1, max |expected|)

i.e. an absolute tolerance for values of order one, relative for larger values ("relative to scale").

Why these numbers:
- float64 forward, 1e-10: both sides do the same O(10) float64 operations per output; rounding
  error is ~1e-15 per operation, so 1e-10 leaves five orders of magnitude of room yet still
  catches any real mistake (a wrong weight, a missing term) which shows up at 1e-3 or more.
- float32 forward vs float64 reference, 1e-5: float32 has a 6e-8 unit roundoff; sums over a few
  hundred terms accumulate to ~1e-6.
- float64 gradients, 1e-8: backward passes chain more operations (and divide by sqrt(var + eps)),
  so they lose a little more precision than the forward pass.
- finite differences, 1e-6: central differences with step 1e-6 in float64 have truncation error
  O(h^2) ~ 1e-12 and rounding error O(eps/h) ~ 1e-10 per unit of curvature; 1e-6 absorbs both.
- fast vs readable attention, float32 1e-5 / float64 1e-12: the same math in a different order.
- nn.LSTM parity, float32 1e-6: the same gate equations as torch's kernel, summed in another order.
- loss at init vs ln(V), 0.02 relative: GPT-2 init gives logits of std ~0.02 sqrt(C) (<= 0.2 for
  C <= 64), so the expected loss exceeds ln V by ~std^2 / 2 <= 0.02 nats, far below 0.02 ln V.
- standard deviation of initial weights, 0.1 relative: the sample std of n >= 4,096 normal draws
  has a relative standard error of 1/sqrt(2n) <= 0.011, so 0.1 is nine standard errors, while a
  wrong scale (1/sqrt(n_layer) instead of 1/sqrt(2 n_layer), or none) is off by 29% or more.
"""
from __future__ import annotations

import numpy as np

TOL = {
    "forward_float64": 1e-10,
    "forward_float32": 1e-5,
    "grad_float64": 1e-8,
    "finite_difference": 1e-6,
    "fast_path_float64": 1e-12,
    "fast_path_float32": 1e-5,
    "torch_builtin_float64": 1e-12,
    "torch_builtin_float32": 1e-6,
    "lstm_parity_float32": 1e-6,
    "init_loss": 0.02,
    "init_std": 0.1,
}


def to_numpy(x) -> np.ndarray:
    """A torch tensor (any device, any dtype) or array-like as a float64 NumPy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def max_error(actual, expected) -> float:
    """max |actual - expected| / max(1, max |expected|): the quantity every tolerance bounds."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"shape mismatch: {a.shape} vs {e.shape}"
    if a.size == 0:
        return 0.0
    scale = max(1.0, float(np.max(np.abs(e))))
    return float(np.max(np.abs(a - e))) / scale


def assert_close(actual, expected, kind: str, what: str = "") -> None:
    """Fail with a readable message when `actual` and `expected` differ by more than TOL[kind]."""
    tol = TOL[kind]
    err = max_error(actual, expected)
    assert err <= tol, f"{what or 'values'}: error {err:.3e} exceeds tolerance {tol:.0e} ({kind})"
