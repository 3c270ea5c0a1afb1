"""Experiment: multi-task training as conflicting objectives.

On one domain (the transfer pair's first), three GPTs with the same initial weights, steps and
batches: trained with GPT's causal objective only, with BERT's masked objective only, and with
both (L = L_causal + L_masked on each batch). Each is scored with both objectives on the domain's
fixed validation windows: causal bits per byte (over the 256 byte ids) and masked-byte bits per
byte. What does sharing the weights cost each task, or gain it?

During the `both` run, every steps/20 steps, the cosine between the two objectives' gradients
over all parameters, on a fixed batch (the domain's first `batch_size` validation windows; the
masked loss with masks from a fixed seed): near 1 a step helps both, negative they pull apart.

All three models have the mask token (vocabulary 257), so they start from the same weights; the
causal-only model never sees it in training. Jobs: one per objective and seed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from minilm.data import ByteTokenizer
from minilm.gradients import gradient_cosines
from minilm.objectives import MASK_TOKEN, OBJECTIVES, causal_bits_per_byte, masked_bits_per_byte, masked_lm_loss
from minilm.training import build_model, train

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table

SEEDS = "all"  # every seed of the preset, with spreads (the report's notes read this)
COSINE_POINTS = 20  # the gradient cosine is measured every steps / COSINE_POINTS steps of the `both` run
LABELS = {"clm": "causal only", "mlm": "masked only", "both": "both (causal + masked)"}


def domain_of(grid: Grid) -> str:
    return grid.pair[0]


def cosine_probe(grid: Grid, mask_id: int):
    """on_eval for train(): (model, step) -> {"grad_cosine": cos(g_causal, g_masked)} on the fixed batch."""
    windows = grid.domains[domain_of(grid)].eval_set.windows[:grid.config.batch_size]  # (B, T+1)

    def probe(model, step):
        device = next(model.parameters()).device
        x, y = windows[:, :-1].to(device), windows[:, 1:].to(device)  # (B, T) each
        batches = {"causal": (x, y),
                   "masked": lambda m: masked_lm_loss(m, x, mask_id, torch.Generator().manual_seed(0))}
        _, matrix = gradient_cosines(model, batches)
        return {"grad_cosine": float(matrix[0, 1])}

    return probe


def train_with_objective(grid: Grid, objective: str, seed: int, probe: bool = False):
    """One GPT of the grid's size and budget on the domain, trained with `objective`; the mask
    token in every model, so that the three start from the same weights."""
    tokenizer = ByteTokenizer(special_tokens=(MASK_TOKEN,))
    config = grid.train_config(domain_of(grid), seed=seed)
    interval = max(1, grid.config.steps // COSINE_POINTS) if probe else config.eval_interval
    config = dataclasses.replace(config, objective=objective, eval_interval=interval)
    torch.manual_seed(seed)
    model = build_model(config, tokenizer.vocab_size)
    on_eval = cosine_probe(grid, tokenizer.special_id(MASK_TOKEN)) if probe else None
    trained = train(config, model=model, tokenizer=tokenizer, on_eval=on_eval)  # the grid's config: one process
    grid.step_seconds.extend(trained.step_seconds)
    return trained, tokenizer


def jobs(grid: Grid) -> list[Job]:
    def job(objective: str, seed: int) -> Job:
        def run(grid: Grid):
            trained, tokenizer = train_with_objective(grid, objective, seed, probe=objective == "both")
            eval_set = grid.domains[domain_of(grid)].eval_set
            model = trained.model
            result = {
                "causal_bpb": causal_bits_per_byte(model, eval_set.windows, tokenizer, 64,
                                                   next(model.parameters()).device).bits_per_byte,
                "masked_bpb": masked_bits_per_byte(model, eval_set.windows, tokenizer.special_id(MASK_TOKEN), 0, 64,
                                                   next(model.parameters()).device).bits_per_byte}
            if objective == "both":
                result["cosine"] = [[r["step"], r["grad_cosine"]] for r in trained.history]
            return result, None

        return Job(f"multitask.{objective}.seed{seed}", f"multitask: {LABELS[objective]}, seed {seed}", run)

    return [job(objective, seed) for seed in range(grid.config.seeds) for objective in OBJECTIVES]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    seeds = grid.config.seeds
    scores = {}
    for objective in OBJECTIVES:
        results = [parts[f"multitask.{objective}.seed{s}"]["result"] for s in range(seeds)]
        scores[objective] = {}
        for score in ("causal_bpb", "masked_bpb"):
            values = [r[score] for r in results]
            scores[objective][score] = {"per_seed": values, "mean": float(np.mean(values)),
                                        "min": float(np.min(values)), "max": float(np.max(values))}
    curves = [parts[f"multitask.both.seed{s}"]["result"]["cosine"] for s in range(seeds)]
    steps = [step for step, _ in curves[0]]
    values = np.array([[cos for _, cos in curve] for curve in curves])  # (seeds, points)
    second_half = values[:, len(steps) // 2:]
    return {"multitask": {
        "domain": domain_of(grid), "seeds": seeds, "cosine_every": max(1, grid.config.steps // COSINE_POINTS),
        "scores": scores,
        "cost_of_sharing": {"causal": scores["both"]["causal_bpb"]["mean"] - scores["clm"]["causal_bpb"]["mean"],
                            "masked": scores["both"]["masked_bpb"]["mean"] - scores["mlm"]["masked_bpb"]["mean"]},
        "cosine": {"steps": steps, "per_seed": values.tolist(), "mean": values.mean(axis=0).tolist(),
                   "min": values.min(axis=0).tolist(), "max": values.max(axis=0).tolist(),
                   "second_half_mean": float(second_half.mean())}}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    m = report["multitask"]
    seeds = m["seeds"]
    out = []
    say = out.append
    say(f"## {number}. Multi-task training: GPT's objective and BERT's in one model ({m['domain']}, "
        f"{seeds} seed{'s' if seeds > 1 else ''})\n")

    def cell(score: dict) -> str:
        spread = f" ({fmt(score['min'])}–{fmt(score['max'])})" if seeds > 1 else ""
        return fmt(score["mean"]) + spread

    rows = [[LABELS[o], cell(m["scores"][o]["causal_bpb"]), cell(m["scores"][o]["masked_bpb"])] for o in OBJECTIVES]
    say(markdown_table(["trained with", "causal bits/byte", "masked-byte bits/byte"], rows) + "\n")
    say("Same initial weights, steps and batches for the three; " + (
        "mean over seeds (min–max). " if seeds > 1 else "one seed. ")
        + "Causal bits per byte are over the 256 byte ids (the mask's logit dropped); masked-byte bits per byte "
        "are the loss on 15% of each validation window's bytes, all replaced by the mask token.\n")
    cost = m["cost_of_sharing"]
    cos = m["cosine"]
    say(f"- Sharing the weights costs the causal task {cost['causal']:+.3f} bits per byte and the masked task "
        f"{cost['masked']:+.3f} (both-model minus the one trained for that task alone; negative = a gain).")
    say(f"- Cosine between the two objectives' gradients over all parameters (fixed batch, every "
        f"{m['cosine_every']} steps of the `both` run): {cos['mean'][0]:+.2f} at step 0, "
        f"{cos['mean'][-1]:+.2f} at the end, {cos['second_half_mean']:+.2f} on average over the second half.\n")
    if "multitask.png" in figures:
        say("![gradient cosine along training](multitask.png)\n")
    say("**How to read it.** The two objectives train the same layers; they differ only by the attention mask "
        "and what is predicted. If each model does best on the task it was trained for and the `both` model "
        "pays on each, one set of weights cannot serve both goals at this size and budget: the objectives "
        "compete for the same capacity and steps. The cosine says whether they also pull the weights apart: "
        "positive, a step on one objective helps the other (shared knowledge of the bytes); near 0, they "
        "move different directions and compete only for capacity; negative, one undoes the other. The "
        "off-task scores (a masked-only model read causally, a causal-only model asked to fill a mask it "
        "has never seen) show how little of one skill comes free with the other.\n")
    return "\n".join(out)


FIGURES = ("multitask.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    m = report["multitask"]
    cos = m["cosine"]
    written = []
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(cos["steps"], cos["mean"], marker="o", label="mean over seeds" if m["seeds"] > 1 else "seed 0")
    if m["seeds"] > 1:
        ax.fill_between(cos["steps"], cos["min"], cos["max"], alpha=0.25, label="min–max over seeds")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("step of the `both` run")
    ax.set_ylabel("cos(g_causal, g_masked)")
    ax.set_title(f"do the two objectives pull apart? ({m['domain']})")
    ax.legend(fontsize=8)
    save(fig, plt, out_dir, "multitask.png", written)
    return written
