"""Gradient cosines: a hand-computed case, the matrix's properties, and .grad left untouched."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from minilm.gpt import GPT, GPTConfig
from minilm.gradients import flat_gradient, gradient_cosines, ranks, spearman_correlation
from tests.tolerances import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


class LinearRegression(nn.Module):
    """prediction = x @ w, loss = 0.5 * (prediction - y)^2 summed: dL/dw = (x @ w - y) x."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x, y):
        prediction = x @ self.w
        return prediction, 0.5 * ((prediction - y) ** 2).sum()


def pair(x, y):
    return torch.tensor([x], dtype=torch.float64), torch.tensor([y], dtype=torch.float64)


def test_cosines_of_a_linear_model_match_the_closed_form():
    model = LinearRegression([1.0, 0.0])  # g = (x @ w - y) x
    batches = {
        "a": pair([1.0, 0.0], 0.0),  # g = (1, 0)
        "b": pair([1.0, 1.0], 0.0),  # g = (1, 1)
        "c": pair([0.0, 1.0], 1.0),  # g = (0, -1)
        "d": lambda m: -2.0 * m(*pair([1.0, 0.0], 0.0))[1],  # a loss function: -2 x a's loss, g = (-2, 0)
    }
    assert_close(flat_gradient(model, batches["b"]), [1.0, 1.0], "torch_builtin_float64")
    names, matrix = gradient_cosines(model, batches)
    s = 1 / math.sqrt(2)
    expected = [[1, s, 0, -1],
                [s, 1, -s, -s],
                [0, -s, 1, 0],
                [-1, -s, 0, 1]]
    assert names == ["a", "b", "c", "d"]
    assert_close(matrix, expected, "torch_builtin_float64")


def tiny_gpt(dropout=0.0):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=dropout))


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 20, (2, 8), generator=g)
    return x, torch.randint(0, 20, (2, 8), generator=g)


def test_flat_gradient_equals_backward_and_leaves_grad_and_mode_untouched():
    model = tiny_gpt(dropout=0.1)
    x, y = batch(0)
    model.eval()
    model(x, y)[1].backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    before = [p.grad.clone() for p in model.parameters()]
    model.train()
    got = flat_gradient(model, (x, y))
    assert got.shape == (model.num_params(),)  # the tied matrix once
    assert_close(got, expected, "torch_builtin_float32")  # and dropout off: the eval-mode gradient
    assert model.training
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before, strict=True))


def test_matrix_is_symmetric_with_unit_diagonal():
    model = tiny_gpt()
    names, matrix = gradient_cosines(model, {f"batch {i}": batch(i) for i in range(4)})
    assert len(names) == 4 and matrix.shape == (4, 4)
    assert_close(matrix, matrix.T, "torch_builtin_float64")
    assert_close(matrix.diagonal(), torch.ones(4), "torch_builtin_float32")
    assert (matrix.abs() <= 1 + 1e-12).all()
    assert (matrix - torch.eye(4)).abs().max() > 1e-3  # different batches: not all parallel


def test_a_zero_gradient_gives_nan_not_a_number_that_looks_meaningful():
    model = LinearRegression([1.0, 0.0])
    zero = pair([1.0, 0.0], 1.0)  # residual 0
    _, matrix = gradient_cosines(model, {"zero": zero, "other": lambda m: m.w.sum()})
    assert torch.isnan(matrix[0]).all() and matrix[1, 1] == pytest.approx(1.0)


def test_ranks_and_spearman_against_hand_computed_values():
    assert ranks(torch.tensor([10.0, 30.0, 20.0, 20.0])).tolist() == [1.0, 4.0, 2.5, 2.5]
    assert spearman_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)  # 1 - 6 * 2 / (3 * 8)
    assert spearman_correlation([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)  # ranks, not values
    with pytest.raises(ValueError):
        spearman_correlation([1], [2])
