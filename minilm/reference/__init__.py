"""minilm.reference: NumPy float64 twins of the layers in `minilm.layers` and `minilm.gpt`.

Each twin is a pair of functions, written to be read side by side with its PyTorch layer and
named after it (LayerNorm -> layer_norm_forward, attention -> attention_forward, apply_rope ->
apply_rope_forward, SelfAttention -> self_attention_forward, Block -> block_forward, ...):

    y, cache = xxx_forward(x, p, ...)       p: float64 arrays keyed like the module's state_dict()
    dx, dp   = xxx_backward(dy, cache)      dp: gradients keyed the same way

The backward passes are written by hand (no autograd), with the derivation in each docstring.
All twins model eval mode (no dropout). This package imports only NumPy and the standard library.

    embedding.py   token table, learned and sinusoidal positions
    rope.py        rotary position embedding
    layernorm.py   layer norm
    linear.py      the affine map inside every projection
    attention.py   self-attention, causal or bidirectional, with padding masks
    mlp.py         MLP and its activations (gelu_tanh, gelu, relu)
    block.py       the pre-norm residual block
    gpt.py         the whole model, with weight tying
    kv_cache.py    incremental decoding with a key/value cache (the twin of GPT.step)
    loss.py        softmax cross-entropy with ignore_index = -1
    params.py      parameter dicts, params_from_torch / params_to_torch
"""
from minilm.reference.attention import (
                                        allowed_keys,
                                        attention_backward,
                                        attention_forward,
                                        self_attention_backward,
                                        self_attention_forward,
                                        softmax,
)
from minilm.reference.block import block_backward, block_forward
from minilm.reference.embedding import (
                                        embedding_backward,
                                        embedding_forward,
                                        learned_position_backward,
                                        learned_position_forward,
                                        sinusoidal_rows,
)
from minilm.reference.gpt import gpt_backward, gpt_forward, gpt_loss
from minilm.reference.kv_cache import gpt_step
from minilm.reference.layernorm import layer_norm_backward, layer_norm_forward
from minilm.reference.linear import linear_backward, linear_forward
from minilm.reference.loss import cross_entropy_backward, cross_entropy_forward
from minilm.reference.mlp import (
                                        ACTIVATIONS,
                                        gelu_exact_backward,
                                        gelu_exact_forward,
                                        gelu_tanh_backward,
                                        gelu_tanh_forward,
                                        mlp_backward,
                                        mlp_forward,
                                        relu_backward,
                                        relu_forward,
)
from minilm.reference.params import params_from_torch, params_to_torch, sub, with_prefix
from minilm.reference.rope import apply_rope_backward, apply_rope_forward, rope_cos_sin

__all__ = [
    "ACTIVATIONS", "allowed_keys", "apply_rope_backward", "apply_rope_forward", "attention_backward",
    "attention_forward", "block_backward", "block_forward", "cross_entropy_backward", "cross_entropy_forward",
    "embedding_backward", "embedding_forward", "gelu_exact_backward", "gelu_exact_forward", "gelu_tanh_backward",
    "gelu_tanh_forward", "gpt_backward", "gpt_forward", "gpt_loss", "gpt_step", "layer_norm_backward",
    "layer_norm_forward", "learned_position_backward", "learned_position_forward", "linear_backward",
    "linear_forward", "mlp_backward", "mlp_forward", "params_from_torch", "params_to_torch", "relu_backward",
    "relu_forward", "rope_cos_sin", "self_attention_backward", "self_attention_forward", "sinusoidal_rows",
    "softmax", "sub", "with_prefix",
]
