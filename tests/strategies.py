"""Hypothesis strategies and small helpers shared by the property tests.

Shapes stay tiny on purpose (the whole suite must run in minutes on two CPU cores): batch 1-3,
time 1-6 (T = 1 included), heads 1-4, head size 1-8 (even when RoPE needs pairs of channels).
`examples(n)` is the one settings decorator: n examples, no deadline, and derandomized so that a
run is reproducible (the same examples every time, no flaky failures).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from minilm.gpt import GPTConfig
from minilm.reference import params_to_torch

POSITION_SCHEMES = ("learned", "sinusoidal", "rope", "none")
ACTIVATIONS = ("gelu_tanh", "gelu", "relu")

seeds = st.integers(min_value=0, max_value=2**31 - 1)


def examples(n: int):
    """The settings every property test uses: n examples, deterministic, no per-example deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@dataclass
class AttentionCase:
    B: int
    T: int
    nh: int
    hs: int
    rope: bool
    bias: bool
    mask: np.ndarray | None  # (B, T) booleans, True = real token, or None

    @property
    def C(self) -> int:
        return self.nh * self.hs


@st.composite
def padding_masks(draw, B: int, T: int):
    """A (B, T) boolean padding mask: left padding, right padding, or any pattern at all."""
    kind = draw(st.sampled_from(["left", "right", "any"]))
    if kind == "any":
        bits = draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
        return np.array(bits, dtype=bool).reshape(B, T)
    n_pad = draw(st.lists(st.integers(0, T - 1), min_size=B, max_size=B))  # keep >= 1 real token
    mask = np.ones((B, T), dtype=bool)
    for b, n in enumerate(n_pad):
        if n:
            if kind == "left":
                mask[b, :n] = False
            else:
                mask[b, T - n:] = False
    return mask


@st.composite
def attention_cases(draw, rope=None, masked=None, max_T: int = 6, max_hs: int = 8, max_B: int = 3):
    """Shapes, flags and an optional padding mask for one attention layer."""
    B = draw(st.integers(1, max_B))
    T = draw(st.integers(1, max_T))
    nh = draw(st.integers(1, 4))
    rope = draw(st.booleans()) if rope is None else rope
    hs = draw(st.integers(1, max_hs // 2).map(lambda h: 2 * h)) if rope else draw(st.integers(1, max_hs))
    bias = draw(st.booleans())
    masked = draw(st.booleans()) if masked is None else masked
    mask = draw(padding_masks(B, T)) if masked else None
    return AttentionCase(B, T, nh, hs, rope, bias, mask)


@st.composite
def gpt_configs(draw, max_layer: int = 2, max_block: int = 8, **fixed) -> GPTConfig:
    """A small, valid GPTConfig; keyword arguments pin fields (e.g. pos_emb="rope")."""
    pos_emb = fixed.pop("pos_emb", None) or draw(st.sampled_from(POSITION_SCHEMES))
    n_head = fixed.pop("n_head", None) or draw(st.integers(1, 3))
    hs = draw(st.integers(1, 2).map(lambda h: 2 * h)) if pos_emb == "rope" else draw(st.integers(1, 4))
    fields = dict(
        vocab_size=draw(st.integers(2, 13)),
        block_size=draw(st.integers(1, max_block)),
        n_layer=draw(st.integers(1, max_layer)),
        n_head=n_head,
        n_embd=n_head * hs,
        mlp_ratio=draw(st.integers(1, 4)),
        bias=draw(st.booleans()),
        pos_emb=pos_emb,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        kernels=draw(st.sampled_from(("fused", "readable"))),
        tie_weights=draw(st.booleans()),
    )
    fields.update(fixed)
    return GPTConfig(**fields)


# ----------------------------------------------------------------------------------------------
# helpers used with the strategies
# ----------------------------------------------------------------------------------------------


def random_params(module, seed: int, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Draw N(0, scale^2) values for every state_dict entry, write them into the module, return them.

    Random (not initial) values make biases and norm gains matter. A tied tensor gets one draw,
    shared by all of its names.
    """
    rng = np.random.default_rng(seed)
    params, drawn = {}, {}
    for name, tensor in module.state_dict().items():
        address = tensor.data_ptr()
        if address not in drawn:
            drawn[address] = scale * rng.standard_normal(tuple(tensor.shape))
        params[name] = drawn[address]
    params_to_torch(module, params)
    return params


def torch_grads(module) -> dict[str, np.ndarray]:
    """The .grad of every state_dict entry as float64 arrays (zeros where autograd left None)."""
    out = {}
    for name, t in module.state_dict(keep_vars=True).items():
        g = t.grad
        out[name] = np.zeros(tuple(t.shape)) if g is None else g.detach().double().numpy()
    return out


def central_differences(f, arrays: dict[str, np.ndarray], h: float = 1e-6) -> dict[str, np.ndarray]:
    """d f / d a for every entry of every array in `arrays`, by (f(a + h) - f(a - h)) / 2h.

    f() takes no arguments and reads the arrays, which are perturbed in place and restored.
    """
    grads = {}
    for name, a in arrays.items():
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            up = f()
            a[i] = old - h
            down = f()
            a[i] = old
            g[i] = (up - down) / (2 * h)
        grads[name] = g
    return grads
