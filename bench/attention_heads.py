"""Where each head of a trained GPT puts its attention weight, in numbers beside the picture.

    python bench/attention_heads.py --ckpt runs/demo/ckpt.pt --text "ROMEO: ..." --data shakespeare

For every layer and head, `minilm.attention.head_profile` of the maps `minilm.attention` draws
(the same `attention_maps` call): the mean weight a query puts on itself, on the token just
before it, on the first token, on the last space or newline before it ("boundary") and on the last
newline before it ("line", the start of the query's line). Two averages:

1. over the queries of --text, the text of the picture;
2. over the queries of --windows validation windows of --data (minilm.data.load_corpus's split,
   minilm.data.validation_windows' evenly spaced windows of block_size tokens), so that a pattern
   read off one text can be checked against text the model was not trained on.

Beside them, what a head that spreads its weight evenly over the visible tokens would score on
the same queries (causal: 1 / (t + 1) on each key), the baseline a pattern has to beat.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from minilm.attention import attention_maps, causal_of, head_profile  # noqa: E402
from minilm.checkpoint import load_model  # noqa: E402
from minilm.data import load_corpus, validation_windows  # noqa: E402

MEASURES = ("self", "previous", "first", "boundary", "line")


def uniform_maps(n_layer: int, n_head: int, B: int, T: int, causal: bool) -> list[torch.Tensor]:
    """Maps of heads that spread their weight evenly over the keys they may see: n_layer (B, nh, T, T)."""
    allowed = torch.ones(T, T).tril() if causal else torch.ones(T, T)  # (T, T)
    A = (allowed / allowed.sum(-1, keepdim=True)).expand(B, n_head, T, T)  # (B, nh, T, T)
    return [A] * n_layer


def profile(maps: list[torch.Tensor], idx: torch.Tensor, boundary_ids: set[int], newline_ids: set[int]) -> dict:
    """head_profile's measures, plus "line": its boundary measure with only the newline as a boundary."""
    measures = head_profile(maps, idx, boundary_ids)
    measures["line"] = head_profile(maps, idx, newline_ids)["boundary"]
    return measures


def print_table(title: str, profile: dict, baseline: dict) -> None:
    print(f"\n{title}")
    print("layer head | " + " ".join(f"{m:>8}" for m in MEASURES))
    L, nh = profile["self"].shape
    for layer in range(L):
        for head in range(nh):
            print(f"{layer:5d} {head:4d} | " + " ".join(f"{profile[m][layer, head].item():8.3f}" for m in MEASURES))
    print("   uniform | " + " ".join(f"{baseline[m][0, 0].item():8.3f}" for m in MEASURES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--text", required=True, help="the picture's text (at most block_size tokens)")
    parser.add_argument("--data", default="shakespeare", help="the corpus whose validation split to average over")
    parser.add_argument("--windows", type=int, default=64, help="validation windows to average over")
    parser.add_argument("--boundaries", default=" \n", help="the characters that count as word boundaries")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer, checkpoint = load_model(args.ckpt, "cpu")
    causal = causal_of(checkpoint)
    L, nh, T = model.config.n_layer, model.config.n_head, model.config.block_size
    boundary_ids = {i for c in args.boundaries for i in tokenizer.encode(c)}
    newline_ids = set(tokenizer.encode("\n"))
    print(f"machine: {platform.machine()}, {platform.system()}; torch threads 1; checkpoint {args.ckpt}; "
          f"{'causal' if causal else 'bidirectional'}; boundaries {sorted(boundary_ids)}")

    idx = torch.tensor([tokenizer.encode(args.text)])  # (1, T_text)
    measured = profile(attention_maps(model, idx, causal), idx, boundary_ids, newline_ids)
    baseline = profile(uniform_maps(L, nh, 1, idx.shape[1], causal), idx, boundary_ids, newline_ids)
    print_table(f"1. over the {idx.shape[1]} queries of --text {args.text!r}", measured, baseline)

    corpus = load_corpus(args.data, tokenizer)
    windows = validation_windows(corpus.val, T, args.windows)[:, :T]  # (N, T)
    measured = profile(attention_maps(model, windows, causal), windows, boundary_ids, newline_ids)
    baseline = profile(uniform_maps(L, nh, len(windows), T, causal), windows, boundary_ids, newline_ids)
    print_table(f"2. over {len(windows)} validation windows of {T} tokens of {corpus.name}", measured, baseline)


if __name__ == "__main__":
    main()
