"""The report: report.json (every number), report.md (tables and notes, one section per
experiment, numbered in the order of the registry) and the pictures, each written atomically.

The markdown helpers every section uses (numbers, tables) live here too.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .figures import PLOT_NOTE, load_pyplot
from .parts import write_atomic

# ----------------------------------------------------------------------------------------------
# Markdown helpers
# ----------------------------------------------------------------------------------------------


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def matrix_table(table: dict, names: list[str], digits: int = 3, bold_min: bool = False,
                 extra_rows: dict | None = None) -> str:
    """rows = trained on, columns = evaluated on; optionally the lowest of each column in bold, and
    `extra_rows` {label: {column: value}} below (not counted for the bold)."""
    best = {e: min(names, key=lambda t: table[t][e]) for e in names} if bold_min else {}
    rows = []
    for t in names:
        cells = []
        for e in names:
            text = fmt(table[t][e], digits)
            cells.append(f"**{text}**" if best.get(e) == t else text)
        rows.append([t] + cells)
    for label, values in (extra_rows or {}).items():
        rows.append([label] + [fmt(values[e], digits) for e in names])
    return markdown_table(["trained on \\ evaluated on"] + names, rows)


# ----------------------------------------------------------------------------------------------
# report.json and report.md
# ----------------------------------------------------------------------------------------------


def finite_or_none(value):
    """JSON has no NaN or infinity: such values (there should be none) become null."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def header(report: dict, plot_note: str | None) -> list[str]:
    """The report's title block: the command, the sizes, the scores' definition, the machine and time."""
    c = report["config"]
    m = report["machine"]
    eval_sizes = ", ".join(f"{n} {d['eval_bytes']:,} B" for n, d in report["domains"].items())
    params = f" ({report['gpt_params']:,} parameters)" if "gpt_params" in report else ""
    out = ["# Domain mismatch: report\n",
           f"Command: `{report['command']}`  \n"
           f"Preset `{c['preset']}`: GPT {c['n_layer']} layers x {c['n_embd']} wide{params}, "
           f"context {c['block_size']} bytes; every model trains {c['steps']} steps x {c['batch_size']} windows = "
           f"{report['tokens_per_model']:,} bytes seen.  \n"
           f"Scores: bits per byte on each domain's held-out last 10%, over at most {c['eval_windows']} fixed windows "
           f"({eval_sizes}).  \n"
           f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), device {m['device']}"
           f"{', ' + m['gpu'] if 'gpu' in m else ''}; Python {m['python']}, torch {m['torch']}.  \n"
           f"Started {report['started']}; took {report['timing']['total_seconds'] / 60:.1f} minutes "
           f"({report['timing']['models_trained']} models, "
           f"median step {fmt(report['timing']['median_step_ms'], 1)} ms, "
           f"{report['timing']['cpu_seconds'] / 60:.1f} minutes of CPU time).\n"]
    if plot_note:
        out.append(f"> {plot_note}\n")
    return out


def notes(numbers: dict[str, int]) -> list[str]:
    """The closing notes; `numbers` maps each experiment of this report to its section number."""
    one_seed = sorted(number for name, number in numbers.items() if name != "matrix")
    out = ["## Notes\n"]
    if one_seed:
        span = f"{one_seed[0]}-{one_seed[-1]}" if len(one_seed) > 1 else f"{one_seed[0]}"
        out.append(f"- Experiment{'s' if len(one_seed) > 1 else ''} {span} use one seed (seed 0); compare "
                   "their differences with the matrix's seed spread above.")
    out.append("- Timings come from whatever else the machine was doing; "
               "the step time above is the median over the run.")
    out.append("- Every number here is in `report.json` (per seed for the matrix).")
    return out


def write_markdown(report: dict, experiments: list, figures: list[str], plot_note: str | None) -> str:
    """report.md: the header, one section per experiment (numbered in registry order), the notes."""
    out = header(report, plot_note)
    numbers = {experiment.name: number for number, experiment in enumerate(experiments, start=1)}
    for experiment in experiments:
        out.append(experiment.write_section(report, numbers[experiment.name], figures))
    out += notes(numbers)
    return "\n".join(out) + "\n"


def write_report(report: dict, out_dir: Path, experiments: list | None = None) -> list[str]:
    """Write the PNGs (when matplotlib is there), report.json and report.md; returns the files written.

    `experiments` are the registry entries that ran (by default those whose sections are in `report`).
    """
    from .experiments import EXPERIMENTS, FIGURE_FILES

    if experiments is None:
        experiments = [e for e in EXPERIMENTS if e.name in report.get("experiments", [e.name for e in EXPERIMENTS])]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURE_FILES:  # a rerun with --overwrite leaves no stale picture behind
        (out_dir / name).unlink(missing_ok=True)
    plt = load_pyplot()
    figures = []
    if plt is not None:
        for experiment in experiments:
            figures += experiment.figures(report, out_dir, plt)
    report = dict(report, figures=figures, plot_note=None if plt is not None else PLOT_NOTE)
    as_json = json.dumps(finite_or_none(report), indent=1, allow_nan=False) + "\n"
    write_atomic(out_dir / "report.json", as_json.encode())
    write_atomic(out_dir / "report.md", write_markdown(report, experiments, figures, report["plot_note"]).encode())
    return ["report.md", "report.json"] + figures
