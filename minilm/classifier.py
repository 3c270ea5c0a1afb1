"""Fine-tuning for a task with few labels: which domain does a 64-byte window come from?

A pre-trained language model already turns text into features; a classifier needs only a small
new layer on top, and a few labelled examples to fine-tune all the weights:

    h = the GPT's last hidden states (after the final LayerNorm)            (B, T, C)
    m = the padding mask, 1 at real positions, 0 at padding                 (B, T)
    pooled = sum_t m_t h_t / sum_t m_t      (the mean over real positions)  (B, C)
    logits = pooled @ W.T + b               (the head: a new Linear layer)  (B, K)
    loss = cross-entropy(logits, domain label)

The GPT is used as it is: its last hidden states are caught by a forward hook on its final
LayerNorm (`model.ln_f`), so gpt.py needs no change. A model trained with the masked objective
is read with bidirectional attention (`causal=False`), a GPT with its causal attention.

Read top to bottom: the pooled mean, the classifier, the labelled windows, fine-tuning, accuracy.
Shape letters: B batch, T window length, C model width, K number of domains, N windows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from minilm.cli import UserError, flag, validate_config


@dataclass
class FineTuneConfig:
    """The settings of one fine-tuning run (`train.py --task domain-id ...`; the preset states them)."""

    labels_per_class: int = 16  # labelled training windows per domain
    held_out_per_class: int = 200  # windows per domain in the fixed, balanced held-out set
    window: int = 64  # bytes per window
    steps: int = 100
    lr: float = 3e-4
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        validate_config(self, {"labels_per_class": ("int", 1), "held_out_per_class": ("int", 1),
                               "window": ("int", 1), "steps": ("int", 1), "lr": ("open_number", 0.0, None),
                               "batch_size": ("int", 1), "seed": ("int", 0)}, name_of=flag)


# ----------------------------------------------------------------------------------------------
# 1. The mean over real positions
# ----------------------------------------------------------------------------------------------


def masked_mean(h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """h (B, T, C), mask (B, T) with 1 = real token (or None: all real) -> the mean over real positions (B, C)."""
    if attention_mask is None:
        return h.mean(dim=1)
    m = attention_mask.to(h.dtype)[:, :, None]  # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, C)


# ----------------------------------------------------------------------------------------------
# 2. The classifier: a GPT and a new linear head
# ----------------------------------------------------------------------------------------------


class DomainClassifier(nn.Module):
    """A language model (a GPT) with a linear head on its mean-pooled last hidden states."""

    def __init__(self, lm: nn.Module, num_classes: int, causal: bool = True):
        super().__init__()
        if not hasattr(lm, "ln_f"):
            raise UserError(f"--task domain-id: needs a GPT (its final LayerNorm gives the features), "
                            f"got a {type(lm).__name__}")
        self.lm = lm
        self.causal = causal
        weight = next(lm.parameters())
        self.head = nn.Linear(lm.config.n_embd, num_classes, dtype=weight.dtype, device=weight.device)  # (K, C)

    def hidden_states(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) -> the output of the GPT's final LayerNorm (B, T, C), caught by a forward hook."""
        caught = []
        hook = self.lm.ln_f.register_forward_hook(lambda module, inputs, output: caught.append(output))
        try:
            self.lm(x, attention_mask=attention_mask, causal=self.causal)  # its logits are not needed
        finally:
            hook.remove()
        return caught[-1]  # (B, T, C)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T) token ids -> class logits (B, K)."""
        h = self.hidden_states(x, attention_mask)  # (B, T, C)
        return self.head(masked_mean(h, attention_mask))  # (B, K)


# ----------------------------------------------------------------------------------------------
# 3. Labelled windows
# ----------------------------------------------------------------------------------------------


def draw_labelled_windows(splits: dict[str, np.ndarray], per_class: int, window: int, seed: int,
                          what: str = "training split") -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` windows of `window` tokens from each split, labelled by the split's position in `splits`.

    A split of n tokens holds n // window non-overlapping windows (slot i covers tokens
    [i * window, (i + 1) * window)); `per_class` distinct slots are drawn from `seed`, so the same
    seed gives the same set (the held-out set uses a fixed seed on the validation splits).
    Returns x (N, window) int64 and labels (N,) int64, class by class, N = per_class * K.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise UserError(f"--labels-per-class: expected a positive integer, got {per_class!r}")
    if len(splits) < 2:
        raise UserError(f"--domains: a classification task needs at least 2 domains, got {list(splits)}")
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, (name, tokens) in enumerate(splits.items()):
        slots = len(tokens) // window
        if per_class > slots:
            raise UserError(f"--labels-per-class {per_class}: the {what} of {name} holds only {slots} "
                            f"windows of {window} tokens")
        chosen = np.sort(rng.choice(slots, size=per_class, replace=False))  # (per_class,)
        rows += [np.asarray(tokens[i * window:(i + 1) * window]) for i in chosen]
        labels += [label] * per_class
    x = torch.from_numpy(np.stack(rows).astype(np.int64))  # (N, window)
    return x, torch.tensor(labels, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# 4. Fine-tuning and accuracy
# ----------------------------------------------------------------------------------------------


def fine_tune(classifier: DomainClassifier, x: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
              batch_size: int = 32, seed: int = 0, progress: bool = False) -> list[float]:
    """AdamW on all weights for a fixed number of steps; each step a batch of min(batch_size, N)
    distinct labelled windows drawn from `seed`. Returns the loss of every step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=0.0)
    device = next(classifier.parameters()).device
    classifier.train()
    losses = []
    for _ in tqdm(range(steps), desc="fine-tune", disable=not progress):
        rows = torch.randperm(len(x), generator=generator)[:batch_size]  # (b,)
        logits = classifier(x[rows].to(device))  # (b, K)
        loss = F.cross_entropy(logits, labels[rows].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def accuracy(classifier: DomainClassifier, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """The share of windows whose most likely class is their label."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    correct = 0
    try:
        for first in range(0, len(x), batch_size):
            logits = classifier(x[first:first + batch_size].to(device))  # (B, K)
            correct += int((logits.argmax(dim=1).cpu() == labels[first:first + batch_size]).sum())
    finally:
        classifier.train(was_training)
    return correct / len(x)
