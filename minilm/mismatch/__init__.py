"""Domain mismatch, measured: train tiny byte-level models on one kind of text, score them on others.

    python -m minilm.mismatch --preset cpu-quick --out runs/mismatch

runs the experiments of the registry (`minilm.mismatch.experiments.EXPERIMENTS`; the list with
prerequisites and minutes per preset is in docs/experiments.md) on the bundled corpora
(data/SOURCES.md) and writes a report to --out: `report.md` (tables and notes), `report.json`
(every number, per seed, with the config and the machine) and, when matplotlib is installed
(`pip install -e .[plot]`), PNG pictures.

Every score is in bits per byte on a domain's held-out split (the last 10% of its file), over a
fixed, capped set of validation windows. Models read raw bytes (vocabulary 256), so any model can
score any domain, the Chinese poetry included, and bits per byte compare across domains.

Reading order: config.py (sizes and presets) -> domains.py (the corpora) -> grid.py (training and
scoring one model, the Job) -> experiments/ (one module per experiment, in registry order) ->
parts.py and schedule.py (results on disk, the jobs over processes) -> run.py (the whole grid) ->
report.py and figures.py -> __main__.py (the command line).
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it (imported on first use, so that `python -m` runs clean)
_PUBLIC = {
    "main": "__main__", "build_parser": "__main__", "check_out_dir": "__main__",
    "MismatchConfig": "config", "PRESETS": "config",
    "Domain": "domains", "choose_domains": "domains", "check_corpus_size": "domains", "load_domains": "domains",
    "parse_corpus_flags": "domains", "choose_transfer_pair": "domains",
    "Grid": "grid", "Job": "grid",
    "EXPERIMENTS": "experiments", "select": "experiments",
    "write_report": "report", "PLOT_NOTE": "figures",
    "spearman": "stats", "jaccard_index": "stats",
    "summarise_seeds": "experiments.matrix", "matched_lstm_args": "experiments.lstm_vs_gpt",
    "run_grid": "run",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
