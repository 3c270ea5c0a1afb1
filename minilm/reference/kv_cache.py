"""NumPy twin of `GPT.step`: incremental decoding with a key/value cache, in float64.

Why a cache works: in a causal decoder the keys and values of position s depend only on tokens
0..s, so once computed they never change. To continue a text by T_new tokens, run the new tokens
through every layer, and let their queries attend to the cached keys and values of the T_past
earlier tokens plus their own:

    per layer:  q, k, v = split(LN_1(x) W_attn^T + b_attn)          new tokens only: (B, nh, T_new, hs)
                K = concat(K_cache, k),  V = concat(V_cache, v)      (B, nh, T_past + T_new, hs)
                query i (absolute position T_past + i) sees keys 0 .. T_past + i
                x = x + Attention;  x = x + MLP(LN_2(x))
    logits = LN_f(x) W_head^T                                        (B, T_new, V)

The work per new token is one row per matrix product instead of a whole context. This twin
stops at block_size (the PyTorch model's re-fill policy past it is tested in the PyTorch tests);
it is checked against `gpt_forward` over the whole prefix and against `GPT.step`.
"""
from __future__ import annotations

import numpy as np

from minilm.reference.attention import attention_forward
from minilm.reference.embedding import sinusoidal_rows
from minilm.reference.gpt import _config
from minilm.reference.layernorm import layer_norm_forward
from minilm.reference.linear import linear_forward
from minilm.reference.mlp import mlp_forward
from minilm.reference.params import sub
from minilm.reference.rope import apply_rope_forward, rope_cos_sin


def gpt_step(idx: np.ndarray, p: dict, config, state: dict | None = None):
    """Feed idx (B, T_new) after the tokens whose keys and values are in `state`.

    p keyed like GPT.state_dict(). The state has GPT.step's format: None at the start of a text,
    else {"caches": one {"k": K, "v": V} per layer, each (B, nh, T_past, hs),
          "tokens": the (B, T_past) ids fed so far}.
    Returns (logits (B, T_new, V), the new state).
    """
    c = _config(config)
    idx = np.asarray(idx)  # (B, T_new)
    B, T_new = idx.shape
    T_past = 0 if state is None else state["tokens"].shape[1]
    if T_past + T_new > c.block_size:
        raise ValueError(f"{T_past} cached + {T_new} new tokens exceed block_size={c.block_size}")
    caches = [None] * c.n_layer if state is None else state["caches"]
    nh, hs = c.n_head, c.n_embd // c.n_head
    pos = np.arange(T_past, T_past + T_new)  # (T_new,) absolute positions of the new tokens
    x = p["wte.weight"][idx]  # (B, T_new, C)
    if c.pos_emb == "learned":
        x = x + p["wpe.weight"][pos]  # (B, T_new, C) + (T_new, C)
    elif c.pos_emb == "sinusoidal":
        x = x + sinusoidal_rows(pos, c.n_embd)  # (B, T_new, C) + (T_new, C)
    T_all = T_past + T_new
    allowed = np.tril(np.ones((T_new, T_all), dtype=bool), k=T_past)  # (T_new, T_all): key s <= T_past + i
    new_caches = []
    for i in range(c.n_layer):
        layer = sub(p, f"h.{i}")
        h, _ = layer_norm_forward(x, sub(layer, "ln_1"), c.layer_norm_eps)  # (B, T_new, C)
        qkv, _ = linear_forward(h, sub(layer, "attn.c_attn"))  # (B, T_new, 3C)
        q, k, v = (a.reshape(B, T_new, nh, hs).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=2))
        if c.pos_emb == "rope":  # rotate by the absolute positions, before caching k
            cos, sin = rope_cos_sin(pos, hs)  # (T_new, hs/2) each
            q, k = apply_rope_forward(q, cos, sin)[0], apply_rope_forward(k, cos, sin)[0]  # (B, nh, T_new, hs)
        if caches[i] is not None:
            k = np.concatenate([caches[i]["k"], k], axis=2)  # (B, nh, T_all, hs)
            v = np.concatenate([caches[i]["v"], v], axis=2)  # (B, nh, T_all, hs)
        new_caches.append({"k": k, "v": v})
        y, _ = attention_forward(q, k, v, allowed)  # (B, nh, T_new, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T_new, c.n_embd)  # (B, T_new, C)
        a, _ = linear_forward(y, sub(layer, "attn.c_proj"))  # (B, T_new, C)
        x = x + a
        h, _ = layer_norm_forward(x, sub(layer, "ln_2"), c.layer_norm_eps)  # (B, T_new, C)
        m, _ = mlp_forward(h, sub(layer, "mlp"), c.activation)  # (B, T_new, C)
        x = x + m
    x, _ = layer_norm_forward(x, sub(p, "ln_f"), c.layer_norm_eps)  # (B, T_new, C)
    head = {"weight": p["wte.weight"] if c.tie_weights else p["lm_head.weight"]}  # (V, C)
    logits, _ = linear_forward(x, head)  # (B, T_new, V)
    tokens = idx if state is None else np.concatenate([state["tokens"], idx], axis=1)  # (B, T_all)
    return logits, {"caches": new_caches, "tokens": tokens}
