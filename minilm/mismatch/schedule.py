"""Run the grid's jobs in one process or spread over several, in dependency order.

The jobs come in an order where every job comes after the jobs it starts from (`Job.after`).
With R ranks, the jobs still to do are dealt round-robin in that order: rank r takes jobs r,
r + R, r + 2R, ... Before a job starts, its rank waits until the parts of the jobs it starts from
are written (by whichever rank ran them). This cannot deadlock: what a job waits for comes earlier
in the order, and every rank works through its own jobs in order.

Results travel through OUT/parts/ (see `minilm.mismatch.parts`): each rank writes a part as a job
finishes; rank 0, when its own jobs are done, waits for every part and reads them all. The models
are trained by one process each, so every number equals that of a 1-process run with the same seeds.
One progress bar, on rank 0, counts the parts written by every rank.
"""
from __future__ import annotations

import os
import time
import traceback

from minilm.cli import UserError

from .grid import Grid, Job
from .parts import Parts

POLL_SECONDS = 0.2


def where_am_i() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when run plainly."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def check_order(jobs: list[Job]) -> None:
    """Every job comes after the jobs it starts from, and keys are unique."""
    seen = set()
    for job in jobs:
        missing = [key for key in job.after if key not in seen]
        if missing or job.key in seen:
            raise AssertionError(f"job {job.key} comes before {missing} or twice")
        seen.add(job.key)


def deal(pending: list[Job], rank: int, world: int) -> list[Job]:
    """The jobs of `rank`: round-robin over the pending jobs in dependency order."""
    return pending[rank::world]


def run_jobs(grid: Grid, jobs: list[Job], parts: Parts, rank: int = 0, world: int = 1, say=print) -> dict | None:
    """Run this rank's share of `jobs` (those without a part yet); on rank 0, return every job's
    part {key: part} once all are written; on other ranks, return None when their share is done."""
    check_order(jobs)
    needed = {key for job in jobs for key in job.after}  # jobs whose model must be saved
    pending = [job for job in jobs if not parts.done(job.key)]
    mine = deal(pending, rank, world)
    if rank == 0 and world > len(pending) and pending:
        say(f"{world} ranks for {len(pending)} models to train: ranks {len(pending)}-{world - 1} stay idle")
    progress = make_progress(len(jobs), len(jobs) - len(pending)) if rank == 0 else None
    try:
        for job in mine:
            for key in job.after:
                wait_for(parts, [key], progress, jobs)
            if progress is not None:
                progress.set_description(job.label)
            parts.write_running(rank, job.label)
            grid.step_seconds = []
            try:
                result, trained = job.run(grid)
            except UserError:
                raise
            except Exception as error:  # one line naming the job; the finished parts stay
                message = f"{job.label} failed on rank {rank}: {type(error).__name__}: {error}"
                parts.write_failure(rank, job.label, message)
                if os.environ.get("MINILM_MISMATCH_DEBUG"):
                    traceback.print_exc()
                raise UserError(message + f"; finished parts are kept in {parts.folder}") from None
            keep = trained is not None and job.key in needed
            spec = {"kind": trained.config.model, "args": trained.config.model_args} if keep else None
            parts.write(job.key, job.label, result, grid.step_seconds, model=trained.model if keep else None,
                        model_spec=spec, rank=rank)
            if progress is not None:
                progress.update(count_done(parts, jobs) - progress.n)
        if rank != 0:
            return None
        wait_for(parts, [job.key for job in jobs], progress, jobs)
        return {job.key: parts.read(job.key) for job in jobs}
    finally:
        if progress is not None:
            progress.close()


def count_done(parts: Parts, jobs: list[Job]) -> int:
    return sum(parts.done(job.key) for job in jobs)


def wait_for(parts: Parts, keys: list[str], progress, jobs: list[Job]) -> None:
    """Wait until the parts of `keys` exist; stop with the failed rank's line if one failed."""
    while not all(parts.done(key) for key in keys):
        failures = parts.failures()
        if failures:
            raise UserError(failures[0]["error"] + f"; finished parts are kept in {parts.folder}")
        if progress is not None:
            progress.update(count_done(parts, jobs) - progress.n)
        time.sleep(POLL_SECONDS)
    if progress is not None:
        progress.update(count_done(parts, jobs) - progress.n)


def make_progress(total: int, done: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, unit="job", dynamic_ncols=True)
