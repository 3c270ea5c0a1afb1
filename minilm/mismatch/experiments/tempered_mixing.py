"""Experiment: tempered mixing, from equal to size-proportional domain weights.

One mixed-domain GPT per exponent alpha, each domain drawn with probability

    p_d = n_d^alpha / sum_e n_e^alpha      (n_d: the domain's training bytes)

(`train.py --mix-domains ... --mix-alpha A`, `minilm.mixing.tempered_weights`). alpha = 0 is the
mixing experiment's equal-weight model and alpha = 1 its proportional one: those two are reused,
not retrained. Scored on every domain; against the column's specialist, each domain's bits per
byte as alpha grows show who gains (the large domains, drawn more) and who pays (the small ones).
Jobs: one model per alpha strictly between 0 and 1 (seed 0, as the mixing experiment).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from minilm.mixing import tempered_weights

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table

ALPHAS = (0.0, 0.3, 0.7, 1.0)
REUSED = {0.0: "equal", 1.0: "proportional"}  # alpha -> the mixing experiment's model


def jobs(grid: Grid) -> list[Job]:
    def tempered(alpha: float) -> Job:
        def run(grid: Grid):
            first, others = grid.names[0], grid.names[1:]
            config = replace(grid.train_config(first, seed=0), mix_domains=[grid.domains[n].spec for n in others],
                             mix_alpha=alpha)
            trained = grid.train(config)
            return {"alpha": alpha, "bpb": grid.score_all(trained.model)}, trained

        return Job(f"tempered_mixing.alpha{alpha:g}", f"mixed, alpha {alpha:g}", run)

    return [tempered(alpha) for alpha in ALPHAS if alpha not in REUSED]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    names = grid.names
    sizes = {name: grid.domains[name].train_bytes for name in names}
    bpb, weights = {}, {}
    for alpha in ALPHAS:
        key = f"{alpha:g}"
        bpb[key] = (report["mixing"]["bpb"][REUSED[alpha]] if alpha in REUSED
                    else parts[f"tempered_mixing.alpha{alpha:g}"]["result"]["bpb"])
        weights[key] = tempered_weights(sizes, alpha)
    specialist = {e: report["matrix"][e][e] for e in names}
    change = {e: bpb[f"{ALPHAS[-1]:g}"][e] - bpb[f"{ALPHAS[0]:g}"][e] for e in names}  # alpha 1 minus alpha 0
    return {"tempered_mixing": {
        "alphas": list(ALPHAS), "reused": {f"{a:g}": f"mixing.{k}" for a, k in REUSED.items()}, "seeds": 1,
        "train_bytes": sizes, "weights": weights, "bpb": bpb,
        "price_vs_specialist": {k: {e: v[e] - specialist[e] for e in names} for k, v in bpb.items()},
        "change_from_equal_to_proportional": change,
        "best_alpha": {e: min(bpb, key=lambda k: bpb[k][e]) for e in names},
        "mean_bpb": {k: float(np.mean(list(v.values()))) for k, v in bpb.items()},
        "specialist_std": {e: report["std"][e][e] for e in names}}}


HOW_TO_READ = (
    "**How to read it.** alpha moves probability from the small domains to the large ones. A domain whose "
    "bits per byte fall as alpha grows gains from being drawn more; one whose bits rise pays for it. With one "
    "model (seed 0) per alpha, a change smaller than the specialists' seed spread (last row) is no evidence "
    "either way. The mean over domains is what a user who weighs every domain alike gets; the alpha that "
    "minimises it is the compromise of this budget, not a law.")


def write_section(report: dict, number: int, figures: list[str]) -> str:
    tm = report["tempered_mixing"]
    names = list(report["domains"])
    out = []
    say = out.append
    say(f"## {number}. Tempered mixing: domain weights proportional to size^alpha (seed 0)\n")
    say("alpha 0 (equal) and 1 (proportional) are the mixing experiment's models, reused; 0.3 and 0.7 are "
        "trained with `train.py --mix-domains ... --mix-alpha A`, same budget. Bits per byte, lower is better.\n")
    rows = []
    for key, values in tm["bpb"].items():
        rows.append([f"alpha {key}"] + [f"{fmt(values[e])} ({tm['weights'][key][e]:.2f})" for e in names]
                    + [fmt(tm["mean_bpb"][key])])
    rows.append(["in-domain specialist"] + [fmt(report["matrix"][e][e]) for e in names]
                + [fmt(np.mean([report["matrix"][e][e] for e in names]))])
    rows.append(["specialist seed std"] + [fmt(tm["specialist_std"][e]) for e in names] + [""])
    say(markdown_table(["model (share of rows) \\ evaluated on"] + names + ["mean"], rows) + "\n")
    if "tempered_mixing.png" in figures:
        say("![tempered mixing](tempered_mixing.png)\n")
    change = tm["change_from_equal_to_proportional"]
    gains = [e for e in names if change[e] < 0]
    pays = [e for e in names if change[e] > 0]
    say("- From alpha 0 to 1, gains: " + (", ".join(f"{e} ({change[e]:+.3f})" for e in gains) or "none")
        + "; pays: " + (", ".join(f"{e} ({change[e]:+.3f})" for e in pays) or "none") + ".")
    best_mean = min(tm["mean_bpb"], key=tm["mean_bpb"].get)
    say(f"- Lowest mean over domains at alpha {best_mean} ({fmt(tm['mean_bpb'][best_mean])} bits per byte).")
    say("\n" + HOW_TO_READ + "\n")
    return "\n".join(out)


FIGURES = ("tempered_mixing.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    tm = report["tempered_mixing"]
    names = list(report["domains"])
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = [float(k) for k in tm["bpb"]]
    for e in names:
        ax.plot(alphas, [tm["price_vs_specialist"][k][e] for k in tm["bpb"]], marker="o", label=e)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("alpha (0 = equal weights, 1 = proportional to size)")
    ax.set_ylabel("bits per byte above the domain's specialist")
    ax.set_title("tempered mixing: who gains and who pays")
    ax.legend(fontsize=8)
    save(fig, plt, out_dir, "tempered_mixing.png", written)
    return written
