"""Fast token-by-token generation for a GPT: the same computation as `GPT.step`, leaner.

`GPT.step` (minilm/gpt.py) is the KV-cache path a reader follows: it walks the model's modules,
the same ones the training forward uses. Generating one token at a time on a CPU, though, is a
chain of tiny (1 x C) @ (C x 4C) products, and the fixed cost of each call (Python, the nn.Module
machinery, PyTorch's dispatch, the matrix layout the BLAS library is handed) is larger than the
arithmetic. `GPTDecoder` is the fast path for that one case, a single new token per sequence, and
its speed comes from removing that fixed cost, in three parts:

- the matrix layout: every weight matrix is copied once, transposed to (in, out) and contiguous,
  so each product is `torch.addmm(b, x, W_t)`: x (B, in) @ W_t (in, out) + b, instead of
  `F.linear(x, W, b)` on W stored (out, in) as nn.Linear keeps it (`bench/micro.py`, part 1,
  times the two layouts alone);
- no module walk: one function reads top to bottom on (B, C) rows, so there are no nn.Module
  calls and hooks, no dropout modules (identities in eval mode, still called), no position
  tensor built per step (the position row is indexed directly), and q, k, v come from one
  view + unbind instead of split, three views and three transposes;
- fused kernels whatever the model's `kernels`: layer norm and the activation are single PyTorch
  kernels, attention is `F.scaled_dot_product_attention` (one query sees every cached key, so
  no mask is built).

`bench/sample.py` times whole generations through both paths in the same rounds; the figures are
in docs/README_sample.md. Everything else (the prompt, several new tokens at once, the re-fill
beyond block_size) is delegated to `GPT.step`, and the state has its format, so the two can be
mixed freely. `tests/test_gpt_decoder.py` checks that the logits equal `GPT.step`'s at every step,
for every position scheme, with and without biases, past block_size.

The decoder is a snapshot: build it after training (`generate` builds one per call), not before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minilm.layers import (
    FUSED_ACTIVATIONS,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    apply_rope,
    rope_cos_sin,
)


def _transposed(linear: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W^T as a contiguous (in, out) copy, bias or None) of an nn.Linear."""
    weight = linear.weight.detach().t().contiguous()  # (in, out)
    return weight, _bias(linear)  # (in, out), (out,) or None


def _bias(module) -> torch.Tensor | None:
    """The bias of a LayerNorm or Linear, detached, or None when it has none."""
    return None if module.bias is None else module.bias.detach()


def _affine(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (B, in) @ W^T (in, out) + b -> (B, out)."""
    return x @ weight_t if bias is None else torch.addmm(bias, x, weight_t)


class GPTDecoder:
    """`decoder.step(idx, state) -> (logits, state)`, the contract of `GPT.step`, fast when idx is
    one token per sequence (B, 1) that fits in the cache; anything else goes to `GPT.step`."""

    def __init__(self, model):
        c = model.config
        self.model = model
        self.n_head, self.head_size, self.n_embd = c.n_head, c.n_embd // c.n_head, c.n_embd
        self.eps, self.block_size = c.layer_norm_eps, c.block_size
        self.rope = c.pos_emb == "rope"
        self.act = FUSED_ACTIVATIONS[c.activation]
        self.wte = model.wte.weight.detach()  # (V, C)
        if isinstance(model.wpe, LearnedPositionEmbedding):
            self.positions = model.wpe.weight.detach()  # (block_size, C)
        elif isinstance(model.wpe, SinusoidalPositionEmbedding):
            every_position = torch.arange(c.block_size, device=self.wte.device)  # (block_size,)
            self.positions = model.wpe(every_position).to(self.wte.dtype)  # (block_size, C)
        else:
            self.positions = None  # RoPE (inside attention) or no positions
        self.layers = []
        for block in model.h:
            self.layers.append({
                "ln_1": (block.ln_1.weight.detach(), _bias(block.ln_1)),
                "c_attn": _transposed(block.attn.c_attn),  # (C, 3C)
                "attn_proj": _transposed(block.attn.c_proj),  # (C, C)
                "ln_2": (block.ln_2.weight.detach(), _bias(block.ln_2)),
                "c_fc": _transposed(block.mlp.c_fc),  # (C, 4C)
                "mlp_proj": _transposed(block.mlp.c_proj),  # (4C, C)
            })
        self.ln_f = (model.ln_f.weight.detach(), _bias(model.ln_f))
        self.lm_head_t = model.lm_head.weight.detach().t().contiguous()  # (C, V)

    def layer_norm(self, x: torch.Tensor, params) -> torch.Tensor:
        return F.layer_norm(x, (self.n_embd,), params[0], params[1], self.eps)  # (B, C)

    @torch.no_grad()
    def step(self, idx: torch.Tensor, state: dict | None = None):
        T_past = 0 if state is None else state["tokens"].shape[1]
        if state is None or idx.dim() != 2 or idx.shape[1] != 1 or T_past + 1 > self.block_size:
            return self.model.step(idx, state)  # the prompt, several tokens, or a re-fill
        self.model._check_idx(idx)
        B, nh, hs, C = idx.shape[0], self.n_head, self.head_size, self.n_embd
        x = self.wte[idx[:, 0]]  # (B, C)
        if self.positions is not None:
            x = x + self.positions[T_past]  # (B, C) + (C,)
        if self.rope:
            cos, sin = rope_cos_sin(torch.tensor([T_past], device=idx.device), hs)  # (1, hs/2) each
        new_caches = []
        for layer, cache in zip(self.layers, state["caches"], strict=True):
            qkv = _affine(self.layer_norm(x, layer["ln_1"]), *layer["c_attn"])  # (B, 3C)
            q, k, v = qkv.view(B, 3, nh, 1, hs).unbind(1)  # (B, nh, 1, hs) each
            if self.rope:
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            k = torch.cat([cache["k"], k], dim=2)  # (B, nh, T_past + 1, hs)
            v = torch.cat([cache["v"], v], dim=2)  # (B, nh, T_past + 1, hs)
            new_caches.append({"k": k, "v": v})
            y = F.scaled_dot_product_attention(q, k, v).reshape(B, C)  # (B, nh, 1, hs) -> (B, C)
            x = x + _affine(y, *layer["attn_proj"])  # (B, C)
            h = self.act(_affine(self.layer_norm(x, layer["ln_2"]), *layer["c_fc"]))  # (B, 4C)
            x = x + _affine(h, *layer["mlp_proj"])  # (B, C)
        logits = self.layer_norm(x, self.ln_f) @ self.lm_head_t  # (B, V)
        return logits[:, None, :], {"caches": new_caches, "tokens": torch.cat([state["tokens"], idx], dim=1)}

