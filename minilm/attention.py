"""Attention maps: the weights every head of a trained GPT gives each token of a text to the others.

    python -m minilm.attention --ckpt runs/demo/ckpt.pt --text "ROMEO: But soft" --out attn.png
    python -m minilm.attention --ckpt ... --text ... --out head.png --layer 1 --head 2   (zoom)

For layer l and head h the picture is the matrix of the attention equation itself,

    A[l, h] = softmax(q k^T / sqrt(hs), masked)       (T, T): row = query token, column = key token

computed by `minilm.layers.attention_weights`, the function the readable attention path calls,
on the very q and k the model's layer l computes for this text. Row t says how token t's output
mixes the values of the tokens it may see; each row sums to 1. A causal model (GPT) gives zeros
above the diagonal (a token never sees later ones); a bidirectional one (BERT's masked objective)
fills the whole square. The output is one PNG: a grid of heatmaps, one row per layer and one
column per head, with the text's characters (or tokens) along both axes.

Needs matplotlib (`pip install matplotlib`). The file is written atomically; an existing --out is
kept unless --overwrite is given.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from minilm.layers import allowed_keys, attention_weights


@torch.no_grad()
def attention_maps(model, idx: torch.Tensor, causal: bool = True) -> list[torch.Tensor]:
    """The attention weights of every layer: a list of n_layer tensors (B, nh, T, T).

    Runs the model's own forward, block by block; at each block the queries and keys are the
    layer's own (`qkv_heads` of its layer-normed input, RoPE included) and the weights come from
    `attention_weights`, the readable path's softmax(q k^T / sqrt(hs)) over the allowed keys.
    """
    model.eval()
    B, T = idx.shape
    pos = torch.arange(T, device=idx.device)  # (T,)
    allowed = allowed_keys(T, None, idx.device, causal)  # (T, T)
    x = model.embed(idx, pos)  # (B, T, C)
    maps = []
    for block in model.h:
        q, k, _ = block.attn.qkv_heads(block.ln_1(x), pos)  # (B, nh, T, hs) each
        maps.append(attention_weights(q, k, allowed))  # (B, nh, T, T)
        x = block(x, pos, None, causal)  # (B, T, C)
    return maps


def head_profile(maps: list[torch.Tensor], idx: torch.Tensor, boundary_ids) -> dict[str, torch.Tensor]:
    """Where each head puts its weight, averaged over the query positions of the texts in `idx`.

    maps: `attention_maps(model, idx, causal)`, n_layer tensors (B, nh, T, T); idx (B, T) token ids;
    boundary_ids: the ids of the tokens that end a word (space, newline). Returns four
    (n_layer, nh) tensors, each the mean over the batch and the queries t named:

        self[l, h]     = mean_t        A[l, h][t, t]
        previous[l, h] = mean_{t >= 1} A[l, h][t, t - 1]
        first[l, h]    = mean_{t >= 1} A[l, h][t, 0]
        boundary[l, h] = mean_{t: b(t) exists} A[l, h][t, b(t)],  b(t) = the last s < t with idx[s] a boundary

    (NaN where no query qualifies). The measures overlap: right after a space, b(t) = t - 1.
    """
    A = torch.stack(maps)  # (L, B, nh, T, T)
    L, B, nh, T, _ = A.shape
    nan = torch.full((L, nh), float("nan"), dtype=A.dtype)
    self_weight = A.diagonal(dim1=-2, dim2=-1).mean(dim=(1, 3))  # (L, nh)
    previous = A.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(1, 3)) if T > 1 else nan  # (L, nh)
    first = A[..., 1:, 0].mean(dim=(1, 3)) if T > 1 else nan  # (L, nh)
    positions = torch.arange(T).expand(B, T)  # (B, T)
    is_boundary = torch.isin(idx.cpu(), torch.tensor(sorted(boundary_ids), dtype=idx.dtype))  # (B, T)
    last_upto = torch.where(is_boundary, positions, -1).cummax(dim=1).values  # (B, T): last boundary <= t
    last_before = torch.cat([torch.full((B, 1), -1), last_upto[:, :-1]], dim=1)  # (B, T): last boundary < t
    valid = last_before >= 0  # (B, T)
    index = last_before.clamp(min=0).view(1, B, 1, T, 1).expand(L, B, nh, T, 1)  # (L, B, nh, T, 1)
    on_boundary = A.cpu().gather(-1, index).squeeze(-1)  # (L, B, nh, T): A[t, b(t)]
    count = int(valid.sum())
    boundary = (on_boundary * valid.view(1, B, 1, T)).sum(dim=(1, 3)) / count if count else nan  # (L, nh)
    return {"self": self_weight.cpu(), "previous": previous.cpu(), "first": first.cpu(), "boundary": boundary.cpu()}


def token_label(data: bytes) -> str:
    """How one token is written on an axis: its text, with a space as '␣', a newline as '\\n',
    and bytes that are not (yet) a whole UTF-8 character as \\xNN escapes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in data)
    return text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def draw_maps(maps: list, labels: list[str], layers: list[int], heads: list[int], out: Path,
              title: str) -> None:
    """A grid of heatmaps (rows: layers, columns: heads) written to `out` as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(labels)
    cell = max(2.2, 0.16 * T + 0.8)  # inches per heatmap: room for the labels of long texts
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(cell * len(heads), cell * len(layers)),
                             squeeze=False)
    font = max(4.0, min(9.0, 160.0 / T))
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            ax = axes[i][j]
            ax.imshow(maps[layer][0, head].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            ax.set_xticks(range(T), labels, fontsize=font, rotation=90)
            ax.set_yticks(range(T), labels, fontsize=font)
            if i == len(layers) - 1:
                ax.set_xlabel("key (the token looked at)", fontsize=8)
            if j == 0:
                ax.set_ylabel("query (the token looking)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def causal_of(checkpoint: dict) -> bool:
    """Whether the checkpoint's model was trained causal: False only for a masked-LM-only model."""
    objective = checkpoint.get("objective") or (checkpoint.get("train_config") or {}).get("objective")
    return objective != "mlm"


def main(argv=None) -> int:
    from minilm.checkpoint import load_model
    from minilm.cli import OneLineErrorParser, UserError
    from minilm.gpt import GPT

    parser = OneLineErrorParser(prog="python -m minilm.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a GPT checkpoint written by train.py")
    parser.add_argument("--text", required=True, help="the text to look at (at most the model's block_size tokens)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--layer", type=int, default=None, help="draw only this layer (0-based; default: all)")
    parser.add_argument("--head", type=int, default=None, help="draw only this head (0-based; default: all)")
    parser.add_argument("--attention", choices=("causal", "bidirectional"), default=None,
                        help="the mask to apply (default: the checkpoint's, causal unless it is masked-LM only)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise UserError(f"--out: {str(out)!r} exists; give --overwrite to replace it")
        if not out.parent.is_dir():
            raise UserError(f"--out: the folder {str(out.parent)!r} does not exist")
        if args.text == "":
            raise UserError("--text: the text is empty; expected at least one character")
        model, tokenizer, checkpoint = load_model(args.ckpt, "cpu")
        if not isinstance(model, GPT):
            raise UserError(f"--ckpt: {args.ckpt!r} holds a {type(model).__name__}; expected a GPT (attention maps "
                            f"need attention)")
        ids = tokenizer.encode(args.text)
        T, block_size = len(ids), model.config.block_size
        if T > block_size:
            raise UserError(f"--text: {T} tokens, longer than the model's context of block_size={block_size} tokens")
        n_layer, n_head = model.config.n_layer, model.config.n_head
        if args.layer is not None and not 0 <= args.layer < n_layer:
            raise UserError(f"--layer: expected 0 .. {n_layer - 1} (the model has {n_layer} layers), got {args.layer}")
        if args.head is not None and not 0 <= args.head < n_head:
            raise UserError(f"--head: expected 0 .. {n_head - 1} (the model has {n_head} heads), got {args.head}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("matplotlib is not installed; expected it for drawing (pip install matplotlib)") from None
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    causal = causal_of(checkpoint) if args.attention is None else args.attention == "causal"
    maps = attention_maps(model, torch.tensor([ids]), causal)
    labels = [token_label(tokenizer.token_bytes(i)) for i in ids]
    layers = list(range(n_layer)) if args.layer is None else [args.layer]
    heads = list(range(n_head)) if args.head is None else [args.head]
    mode = "causal" if causal else "bidirectional"
    draw_maps(maps, labels, layers, heads, out, f"{Path(args.ckpt).name}: {mode} attention weights over {T} tokens")
    print(f"wrote {out} ({len(layers)} layer(s) x {len(heads)} head(s), {T} tokens, {mode})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
