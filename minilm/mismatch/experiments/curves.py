"""Experiment: generalisation along training. Is the mismatch pattern an artefact of under-training?

Each specialist of the matrix is scored on every domain at step 0 and at `curve_points` evenly
spaced steps (see matrix.py). For the model trained on t and a domain e != t, the curve plots its
off-domain bits per byte y (on e) against its in-domain bits per byte x (on t) along training, the
mean over seeds; a least-squares line y = slope * x + offset is fitted per pair. A constant offset
and a slope near 1 say that off-domain loss follows in-domain loss ("Scaling Laws for Neural
Language Models", 2020: generalisation to other distributions).

The pattern itself: the off-domain cost of a cell, cell[t][e] / cell[e][e] (the column's specialist
at the same step), compared between the evaluation nearest 25% of training and the end by the
Spearman rank correlation over the off-diagonal pairs: near 1, the ranking of which domains are far
apart is already there early and training does not change it. Jobs: none of its own.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import save
from ..grid import Grid
from ..report import fmt, markdown_table
from ..stats import spearman
from .matrix import specialist_key


def jobs(grid: Grid) -> list:
    return []  # the curves are recorded while the matrix's specialists train


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least squares y = slope * x + offset: (slope, offset)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)  # (P, 2)
    (slope, offset), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(slope), float(offset)


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names = grid.names
    seeds = grid.config.seeds
    curves = [[parts[specialist_key(t, s)]["result"]["curve"] for t in names] for s in range(seeds)]
    if any(curve is None for row in curves for curve in row):
        return {"curves": None}  # two domains' files share a name: training's scores cannot be told apart
    steps = curves[0][0]["step"]
    # mean[t][e]: the seeds' mean bits per byte of t's specialist on e, at every evaluation
    mean = {t: {e: np.mean([curves[s][i][e] for s in range(seeds)], axis=0).tolist() for e in names}
            for i, t in enumerate(names)}
    pairs = [(t, e) for t in names for e in names if t != e]
    fits = {t: {} for t in names}
    for t, e in pairs:
        slope, offset = fit_line(mean[t][t], mean[t][e])
        fits[t][e] = {"slope": slope, "offset": offset}

    def costs(k: int) -> dict:
        return {t: {e: mean[t][e][k] / mean[e][e][k] for e in names} for t in names}

    total = steps[-1]
    early = min(range(1, len(steps)), key=lambda k: abs(steps[k] - 0.25 * total)) if len(steps) > 1 else 0
    cost_early, cost_end = costs(early), costs(len(steps) - 1)
    rank = spearman([cost_early[t][e] for t, e in pairs], [cost_end[t][e] for t, e in pairs]) \
        if len(pairs) >= 3 else None
    return {"curves": {"step": steps, "bpb": mean, "fit": fits, "early_step": steps[early],
                       "cost_early": cost_early, "cost_end": cost_end, "spearman_early_vs_end": rank,
                       "windows": grid.config.curve_windows}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    cv = report["curves"]
    out = []
    say = out.append
    say(f"## {number}. Generalisation along training (mean over {report['config']['seeds']} seeds)\n")
    if cv is None:
        say("Two domains' files share a name, so training's scores along the way cannot be told apart; "
            "rename one to get these curves.\n")
        return "\n".join(out)
    say(f"Every specialist scored on every domain at steps {', '.join(str(s) for s in cv['step'])} "
        f"({cv['windows']} windows per domain). Per pair, off-domain bits per byte y against in-domain x "
        "along training, fitted by least squares y = slope * x + offset; the off-domain cost (cell / the "
        f"column's specialist at the same step) at step {cv['early_step']} (nearest 25% of training) and at "
        "the end.\n")
    rows = []
    for t in names:
        for e in names:
            if t != e:
                f = cv["fit"][t][e]
                rows.append([f"{t} -> {e}", fmt(f["slope"], 2), f"{f['offset']:+.2f}",
                             fmt(cv["cost_early"][t][e], 2), fmt(cv["cost_end"][t][e], 2)])
    say(markdown_table(["trained on -> scored on", "slope", "offset", f"cost at step {cv['early_step']}",
                        "cost at the end"], rows) + "\n")
    if "curves.png" in figures:
        say("![off-domain vs in-domain along training](curves.png)\n")
    slopes = [cv["fit"][t][e]["slope"] for t in names for e in names if t != e]
    say(f"- Slopes range from {min(slopes):.2f} to {max(slopes):.2f} (median {np.median(slopes):.2f}): "
        "1 means off-domain loss falls bit for bit with in-domain loss, at a constant offset.")
    rank = cv["spearman_early_vs_end"]
    if rank is None:
        say("- Too few off-diagonal pairs (or no spread) for a rank correlation of the costs.\n")
    else:
        say(f"- The rank correlation of the off-domain costs at step {cv['early_step']} and at the end is "
            f"{rank:.2f}: " + ("the pattern of which domains are far apart is set early, not an artefact of "
                               "under-training." if rank > 0.5 else
                               "the pattern changes along training: read the matrix with that in mind.") + "\n")
    return "\n".join(out)


FIGURES = ("curves.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    cv = report["curves"]
    if cv is None:
        return []
    names = list(report["domains"])
    written = []
    fig, ax = plt.subplots(figsize=(6.5, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, t in enumerate(names):
        for j, e in enumerate(e for e in names if e != t):
            ax.plot(cv["bpb"][t][t], cv["bpb"][t][e], marker=".", color=colours[i % len(colours)], alpha=0.7,
                    label=f"trained on {t}" if j == 0 else None)
    low = min(min(v) for row in cv["bpb"].values() for v in row.values())
    high = max(max(v) for row in cv["bpb"].values() for v in row.values())
    ax.plot([low, high], [low, high], "k:", linewidth=1, label="off = in")
    ax.set_xlabel("in-domain bits per byte (the model's own domain)")
    ax.set_ylabel("off-domain bits per byte (each other domain)")
    ax.set_title("along training, one line per pair (mean over seeds)")
    ax.legend(fontsize=7)
    save(fig, plt, out_dir, "curves.png", written)
    return written
