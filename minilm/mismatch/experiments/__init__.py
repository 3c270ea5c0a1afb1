"""The registry of the grid's experiments: the one list that decides what runs, in which order,
and under which section number of the report.

Each entry names a module with four functions:
  jobs(grid) -> [Job]                   the models (or tokenizers) it trains, in dependency order
  summarise(grid, parts, report) -> {}  its keys of report.json, from its jobs' results
  write_section(report, number, figures) -> str   its section of report.md
  figures(report, out_dir, plt) -> [file names]   its pictures (with matplotlib)
and its prerequisites: the experiments whose results it reads (their jobs run first, their
summaries are in `report` when it is summarised). Selecting an experiment with `--experiments`
pulls its prerequisites in.

`minutes` are estimates of the wall time on the six bundled domains with the preset's seeds, from
the seconds per model of whole runs (see docs/experiments.md for how they were measured); None
where they depend on a model the user brings.

An experiment with `only_with` (a flag) runs only when that flag is given: it is left out of the
default list without it, and naming it in `--experiments` without the flag is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from minilm.cli import UserError

from . import (
    augmentation,
    curves,
    domain_tags,
    finetune,
    fluency_novelty,
    gradient_conflict,
    lstm_vs_gpt,
    matrix,
    mixing,
    multitask,
    ngram,
    pretrained,
    tempered_mixing,
    tokenizers,
    transfer,
)


@dataclass(frozen=True)
class Experiment:
    name: str  # for --experiments
    title: str  # what it asks, one line
    requires: tuple  # names of the experiments it reads
    module: ModuleType  # with jobs, summarise, write_section, figures, FIGURES
    minutes: dict | None  # preset -> estimated minutes on the six bundled domains; None: depends on the model
    only_with: str = ""  # a flag without which the experiment does not run ("" = always available)

    def jobs(self, grid):
        return self.module.jobs(grid)

    def summarise(self, grid, parts: dict, report: dict) -> dict:
        return self.module.summarise(grid, parts, report)

    def write_section(self, report: dict, number: int, figures: list) -> str:
        return self.module.write_section(report, number, figures)

    def figures(self, report: dict, out_dir, plt) -> list:
        return self.module.figures(report, out_dir, plt)


EXPERIMENTS: list[Experiment] = [
    Experiment("matrix", "How much worse is a model on text unlike its training text? One GPT per domain "
               "(seeds x domains models), each scored on every domain.", (), matrix,
               {"micro": 0.05, "cpu-quick": 5.7, "cpu": 33.5, "gpu": 36}),
    Experiment("ngram", "How do the networks compare with counting? An interpolated Kneser-Ney n-gram per "
               "domain on the same bytes: its own matrix, and GPT / n-gram per domain (domains n-grams, no model)",
               ("matrix",), ngram, {"micro": 0.1, "cpu-quick": 1, "cpu": 0.4, "gpu": 1}),
    Experiment("curves", "Is the mismatch pattern an artefact of under-training? Every specialist scored on "
               "every domain along its training: off- against in-domain loss per pair, and the pattern early vs "
               "at the end (no model of its own: recorded while the matrix trains)", ("matrix",), curves,
               {"micro": 0, "cpu-quick": 0, "cpu": 0, "gpu": 0}),
    Experiment("mixing", "Does one model trained on all domains at once (equal and size-proportional weights) "
               "close the gap, and at what price in domain? (2 models)", ("matrix",), mixing,
               {"micro": 0.01, "cpu-quick": 0.6, "cpu": 3.7, "gpu": 4}),
    Experiment("transfer", "What does continued training on B cost the specialist of A (forgetting), and how "
               "much replay of A prevents it? (one model per replay fraction, plus B from scratch)",
               ("matrix",), transfer, {"micro": 0.01, "cpu-quick": 1.6, "cpu": 9.7, "gpu": 10}),
    Experiment("lstm_vs_gpt", "Is the mismatch a property of the Transformer? An LSTM of the same size and "
               "budget, in and off domain and by position in the context (1 model)", ("matrix",), lstm_vs_gpt,
               {"micro": 0.01, "cpu-quick": 0.3, "cpu": 1.9, "gpu": 2}),
    Experiment("tokenizers", "Does a tokenizer trained on one domain fit another? One BPE per domain: bytes "
               "per token and vocabulary overlap, against the model matrix (domains tokenizers, no model)",
               ("matrix",), tokenizers, {"micro": 0.01, "cpu-quick": 0.5, "cpu": 0.2, "gpu": 1}),
    Experiment("augmentation", "Does training on transformed text (case, layout, speaker tags, typos) buy "
               "off-domain gain, at what in-domain price? The transfer source's specialist with each transform and "
               "with all (5 x seeds models)", ("matrix",), augmentation,
               {"micro": 0.05, "cpu-quick": 5, "cpu": 28, "gpu": 30}),
    Experiment("tempered_mixing", "Between equal and size-proportional mixing: domain weights ~ size^alpha for "
               "alpha 0, 0.3, 0.7, 1; who gains and who pays (2 models; 0 and 1 reused from mixing)",
               ("matrix", "mixing"), tempered_mixing, {"micro": 0.01, "cpu-quick": 0.6, "cpu": 3.7, "gpu": 4}),
    Experiment("domain_tags", "Does telling a mixed model the domain (a tag token per domain) close the gap to the "
               "specialists, and what does a wrong tag cost? (1 model)", ("matrix", "mixing"), domain_tags,
               {"micro": 0.01, "cpu-quick": 0.4, "cpu": 2.2, "gpu": 2}),
    Experiment("gradient_conflict", "Do the domains pull one model's weights apart? Cosines of the domains' "
               "gradients along the equal-weight mixed run, against the off-domain costs (1 model)",
               ("matrix", "mixing"), gradient_conflict, {"micro": 0.01, "cpu-quick": 0.5, "cpu": 2.5, "gpu": 2.5}),
    Experiment("multitask", "Do GPT's causal objective and BERT's masked one conflict in one model? On one domain: "
               "causal only, masked only, both (same weights at the start, steps, batches); each scored on both "
               "objectives, and the cosine of their gradients along the `both` run (3 models per seed)",
               (), multitask, {"micro": 0.02, "cpu-quick": 3, "cpu": 20, "gpu": 24}),
    Experiment("finetune", "How many labels does a pre-trained model need to tell the domains apart? A "
               "classifier fine-tuned with 1-256 labelled windows per domain from random weights, the mixed "
               "causal model and a mixed masked-LM model (1 model, plus the fine-tunings)",
               ("mixing",), finetune, {"micro": 0.02, "cpu-quick": 2.5, "cpu": 15, "gpu": 6}),
    Experiment("fluency_novelty", "Are fluency and novelty conflicting goals of generation? The transfer source's "
               "specialist samples under temperature x top-p; novelty of the samples against their bits per byte "
               "under the domain's Kneser-Ney n-gram (no model of its own)", ("matrix",), fluency_novelty,
               {"micro": 0.02, "cpu-quick": 0.5, "cpu": 1, "gpu": 1}),
    Experiment("pretrained", "What does a truly pre-trained model bring, and what does fine-tuning it on one domain "
               "cost the others? A Hugging Face GPT-2 (--init-from hf:NAME_OR_DIR) scored on every domain with its "
               "own tokenizer, then fine-tuned on the --transfer target (1 model)", ("matrix",), pretrained, None,
               only_with="--init-from"),
]

BY_NAME = {experiment.name: experiment for experiment in EXPERIMENTS}
FIGURE_FILES = tuple(name for experiment in EXPERIMENTS for name in experiment.module.FIGURES)


def select(flag_value: str | None, given: tuple = ()) -> list[Experiment]:
    """`--experiments NAME,...` -> the registry entries to run, in registry order, with their
    prerequisites pulled in; when the flag is absent, all of them whose `only_with` flag is among
    the flags `given` (or that need none)."""
    if not flag_value:
        return [e for e in EXPERIMENTS if not e.only_with or e.only_with in given]
    asked = [name.strip() for name in flag_value.split(",") if name.strip()]
    unknown = [name for name in asked if name not in BY_NAME]
    if unknown or not asked:
        what = f"unknown experiment {unknown[0]!r}" if unknown else f"no experiment named in {flag_value!r}"
        raise UserError(f"--experiments: {what}; expected names from {', '.join(BY_NAME)}, comma-separated")
    chosen = set()

    def add(name: str) -> None:
        if name not in chosen:
            chosen.add(name)
            for required in BY_NAME[name].requires:
                add(required)

    for name in asked:
        add(name)
    missing = next((BY_NAME[name] for name in asked if BY_NAME[name].only_with not in ("", *given)), None)
    if missing is not None:
        raise UserError(f"--experiments: {missing.name} runs only with {missing.only_with} "
                        f"(e.g. {missing.only_with} hf:path/to/gpt2-folder)")
    return [experiment for experiment in EXPERIMENTS if experiment.name in chosen]


def help_text() -> str:
    """The registry as --help shows it: name, prerequisites, question, estimated minutes per preset."""
    lines = []
    for number, e in enumerate(EXPERIMENTS, start=1):
        needs = f" (needs {', '.join(e.requires)})" if e.requires else ""
        only = f" (only with {e.only_with})" if e.only_with else ""
        minutes = (", ".join(f"{preset} {value:g}" for preset, value in e.minutes.items()) if e.minutes is not None
                   else "depend on the model")
        lines.append(f"{number}. {e.name}{needs}{only}: {e.title} [minutes: {minutes}]")
    lines.append("Naming an experiment in --experiments pulls in the ones it needs. Minutes are estimates for "
                 "the six bundled domains (cpu: with --jobs 2); see docs/experiments.md.")
    return "\n".join(lines)


def markdown_list() -> str:
    """The registry as docs/experiments.md shows it (a test keeps that page equal to this)."""
    presets = ("micro", "cpu-quick", "cpu", "gpu")
    rows = ["| # | name | what it asks | needs | " + " | ".join(f"min. {p}" for p in presets) + " |",
            "| ---: | --- | --- | --- | " + " | ".join("---:" for _ in presets) + " |"]
    for number, e in enumerate(EXPERIMENTS, start=1):
        minutes = (" | ".join(f"{e.minutes[p]:g}" for p in presets) if e.minutes is not None
                   else " | ".join("model" for _ in presets))
        only = f" (only with `{e.only_with}`)" if e.only_with else ""
        rows.append(f"| {number} | `{e.name}` | {e.title}{only} | {', '.join(e.requires) or '–'} | {minutes} |")
    return "\n".join(rows)


DOCS_BEGIN, DOCS_END = "<!-- the registry's table: begin -->", "<!-- the registry's table: end -->"


def update_docs(path) -> None:
    """Rewrite the registry's table in docs/experiments.md (between the two markers) from EXPERIMENTS:
    `python -c "from minilm.mismatch.experiments import update_docs; update_docs('docs/experiments.md')"`."""
    from pathlib import Path

    page = Path(path).read_text()
    before, rest = page.split(DOCS_BEGIN)
    _, after = rest.split(DOCS_END)
    Path(path).write_text(f"{before}{DOCS_BEGIN}\n{markdown_list()}\n{DOCS_END}{after}")
