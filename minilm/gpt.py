"""A GPT-style decoder-only Transformer language model, built from `minilm.layers`.

How a token flows through the model (B sequences of T token ids):

    idx (B, T) --wte--> token vectors (B, T, C)
               + position vectors (learned / sinusoidal; RoPE instead rotates q and k)
               -> n_layer x Block: x += Attention(LN(x)); x += MLP(LN(x))
               -> final LayerNorm -> lm_head (tied to wte) -> logits (B, T, V)
    loss = mean over positions of -log softmax(logits)[target]   (nats per token)

The attention is causal (position t sees positions <= t: GPT); `forward(..., causal=False)` lets
every position see the whole text (BERT's bidirectional attention) with the same weights.

The NumPy twin of this whole model is `minilm.reference.gpt`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.cli import UserError, config_from_dict, validate_config
from minilm.gpt_decoder import GPTDecoder
from minilm.layers import ACTIVATIONS, Block, LayerNorm, LearnedPositionEmbedding, SinusoidalPositionEmbedding

POSITION_SCHEMES = ("learned", "sinusoidal", "rope", "none")
KERNELS = ("fused", "readable")
# The field `kernels` was called `attn_impl` before; checkpoints that carry the old name still load.
OLD_ATTN_IMPL = {"fast": "fused", "readable": "readable"}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass
class GPTConfig:
    """Sizes and choices of a GPT. Every field is checked when the config is made."""

    vocab_size: int = 256  # 256 = raw bytes; a BPE tokenizer sets its own
    block_size: int = 128  # longest context, in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # C, the width of the residual stream
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms
    pos_emb: str = "learned"  # one of POSITION_SCHEMES
    activation: str = "gelu_tanh"  # one of minilm.layers.ACTIVATIONS
    kernels: str = "fused"  # "fused": layer norm, attention and GELU as single PyTorch kernels;
    #                         "readable": every step of them written out (line for line with the twins)
    tie_weights: bool = True  # lm_head shares its matrix with the token embedding
    layer_norm_eps: float = 1e-5

    RULES = {
        "vocab_size": ("int", 1), "block_size": ("int", 1), "n_layer": ("int", 1), "n_head": ("int", 1),
        "n_embd": ("int", 1), "mlp_ratio": ("int", 1), "dropout": ("number", 0.0, 1.0), "bias": ("bool",),
        "pos_emb": ("choice", POSITION_SCHEMES), "activation": ("choice", tuple(ACTIVATIONS)),
        "kernels": ("choice", KERNELS), "tie_weights": ("bool",), "layer_norm_eps": ("open_number", 0.0, None),
    }

    def __post_init__(self):
        validate_config(self, self.RULES)
        _require(self.dropout < 1.0, f"GPTConfig.dropout: expected a number in [0, 1), got {self.dropout!r}")
        _require(self.n_embd % self.n_head == 0,
                 f"GPTConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        head_size = self.n_embd // self.n_head
        _require(self.pos_emb != "rope" or head_size % 2 == 0,
                 f"GPTConfig.pos_emb='rope' needs an even head size, but n_embd/n_head = {head_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """The inverse of to_dict. A dict written before `kernels` had its name carries `attn_impl`
        ("fast" or "readable") instead: it is read as kernels "fused" or "readable"."""
        if isinstance(d, dict) and "attn_impl" in d:
            _require("kernels" not in d, "GPTConfig: got both attn_impl (the old name) and kernels; give kernels only")
            old = d["attn_impl"]
            _require(old in OLD_ATTN_IMPL, f"GPTConfig.attn_impl: expected one of {tuple(OLD_ATTN_IMPL)}, got {old!r}")
            d = {**{k: v for k, v in d.items() if k != "attn_impl"}, "kernels": OLD_ATTN_IMPL[old]}
        return config_from_dict(cls, d)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)  # (V, C)
        if c.pos_emb == "learned":
            self.wpe = LearnedPositionEmbedding(c.block_size, c.n_embd)  # (block_size, C)
        elif c.pos_emb == "sinusoidal":
            self.wpe = SinusoidalPositionEmbedding(c.block_size, c.n_embd)  # fixed, no parameters
        else:
            self.wpe = None  # "rope" rotates q and k inside attention; "none" has no positions
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList(
            Block(c.n_embd, c.n_head, c.mlp_ratio * c.n_embd, c.activation, c.dropout, c.bias,
                  rope=c.pos_emb == "rope", fused=c.kernels == "fused", eps=c.layer_norm_eps)
            for _ in range(c.n_layer)
        )
        self.ln_f = LayerNorm(c.n_embd, bias=c.bias, eps=c.layer_norm_eps, fused=c.kernels == "fused")
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)  # (V, C)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix reads tokens in and writes them out
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and the projections that write
        into the residual stream (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2 * n_layer), so the
        variance of the residual stream does not grow with depth."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif name.startswith("ln_") or ".ln_" in name:
                nn.init.ones_(p)  # LayerNorm gains
            elif name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))
            else:
                nn.init.normal_(p, mean=0.0, std=0.02)

    # ------------------------------------------------------------------------------------------
    def _check_idx(self, idx: torch.Tensor, what: str = "idx") -> None:
        _require(idx.dim() == 2, f"{what} must have shape (B, T), got {tuple(idx.shape)}")
        _require(idx.shape[1] >= 1, f"{what} must hold at least one token per sequence (T >= 1)")
        # On CUDA this check would stall the GPU every step, and under torch.compile it would split
        # the graph in two; there the data is checked upstream (minilm.data) instead.
        if not idx.is_cuda and not torch.compiler.is_compiling():
            lo, hi = int(idx.min()), int(idx.max())
            V = self.config.vocab_size
            _require(lo >= 0 and hi < V,
                     f"{what} holds token ids in [{lo}, {hi}], outside the vocabulary [0, vocab_size={V})")

    def embed(self, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(pos).to(x.dtype)  # (B, T, C) + (T, C)
        return self.drop(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, causal: bool = True):
        """idx (B, T) token ids -> (logits (B, T, V), mean cross-entropy or None).

        targets (B, T): the ids to predict at each position, -1 where a position should not count
        (next tokens for a causal model; the original tokens at masked positions for BERT's loss).
        attention_mask (B, T): optional padding mask, True/1 = real token.
        causal=True: position t sees only positions <= t (GPT). causal=False: every position sees
        the whole text (BERT's bidirectional attention), with the same weights.
        """
        self._check_idx(idx)
        B, T = idx.shape
        _require(attention_mask is None or tuple(attention_mask.shape) == (B, T),
                 f"attention_mask must have the shape of idx {(B, T)}, got "
                 f"{None if attention_mask is None else tuple(attention_mask.shape)}")
        _require(T <= self.config.block_size,
                 f"idx has {T} tokens per sequence, more than block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.embed(idx, pos)  # (B, T, C)
        for block in self.h:
            x = block(x, pos, attention_mask, causal)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            flat = logits.view(B * T, -1)  # (B*T, V)
            if flat.dtype in (torch.float16, torch.bfloat16):  # under autocast: softmax in float32
                flat = flat.float()
            loss = F.cross_entropy(flat, targets.reshape(B * T), ignore_index=-1)
        return logits, loss

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, idx: torch.Tensor, state: dict | None = None):
        """Incremental decoding with a KV cache: feed idx (B, T_new) after the tokens in `state`.

        Returns (logits (B, T_new, V), new state); the logits equal those of a full forward over
        all the tokens fed so far. State: {"caches": one {"k","v"} per layer, "tokens": (B, T_past)}.

        Beyond block_size (the policy): when the new tokens do not fit, the cache is dropped and
        re-filled from the last max(block_size // 2, T_new) tokens, which then sit at positions
        0, 1, ... again. The logits are those of a full forward over that cropped context. Keeping
        only half a block means the next block_size // 2 tokens are again cheap cached steps.

        Call `model.eval()` first: in training mode dropout would make the logits random.
        The cache is causal by nature (a cached key never sees later tokens): `step` is the causal
        model's; a bidirectional (causal=False) model is read with `forward` only.
        """
        self._check_idx(idx)
        B, T_new = idx.shape
        block_size = self.config.block_size
        _require(T_new <= block_size, f"step got {T_new} new tokens, more than block_size={block_size}")
        if state is not None:
            _require(state["tokens"].shape[0] == B,
                     f"state holds a batch of {state['tokens'].shape[0]} sequences, idx has {B}")
            T_past = state["tokens"].shape[1]
            if T_past + T_new > block_size:  # re-fill from the cropped context
                context = torch.cat([state["tokens"], idx], dim=1)  # (B, T_past + T_new)
                keep = max(block_size // 2, T_new)
                logits, state = self.step(context[:, -keep:], None)
                return logits[:, -T_new:], state
            caches, tokens = state["caches"], state["tokens"]
        else:
            T_past, caches, tokens = 0, [None] * len(self.h), idx[:, :0]
        pos = torch.arange(T_past, T_past + T_new, device=idx.device)  # (T_new,)
        x = self.embed(idx, pos)  # (B, T_new, C)
        new_caches = []
        for block, cache in zip(self.h, caches, strict=True):
            x, cache = block.step(x, pos, cache)  # (B, T_new, C)
            new_caches.append(cache)
        logits = self.lm_head(self.ln_f(x))  # (B, T_new, V)
        return logits, {"caches": new_caches, "tokens": torch.cat([tokens, idx], dim=1)}

    def decoder(self) -> GPTDecoder:
        """The fast path of `step` for generation: a `GPTDecoder` (minilm/gpt_decoder.py), a
        snapshot of the weights laid out for one-token steps, with the same logits as `step`.
        `generate(..., decoder="fast")` uses it; `decoder="step"` runs `GPT.step` itself."""
        return GPTDecoder(self)

    @classmethod
    def from_hf(cls, name_or_dir) -> "GPT":
        """A GPT with the weights of a Hugging Face GPT-2 (a local folder, or a hub name where the
        hub is reachable); the mapping of names and the checks live in minilm/hf.py."""
        from minilm.hf import from_hf

        return from_hf(name_or_dir)[0]

    # ------------------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied matrix counted once). non_embedding=True leaves out the
        token and position tables (the count N used in the 6N FLOPs-per-token estimate); an
        untied lm_head is a real matrix multiply per token, so it counts as non-embedding."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if isinstance(self.wpe, LearnedPositionEmbedding):
                n -= self.wpe.weight.numel()
        return n

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on the matrices of Linear layers only; none on biases,
        LayerNorm gains, or the embedding tables (a tied lm_head is the embedding table)."""
        embedding_ids = {id(self.wte.weight)}
        if isinstance(self.wpe, LearnedPositionEmbedding):
            embedding_ids.add(id(self.wpe.weight))
        decay, no_decay = [], []
        for p in self.parameters():  # parameters() yields a tied tensor once
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and id(p) not in embedding_ids else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]
