"""BERT's masking (counts, no repeats, targets, and the 80/10/10 proportions as a statistical test)
and the causal / masked / combined losses and their byte-only scores."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.cli import UserError
from minilm.data import ByteTokenizer
from minilm.objectives import (
    ByteLogitsOnly,
    ObjectiveConfig,
    causal_bits_per_byte,
    combined_loss,
    mask_for_evaluation,
    mask_tokens,
    masked_bits_per_byte,
    masked_lm_loss,
    num_masked,
    objective_loss,
)
from tests.tolerances import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)

MASK = 256

# Each statistical test below compares counts with their expectation by Pearson's chi-square and
# fails above the value that a correct sampler exceeds with probability 1e-4 (its false-alarm
# rate); the seed is fixed, so a run is reproducible. Upper 1e-4 point of the standard normal:
Z_1E4 = 3.719


def chi_square_critical(dof: int) -> float:
    """The upper 1e-4 point of chi-square with `dof` degrees of freedom (Wilson-Hilferty; exact for dof = 2)."""
    if dof == 2:
        return -2.0 * math.log(1e-4)
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + Z_1E4 * math.sqrt(a)) ** 3


def chi_square(observed: torch.Tensor, expected: torch.Tensor) -> float:
    observed, expected = observed.double(), expected.double()
    return float(((observed - expected) ** 2 / expected).sum())


class TinyBidirectional(nn.Module):
    """A stand-in with the models' interface: a table of logits per input token, and it records `causal`."""

    def __init__(self, vocab_size: int = 257, seed: int = 0):
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=torch.Generator().manual_seed(seed),
                                              dtype=torch.float64))
        self.calls = []

    def forward(self, idx, targets=None, causal=True):
        self.calls.append(causal)
        logits = self.table[idx] + 0.01 * torch.arange(idx.shape[1], dtype=torch.float64)[None, :, None]  # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-1)
        return logits, loss


def random_bytes(B, T, seed=1):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the masking procedure --------------------------------------------------------------------


@pytest.mark.parametrize("T, k", [(1, 1), (3, 1), (6, 1), (7, 1), (10, 2), (30, 5), (64, 10), (128, 19), (100, 15)])
def test_number_of_masked_positions_is_round_15_percent_at_least_one(T, k):
    assert num_masked(T) == k


@pytest.mark.parametrize("T", [1, 2, 10, 30, 64])
def test_each_window_gets_exactly_k_distinct_positions_with_original_targets(T):
    x = random_bytes(50, T)
    corrupted, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(0))
    chosen = targets != -1  # (B, T)
    assert (chosen.sum(dim=1) == num_masked(T)).all()  # exactly k per window, so k distinct positions
    assert torch.equal(targets[chosen], x[chosen])  # the originals, no shift
    assert torch.equal(corrupted[~chosen], x[~chosen])  # nothing else is touched
    assert corrupted.min() >= 0 and corrupted.max() <= MASK


def test_masking_is_deterministic_under_a_seed_and_differs_across_seeds():
    x = random_bytes(8, 32)
    a = mask_tokens(x, MASK, torch.Generator().manual_seed(3))
    b = mask_tokens(x, MASK, torch.Generator().manual_seed(3))
    c = mask_tokens(x, MASK, torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_fates_of_chosen_positions_are_80_10_10():
    """mask 0.8; another byte 0.1 * 255/256; the same byte 0.1 + 0.1/256 (a random byte may equal the original)."""
    x = random_bytes(4000, 50)
    corrupted, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(0))
    chosen = targets != -1
    n = int(chosen.sum())
    assert n == 4000 * 8
    now, before = corrupted[chosen], x[chosen]
    observed = torch.tensor([(now == MASK).sum(), ((now != MASK) & (now != before)).sum(), (now == before).sum()])
    expected = n * torch.tensor([0.8, 0.1 * 255 / 256, 0.1 + 0.1 / 256], dtype=torch.float64)
    assert chi_square(observed, expected) < chi_square_critical(2), (observed, expected)


def test_random_replacements_are_uniform_over_the_256_bytes():
    """On windows of zeros, every replacement that is not the mask and not 0 is a random byte in 1..255."""
    x = torch.zeros(4000, 50, dtype=torch.long)
    corrupted, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(1))
    replaced = corrupted[(targets != -1) & (corrupted != MASK) & (corrupted != 0)]
    counts = torch.bincount(replaced, minlength=256)[1:256]  # (255,)
    assert len(torch.bincount(replaced)) <= 256  # never the mask id or beyond
    expected = torch.full((255,), len(replaced) / 255, dtype=torch.float64)
    assert chi_square(counts, expected) < chi_square_critical(254)


def test_chosen_positions_are_uniform_over_the_window():
    x = random_bytes(4000, 50)
    _, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(2))
    per_position = (targets != -1).sum(dim=0)  # (T,)
    expected = torch.full((50,), 4000 * 8 / 50, dtype=torch.float64)
    assert chi_square(per_position, expected) < chi_square_critical(49)


def test_evaluation_masking_uses_a_fixed_seed_and_only_the_mask_id():
    x = random_bytes(20, 40)
    corrupted, targets = mask_for_evaluation(x, MASK, seed=0)
    again, _ = mask_for_evaluation(x, MASK, seed=0)
    assert torch.equal(corrupted, again)
    chosen = targets != -1
    assert (chosen.sum(dim=1) == num_masked(40)).all()
    assert (corrupted[chosen] == MASK).all() and torch.equal(corrupted[~chosen], x[~chosen])
    assert not torch.equal(mask_for_evaluation(x, MASK, seed=1)[0], corrupted)


# --- losses -----------------------------------------------------------------------------------


def test_masked_loss_is_the_mean_over_chosen_positions_with_bidirectional_attention():
    model = TinyBidirectional()
    x = random_bytes(4, 20)
    loss = masked_lm_loss(model, x, MASK, torch.Generator().manual_seed(5))
    assert model.calls == [False]
    corrupted, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(5))
    logits = model.table[corrupted] + 0.01 * torch.arange(20, dtype=torch.float64)[None, :, None]
    chosen = targets != -1
    expected = F.cross_entropy(logits[chosen], targets[chosen])  # mean over the batch's chosen positions
    assert_close(loss, expected, "torch_builtin_float64")


def test_combined_loss_is_causal_plus_weighted_masked():
    model = TinyBidirectional()
    x, y = random_bytes(3, 12), random_bytes(3, 12, seed=2)
    total, parts = combined_loss(model, x, y, MASK, torch.Generator().manual_seed(0), mlm_weight=0.5)
    assert model.calls == [True, False]
    assert_close(parts["causal"], model(x, y)[1], "torch_builtin_float64")
    assert_close(parts["masked"], masked_lm_loss(model, x, MASK, torch.Generator().manual_seed(0)),
                 "torch_builtin_float64")
    assert_close(total, parts["causal"] + 0.5 * parts["masked"], "torch_builtin_float64")
    total.backward()
    assert model.table.grad is not None


def test_objective_dispatch_and_bad_settings():
    model = TinyBidirectional()
    x, y = random_bytes(2, 10), random_bytes(2, 10, seed=2)
    assert_close(objective_loss(ObjectiveConfig("clm"), model, x, y, None, None), model(x, y)[1],
                 "torch_builtin_float64")
    masked = objective_loss(ObjectiveConfig("mlm"), model, x, y, MASK, torch.Generator().manual_seed(0))
    assert_close(masked, masked_lm_loss(model, x, MASK, torch.Generator().manual_seed(0)), "torch_builtin_float64")
    with pytest.raises(UserError, match="<mask>"):
        objective_loss(ObjectiveConfig("both"), model, x, y, None, None)
    with pytest.raises(UserError, match="--objective"):
        ObjectiveConfig("bert")
    with pytest.raises(UserError, match="--mlm-weight"):
        ObjectiveConfig("both", mlm_weight=-1.0)
    with pytest.raises(UserError, match="--model gpt"):
        ObjectiveConfig("mlm").check_model("lstm")
    ObjectiveConfig("clm").check_model("lstm")
    ObjectiveConfig("both").check_model("gpt")


# --- scores over the byte ids only -------------------------------------------------------------


class Uniform(nn.Module):
    def forward(self, idx, targets=None, causal=True):
        return torch.zeros(*idx.shape, 257), None  # (B, T, 257): the mask's logit is as large as any byte's


def test_bits_per_byte_exclude_the_mask_logit():
    windows = random_bytes(5, 9)  # (N, T+1)
    tokenizer = ByteTokenizer(special_tokens=("<mask>",))
    assert causal_bits_per_byte(Uniform(), windows, tokenizer, batch_size=2).bits_per_byte == pytest.approx(8.0)
    masked = masked_bits_per_byte(Uniform(), windows, MASK, batch_size=2)
    assert masked.bits_per_byte == pytest.approx(8.0)  # log2(256), not log2(257)
    assert masked.num_bytes == 5 * num_masked(8)


def test_masked_score_does_not_depend_on_the_batch_size_and_matches_a_direct_computation():
    model = TinyBidirectional().float()
    windows = random_bytes(7, 11)
    a = masked_bits_per_byte(model, windows, MASK, batch_size=2)
    b = masked_bits_per_byte(model, windows, MASK, batch_size=7)
    assert a.bits_per_byte == pytest.approx(b.bits_per_byte, rel=1e-6)
    corrupted, targets = mask_for_evaluation(windows[:, :-1], MASK)
    with torch.no_grad():
        logits = ByteLogitsOnly(model)(corrupted)[0]
    chosen = targets != -1
    expected = F.cross_entropy(logits[chosen].double(), targets[chosen]) / math.log(2)
    assert a.bits_per_byte == pytest.approx(float(expected), rel=1e-6)


# --- on the real GPT, with its bidirectional attention ------------------------------------------


def tiny_masked_gpt():
    from minilm.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=257, block_size=16, n_layer=1, n_head=2, n_embd=16)).double()


def test_masked_loss_on_the_gpt_uses_bidirectional_attention():
    """Masked-LM logits at a position depend on later tokens: the loss is that of causal=False, not causal=True."""
    model = tiny_masked_gpt()
    x = random_bytes(3, 16)
    loss = masked_lm_loss(model, x, MASK, torch.Generator().manual_seed(0))
    corrupted, targets = mask_tokens(x, MASK, torch.Generator().manual_seed(0))
    chosen = targets != -1
    for causal, should_match in ((False, True), (True, False)):
        with torch.no_grad():
            logits, _ = model(corrupted, causal=causal)
        reference = F.cross_entropy(logits[chosen], targets[chosen])
        assert (float((loss.detach() - reference).abs()) < 1e-9) == should_match


def test_both_objectives_train_one_gpt_and_their_gradients_can_be_compared():
    from minilm.gradients import gradient_cosines

    model = tiny_masked_gpt()
    x, y = random_bytes(4, 16), random_bytes(4, 16, seed=3)
    names, cosines = gradient_cosines(model, {
        "causal": (x, y),
        "masked": lambda m: masked_lm_loss(m, x, MASK, torch.Generator().manual_seed(0)),
    })
    assert names == ["causal", "masked"] and torch.isfinite(cosines).all() and abs(float(cosines[0, 1])) < 1
    losses = []
    for _ in range(5):  # plain gradient descent
        total, _ = combined_loss(model, x, y, MASK, torch.Generator().manual_seed(0))
        losses.append(float(total.detach()))
        model.zero_grad()
        total.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    assert losses[-1] < losses[0]  # one fixed batch, fixed masks: the summed loss goes down
