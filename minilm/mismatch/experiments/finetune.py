"""Experiment: fine-tuning for a task with few labels.

Which domain does a window of text come from? A linear head on the mean of a GPT's last hidden
states (minilm/classifier.py), all weights fine-tuned with 1, 4, 16, 64 and 256 labelled windows
per domain, from three starts:
  (a) random initialisation;
  (b) the equal-weight mixed-domain causal model (the `mixing` experiment's, seed 0);
  (c) a masked-LM model trained on the same equal-weight mixture with the same budget.
Accuracy on a fixed, balanced held-out set (200 windows per domain from the validation splits,
the same for every model, label count and seed); each point fine-tuned with the grid's seeds.
Jobs: one per start (the masked-LM job trains its model first).
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import torch

from minilm.classifier import FineTuneConfig
from minilm.domain_task import domain_splits, fine_tune_and_score, held_out_set

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table
from .mixing import mixture_weights

SEEDS = "all"  # every seed of the preset, with spreads (the report's notes read this)
STARTS = ("random", "causal", "masked")
LABELS = {"random": "(a) random init", "causal": "(b) mixed causal LM", "masked": "(c) mixed masked LM"}
# Per preset of the grid: labels per domain, held-out windows per domain, fine-tuning steps, lr, batch.
SETTINGS = {
    "micro": dict(label_counts=(1, 4), held_out_per_class=10, steps=3, lr=1e-3, batch_size=8),
    "cpu-quick": dict(label_counts=(1, 4, 16, 64, 256), held_out_per_class=200, steps=60, lr=1e-3, batch_size=32),
    "cpu": dict(label_counts=(1, 4, 16, 64, 256), held_out_per_class=200, steps=100, lr=5e-4, batch_size=32),
    "gpu": dict(label_counts=(1, 4, 16, 64, 256), held_out_per_class=200, steps=200, lr=2e-4, batch_size=64),
}
WINDOW = 64  # bytes per window (at most the grid's context)


def settings(grid: Grid) -> dict:
    chosen = dict(SETTINGS.get(grid.config.preset, SETTINGS["cpu-quick"]))
    chosen["window"] = min(WINDOW, grid.config.block_size)
    return chosen


def mixed_config(grid: Grid, objective: str):
    """The `mixing` experiment's equal-weight config (seed 0), with `objective`."""
    weights = mixture_weights(grid, "equal")
    first, others = grid.names[0], grid.names[1:]
    mix = {grid.domains[name].spec: weights[name] for name in others}
    return dataclasses.replace(grid.train_config(first, seed=0, mix=mix), objective=objective)


def start_model(grid: Grid, start: str) -> tuple[torch.nn.Module, bool]:
    """(the language model to fine-tune, whether it reads causally)."""
    if start == "causal":
        return grid.model("mixing.equal"), True
    if start == "masked":
        return grid.train(mixed_config(grid, "mlm")).model, False
    torch.manual_seed(0)
    return grid.build(grid.train_config(grid.names[0], seed=0)), True


def jobs(grid: Grid) -> list[Job]:
    def job(start: str) -> Job:
        def run(grid: Grid):
            s = settings(grid)
            lm, causal = start_model(grid, start)
            train_splits, val_splits = domain_splits([grid.domains[n].spec for n in grid.names], grid.tokenizer, None)
            base = FineTuneConfig(held_out_per_class=s["held_out_per_class"], window=s["window"], steps=s["steps"],
                                  lr=s["lr"], batch_size=s["batch_size"])
            held_out = held_out_set(val_splits, base)
            accuracy = {}
            for count in s["label_counts"]:
                accuracy[str(count)] = []
                for seed in range(grid.config.seeds):
                    config = dataclasses.replace(base, labels_per_class=count, seed=seed)
                    result = fine_tune_and_score(copy.deepcopy(lm), causal, train_splits, held_out, config)
                    accuracy[str(count)].append(result.accuracy)
            return {"accuracy": accuracy}, None

        return Job(f"finetune.{start}", f"fine-tuning from {LABELS[start]}", run,
                   after=("mixing.equal",) if start == "causal" else ())

    return [job(start) for start in STARTS]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    s = settings(grid)
    accuracy = {start: parts[f"finetune.{start}"]["result"]["accuracy"] for start in STARTS}
    stats = {start: {count: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
                     for count, v in by_count.items()} for start, by_count in accuracy.items()}
    return {"finetune": {"config": {**s, "label_counts": list(s["label_counts"]), "seeds": grid.config.seeds,
                                    "held_out_seed": 0, "classes": grid.names},
                         "chance": 1.0 / len(grid.names), "accuracy": accuracy, "stats": stats}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    f = report["finetune"]
    c = f["config"]
    seeds = c["seeds"]
    counts = [str(n) for n in c["label_counts"]]
    out = []
    say = out.append
    say(f"## {number}. Fine-tuning with few labels: which domain is this window from? "
        f"({len(c['classes'])} domains, {seeds} seed{'s' if seeds > 1 else ''})\n")
    rows = []
    for start in STARTS:
        row = [LABELS[start]]
        for n in counts:
            st = f["stats"][start][n]
            row.append(fmt(st["mean"]) + (f" ({fmt(st['min'])}–{fmt(st['max'])})" if seeds > 1 else ""))
        rows.append(row)
    say(markdown_table(["start \\ labelled windows per domain"] + counts, rows) + "\n")
    say(f"Held-out accuracy on {c['held_out_per_class']} windows of {c['window']} bytes per domain from the "
        f"validation splits (chance {f['chance']:.3f}); all weights fine-tuned for {c['steps']} steps at lr "
        f"{c['lr']:g}, batch {c['batch_size']}; " + ("mean over seeds (min–max)." if seeds > 1 else "one seed.")
        + " (b) is the `mixing` experiment's equal-weight model; (c) has its data and budget, with the masked "
        "objective.\n")
    if "finetune.png" in figures:
        say("![accuracy against labels per domain](finetune.png)\n")
    say("**How to read it.** Pre-training on unlabelled text is a remedy for having few labels: a model that "
        "already predicts bytes of every domain has features that separate the domains, so a handful of "
        "labels should be enough where a random model needs many. The gap between (a) and (b)/(c) at 1-16 "
        "labels is what pre-training buys; where the curves meet, the labels alone suffice. (b) against (c) "
        "compares GPT's objective with BERT's as a source of features for a task that reads the whole window: "
        "the masked model sees both sides of every byte, the causal one only the left.\n")
    return "\n".join(out)


FIGURES = ("finetune.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    f = report["finetune"]
    counts = [str(n) for n in f["config"]["label_counts"]]
    xs = [int(n) for n in counts]
    written = []
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for start in STARTS:
        st = f["stats"][start]
        ax.plot(xs, [st[n]["mean"] for n in counts], marker="o", label=LABELS[start])
        if f["config"]["seeds"] > 1:
            ax.fill_between(xs, [st[n]["min"] for n in counts], [st[n]["max"] for n in counts], alpha=0.2)
    ax.axhline(f["chance"], color="grey", linewidth=0.8, linestyle="--", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("labelled windows per domain")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("domain classification: fine-tuning from three starts")
    ax.legend(fontsize=8)
    save(fig, plt, out_dir, "finetune.png", written)
    return written
