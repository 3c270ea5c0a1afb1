"""NumPy twin of `minilm.layers.Block`, the pre-norm residual block.

    x = x + Attention(LayerNorm_1(x))
    x = x + MLP(LayerNorm_2(x))

Backward: a residual connection x + f(x) passes its gradient on twice, once straight through and
once through f, and the two add up:

    d(x + f(x)) / dx applied to g  =  g + f'(x)^T g

so each sublayer's input gradient is added to the gradient flowing down the residual stream.
Parameters are keyed like Block.state_dict(): "ln_1.*", "attn.c_attn.*", "attn.c_proj.*",
"ln_2.*", "mlp.c_fc.*", "mlp.c_proj.*". Eval mode: no dropout.
"""
from __future__ import annotations

import numpy as np

from minilm.reference.attention import self_attention_backward, self_attention_forward
from minilm.reference.layernorm import layer_norm_backward, layer_norm_forward
from minilm.reference.mlp import mlp_backward, mlp_forward
from minilm.reference.params import sub, with_prefix


def block_forward(x: np.ndarray, p: dict, n_head: int, rope: bool = False,
                  pos: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                  activation: str = "gelu_tanh", eps: float = 1e-5,
                  causal: bool = True) -> tuple[np.ndarray, tuple]:
    """x (B, T, C) -> (B, T, C); causal=False: bidirectional attention (BERT)."""
    h, ln_1 = layer_norm_forward(x, sub(p, "ln_1"), eps)  # (B, T, C)
    a, attn = self_attention_forward(h, sub(p, "attn"), n_head, rope, pos, attention_mask, causal)  # (B, T, C)
    x = x + a  # (B, T, C)
    h, ln_2 = layer_norm_forward(x, sub(p, "ln_2"), eps)  # (B, T, C)
    m, mlp = mlp_forward(h, sub(p, "mlp"), activation)  # (B, T, C)
    x = x + m  # (B, T, C)
    return x, (ln_1, attn, ln_2, mlp)


def block_backward(dx: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict]:
    ln_1, attn, ln_2, mlp = cache
    dh, dp_mlp = mlp_backward(dx, mlp)  # (B, T, C)
    dh, dp_ln_2 = layer_norm_backward(dh, ln_2)  # (B, T, C)
    dx = dx + dh  # (B, T, C), the residual adds the branch's gradient
    dh, dp_attn = self_attention_backward(dx, attn)  # (B, T, C)
    dh, dp_ln_1 = layer_norm_backward(dh, ln_1)  # (B, T, C)
    dx = dx + dh  # (B, T, C)
    return dx, {**with_prefix(dp_ln_1, "ln_1"), **with_prefix(dp_attn, "attn"),
                **with_prefix(dp_ln_2, "ln_2"), **with_prefix(dp_mlp, "mlp")}
