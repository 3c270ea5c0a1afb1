"""How good is a language model on some text? Nats per token and bits per byte.

A model's loss is the mean cross-entropy in nats per token. Tokens differ between tokenizers
(a byte, a BPE piece), so the number that compares models across tokenizers is bits per byte:

    bits per byte = (total nats over the evaluated tokens) / ln 2 / (UTF-8 bytes of those tokens)

The byte count comes from `tokenizer.num_bytes(ids)` (for the ByteTokenizer it is the number of
tokens, so bits per byte = nats per token / ln 2).

Shape letters: B batch size, T window length, V vocabulary size, N number of windows.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


def bits_per_byte(total_nats: float, num_bytes: int) -> float:
    """Total loss in nats over some tokens -> bits per UTF-8 byte of the text behind them."""
    if num_bytes <= 0:
        raise ValueError(f"bits_per_byte needs a positive byte count, got {num_bytes}")
    return total_nats / LN2 / num_bytes


@dataclass
class EvalResult:
    """The scores of one evaluation: per-token loss, bits per byte, and what was counted."""

    loss: float  # mean nats per token
    bits_per_byte: float
    num_tokens: int
    num_bytes: int
    loss_by_position: list[float] = field(default_factory=list)  # mean nats at each position t < T

    def to_dict(self) -> dict:
        return {"loss": self.loss, "bits_per_byte": self.bits_per_byte,
                "num_tokens": self.num_tokens, "num_bytes": self.num_bytes}


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, tokenizer, batch_size: int = 32,
             device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
             num_bytes: int | None = None) -> EvalResult:
    """Score `model` on fixed windows (N, T+1): x = windows[:, :-1], targets = windows[:, 1:].

    The cross-entropy is computed here from the logits in float32 (not taken from the model's
    mean), summed over every target token, and also kept per position in the window, which
    shows how the loss falls as the model sees more context. `num_bytes` may be passed when
    the caller already counted the target bytes (they are the same at every evaluation).
    The model is put in eval mode and restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    num_windows, width = windows.shape[0], windows.shape[1] - 1
    nats_by_position = torch.zeros(width, dtype=torch.float64)  # (T,)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    try:
        for first in range(0, num_windows, batch_size):
            batch = windows[first:first + batch_size].to(device)  # (B, T+1)
            x, targets = batch[:, :-1], batch[:, 1:]  # (B, T) each
            with autocast:
                logits, _ = model(x)  # (B, T, V)
            nats = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, T)
            nats_by_position += nats.sum(dim=0).cpu().double()  # float64 on the CPU (MPS has none)
    finally:
        model.train(was_training)
    num_tokens = num_windows * width
    if num_bytes is None:
        num_bytes = count_target_bytes(windows, tokenizer)
    total_nats = float(nats_by_position.sum())
    return EvalResult(
        loss=total_nats / num_tokens,
        bits_per_byte=bits_per_byte(total_nats, num_bytes),
        num_tokens=num_tokens,
        num_bytes=num_bytes,
        loss_by_position=(nats_by_position / num_windows).tolist(),
    )


def count_target_bytes(windows: torch.Tensor, tokenizer) -> int:
    """UTF-8 bytes behind the target tokens windows[:, 1:] of a validation set."""
    return int(tokenizer.num_bytes(windows[:, 1:].reshape(-1).tolist()))
