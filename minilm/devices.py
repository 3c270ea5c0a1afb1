"""Pick the device to run on: CUDA if there is a GPU, then Apple's MPS, then the CPU."""
from __future__ import annotations

import torch

from minilm.cli import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """Turn a `--device` value into a torch.device.

    "auto" picks cuda > mps > cpu. "cuda" may carry an index ("cuda:1"). Asking for a backend
    this machine does not have raises UserError with a one-line explanation.
    """
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES or (":" in name and kind != "cuda"):
        raise UserError(f"--device: unknown device {name!r}; expected one of {', '.join(DEVICE_CHOICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device: {name!r} asked for, but this PyTorch build sees no CUDA GPU; use auto or cpu")
    if kind == "mps" and not mps_available():
        raise UserError(f"--device: {name!r} asked for, but Apple MPS is not available here; use auto or cpu")
    return torch.device(name)


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
