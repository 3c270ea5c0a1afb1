"""Apple's MPS has no float64: a float32 model must never make a float64 tensor on its device.

There is no Mac here, so the test pretends: it makes `minilm.layers.widest_float` answer float32
(what it answers for MPS), records the dtype of every tensor each torch operation returns, and
checks that training and generation with a float32 model, every position scheme and the LSTM,
make none in float64. Without the MPS branch (float64 angles for RoPE and the sinusoidal rows, a
float64 buffer) this test fails.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import minilm.layers
from minilm import GPT, GPTConfig
from minilm.gpt import POSITION_SCHEMES
from minilm.lstm import LSTMLM, LSTMConfig
from minilm.sampling import generate, generate_without_cache


class RecordDtypes(TorchDispatchMode):
    """Remembers the dtype of every tensor an operation returns, with the operation's name."""

    def __init__(self):
        super().__init__()
        self.float64_ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float64:
                self.float64_ops.add(str(func))
        return out


@pytest.fixture
def no_float64_device(monkeypatch):
    monkeypatch.setattr(minilm.layers, "widest_float", lambda device: torch.float32)


def train_step_and_generate(model):
    x = torch.randint(0, 40, (2, 12))
    _, loss = model(x, x)
    loss.backward()
    generate(model, [1, 2, 3], 20, temperature=0.9, top_k=10)  # past block_size: the re-fill too
    generate(model, [1, 2, 3], 4, greedy=True, on_token=lambda tok: None)
    generate_without_cache(model, [1, 2, 3], 4)


@pytest.mark.parametrize("pos_emb", POSITION_SCHEMES)
@pytest.mark.parametrize("kernels", ["fused", "readable"])
def test_a_float32_gpt_makes_no_float64_tensor(pos_emb, kernels, no_float64_device):
    model = GPT(GPTConfig(vocab_size=40, block_size=12, n_layer=2, n_head=2, n_embd=16, pos_emb=pos_emb,
                          kernels=kernels))
    with RecordDtypes() as record:
        train_step_and_generate(model)
    assert not record.float64_ops, sorted(record.float64_ops)


def test_a_float32_lstm_makes_no_float64_tensor(no_float64_device):
    model = LSTMLM(LSTMConfig(vocab_size=40, n_layer=2, n_embd=16, n_hidden=16))
    with RecordDtypes() as record:
        train_step_and_generate(model)
    assert not record.float64_ops, sorted(record.float64_ops)


def test_the_recorder_sees_float64(no_float64_device):
    """The check can fail: a float64 operation inside the mode is recorded."""
    with RecordDtypes() as record:
        torch.ones(3, dtype=torch.float32).double()
    assert record.float64_ops
