"""The whole grid: gather the selected experiments' jobs, run them (here or spread over ranks),
then let each experiment summarise its results into the report, in registry order."""
from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .config import MismatchConfig
from .domains import Domain
from .grid import Grid
from .parts import Parts
from .schedule import run_jobs


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_grid(config: MismatchConfig, domains: dict[str, Domain], pair: tuple[str, str], experiments: list,
             parts: Parts, command: str, rank: int = 0, world: int = 1, say=print) -> dict | None:
    """Run the experiments' jobs and, on rank 0, return the report as one JSON-ready dict (None on
    other ranks). Torch's CPU thread count is set to the config's while the grid runs."""
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)  # training sets it too; the grid's own scoring runs outside it
    try:
        return _run_grid(config, domains, pair, experiments, parts, command, rank, world, say)
    finally:
        torch.set_num_threads(threads_before)


def source_commit() -> str | None:
    """The git commit of the code that made the report (None outside a git checkout)."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def _run_grid(config, domains, pair, experiments, parts, command, rank, world, say) -> dict | None:
    from minilm.devices import pick_device

    started, cpu_started = time.time(), time.process_time()
    started_at, commit = datetime.datetime.now().isoformat(timespec="seconds"), source_commit()  # the code that runs
    grid = Grid(config, domains, pair, parts)
    jobs = [job for experiment in experiments for job in experiment.jobs(grid)]
    results = run_jobs(grid, jobs, parts, rank, world, say)
    if results is None:
        return None
    report = {"command": command, "config": asdict(config),
              "started": started_at, "commit": commit,
              "machine": machine_info(str(pick_device(config.device))),
              "domains": {name: {"path": str(d.path), "train_bytes": d.train_bytes, "val_bytes": d.val_bytes,
                                 "eval_windows": int(d.eval_set.windows.shape[0]), "eval_bytes": d.eval_set.num_bytes}
                          for name, d in domains.items()},
              "transfer_pair": list(pair), "tokens_per_model": config.tokens_per_model(),
              "experiments": [experiment.name for experiment in experiments], "ranks": world}
    for experiment in experiments:
        report.update(experiment.summarise(grid, results, report))
    steps = np.asarray([s for part in results.values() for s in part["step_seconds"]])
    by_experiment = {}
    for job in jobs:
        name = job.key.split(".", 1)[0]
        by_experiment[name] = by_experiment.get(name, 0.0) + float(np.sum(results[job.key]["step_seconds"]))
    report["timing"] = {"total_seconds": time.time() - started, "cpu_seconds": time.process_time() - cpu_started,
                        "training_seconds_by_experiment": by_experiment,
                        "models_trained": sum(job.trains for job in jobs), "jobs": len(jobs),
                        "training_steps": int(len(steps)),
                        "median_step_ms": float(np.median(steps) * 1000) if len(steps) else None}
    return report
