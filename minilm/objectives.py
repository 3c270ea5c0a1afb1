"""Two training objectives on one Transformer: GPT's causal LM and BERT's masked LM.

The layers are the same; what differs is the attention mask and what is predicted.

- Causal LM (GPT): position t sees positions <= t and predicts the next token x[t+1].

      L_causal = mean over t of -log p(x[t+1] | x[<=t])

- Masked LM (BERT): some positions of the window are hidden, every position sees every other
  (bidirectional attention, `model(..., causal=False)`), and the model predicts the original
  token at each hidden position (no shift).

      L_masked = mean over the batch's chosen positions i of -log p(x[i] | x with its chosen positions corrupted)

- Both (`--objective both`): one batch, the two losses, summed:

      L = L_causal + mlm_weight * L_masked

BERT's masking of one window of T tokens, exactly:
1. choose k = max(1, round(0.15 T)) positions without replacement (round half up, so T = 30 gives 5);
2. each chosen position independently becomes the mask id with probability 0.8, a uniform random
   byte 0..255 with probability 0.1, or stays unchanged with probability 0.1 (so the model
   cannot learn that only the mask token needs predicting);
3. the target is the original token at a chosen position and -1 (the models' ignore_index) at
   every other position.
At evaluation the chosen positions come from a fixed seed and all of them become the mask id, so
every model is scored on the same hidden bytes.

Scores in bits per byte are computed over the 256 byte ids only: the logits of special tokens
(the mask) are dropped before the softmax, so a 257-way model compares with 256-way models.

Shape letters: B batch size, T window length, k masked positions per window, V vocabulary, N windows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.cli import UserError, flag, validate_config
from minilm.metrics import LN2, EvalResult, evaluate

OBJECTIVES = ("clm", "mlm", "both")
MASK_TOKEN = "<mask>"
MASK_RATE_PERCENT = 15  # share of each window's positions that are chosen, in percent
NUM_BYTE_IDS = 256  # ids 0..255 are bytes; special tokens (the mask) come after


@dataclass
class ObjectiveConfig:
    """What a run optimises: `--objective clm|mlm|both` and `--mlm-weight` (for `both`)."""

    objective: str = "clm"
    mlm_weight: float = 1.0

    def __post_init__(self):
        validate_config(self, {"objective": ("choice", OBJECTIVES), "mlm_weight": ("number", 0.0, None)},
                        name_of=flag)

    @property
    def needs_mask_token(self) -> bool:
        return self.objective in ("mlm", "both")

    def check_model(self, model_kind: str) -> None:
        """The masked objective needs attention that can look both ways: a GPT, not an LSTM."""
        if self.needs_mask_token and model_kind != "gpt":
            raise UserError(f"--objective {self.objective}: needs --model gpt (bidirectional attention); "
                            f"an {model_kind} reads left to right only")


# ----------------------------------------------------------------------------------------------
# 1. Masking
# ----------------------------------------------------------------------------------------------


def num_masked(T: int) -> int:
    """k = max(1, round(0.15 T)), rounding halves up, in integers (no float surprises at 4.5)."""
    if T < 1:
        raise ValueError(f"a window needs at least one token to mask, got T={T}")
    return max(1, (MASK_RATE_PERCENT * T + 50) // 100)


def choose_positions(B: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct positions per window, uniformly at random: a (B, k) int64 tensor."""
    scores = torch.rand(B, T, generator=generator)  # (B, T)
    return scores.argsort(dim=1)[:, :num_masked(T)]  # (B, k): a random permutation's first k


def mask_tokens(x: torch.Tensor, mask_id: int, generator: torch.Generator,
                num_byte_ids: int = NUM_BYTE_IDS) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking for training: x (B, T) -> (corrupted x (B, T), targets (B, T)).

    Draws, in this order, from `generator` (a CPU generator, so the same seed gives the same
    masks on any device): the positions, then one uniform per chosen position for its fate,
    then one random byte per chosen position (drawn for all, used for the 10% that get one).
    """
    B, T = x.shape
    x_cpu = x.detach().cpu()
    chosen = choose_positions(B, T, generator)  # (B, k)
    fate = torch.rand(chosen.shape, generator=generator)  # (B, k) uniform in [0, 1)
    random_bytes = torch.randint(0, num_byte_ids, chosen.shape, generator=generator)  # (B, k)
    originals = x_cpu.gather(1, chosen)  # (B, k)
    replacement = torch.where(fate < 0.8, torch.full_like(originals, mask_id),
                              torch.where(fate < 0.9, random_bytes, originals))  # (B, k)
    corrupted = x_cpu.clone().scatter_(1, chosen, replacement)  # (B, T)
    targets = torch.full_like(x_cpu, -1).scatter_(1, chosen, originals)  # (B, T)
    return corrupted.to(x.device), targets.to(x.device)


def mask_for_evaluation(x: torch.Tensor, mask_id: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed masking of an evaluation set x (N, T): positions from `seed`, all -> the mask id."""
    N, T = x.shape
    chosen = choose_positions(N, T, torch.Generator().manual_seed(seed))  # (N, k)
    x_cpu = x.detach().cpu()
    originals = x_cpu.gather(1, chosen)  # (N, k)
    corrupted = x_cpu.clone().scatter_(1, chosen, torch.full_like(originals, mask_id))  # (N, T)
    targets = torch.full_like(x_cpu, -1).scatter_(1, chosen, originals)  # (N, T)
    return corrupted.to(x.device), targets.to(x.device)


# ----------------------------------------------------------------------------------------------
# 2. Losses for training
# ----------------------------------------------------------------------------------------------


def causal_lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """GPT's loss: x (B, T), y (B, T) = x shifted by one; the model's default (causal) attention."""
    _, loss = model(x, y)
    return loss


def masked_lm_loss(model: nn.Module, x: torch.Tensor, mask_id: int, generator: torch.Generator) -> torch.Tensor:
    """BERT's loss on x (B, T): mask it, attend both ways, predict the originals at the chosen positions."""
    corrupted, targets = mask_tokens(x, mask_id, generator)  # (B, T) each
    _, loss = model(corrupted, targets, causal=False)  # mean over the chosen positions (ignore_index=-1)
    return loss


def combined_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask_id: int, generator: torch.Generator,
                  mlm_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`--objective both`: L = L_causal + mlm_weight * L_masked on one batch; also returns the two parts."""
    causal = causal_lm_loss(model, x, y)
    masked = masked_lm_loss(model, x, mask_id, generator)
    return causal + mlm_weight * masked, {"causal": causal.detach(), "masked": masked.detach()}


def objective_loss(config: ObjectiveConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   mask_id: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """The one call a training step makes: the loss of `config.objective` on the batch (x, y)."""
    if config.objective == "clm":
        return causal_lm_loss(model, x, y)
    if mask_id is None or generator is None:
        raise UserError(f"--objective {config.objective}: needs a tokenizer with the {MASK_TOKEN} special token "
                        "and a masking generator")
    if config.objective == "mlm":
        return masked_lm_loss(model, x, mask_id, generator)
    total, _ = combined_loss(model, x, y, mask_id, generator, config.mlm_weight)
    return total


# ----------------------------------------------------------------------------------------------
# 3. Scores in bits per byte, over the byte ids only
# ----------------------------------------------------------------------------------------------


class ByteLogitsOnly(nn.Module):
    """A view of a model whose logits stop at the byte ids: (B, T, V) -> (B, T, 256).

    Dropping the special tokens' logits before the softmax renormalises over the 256 bytes, so a
    model with a mask token is scored like any 256-way byte model.
    """

    def __init__(self, model: nn.Module, num_byte_ids: int = NUM_BYTE_IDS):
        super().__init__()
        self.model = model
        self.num_byte_ids = num_byte_ids

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, **kwargs):
        logits, _ = self.model(idx, **kwargs)  # (B, T, V)
        logits = logits[..., :self.num_byte_ids]  # (B, T, 256)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-1)
        return logits, loss


def causal_bits_per_byte(model: nn.Module, windows: torch.Tensor, tokenizer, batch_size: int = 32,
                         device: torch.device | str = "cpu") -> EvalResult:
    """`minilm.metrics.evaluate` on windows (N, T+1), with the special tokens' logits dropped."""
    return evaluate(ByteLogitsOnly(model), windows, tokenizer, batch_size=batch_size, device=device)


@torch.no_grad()
def masked_bits_per_byte(model: nn.Module, windows: torch.Tensor, mask_id: int, seed: int = 0,
                         batch_size: int = 32, device: torch.device | str = "cpu") -> EvalResult:
    """Masked-byte bits per byte on validation windows (N, T+1): the loss on the hidden bytes / ln 2.

    The first T tokens of each window are the input (the same length the model was trained on);
    the positions come from `seed` for the whole set at once, so the score does not depend on
    the batch size; every hidden byte is one text byte.
    """
    device = torch.device(device)
    corrupted, targets = mask_for_evaluation(windows[:, :-1], mask_id, seed)  # (N, T) each
    view = ByteLogitsOnly(model)
    was_training = model.training
    model.eval()
    total_nats, count = 0.0, 0
    try:
        for first in range(0, corrupted.shape[0], batch_size):
            x = corrupted[first:first + batch_size].to(device)  # (B, T)
            t = targets[first:first + batch_size].to(device)  # (B, T)
            logits, _ = view(x, causal=False)  # (B, T, 256)
            nats = F.cross_entropy(logits.float().transpose(1, 2), t, ignore_index=-1, reduction="sum")
            total_nats += float(nats.double().cpu())
            count += int((t != -1).sum())
    finally:
        model.train(was_training)
    return EvalResult(loss=total_nats / count, bits_per_byte=total_nats / LN2 / count,
                      num_tokens=count, num_bytes=count)
