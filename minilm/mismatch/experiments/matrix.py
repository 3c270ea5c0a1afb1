"""Experiment: the cross-domain matrix, over seeds.

One GPT per domain (the "specialist"), all of the same size and token budget, each scored on every
domain: matrix[trained_on][evaluated_on] in bits per byte. Repeated over `seeds` seeds, with the
mean, the spread, and which gaps to the column's in-domain specialist exceed that spread (the
seeds' ranges of the two cells do not overlap).

Jobs: seeds x domains specialists. The seed-0 specialists are the models other experiments start
from (`specialist_key`). Each specialist is also scored on every domain along its training (at step
0 and every steps / curve_points steps, on `curve_windows` windows per domain: training's own
evaluation, which does not change the training) for the `curves` experiment.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import ratio_heatmap, save
from ..grid import Grid, Job
from ..report import matrix_table


def specialist_key(domain: str, seed: int = 0) -> str:
    return f"matrix.{domain}.seed{seed}"


def jobs(grid: Grid) -> list[Job]:
    c = grid.config
    corpus_names = {name: d.corpus_name for name, d in grid.domains.items()}
    distinct = len(set(corpus_names.values())) == len(corpus_names)  # training reports scores by file stem

    def specialist(domain: str, seed: int) -> Job:
        def run(grid: Grid):
            others = [d.spec for name, d in grid.domains.items() if name != domain] if distinct else []
            config = grid.train_config(domain, seed, eval_extra=others, eval_windows=c.curve_windows,
                                       eval_interval=max(1, c.steps // c.curve_points))
            trained = grid.train(config)
            curve = None
            if distinct:
                curve = {"step": [r["step"] for r in trained.history]}
                curve.update({name: [r["val_bpb_by_corpus"][corpus_names[name]] for r in trained.history]
                              for name in grid.names})
            return {"bpb": grid.score_all(trained.model), "params": trained.model.num_params(), "curve": curve}, trained

        return Job(specialist_key(domain, seed), f"specialist {domain} (seed {seed})", run)

    return [specialist(domain, seed) for seed in range(grid.config.seeds) for domain in grid.names]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names = grid.names
    per_seed = [{domain: parts[specialist_key(domain, seed)]["result"]["bpb"] for domain in names}
                for seed in range(grid.config.seeds)]
    section = {"gpt_params": parts[specialist_key(grid.pair[0])]["result"]["params"]}
    section.update(summarise_seeds(per_seed, names))
    return section


def summarise_seeds(per_seed: list[dict], names: list[str]) -> dict:
    """Mean, spread and range over seeds of each cell; the gap to the in-domain specialist; and which
    of those gaps exceed the spread (the seeds' ranges of the two cells do not overlap)."""
    values = np.array([[[rows[t][e] for e in names] for t in names] for rows in per_seed])  # (S, N, N)
    mean, low, high = values.mean(axis=0), values.min(axis=0), values.max(axis=0)
    std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros_like(mean)

    def table(array) -> dict:
        return {t: {e: float(array[i, j]) for j, e in enumerate(names)} for i, t in enumerate(names)}

    gaps = []
    for j, e in enumerate(names):  # column e: every other model against e's own specialist
        for i, t in enumerate(names):
            if i == j:
                continue
            apart = low[i, j] > high[j, j] or high[i, j] < low[j, j]
            gaps.append({"trained_on": t, "evaluated_on": e, "bpb": float(mean[i, j]),
                         "specialist_bpb": float(mean[j, j]), "gap": float(mean[i, j] - mean[j, j]),
                         "ratio": float(mean[i, j] / mean[j, j]), "beyond_spread": bool(apart)})
    in_domain_best = [e for j, e in enumerate(names) if int(np.argmin(mean[:, j])) == j]
    return {
        "matrix": table(mean), "std": table(std), "min": table(low), "max": table(high),
        "per_seed": [table(v) for v in values],
        "gap": {t: {e: float(mean[i, j] - mean[j, j]) for j, e in enumerate(names)} for i, t in enumerate(names)},
        "ratio": {t: {e: float(mean[i, j] / mean[j, j]) for j, e in enumerate(names)} for i, t in enumerate(names)},
        "gaps_vs_specialist": gaps,
        "columns_where_in_domain_is_best": in_domain_best,
        "largest_std": float(std.max()),
    }


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    seeds = report["config"]["seeds"]
    out = []
    say = out.append
    say(f"## {number}. Cross-domain matrix (mean over {seeds} seed{'s' if seeds > 1 else ''})\n")
    say("Rows: the domain a model was trained on; columns: the domain it is scored on. "
        "Bits per byte, lower is better; the lowest of each column in bold.\n")
    counting = {f"KN {report['ngram']['order']}-gram, counted on the column": report["ngram"]["specialist"]} \
        if "ngram" in report else None
    say(matrix_table(report["matrix"], names, bold_min=True, extra_rows=counting) + "\n")
    if "matrix.png" in figures:
        say("![cross-domain matrix](matrix.png)\n")
    say("Off-domain cost: each cell divided by the column's in-domain specialist (1.00 on the diagonal; the "
        "picture shows these on a logarithmic colour scale).\n")
    say(matrix_table(report["ratio"], names, digits=2) + "\n")
    if seeds > 1:
        say(f"Spread: standard deviation over the {seeds} seeds.\n")
        say(matrix_table(report["std"], names) + "\n")
    best = report["columns_where_in_domain_is_best"]
    gaps = report["gaps_vs_specialist"]
    beyond = [g for g in gaps if g["beyond_spread"]]
    within = [g for g in gaps if not g["beyond_spread"]]
    say(f"- The in-domain specialist is the best model in {len(best)} of {len(names)} columns"
        + (f" (not in: {', '.join(n for n in names if n not in best)})" if len(best) < len(names) else "") + ".")
    worse_than_uniform = [g for g in gaps if g["bpb"] > 8.0]
    if worse_than_uniform:
        say(f"- {len(worse_than_uniform)} off-domain cells are above 8 bits per byte, i.e. worse than a uniform guess "
            "over the 256 bytes: the model is confidently wrong on text unlike its own.")
    closest = min(gaps, key=lambda g: g["ratio"])
    farthest = max(gaps, key=lambda g: g["ratio"])
    say(f"- Closest pair: {closest['trained_on']} -> {closest['evaluated_on']} costs x{closest['ratio']:.2f} "
        f"the specialist's bits; farthest: {farthest['trained_on']} -> {farthest['evaluated_on']}, "
        f"x{farthest['ratio']:.2f}.")
    if seeds > 1:
        exceptions = ", ".join(f"{g['trained_on']} -> {g['evaluated_on']} ({g['gap']:+.3f})" for g in within)
        say(f"- Of the {len(gaps)} gaps to the in-domain specialist, {len(beyond)} are larger than the spread "
            "over seeds (the two cells' ranges over seeds do not overlap)"
            + (": all but " + exceptions if within else "")
            + f". The largest seed standard deviation is {report['largest_std']:.3f} bits per byte.")
    else:
        say("- One seed only: no spread to compare against (use --seeds 3).")
    say("")
    return "\n".join(out)


FIGURES = ("matrix.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    names = list(report["domains"])
    written = []
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 0.9 * len(names) + 1.8))
    ratio_heatmap(fig, ax, report["ratio"], names, "off-domain cost: cell / column's specialist (log colour)")
    save(fig, plt, out_dir, "matrix.png", written)
    return written
