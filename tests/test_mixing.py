"""Tempered mixing weights: p proportional to size ** alpha."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minilm.cli import UserError
from minilm.mixing import tempered_weights
from tests.strategies import examples
from tests.tolerances import assert_close

SIZES = {"shakespeare": 1_000_000, "bible": 4_000_000, "poetry_zh": 250_000}


def test_alpha_zero_is_equal_and_alpha_one_is_proportional():
    equal = tempered_weights(SIZES, 0.0)
    assert_close(list(equal.values()), [1 / 3] * 3, "torch_builtin_float64")
    proportional = tempered_weights(SIZES, 1.0)
    total = sum(SIZES.values())
    assert_close(list(proportional.values()), [s / total for s in SIZES.values()], "torch_builtin_float64")
    assert list(proportional) == list(SIZES)  # same domains, same order


def test_half_is_the_square_root_rule():
    weights = tempered_weights({"a": 1.0, "b": 4.0}, 0.5)  # sqrt: 1 and 2
    assert_close([weights["a"], weights["b"]], [1 / 3, 2 / 3], "torch_builtin_float64")


@examples(40)
@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(1.0, 1e12), min_size=1, max_size=5),
       st.floats(0.0, 1.0))
def test_weights_sum_to_one_and_keep_the_order_of_sizes(sizes, alpha):
    weights = tempered_weights(sizes, alpha)
    assert sum(weights.values()) == pytest.approx(1.0)
    names = sorted(sizes, key=sizes.get)
    assert all(weights[a] <= weights[b] * (1 + 1e-12) for a, b in zip(names, names[1:], strict=False))


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_alpha_outside_zero_one_is_a_one_line_error(alpha):
    with pytest.raises(UserError, match="--mix-alpha") as info:
        tempered_weights(SIZES, alpha)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("sizes", [{}, {"a": 0}, {"a": -3.0}, {"a": float("inf")}])
def test_empty_or_non_positive_sizes_are_refused(sizes):
    with pytest.raises(UserError, match="--mix-alpha"):
        tempered_weights(sizes, 0.5)
