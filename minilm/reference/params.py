"""Parameter dicts keyed like a PyTorch `state_dict()`, and copying weights to and from a module.

A twin takes its parameters as a flat dict {"c_attn.weight": array, ...}: exactly the keys of the
PyTorch module's `state_dict()`, so the two can be compared name by name. A layer inside a bigger
model reads its own slice with `sub(p, "h.0.attn")` and hands its gradients back up with
`with_prefix(dp, "h.0.attn")`.

The copy functions are duck-typed (they use only tensor methods), so this package never imports
torch.
"""
from __future__ import annotations

import numpy as np


def sub(p: dict, prefix: str) -> dict:
    """The entries of p under `prefix.`, with the prefix removed: sub(p, "ln_1")["weight"]."""
    start = prefix + "."
    return {k[len(start):]: v for k, v in p.items() if k.startswith(start)}


def with_prefix(dp: dict, prefix: str) -> dict:
    """The inverse of `sub`: put `prefix.` in front of every key."""
    return {f"{prefix}.{k}": v for k, v in dp.items()}


def params_from_torch(module) -> dict[str, np.ndarray]:
    """Every entry of `module.state_dict()` as a float64 NumPy array (a copy).

    A tied matrix appears under both of its names (e.g. "wte.weight" and "lm_head.weight"), just
    as in the state_dict. Non-persistent buffers (the sinusoidal table) are not included: the
    twins recompute them.
    """
    return {name: t.detach().cpu().double().numpy().copy() for name, t in module.state_dict().items()}


def params_to_torch(module, params: dict) -> None:
    """Copy `params` into the module's tensors in place, casting to each tensor's dtype and device.

    Every key of the state_dict must be present with the right shape, and no other key may be.
    Two names of one tied tensor must carry the same values (otherwise one would silently win).
    """
    state = module.state_dict()
    missing, unknown = sorted(set(state) - set(params)), sorted(set(params) - set(state))
    if missing or unknown:
        raise KeyError(f"params_to_torch: missing keys {missing}, unknown keys {unknown}")
    written = {}  # storage address -> (name, values) for tied tensors
    for name, tensor in state.items():
        value = np.asarray(params[name], dtype=np.float64)
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(f"params_to_torch: {name} has shape {value.shape}, "
                             f"the module expects {tuple(tensor.shape)}")
        address = tensor.data_ptr()
        if address in written:
            first, first_value = written[address]
            if not np.array_equal(first_value, value):
                raise ValueError(f"params_to_torch: {name} is tied to {first} but got different values")
            continue
        written[address] = (name, value)
        tensor.copy_(tensor.new_tensor(value))  # new_tensor keeps the module's dtype and device
