"""Experiment: quality against diversity in generation (fluency against novelty).

The seed-0 specialist of domain A (the transfer pair's first) samples text under a sweep of
temperature and top-p. For each setting: the novelty of the samples (1 - the share of their byte
8-grams found in A's training split) and their bits per byte under an independent scorer, the
Kneser-Ney n-gram of A counted on its training split. The sweep itself, its table, its "How to read
it" and its picture live in minilm/fluency_novelty.py; this module only plugs it into the grid.
Jobs: one, which samples from a saved model (no training).
"""
from __future__ import annotations

from pathlib import Path

from minilm import fluency_novelty
from minilm.data import read_corpus, split_point

from ..grid import Grid, Job
from .matrix import specialist_key


def sweep_config(grid: Grid) -> fluency_novelty.FluencyNoveltyConfig:
    """The sweep's sizes at the grid's preset: its seeds and n-gram order; samples no longer than the
    context, and fewer and shorter at the micro preset so that CI runs it in seconds."""
    c = grid.config
    small = c.preset == "micro"
    return fluency_novelty.FluencyNoveltyConfig(
        seeds=c.seeds, num_samples=2 if small else 8, sample_len=min(c.block_size, 32 if small else 256),
        prompt_len=min(c.block_size // 2, 8 if small else 32), ngram_order=c.ngram_order)


def jobs(grid: Grid) -> list[Job]:
    domain = grid.pair[0]

    def sample(grid: Grid):
        _, _, data = read_corpus(grid.domains[domain].spec)
        cut = split_point(data)
        model = grid.model(specialist_key(domain))
        result = fluency_novelty.sweep(model, grid.tokenizer, data[:cut], data[cut:], sweep_config(grid),
                                       progress=False)
        return dict(result, domain=domain), None

    return [Job("fluency_novelty.sweep", f"sampling sweep of {domain}'s specialist", sample,
                after=(specialist_key(domain),), trains=False)]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    return {"fluency_novelty": parts["fluency_novelty.sweep"]["result"]}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    result = report["fluency_novelty"]
    text = fluency_novelty.write_section(result, number, tuple(figures))
    return text.replace("Quality against diversity in generation\n",
                        f"Quality against diversity in generation: {result['domain']}'s specialist (seed 0)\n", 1)


FIGURES = ("fluency_novelty.png",)
SEEDS = "all"  # see minilm.mismatch.report.notes


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    return fluency_novelty.figures(report["fluency_novelty"], out_dir, plt)
