"""Experiment: LSTM vs Transformer at a matched parameter count and token budget.

An LSTM (embedding = the GPT's width, hidden size chosen so that its parameter count matches the
GPT's) is trained on domain A (the transfer pair's first) with the GPT's budget. Both are scored in
and off domain, and by position in the context over many windows of A's held-out split: position p
has seen p bytes before the one it predicts, so the curve shows how much each model uses context.
Jobs: the LSTM, and scoring A's seed-0 GPT specialist by position (no training).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from minilm.data import load_corpus
from minilm.metrics import LN2, evaluate
from minilm.training import make_eval_set

from ..config import MismatchConfig
from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table
from .matrix import specialist_key


def matched_lstm_args(config: MismatchConfig, target_params: int) -> dict:
    """LSTM settings (embedding = the GPT's width) whose hidden size gives the parameter count
    closest to `target_params`, found by bisection (the count grows with the hidden size)."""
    from minilm.lstm import LSTMLM, LSTMConfig

    def count(hidden: int) -> int:
        return LSTMLM(LSTMConfig(n_embd=config.n_embd, n_hidden=hidden, n_layer=config.lstm_layers)).num_params()

    low, high = 1, 8 * config.n_embd
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) <= target_params else (low, middle)
    hidden = min((low, high), key=lambda h: abs(count(h) - target_params))
    return dict(n_layer=config.lstm_layers, n_embd=config.n_embd, n_hidden=hidden, dropout=0.0)


def gpt_params(grid: Grid) -> int:
    """The parameter count of the grid's GPT, from its shapes alone (no weights allocated)."""
    with torch.device("meta"):
        return grid.build(grid.train_config(grid.names[0], seed=0)).num_params()


def position_buckets(block_size: int) -> list[tuple[int, int]]:
    """Ranges of positions that double in length: [0,1), [1,2), [2,4), [4,8), ... up to block_size.
    Averaging over a range steadies the curve; doubling matches how fast the loss falls."""
    buckets, low = [(0, 1)], 1
    while low < block_size:
        buckets.append((low, min(2 * low, block_size)))
        low *= 2
    return buckets


def bucket_index(buckets: list[tuple[int, int]], position: int) -> int:
    return next(i for i, (lo, hi) in enumerate(buckets) if lo <= position < hi)


def flattening_position(by_bucket: list[float], buckets: list[tuple[int, int]], within: float = 0.02) -> int:
    """Where the loss stops falling: the first position of the first range of positions whose mean
    loss is within `within` (relative) of the last range's mean."""
    final = by_bucket[-1]
    for (low, _), value in zip(buckets, by_bucket, strict=True):
        if abs(value - final) <= within * final:
            return low
    return buckets[-1][0]


def describe(grid: Grid, model: torch.nn.Module, domain: str) -> dict:
    """Bits per byte on every domain, and by position in the context on `domain`."""
    c = grid.config
    corpus = load_corpus(grid.domains[domain].spec, grid.tokenizer)
    position_set = make_eval_set(corpus, grid.tokenizer, c.block_size, c.position_windows)
    buckets = position_buckets(c.block_size)
    device = next(model.parameters()).device
    nats = evaluate(model, position_set.windows, grid.tokenizer, batch_size=64, device=device,
                    num_bytes=position_set.num_bytes).loss_by_position
    bits = [n / LN2 for n in nats]  # one byte per position: bits per byte
    by_bucket = [float(np.mean(bits[lo:hi])) for lo, hi in buckets]
    bpb = grid.score_all(model)
    return {"params": model.num_params(), "bpb": bpb, "in_domain": bpb[domain],
            "off_domain_mean": float(np.mean([v for name, v in bpb.items() if name != domain])),
            "bits_by_position": bits, "bits_by_bucket": by_bucket,
            "flattens_at": flattening_position(by_bucket, buckets),
            "gain_after_8": by_bucket[bucket_index(buckets, 8)] - by_bucket[-1] if c.block_size > 16 else None,
            "position_windows": int(position_set.windows.shape[0])}


def jobs(grid: Grid) -> list[Job]:
    domain = grid.pair[0]

    def lstm(grid: Grid):
        lstm_args = matched_lstm_args(grid.config, gpt_params(grid))
        trained = grid.train(grid.train_config(domain, seed=0, model="lstm", model_args=lstm_args))
        return dict(describe(grid, trained.model, domain), lstm_args=lstm_args), trained

    def gpt(grid: Grid):
        return describe(grid, grid.model(specialist_key(domain)), domain), None

    return [Job("lstm_vs_gpt.lstm", f"LSTM on {domain}", lstm),
            Job("lstm_vs_gpt.gpt", f"GPT on {domain} by position", gpt, after=(specialist_key(domain),), trains=False)]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    domain = grid.pair[0]
    models = {kind: dict(parts[f"lstm_vs_gpt.{kind}"]["result"]) for kind in ("gpt", "lstm")}
    lstm_args = models["lstm"].pop("lstm_args")
    windows = models["gpt"]["position_windows"]
    for model in models.values():
        del model["position_windows"]
    return {"lstm_vs_gpt": {"domain": domain, "lstm_args": lstm_args, "position_windows": windows,
                            "position_buckets": position_buckets(grid.config.block_size), "models": models}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    lg = report["lstm_vs_gpt"]
    d = lg["domain"]
    out = []
    say = out.append
    say(f"## {number}. LSTM vs Transformer, trained on {d} (seed 0, same budget)\n")
    header = ["model", "parameters", f"in-domain ({d})", "off-domain mean"] + names
    rows = []
    for kind in ("gpt", "lstm"):
        r = lg["models"][kind]
        rows.append([kind.upper(), f"{r['params']:,}", fmt(r["in_domain"]), fmt(r["off_domain_mean"])]
                    + [fmt(r["bpb"][e]) for e in names])
    if "ngram" in report:
        counted = report["ngram"]["matrix"][d]
        off = float(np.mean([counted[e] for e in names if e != d]))
        rows.append([f"KN {report['ngram']['order']}-gram", "(counts)", fmt(counted[d]), fmt(off)]
                    + [fmt(counted[e]) for e in names])
    say(markdown_table(header, rows) + "\n")
    buckets = lg["position_buckets"]
    rows = [[kind.upper()] + [fmt(v, 2) for v in lg["models"][kind]["bits_by_bucket"]] for kind in ("gpt", "lstm")]
    say(f"Bits per byte by position in the context ({d}, {lg['position_windows']:,} validation windows; position p "
        "has seen p bytes before the one it predicts; each column averages a range of positions):\n")
    say(markdown_table(["model \\ positions"] + [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in buckets],
                       rows) + "\n")
    gains = {kind: lg["models"][kind]["gain_after_8"] for kind in ("gpt", "lstm")}
    if gains["gpt"] is not None:
        say(f"- Context beyond 8 bytes is worth {gains['gpt']:.3f} bits per byte to the GPT and {gains['lstm']:.3f} "
            "to the LSTM (positions 8-15 minus the last range).")
    say(f"- The loss flattens (comes within 2% of the last range) at position {lg['models']['gpt']['flattens_at']} "
        f"for the GPT and {lg['models']['lstm']['flattens_at']} for the LSTM.\n")
    if "loss_by_position.png" in figures:
        say("![loss by position](loss_by_position.png)\n")
    say(f"LSTM: {lg['lstm_args']['n_layer']} layer(s), embedding {lg['lstm_args']['n_embd']}, hidden "
        f"{lg['lstm_args']['n_hidden']} (chosen to match the GPT's parameter count).\n")
    return "\n".join(out)


FIGURES = ("loss_by_position.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    lg = report["lstm_vs_gpt"]
    written = []
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for kind in ("gpt", "lstm"):
        r = lg["models"][kind]
        line, = ax.plot(r["bits_by_position"], alpha=0.35)
        middles = [(lo + hi - 1) / 2 for lo, hi in lg["position_buckets"]]
        ax.plot(middles, r["bits_by_bucket"], marker="o", color=line.get_color(),
                label=f"{kind.upper()} ({r['params']:,} parameters), range means")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("position in the context (bytes seen before)")
    ax.set_ylabel("bits per byte")
    ax.set_title(f"loss by position on {lg['domain']}")
    ax.legend()
    save(fig, plt, out_dir, "loss_by_position.png", written)
    return written
