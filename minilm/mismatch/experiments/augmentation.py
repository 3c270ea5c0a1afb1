"""Experiment: data augmentation against mismatch.

The transfer source's specialist (Shakespeare by default) is trained again with each transform of
`minilm.augment` (applied to a window with probability PROBABILITY) and with all of them together,
with the matrix's budget and seeds; the matrix's own specialists of that domain are the
unaugmented baseline, seed for seed. Each model is scored on every domain:

    in-domain price  = bpb_augmented(source) - bpb_specialist(source)            (> 0: it costs)
    off-domain gain  = mean over e != source of bpb_specialist(e) - bpb_augmented(e)   (> 0: it helps)

both per seed (paired with the specialist of the same seed), then mean and standard deviation
over seeds. Jobs: (transforms + 1) x seeds models.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from minilm.augment import TRANSFORMS

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table

PROBABILITY = 0.5  # each transform's chance per window
VARIANTS = {**{name: [f"{name}={PROBABILITY:g}"] for name in TRANSFORMS},
            "all": [f"{name}={PROBABILITY:g}" for name in TRANSFORMS]}


def augmented_key(variant: str, seed: int) -> str:
    return f"augmentation.{variant}.seed{seed}"


def jobs(grid: Grid) -> list[Job]:
    source = grid.pair[0]

    def augmented(variant: str, seed: int) -> Job:
        def run(grid: Grid):
            config = replace(grid.train_config(source, seed), augment=list(VARIANTS[variant]))
            trained = grid.train(config)
            return {"augment": VARIANTS[variant], "bpb": grid.score_all(trained.model)}, trained

        return Job(augmented_key(variant, seed), f"{source} augmented: {variant} (seed {seed})", run)

    return [augmented(variant, seed) for seed in range(grid.config.seeds) for variant in VARIANTS]


def price_and_gain(augmented: dict, specialist: dict, source: str) -> tuple[float, float]:
    """(in-domain price, off-domain gain) of one augmented model against the specialist (bpb by domain)."""
    others = [e for e in augmented if e != source]
    price = augmented[source] - specialist[source]
    gain = float(np.mean([specialist[e] - augmented[e] for e in others])) if others else float("nan")
    return price, gain


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    source, seeds = grid.pair[0], grid.config.seeds
    specialists = [row[source] for row in report["per_seed"]]  # the matrix's row of the source, per seed
    section = {"source": source, "probability": PROBABILITY, "seeds": seeds, "variants": {},
               "specialist": {"bpb": report["matrix"][source], "std": report["std"][source]}}
    for variant, items in VARIANTS.items():
        per_seed = [parts[augmented_key(variant, s)]["result"]["bpb"] for s in range(seeds)]
        pairs = np.array([price_and_gain(per_seed[s], specialists[s], source) for s in range(seeds)])  # (S, 2)
        bpb = {e: [row[e] for row in per_seed] for e in grid.names}
        spread = (lambda v: float(np.std(v, ddof=1)) if seeds > 1 else None)
        section["variants"][variant] = {
            "augment": items, "bpb": {e: float(np.mean(v)) for e, v in bpb.items()},
            "std": {e: spread(v) for e, v in bpb.items()}, "per_seed": per_seed,
            "price": float(pairs[:, 0].mean()), "price_std": spread(pairs[:, 0]),
            "gain": float(pairs[:, 1].mean()), "gain_std": spread(pairs[:, 1])}
    return {"augmentation": section}


def with_spread(mean: float, std: float | None) -> str:
    return f"{mean:+.3f}" + (f" ± {std:.3f}" if std is not None else "")


HOW_TO_READ = (
    "**How to read it.** Each transform shows the model the same text in a form it may meet elsewhere "
    "(other cases, another line layout, no speaker tags, typos). A transform is a remedy for mismatch when "
    "its off-domain gain is positive and larger than its in-domain price; a gain within the seed spread is "
    "no evidence of a gain. Byte-level transforms can only teach what they imitate: they help most on "
    "domains whose difference from the source is one of case, layout or noise, and cannot teach another "
    "language's bytes.")


def write_section(report: dict, number: int, figures: list[str]) -> str:
    aug = report["augmentation"]
    names, source, seeds = list(report["domains"]), aug["source"], aug["seeds"]
    out = []
    say = out.append
    say(f"## {number}. Data augmentation: {source}'s specialist trained on transformed windows "
        f"({seeds} seed{'s' if seeds > 1 else ''}, mean{' ± standard deviation' if seeds > 1 else ''})\n")
    say(f"Each transform runs on a window with probability {aug['probability']:g} (`train.py --augment NAME=P`); "
        "'all' applies every transform, each with that probability. Same budget and seeds as the matrix; the "
        "baseline is the matrix's specialist of the same seed. Price: the rise in bits per byte on "
        f"{source}; gain: the mean fall on the other domains.\n")
    rows = [[f"none (the {source} specialist)", "–", "–"] + [fmt(aug["specialist"]["bpb"][e]) for e in names]]
    for variant, v in aug["variants"].items():
        rows.append([f"`{variant}`", with_spread(v["price"], v["price_std"]), with_spread(v["gain"], v["gain_std"])]
                    + [fmt(v["bpb"][e]) for e in names])
    say(markdown_table(["augmentation", f"price on {source}", "off-domain gain"] + names, rows) + "\n")
    if "augmentation.png" in figures:
        say("![augmentation: price against gain](augmentation.png)\n")
    best = max(aug["variants"].items(), key=lambda item: item[1]["gain"] - item[1]["price"])
    helps = [k for k, v in aug["variants"].items() if v["gain"] > max(v["price"], 0)
             and (v["gain_std"] is None or v["gain"] > v["gain_std"])]
    say(f"- Best gain net of price: `{best[0]}` (gain {best[1]['gain']:+.3f}, price {best[1]['price']:+.3f}).")
    say(f"- Gain above price (and above its seed spread): {', '.join(f'`{k}`' for k in helps) or 'none'}.")
    say("\n" + HOW_TO_READ + "\n")
    return "\n".join(out)


FIGURES = ("augmentation.png",)
SEEDS = "all"  # see minilm.mismatch.report.notes


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    aug = report["augmentation"]
    written = []
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for variant, v in aug["variants"].items():
        ax.errorbar(v["price"], v["gain"], xerr=v["price_std"] or 0, yerr=v["gain_std"] or 0, fmt="o", capsize=3)
        ax.annotate(variant, (v["price"], v["gain"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    limits = ax.get_xlim() + ax.get_ylim()
    low, high = min(limits), max(limits)
    ax.plot([low, high], [low, high], "k:", linewidth=1, label="gain = price")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel(f"in-domain price on {aug['source']} (bits per byte)")
    ax.set_ylabel("off-domain gain (bits per byte)")
    ax.set_title("augmentation: price against gain")
    ax.legend(fontsize=8)
    save(fig, plt, out_dir, "augmentation.png", written)
    return written
