"""Experiment: gradient conflict between domains.

The equal-weight mixed-domain run (the mixing experiment's config and seed; training on the CPU is
deterministic, so it is the same run) is watched every steps/20 steps: on a fixed training batch
of each domain, the loss gradient over all parameters, and the cosine of every pair of domains'
gradients (`minilm.gradients.gradient_cosines`):

    cos(a, b) = <g_a, g_b> / (|g_a| |g_b|)      near 1: agree; near 0: unrelated; < 0: conflict

Reported: the domains x domains matrix averaged over the second half of training, its curve over
training, and, over the unordered pairs {a, b}, the Spearman rank correlation between the cosine
and the pair's off-domain cost from the matrix, (ratio[a][b] + ratio[b][a]) / 2 with ratio = cell /
its column's specialist. Jobs: the watched run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from minilm.data import BatchSampler, ByteTokenizer, load_corpus
from minilm.gradients import gradient_cosines, spearman_correlation
from minilm.training import train

from ..figures import heatmap, save
from ..grid import Grid, Job
from ..report import fmt, markdown_table
from .mixing import mixture_weights

KEY = "gradient_conflict.equal"
POINTS = 20  # gradients are measured every steps / POINTS steps
BATCH_SEED = 0  # the fixed batch of each domain comes from a sampler with this seed


def fixed_batches(grid: Grid) -> dict:
    """One training batch (x, y) of each domain, (B, T) each, the same at every measurement."""
    c = grid.config
    batches = {}
    for name, domain in grid.domains.items():
        tokens = load_corpus(domain.spec, ByteTokenizer()).train
        x, y = BatchSampler([tokens], [1.0], c.block_size, c.batch_size, BATCH_SEED).next_step()[0]
        batches[name] = (x, y)
    return batches


def jobs(grid: Grid) -> list[Job]:
    def run(grid: Grid):
        weights = mixture_weights(grid, "equal")
        first, others = grid.names[0], grid.names[1:]
        config = grid.train_config(first, seed=0, mix={grid.domains[n].spec: weights[n] for n in others})
        interval = max(1, config.steps // POINTS)
        batches = fixed_batches(grid)
        curve = {"step": [], "cosines": []}

        def watch(step: int, model: torch.nn.Module) -> None:
            if step % interval == 0:
                device = next(model.parameters()).device
                on_device = {n: (x.to(device), y.to(device)) for n, (x, y) in batches.items()}
                names, matrix = gradient_cosines(model, on_device)
                curve["step"].append(step)
                curve["cosines"].append({a: {b: float(matrix[i, j]) for j, b in enumerate(names)}
                                         for i, a in enumerate(names)})

        trained = train(config, on_step=watch)  # as grid.train, with the watch
        grid.step_seconds.extend(trained.step_seconds)
        return {"interval": interval, "curve": curve, "bpb": grid.score_all(trained.model)}, trained

    return [Job(KEY, "equal-weight mixed run, watched", run)]


def pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names, steps = grid.names, grid.config.steps
    result = parts[KEY]["result"]
    curve = result["curve"]
    late = [k for k, step in enumerate(curve["step"]) if step >= steps / 2]
    mean = {a: {b: float(np.mean([curve["cosines"][k][a][b] for k in late])) for b in names} for a in names}
    cost = {f"{a}|{b}": (report["ratio"][a][b] + report["ratio"][b][a]) / 2 for a, b in pairs(names)}
    cosine = {f"{a}|{b}": mean[a][b] for a, b in pairs(names)}
    keys = list(cost)
    rho = (spearman_correlation([cosine[k] for k in keys], [cost[k] for k in keys]) if len(keys) >= 3 else None)
    same_run = "mixing" in report and all(abs(result["bpb"][e] - report["mixing"]["bpb"]["equal"][e]) < 1e-9
                                          for e in names)
    return {"gradient_conflict": {
        "seeds": 1, "interval": result["interval"], "points": len(curve["step"]), "second_half_points": len(late),
        "mean_second_half": mean, "pair_cosine": cosine, "pair_off_domain_cost": cost, "spearman": rho,
        "curve": curve, "bpb": result["bpb"], "same_as_mixing_equal": same_run,
        "most_conflicting": min(cosine, key=cosine.get), "most_aligned": max(cosine, key=cosine.get)}}


HOW_TO_READ = (
    "**How to read it.** Two domains whose gradients point the same way (cosine near 1) are learnt by the same "
    "steps; a cosine near 0 means a step for one does nothing for the other, and a negative one that it undoes "
    "the other's progress: one set of weights asked to serve both is pulled apart. If the cross-domain matrix "
    "is explained by this pull, pairs with lower cosines have higher off-domain costs, and the rank "
    "correlation is negative. One run (seed 0), and as many pairs as the grid has: a correlation over few "
    "pairs is a hint, not a law.")


def write_section(report: dict, number: int, figures: list[str]) -> str:
    gc = report["gradient_conflict"]
    names = list(report["domains"])
    out = []
    say = out.append
    say(f"## {number}. Gradient conflict between domains (equal-weight mixed run, seed 0)\n")
    say(f"Every {gc['interval']} steps ({gc['points']} measurements), each domain's loss gradient on a fixed "
        "training batch of that domain, over all parameters; cosines of the pairs, averaged over the "
        f"{gc['second_half_points']} measurements of the second half of training."
        + (" The watched run reproduces the mixing experiment's equal-weight model exactly." if
           gc["same_as_mixing_equal"] else "") + "\n")
    rows = [[a] + [fmt(gc["mean_second_half"][a][b]) for b in names] for a in names]
    say(markdown_table(["gradient cosine"] + names, rows) + "\n")
    rows = [[k.replace("|", " & "), fmt(gc["pair_cosine"][k]), fmt(gc["pair_off_domain_cost"][k], 2)]
            for k in sorted(gc["pair_cosine"], key=gc["pair_cosine"].get)]
    say(markdown_table(["pair", "gradient cosine", "off-domain cost (x specialist)"], rows) + "\n")
    for name in FIGURES:
        if name in figures:
            say(f"![{name[:-4]}]({name})\n")
    rho = gc["spearman"]
    say(f"- Most conflicting pair: {gc['most_conflicting'].replace('|', ' & ')}; most aligned: "
        f"{gc['most_aligned'].replace('|', ' & ')}.")
    say(f"- Spearman rank correlation, gradient cosine against off-domain cost, over {len(gc['pair_cosine'])} "
        f"pairs: " + (f"{rho:+.2f}." if rho is not None else "not computed (needs at least 3 pairs)."))
    say("\n" + HOW_TO_READ + "\n")
    return "\n".join(out)


FIGURES = ("gradient_conflict.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    gc = report["gradient_conflict"]
    names = list(report["domains"])
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    image = heatmap(axes[0], gc["mean_second_half"], names, names, "gradient cosine, second half", cmap="coolwarm")
    image.set_clim(-1, 1)
    fig.colorbar(image, ax=axes[0])
    for a, b in pairs(names):
        axes[1].plot(gc["curve"]["step"], [c[a][b] for c in gc["curve"]["cosines"]], marker=".", label=f"{a} & {b}")
    axes[1].axhline(0, color="grey", linewidth=0.5)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("gradient cosine")
    axes[1].set_title("over training")
    axes[1].legend(fontsize=6, ncol=2)
    save(fig, plt, out_dir, "gradient_conflict.png", written)
    return written
