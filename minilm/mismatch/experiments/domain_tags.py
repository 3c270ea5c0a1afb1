"""Experiment: domain tags.

One mixed-domain GPT (equal weights, the mixing experiment's budget, seed 0) trained with its
domain's tag token `<domain:NAME>` at the start of every window (`train.py --domain-tags`). Each
domain's validation windows are scored on identical bytes (`minilm.tags`) with the right tag, with
no tag, and with a wrong tag (the mean over the other domains' tags); the untagged equal-weight
mixed model and the domain's specialist are scored on the same bytes. Then

    specialist gap   = untagged mixed - specialist
    share recovered  = (untagged mixed - tagged model with the right tag) / specialist gap
    wrong-tag cost   = tagged model with a wrong tag - with the right tag

Jobs: the tagged model (it reads the mixing experiment's equal model and the seed-0 specialists).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from minilm.tags import bits_per_byte_with_tag, tag_scores

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table, percent
from .matrix import specialist_key

KEY = "domain_tags.tagged"


def distinct_corpus_names(grid: Grid) -> bool:
    """Tags are named after the corpus files' stems, which must then differ."""
    stems = [d.corpus_name for d in grid.domains.values()]
    return len(set(stems)) == len(stems)


def jobs(grid: Grid) -> list[Job]:
    if not distinct_corpus_names(grid):
        return []

    def run(grid: Grid):
        first, others = grid.names[0], grid.names[1:]
        config = replace(grid.train_config(first, seed=0), mix_domains=[grid.domains[n].spec for n in others],
                         mix_alpha=0.0, domain_tags=True)
        trained = grid.train(config)
        untagged = grid.model("mixing.equal")
        scores = {}
        for name, domain in grid.domains.items():
            windows = domain.eval_set.windows
            device = next(trained.model.parameters()).device
            with_tags = tag_scores(trained.model, trained.tokenizer, windows, domain.corpus_name, device=device)
            with_tags["wrong_by_tag"] = {n: with_tags["wrong_by_tag"][grid.domains[n].corpus_name]
                                         for n in grid.names if n != name}
            scores[name] = {**with_tags,
                            "untagged_mixed": bits_per_byte_with_tag(untagged, windows, None, device=device),
                            "specialist": bits_per_byte_with_tag(grid.model(specialist_key(name)), windows, None,
                                                                 device=device)}
        return {"scores": scores, "tags": list(trained.tokenizer.special_tokens)}, trained

    return [Job(KEY, "mixed with domain tags", run, after=("mixing.equal",)
                + tuple(specialist_key(name) for name in grid.names))]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    if not distinct_corpus_names(grid):
        return {"domain_tags": {"skipped": "two domains' files have the same name, and tags are named after it"}}
    result = parts[KEY]["result"]
    scores = result["scores"]
    per_domain = {}
    for e, s in scores.items():
        gap = s["untagged_mixed"] - s["specialist"]
        per_domain[e] = {**s, "specialist_gap": gap,
                         "recovered": (s["untagged_mixed"] - s["right"]) / gap if gap > 0 else None,
                         "wrong_tag_cost": s["wrong"] - s["right"], "no_tag_cost": s["none"] - s["right"]}
    recovered = [v["recovered"] for v in per_domain.values() if v["recovered"] is not None]
    return {"domain_tags": {"seeds": 1, "weights": "equal", "tags": result["tags"], "per_domain": per_domain,
                            "mean_recovered": float(np.mean(recovered)) if recovered else None,
                            "mean_wrong_tag_cost": float(np.mean([v["wrong_tag_cost"] for v in per_domain.values()])),
                            "specialist_std": {e: report["std"][e][e] for e in grid.names}}}


HOW_TO_READ = (
    "**How to read it.** The tag tells the mixed model which domain it is reading before it has seen a byte. If "
    "the mixed model's price against the specialists were only the cost of guessing the domain, the right tag "
    "would recover all of the gap; what stays is the cost of sharing the weights. A large wrong-tag cost means "
    "the model does use the tag (it trusts it over the bytes for a while); the no-tag score shows how the tagged "
    "model copes when nobody says which domain it is. One model (seed 0): compare differences with the "
    "specialists' seed spread.")


def write_section(report: dict, number: int, figures: list[str]) -> str:
    dt = report["domain_tags"]
    out = []
    say = out.append
    say(f"## {number}. Domain tags: one mixed model told which domain it reads (seed 0)\n")
    if "skipped" in dt:
        say(f"Skipped: {dt['skipped']}.\n")
        return "\n".join(out)
    names = list(report["domains"])
    say("A mixed model (equal weights) trained with a tag token per domain (`train.py --domain-tags`: "
        + ", ".join(f"`{t}`" for t in dt["tags"]) + ") at the start of each window, scored on identical bytes "
        "(each window's bytes after its first) with the right tag, no tag, and a wrong tag (mean over the other "
        "tags), beside the untagged mixed model and the specialist on the same bytes.\n")
    rows = []
    for e in names:
        v = dt["per_domain"][e]
        rows.append([e, fmt(v["specialist"]), fmt(v["untagged_mixed"]), fmt(v["right"]), fmt(v["none"]),
                     fmt(v["wrong"]), percent(v["recovered"]), f"{v['wrong_tag_cost']:+.3f}"])
    say(markdown_table(["domain", "specialist (seed 0)", "mixed, untagged", "tagged: right tag", "no tag", "wrong tag",
                        "gap recovered", "wrong-tag cost"], rows) + "\n")
    if "domain_tags.png" in figures:
        say("![domain tags](domain_tags.png)\n")
    say(f"- The right tag recovers {percent(dt['mean_recovered'])} of the specialist gap on average; a wrong tag "
        f"costs {dt['mean_wrong_tag_cost']:+.3f} bits per byte against the right one.")
    say("\n" + HOW_TO_READ + "\n")
    return "\n".join(out)


FIGURES = ("domain_tags.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    dt = report["domain_tags"]
    if "skipped" in dt:
        return []
    names = list(report["domains"])
    written = []
    bars = [("specialist", "specialist"), ("mixed, untagged", "untagged_mixed"), ("tagged, right tag", "right"),
            ("tagged, no tag", "none"), ("tagged, wrong tag", "wrong")]
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 3.8))
    x = np.arange(len(names))
    width = 0.8 / len(bars)
    for k, (label, field) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, [dt["per_domain"][e][field] for e in names], width, label=label)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("bits per byte (identical bytes)")
    ax.set_title("domain tags: right, none, wrong")
    ax.legend(fontsize=7)
    save(fig, plt, out_dir, "domain_tags.png", written)
    return written
