"""Experiment: a counting baseline, the interpolated Kneser-Ney n-gram (`minilm.ngram`).

For each domain an n-gram of order `ngram_order` is counted on the domain's training split (its
first `ngram_train_bytes` bytes when that is set) and scored on exactly the bytes the neural models
are scored on: the targets of the grid's fixed evaluation windows, each window on its own, so a byte
has as context only the bytes before it in the same window. For a window w of T + 1 bytes that is
`lm.nats(w, start=1)`: T predictions, the first with one byte of context.

From the n-gram's own cross-domain matrix and the GPT's: neural / n-gram per domain (below 1, the
network beats counting), and how the off-domain costs (cell / its column's specialist) of the two
kinds of model differ. Jobs: one n-gram per domain (no neural model).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from minilm.data import load_corpus
from minilm.metrics import LN2

from ..figures import ratio_heatmap, save
from ..grid import Grid, Job
from ..report import fmt, markdown_table, matrix_table
from ..stats import spearman


def window_bits_per_byte(lm, windows: np.ndarray) -> float:
    """Bits per byte of `lm` on the targets of `windows` (W, T+1), each window scored on its own."""
    nats = sum(float(lm.nats(window, start=1).sum()) for window in windows)
    return nats / LN2 / (windows.shape[0] * (windows.shape[1] - 1))


def jobs(grid: Grid) -> list[Job]:
    def counted(name: str) -> Job:
        def run(grid: Grid):
            from minilm.ngram import KneserNeyLM

            c = grid.config
            train = np.asarray(load_corpus(grid.domains[name].spec, grid.tokenizer).train)
            if c.ngram_train_bytes:
                train = train[:c.ngram_train_bytes]
            started = time.perf_counter()
            lm = KneserNeyLM(c.ngram_order, vocab_size=grid.tokenizer.vocab_size).fit(train)
            fitted = time.perf_counter()
            bpb = {e: window_bits_per_byte(lm, grid.domains[e].eval_set.windows.numpy()) for e in grid.names}
            return {"bpb": bpb, "train_bytes": int(len(train)), "fit_seconds": fitted - started,
                    "score_seconds": time.perf_counter() - fitted}, None

        return Job(f"ngram.{name}", f"Kneser-Ney {grid.config.ngram_order}-gram on {name}", run, trains=False)

    return [counted(name) for name in grid.names]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names = grid.names
    results = {t: parts[f"ngram.{t}"]["result"] for t in names}
    counts = {t: results[t]["bpb"] for t in names}
    ratio = {t: {e: counts[t][e] / counts[e][e] for e in names} for t in names}
    neural = report["matrix"]
    pairs = [(t, e) for t in names for e in names if t != e]
    compare = {"pairs": len(pairs),
               "mean_off_domain_ratio_gpt": float(np.mean([report["ratio"][t][e] for t, e in pairs])),
               "mean_off_domain_ratio_ngram": float(np.mean([ratio[t][e] for t, e in pairs])),
               "cells_where_ngram_pays_more": sum(ratio[t][e] > report["ratio"][t][e] for t, e in pairs),
               "spearman_off_domain_ratio": spearman([ratio[t][e] for t, e in pairs],
                                                     [report["ratio"][t][e] for t, e in pairs])
               if len(pairs) >= 3 else None}
    return {"ngram": {
        "order": grid.config.ngram_order, "train_bytes": {t: results[t]["train_bytes"] for t in names},
        "matrix": counts, "ratio": ratio,
        "specialist": {e: counts[e][e] for e in names},
        "neural_over_ngram": {e: neural[e][e] / counts[e][e] for e in names},
        "compare": compare}}


def label(report: dict) -> str:
    """How the tables of other sections name the baseline."""
    return f"KN {report['ngram']['order']}-gram (in-domain)"


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    ng = report["ngram"]
    n = ng["order"]
    cmp = ng["compare"]
    out = []
    say = out.append
    say(f"## {number}. Counting baseline: a Kneser-Ney {n}-gram per domain\n")
    capped = [t for t in names if ng["train_bytes"][t] < report["domains"][t]["train_bytes"]]
    say(f"An interpolated Kneser-Ney {n}-gram (`minilm.ngram`) counted on each domain's training split"
        + (f" (its first {min(ng['train_bytes'].values()):,} bytes at most)" if capped else "")
        + ", scored on the same evaluation windows as the neural models, each window on its own.\n")
    rows = [[e, fmt(report["matrix"][e][e]), fmt(ng["specialist"][e]), fmt(ng["neural_over_ngram"][e], 2)]
            for e in names]
    say(markdown_table(["domain", "GPT specialist", f"KN {n}-gram", "GPT / n-gram"], rows) + "\n")
    beaten = [e for e in names if ng["neural_over_ngram"][e] < 1.0]
    say(f"- The GPT specialist beats counting on {len(beaten)} of {len(names)} domains"
        + (f" ({', '.join(beaten)})" if beaten and len(beaten) < len(names) else "") + "; "
        + "GPT / n-gram ranges from " + f"{min(ng['neural_over_ngram'].values()):.2f} to "
        f"{max(ng['neural_over_ngram'].values()):.2f} (below 1: the network is better).\n")
    say("The n-gram's own cross-domain matrix (bits per byte; rows: counted on, columns: scored on):\n")
    say(matrix_table(ng["matrix"], names, bold_min=True) + "\n")
    say("Off-domain cost, each cell / its column's specialist: the GPT's (left of the slash) and the n-gram's:\n")
    both = {t: {e: f"{report['ratio'][t][e]:.2f} / {ng['ratio'][t][e]:.2f}" for e in names} for t in names}
    say(markdown_table(["trained on \\ evaluated on"] + names, [[t] + [both[t][e] for e in names] for t in names])
        + "\n")
    if "ngram_matrix.png" in figures:
        say("![GPT and n-gram off-domain costs](ngram_matrix.png)\n")
    more = "more" if cmp["mean_off_domain_ratio_ngram"] > cmp["mean_off_domain_ratio_gpt"] else "less"
    sentence = (f"- Off domain, counting pays {more} than the GPT: on average "
                f"x{cmp['mean_off_domain_ratio_ngram']:.2f} its specialist against the GPT's "
                f"x{cmp['mean_off_domain_ratio_gpt']:.2f}, and more than the GPT "
                f"in {cmp['cells_where_ngram_pays_more']} of {cmp['pairs']} off-diagonal cells")
    if cmp["spearman_off_domain_ratio"] is not None:
        sentence += (f"; the two models rank the pairs alike (Spearman {cmp['spearman_off_domain_ratio']:.2f} "
                     "between their off-domain costs)" if cmp["spearman_off_domain_ratio"] > 0.5 else
                     f"; they rank the pairs differently (Spearman {cmp['spearman_off_domain_ratio']:.2f})")
    say(sentence + ".\n")
    return "\n".join(out)


FIGURES = ("ngram_matrix.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    names = list(report["domains"])
    ng = report["ngram"]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * len(names) + 5, 0.9 * len(names) + 2.4))
    top = max(max(row.values()) for table in (report["ratio"], ng["ratio"]) for row in table.values())
    ratio_heatmap(fig, axes[0], report["ratio"], names, "GPT: cell / column's specialist", vmax=top)
    ratio_heatmap(fig, axes[1], ng["ratio"], names, f"KN {ng['order']}-gram: cell / column's specialist", vmax=top)
    save(fig, plt, out_dir, "ngram_matrix.png", written)
    return written
