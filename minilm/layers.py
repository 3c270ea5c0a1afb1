"""The layers of a GPT, written from tensor operations.

Read top to bottom: position information (three schemes), layer norm, self-attention (causal or
bidirectional), the MLP, and the pre-norm residual block that stacks them.

Every layer has a readable path, written out operation by operation, and a fused path that calls
PyTorch's single-kernel equivalent (`fused=True`, tested equal). Every function and module of the
readable path has a NumPy float64 twin in `minilm/reference/`, named after it with `_forward` and
`_backward` (LayerNorm -> layer_norm_forward, attention -> attention_forward, apply_rope ->
apply_rope_forward, SelfAttention -> self_attention_forward, ...), that the tests compare against.

Shape letters used in comments:
    B  batch size          T  sequence length (time)      C  embedding width (n_embd)
    nh number of heads     hs head size (C // nh)         V  vocabulary size
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Position information
# ----------------------------------------------------------------------------------------------


class LearnedPositionEmbedding(nn.Module):
    """One trained vector per position: x_t = wte[token_t] + wpe[t] (GPT-2).

    The table has `block_size` rows, so the model cannot see past its context length.
    """

    def __init__(self, block_size: int, n_embd: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(block_size, n_embd))  # (block_size, C)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return self.weight[pos]  # (T,) -> (T, C)


def widest_float(device: torch.device) -> torch.dtype:
    """float64 for position angles, except on Apple's MPS, which has no float64 (float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def sinusoidal_rows(pos: torch.Tensor, n_embd: int) -> torch.Tensor:
    """The rows `pos` of the fixed table of "Attention Is All You Need":

        PE[t, 2i]   = sin(t / 10000^(2i / C))
        PE[t, 2i+1] = cos(t / 10000^(2i / C))

    Each pair of channels is a clock ticking at its own frequency; nothing is learned.
    pos (T,) -> (T, C), computed in float64 (float32 on MPS) on pos's device.
    """
    dtype = widest_float(pos.device)
    inv_freq = 10000.0 ** (-torch.arange(0, n_embd, 2, dtype=dtype, device=pos.device) / n_embd)  # (C/2,)
    angle = pos.to(dtype)[:, None] * inv_freq  # (T, C/2)
    rows = torch.zeros(pos.shape[0], n_embd, dtype=dtype, device=pos.device)  # (T, C)
    rows[:, 0::2] = torch.sin(angle)
    rows[:, 1::2] = torch.cos(angle[:, : n_embd // 2])  # odd C: one fewer cosine channel
    return rows


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sin/cos position vectors added to the token embeddings (no parameters). The rows are
    computed when asked for, on the device of `pos`, rather than kept in a float64 buffer that
    could not move to a device without float64 (MPS)."""

    def __init__(self, block_size: int, n_embd: int):
        super().__init__()
        self.block_size, self.n_embd = block_size, n_embd

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return sinusoidal_rows(pos, self.n_embd)  # (T,) -> (T, C)


def rope_cos_sin(pos: torch.Tensor, head_size: int, base: float = 10000.0):
    """cos and sin of the rotary angles theta_{t,i} = t * base^(-2i / hs), i < hs/2.

    Returns two (T, hs/2) tensors in float64, float32 on MPS (the caller casts them to its dtype).
    """
    dtype = widest_float(pos.device)
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=dtype, device=pos.device) / head_size)
    angle = pos.to(dtype)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return torch.cos(angle), torch.sin(angle)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021), "rotate-half" layout.

    Split each head vector into halves x = [x1, x2] (each hs/2 wide) and rotate every pair
    (x1_i, x2_i) by the angle theta_{t,i}:

        out = [x1 * cos - x2 * sin,  x2 * cos + x1 * sin]

    A rotation keeps the norm, and q_s . k_t then depends only on s - t: positions enter the
    attention scores as relative offsets. x: (B, nh, T, hs); cos, sin: (T, hs/2).
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (B, nh, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)  # (B, nh, T, hs)


# ----------------------------------------------------------------------------------------------
# Layer norm
# ----------------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Normalise each position's vector to zero mean and unit variance, then scale and shift:

        mu = mean_c x_c,   var = mean_c (x_c - mu)^2   (the biased variance, as in the paper)
        y  = (x - mu) / sqrt(var + eps) * weight + bias

    fused=False writes the formula out, line for line with its twin `layer_norm_forward`;
    fused=True computes the same thing with one kernel, `F.layer_norm` (tested equal).
    """

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(n_embd))  # (C,)
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None  # (C,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)  # (B, T, C)
        mu = x.mean(dim=-1, keepdim=True)  # (B, T, 1)
        var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # (B, T, 1)
        x_hat = (x - mu) / torch.sqrt(var + self.eps)  # (B, T, C)
        y = x_hat * self.weight  # (B, T, C)
        if self.bias is not None:
            y = y + self.bias  # (B, T, C)
        return y


# ----------------------------------------------------------------------------------------------
# Multi-head self-attention, causal (GPT) or bidirectional (BERT)
# ----------------------------------------------------------------------------------------------


def allowed_keys(T: int, attention_mask: torch.Tensor | None, device, causal: bool = True) -> torch.Tensor:
    """Which keys each query may attend to: (T, T) or (B, 1, T, T) booleans, True = allowed.

    causal=True (GPT): query t sees keys s <= t. causal=False (BERT): every query sees every key.
    With a padding mask (B, T), True = real token, keys at padded positions are hidden too; a
    query may always see itself, so no row is empty and padded positions produce finite
    (meaningless) outputs instead of NaN.
    """
    allowed = torch.ones(T, T, dtype=torch.bool, device=device)  # (T, T)
    if causal:
        allowed = allowed.tril()  # (T, T), key s <= query t
    if attention_mask is None:
        return allowed
    real_key = attention_mask.to(torch.bool)[:, None, None, :]  # (B, 1, 1, T)
    itself = torch.eye(T, dtype=torch.bool, device=device)  # (T, T)
    return allowed & (real_key | itself)  # (B, 1, T, T)


def attention_weights(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """A = softmax(q k^T / sqrt(hs)) over the allowed keys: (B, nh, T_q, T_k), rows sum to 1.

    q (B, nh, T_q, hs), k (B, nh, T_k, hs); allowed (T_q, T_k) or (B, 1, T_q, T_k) booleans.
    A key a query may not see gets the score -inf, so its weight is exactly 0.
    """
    att = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T_q, T_k)
    att = att.masked_fill(~allowed, float("-inf"))  # (B, nh, T_q, T_k)
    return F.softmax(att, dim=-1)  # (B, nh, T_q, T_k), rows sum to 1


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
              dropout: nn.Module | None = None) -> torch.Tensor:
    """The readable path: y = A v with A = `attention_weights(q, k, allowed)`.

    v (B, nh, T_k, hs) -> y (B, nh, T_q, hs): each query's output is the weighted mean of the
    values it may see. `dropout` (training only) drops weights, as nanoGPT does.
    """
    att = attention_weights(q, k, allowed)  # (B, nh, T_q, T_k)
    if dropout is not None:
        att = dropout(att)
    return att @ v  # (B, nh, T_q, T_k) @ (B, nh, T_k, hs) -> (B, nh, T_q, hs)


class SelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(hs) + mask) V, in nh heads, then an output projection.

        q, k, v = split(x W_attn^T + b_attn)          x: (B, T, C) -> 3 x (B, T, C)
        per head: A = softmax(q k^T / sqrt(hs)), masked by `allowed_keys`
        y = concat_heads(A v) W_proj^T + b_proj

    The mask is the only difference between GPT and BERT: causal=True (the default) lets
    position t see only s <= t; causal=False lets every position see the whole text (padding
    masks still hide padded keys). The weights are the same either way.

    Two kernel paths compute the same thing: fused=False calls `attention` above, every step
    written out; fused=True calls `F.scaled_dot_product_attention`, one fused kernel. `step`
    adds a KV cache for generation.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 rope: bool = False, fused: bool = False):
        super().__init__()
        self.n_head, self.head_size = n_head, n_embd // n_head
        self.rope, self.fused, self.dropout = rope, fused, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # W_attn: (3C, C)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)  # W_proj: (C, C)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def qkv_heads(self, x: torch.Tensor, pos: torch.Tensor):
        """Project x to queries, keys and values split into heads (RoPE applied to q and k)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        if self.rope:
            cos, sin = rope_cos_sin(pos, self.head_size)  # (T, hs/2) each
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def fused_attention(self, q, k, v, allowed, attention_mask, causal: bool):
        """`attention` in one kernel (the fused path)."""
        p = self.dropout if self.training else 0.0
        if attention_mask is None:  # no mask to build: the kernel knows the causal rule itself
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, attention_mask: torch.Tensor | None = None,
                causal: bool = True) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv_heads(x, pos)  # (B, nh, T, hs) each
        allowed = allowed_keys(T, attention_mask, x.device, causal)  # (T, T) or (B, 1, T, T)
        if self.fused:
            y = self.fused_attention(q, k, v, allowed, attention_mask, causal)  # (B, nh, T, hs)
        else:
            y = attention(q, k, v, allowed, self.attn_dropout)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, nh, T, hs) -> (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def step(self, x: torch.Tensor, pos: torch.Tensor, cache: dict | None):
        """Attention for new positions `pos` given the keys/values of earlier ones in `cache`.

        x: (B, T_new, C); cache holds k, v: (B, nh, T_past, hs). Query i (at absolute position
        T_past + i) may see all past keys and the new keys up to itself. Returns (y, new cache).
        """
        B, T_new, C = x.shape
        q, k, v = self.qkv_heads(x, pos)  # (B, nh, T_new, hs)
        if cache is not None:
            k = torch.cat([cache["k"], k], dim=2)  # (B, nh, T_past + T_new, hs)
            v = torch.cat([cache["v"], v], dim=2)  # (B, nh, T_past + T_new, hs)
        T_all = k.shape[2]
        if self.fused and T_new == 1:  # the common case in generation: the one new query sees every key
            y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, 1, hs)
        else:
            # query i sits at position T_past + i and sees keys 0 .. T_past + i
            allowed = torch.ones(T_new, T_all, dtype=torch.bool, device=x.device).tril(T_all - T_new)
            if self.fused:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, nh, T_new, hs)
            else:
                y = attention(q, k, v, allowed)  # (B, nh, T_new, hs)
        y = y.transpose(1, 2).contiguous().view(B, T_new, C)  # (B, T_new, C)
        return self.c_proj(y), {"k": k, "v": v}


# ----------------------------------------------------------------------------------------------
# MLP and the residual block
# ----------------------------------------------------------------------------------------------


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_exact(x: torch.Tensor) -> torch.Tensor:
    """GELU, exact: x Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def relu(x: torch.Tensor) -> torch.Tensor:
    """ReLU: max(x, 0)."""
    return torch.clamp_min(x, 0.0)


ACTIVATIONS = {"gelu_tanh": gelu_tanh, "gelu": gelu_exact, "relu": relu}

# The same functions as single fused kernels, for the fused path (tested equal to the above).
FUSED_ACTIVATIONS = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


class MLP(nn.Module):
    """Position-wise feed-forward network: y = act(x W_fc^T + b_fc) W_proj^T + b_proj.

    The hidden layer is `mlp_ratio` (4) times wider than the residual stream. `fused=True`
    computes the activation with one PyTorch kernel instead of the written-out formula.
    """

    def __init__(self, n_embd: int, hidden: int, activation: str = "gelu_tanh",
                 dropout: float = 0.0, bias: bool = True, fused: bool = False):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)  # W_fc: (4C, C)
        self.act = (FUSED_ACTIVATIONS if fused else ACTIVATIONS)[activation]
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)  # W_proj: (C, 4C)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm residual block:

        x = x + Attention(LayerNorm_1(x))
        x = x + MLP(LayerNorm_2(x))

    The residual stream x carries information straight through; each sublayer adds to it.
    fused=True runs layer norm, attention and the activation as single PyTorch kernels;
    fused=False runs every one written out (the readable path, line for line with the twins).
    """

    def __init__(self, n_embd: int, n_head: int, mlp_hidden: int, activation: str = "gelu_tanh",
                 dropout: float = 0.0, bias: bool = True, rope: bool = False, fused: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias=bias, eps=eps, fused=fused)
        self.attn = SelfAttention(n_embd, n_head, dropout, bias, rope, fused)
        self.ln_2 = LayerNorm(n_embd, bias=bias, eps=eps, fused=fused)
        self.mlp = MLP(n_embd, mlp_hidden, activation, dropout, bias, fused=fused)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, attention_mask: torch.Tensor | None = None,
                causal: bool = True) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), pos, attention_mask, causal)  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x

    def step(self, x: torch.Tensor, pos: torch.Tensor, cache: dict | None):
        a, cache = self.attn.step(self.ln_1(x), pos, cache)
        x = x + a  # (B, T_new, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T_new, C)
        return x, cache
