"""The output folder of a training run (`--out`): ckpt.pt, best.pt and log.jsonl, kept the user's.

A run has an id (`minilm.outputs.new_run_id`), stored in ckpt.pt, best.pt and every record of
log.jsonl. Before any data or model is loaded, `RunFolder.open`

1. checks that `--out` can be a folder we write into (one line if not);
2. takes the folder's lock, so a second run into it stops with one line naming the first (only
   the main process of a multi-process run holds it), and removes temporary files that a killed
   write left behind;
3. refuses a file that neither this run nor the run being resumed made: for a fresh run every
   ckpt.pt, best.pt or log.jsonl already there; on `--resume`, a best.pt or log record whose run id
   is not the checkpoint's. `--overwrite` allows replacing them.

Every write is atomic (`minilm.outputs.atomic_write`), and log.jsonl is rewritten whole from the
run's history at each evaluation, so it holds exactly one record per evaluated step however often
the run was interrupted and resumed.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from minilm.checkpoint import FORMAT_VERSION, CheckpointError, read_checkpoint
from minilm.cli import UserError
from minilm.outputs import (
    LOCK_NAME,
    RunLock,
    atomic_write,
    atomic_write_text,
    check_output_dir,
    make_output_dir,
    new_run_id,
    remove_stale_temp_files,
)

CHECKPOINT_NAME, BEST_NAME, LOG_NAME = "ckpt.pt", "best.pt", "log.jsonl"
OUTPUT_NAMES = (CHECKPOINT_NAME, BEST_NAME, LOG_NAME)


class RunFolder:
    """Where a run writes; `writes` is False on the processes of a multi-process run other than the main one."""

    def __init__(self, path: Path, run_id: str | None, writes: bool, lock: RunLock | None, created: bool = False):
        self.path, self.run_id, self.writes, self.lock = path, run_id, writes, lock
        self.created = created  # this run made the folder: a run that fails before writing removes it

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @classmethod
    def open(cls, out_dir: str, resume: bool, overwrite: bool, is_main: bool) -> tuple[RunFolder, dict | None]:
        """Check, lock and vet the folder; returns it and, on resume, the checkpoint to continue."""
        path = check_output_dir(out_dir, "--out")
        checkpoint_path = path / CHECKPOINT_NAME
        if resume and not checkpoint_path.is_file():
            raise CheckpointError(f"--resume: no checkpoint to resume at {str(checkpoint_path)!r}; "
                                  "run once without --resume first")
        lock, created = None, not path.exists()
        if is_main:
            make_output_dir(path, "--out")
            lock = RunLock(path, "--out").acquire()
        try:
            checkpoint = read_checkpoint(checkpoint_path) if resume else None
            # A checkpoint of a minilm without run ids keeps None, which its files (also without) match.
            run_id = checkpoint.get("run_id") if checkpoint is not None else new_run_id()
            if is_main:
                remove_stale_temp_files(path, list(OUTPUT_NAMES))
                foreign = _foreign_files(path, checkpoint)
                if foreign and not overwrite:
                    raise _refusal(path, foreign, resume)
                if checkpoint is not None and BEST_NAME in foreign:
                    (path / BEST_NAME).unlink()  # --overwrite: another run's best model must not pass for ours
        except BaseException:
            cls(path, "", is_main, lock, created).close()
            raise
        return cls(path, run_id, is_main, lock, created), checkpoint

    def write_log(self, history: list[dict]) -> None:
        """Rewrite log.jsonl from the whole history: one line per evaluated step."""
        if self.writes:
            atomic_write_text(self.path / LOG_NAME, "".join(json.dumps(record) + "\n" for record in history))

    def save(self, name: str, checkpoint: dict) -> None:
        """Write `checkpoint` (with its format version) to NAME in the folder, atomically."""
        if self.writes:
            checkpoint = {"format": FORMAT_VERSION, **checkpoint}
            atomic_write(self.path / name, lambda handle: torch.save(checkpoint, handle))

    def close(self) -> None:
        """Release the lock; a folder this run created and wrote nothing into is removed again."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
            if self.created and not any((self.path / name).exists() for name in OUTPUT_NAMES):
                with contextlib.suppress(OSError):  # something else appeared in it: leave it
                    (self.path / LOCK_NAME).unlink()
                    self.path.rmdir()


def _foreign_files(path: Path, checkpoint: dict | None) -> list[str]:
    """The outputs in `path` that the run being resumed (or, without one, no run of ours) made."""
    present = [name for name in OUTPUT_NAMES if (path / name).exists()]
    if checkpoint is None:
        return present
    run_id = checkpoint.get("run_id")
    foreign = []
    if BEST_NAME in present and _checkpoint_run_id(path / BEST_NAME) != run_id:
        foreign.append(BEST_NAME)
    if LOG_NAME in present and any(record_id != run_id for record_id in _log_run_ids(path / LOG_NAME)):
        foreign.append(LOG_NAME)
    return foreign


def _checkpoint_run_id(path: Path):
    """The run id stored in a checkpoint file (memory-mapped: the weights are not read)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("run_id")
    except Exception:  # unreadable: certainly not ours
        return object()


def _log_run_ids(path: Path) -> list:
    ids = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return [object()]
    for line in lines:
        try:
            ids.append(json.loads(line).get("run_id"))
        except (ValueError, AttributeError):
            ids.append(object())  # a line no run of ours wrote
    return ids


def _refusal(path: Path, foreign: list[str], resume: bool) -> UserError:
    where = str(path)
    if not resume and CHECKPOINT_NAME in foreign:
        return UserError(f"--out: {where!r} already holds a checkpoint; pass --resume to continue it "
                         "or --overwrite to start over")
    whose = "the run being resumed" if resume else "this run"
    return UserError(f"--out: {where!r} holds {', '.join(foreign)} that {whose} did not make; "
                     "pass --overwrite to replace them or choose another --out")
