"""Experiment: mixed-domain training.

One GPT trained on all domains at once, with the specialists' budget, for each weighting of the
domains ("equal", or "proportional" to the training split's size); scored on every domain and
compared with the column's specialist (the price of generality) and with the other specialists
(the gain). Jobs: one model per weighting (seed 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table

KINDS = ("equal", "proportional")


def mixture_weights(grid: Grid, kind: str) -> dict[str, float]:
    """Share of batch rows per domain: "equal", or "proportional" to the training split's size."""
    sizes = {name: d.train_bytes for name, d in grid.domains.items()}
    if kind == "equal":
        return {name: 1.0 / len(sizes) for name in sizes}
    total = sum(sizes.values())
    return {name: size / total for name, size in sizes.items()}


def jobs(grid: Grid) -> list[Job]:
    def mixed(kind: str) -> Job:
        def run(grid: Grid):
            weights = mixture_weights(grid, kind)
            first, others = grid.names[0], grid.names[1:]
            mix = {grid.domains[name].spec: weights[name] for name in others}  # the first domain gets the rest
            trained = grid.train(grid.train_config(first, seed=0, mix=mix))
            return {"weights": weights, "bpb": grid.score_all(trained.model)}, trained

        return Job(f"mixing.{kind}", f"mixed ({kind} weights)", run)

    return [mixed(kind) for kind in KINDS]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names = grid.names
    section = {"weights": {}, "bpb": {}, "price_vs_specialist": {}, "gain_vs_off_domain": {}, "beyond_spread": {}}
    for kind in KINDS:
        result = parts[f"mixing.{kind}"]["result"]
        bpb = result["bpb"]
        section["weights"][kind] = result["weights"]
        section["bpb"][kind] = bpb
        section["price_vs_specialist"][kind] = {e: bpb[e] - report["matrix"][e][e] for e in names}
        section["gain_vs_off_domain"][kind] = {
            e: float(np.mean([report["matrix"][t][e] for t in names if t != e])) - bpb[e] for e in names}
        section["beyond_spread"][kind] = {
            e: not (report["min"][e][e] <= bpb[e] <= report["max"][e][e]) for e in names}
    return {"mixing": section}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    seeds = report["config"]["seeds"]
    mix = report["mixing"]
    out = []
    say = out.append
    say(f"## {number}. Mixed-domain training (same budget, seed 0)\n")
    rows = [["in-domain specialist"] + [fmt(report["matrix"][e][e]) for e in names]
            + [fmt(np.mean([report["matrix"][e][e] for e in names]))]]
    for kind in KINDS:
        bpb = mix["bpb"][kind]
        rows.append([f"mixed, {kind} weights"] + [fmt(bpb[e]) for e in names] + [fmt(np.mean(list(bpb.values())))])
    if "ngram" in report:
        counted = report["ngram"]["specialist"]
        rows.append([f"KN {report['ngram']['order']}-gram (in-domain)"] + [fmt(counted[e]) for e in names]
                    + [fmt(np.mean([counted[e] for e in names]))])
    off = {e: float(np.mean([report["matrix"][t][e] for t in names if t != e])) for e in names}
    rows.append(["other specialists (mean)"] + [fmt(off[e]) for e in names] + [fmt(np.mean(list(off.values())))])
    say(markdown_table(["model \\ evaluated on"] + names + ["mean"], rows) + "\n")
    if "mixing.png" in figures:
        say("![mixing vs specialists](mixing.png)\n")
    say("Weights (share of batch rows): " + "; ".join(
        f"{kind}: " + ", ".join(f"{n} {w:.2f}" for n, w in mix["weights"][kind].items())
        for kind in mix["weights"]) + ".\n")
    for kind in KINDS:
        price = mix["price_vs_specialist"][kind]
        gain = mix["gain_vs_off_domain"][kind]
        outside = [e for e in names if mix["beyond_spread"][kind][e]]
        say(f"- {kind} weights: costs {np.mean(list(price.values())):+.3f} bits per byte against the specialist "
            f"on average (from {min(price.values()):+.3f} to {max(price.values()):+.3f}); gains "
            f"{np.mean(list(gain.values())):.3f} against the average other specialist. "
            + (f"Outside the specialist's seed range in {len(outside)} of {len(names)} columns." if seeds > 1 else ""))
    say("")
    return "\n".join(out)


FIGURES = ("mixing.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    names = list(report["domains"])
    mix = report["mixing"]
    written = []
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.6))
    x = np.arange(len(names))
    bars = [("in-domain specialist", [report["matrix"][e][e] for e in names]),
            ("mixed, equal", [mix["bpb"]["equal"][e] for e in names]),
            ("mixed, proportional", [mix["bpb"]["proportional"][e] for e in names])]
    width = 0.8 / len(bars)
    for k, (label, values) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("bits per byte")
    ax.set_title("one model for all domains vs one per domain (same budget)")
    ax.legend(fontsize=8)
    save(fig, plt, out_dir, "mixing.png", written)
    return written
