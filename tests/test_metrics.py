"""Bits per byte arithmetic and the evaluate() helper."""
from __future__ import annotations

import math

import pytest
import torch

from minilm.data import ByteTokenizer
from minilm.gpt import GPT, GPTConfig
from minilm.metrics import LN2, bits_per_byte, count_target_bytes, evaluate
from tests.tolerances import assert_close


class UniformModel(torch.nn.Module):
    """Predicts every token of a V-token vocabulary with probability 1/V: loss ln V per token."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, self.vocab_size), None  # (B, T, V)


class WideTokenizer(ByteTokenizer):
    """Every id stands for three UTF-8 bytes (like a BPE token of three characters)."""

    vocab_size = 1000

    def token_bytes(self, token_id):
        return b"abc"

    def num_bytes(self, ids):
        return 3 * len(ids)


def test_bits_per_byte_formula():
    assert bits_per_byte(LN2 * 8, 1) == pytest.approx(8.0)
    assert bits_per_byte(100.0, 50) == pytest.approx(100.0 / math.log(2) / 50)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)


def test_uniform_byte_model_scores_eight_bits_per_byte():
    windows = torch.randint(0, 256, (5, 9))  # (N, T+1)
    result = evaluate(UniformModel(256), windows, ByteTokenizer(), batch_size=2)
    assert result.num_tokens == 40 and result.num_bytes == 40
    assert result.loss == pytest.approx(math.log(256))
    assert result.bits_per_byte == pytest.approx(8.0)


def test_bits_per_byte_divides_by_bytes_not_tokens():
    windows = torch.randint(0, 1000, (4, 7))
    result = evaluate(UniformModel(1000), windows, WideTokenizer())
    assert result.num_bytes == 3 * 4 * 6
    assert result.bits_per_byte == pytest.approx(math.log2(1000) / 3)  # log2(V) bits per token, 3 bytes each


def test_evaluate_matches_the_models_own_mean_loss_and_restores_training_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=12, n_layer=1, n_head=2, n_embd=16))
    model.train()
    windows = torch.randint(0, 256, (7, 13))
    result = evaluate(model, windows, ByteTokenizer(), batch_size=3)
    assert model.training
    model.eval()
    with torch.no_grad():
        _, expected = model(windows[:, :-1], windows[:, 1:])
    assert_close(torch.tensor(result.loss), expected, "fast_path_float32", "evaluate vs model loss")
    assert_close(torch.tensor(result.bits_per_byte), expected / LN2, "fast_path_float32", "bits per byte")
    assert len(result.loss_by_position) == 12
    assert_close(torch.tensor(sum(result.loss_by_position) / 12), expected, "fast_path_float32", "mean by position")


def test_count_target_bytes_skips_the_first_token_of_each_window():
    windows = torch.zeros(3, 5, dtype=torch.long)
    assert count_target_bytes(windows, ByteTokenizer()) == 12
    assert count_target_bytes(windows, WideTokenizer()) == 36
