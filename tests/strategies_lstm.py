"""Hypothesis strategies for the LSTM / Elman RNN tests (tests/test_lstm.py).

Shapes stay tiny so that the float64 NumPy BPTT and finite differences run in milliseconds:
batch 1-3, time 1-6 (T = 1 included), widths 1-6, layers 1-3, both cells.
`examples(n)`: n examples, no deadline, derandomized (the same examples every run: no flakes).
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from minilm.lstm import LSTMConfig

CELL_NAMES = ("lstm", "rnn")

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def examples(n: int):
    """n examples, deterministic, no per-example deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@dataclass
class StackCase:
    """The sizes of one RecurrentStack call: x (B, T, In), state tuple of (L, B, H)."""

    B: int
    T: int
    In: int
    H: int
    L: int
    cell: str
    seed: int

    @property
    def num_states(self) -> int:
        return 2 if self.cell == "lstm" else 1


@st.composite
def stack_cases(draw, cell: str | None = None, max_B: int = 3, max_T: int = 6, max_width: int = 6,
                max_layers: int = 3) -> StackCase:
    """Sizes for a recurrent stack; `cell` pins the cell ("lstm" / "rnn")."""
    return StackCase(
        B=draw(st.integers(1, max_B)),
        T=draw(st.integers(1, max_T)),
        In=draw(st.integers(1, max_width)),
        H=draw(st.integers(1, max_width)),
        L=draw(st.integers(1, max_layers)),
        cell=draw(st.sampled_from(CELL_NAMES)) if cell is None else cell,
        seed=draw(seeds),
    )


@st.composite
def lstm_configs(draw, max_vocab: int = 12, max_width: int = 6, max_layers: int = 3,
                 **fixed) -> LSTMConfig:
    """A small, valid LSTMConfig (dropout 0); keyword arguments pin fields (e.g. cell="rnn")."""
    fields = dict(
        vocab_size=draw(st.integers(2, max_vocab)),
        n_embd=draw(st.integers(1, max_width)),
        n_hidden=draw(st.integers(1, max_width)),
        n_layer=draw(st.integers(1, max_layers)),
        dropout=0.0,
        cell=draw(st.sampled_from(CELL_NAMES)),
        tie_weights=draw(st.booleans()),
    )
    fields.update(fixed)
    return LSTMConfig(**fields)
