"""OUT/parts/: each finished job's result, written as it finishes, so that a run that dies keeps
what it finished and `--resume` skips it.

A part is one JSON file, `KEY.json`: the job's key and label, a fingerprint of everything that
decides its numbers (the config, the domains' files and sizes, the transfer pair), its result,
and the wall time of its training steps. A job whose model a later job starts from also writes
the weights, `KEY.pt`, before its JSON (so a JSON part is always complete). Every file is written
to a temporary name and renamed, so a part is either whole or absent.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from minilm.cli import UserError

FAILED_SUFFIX = ".failed"  # a rank that fails writes rankN.failed (JSON): the job and the error
RUNNING_SUFFIX = ".running"  # rankN.running (JSON): the job rank N is running now


def fingerprint(config, domains: dict, pair: tuple) -> str:
    """A short hash of what decides every number of the grid."""
    what = {"config": asdict(config), "pair": list(pair),
            "domains": {name: [d.spec, str(d.path), d.train_bytes, d.val_bytes] for name, d in domains.items()}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class Parts:
    """The parts folder of one run: write, find and read parts; refuse parts of another config."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint
        self._models: dict = {}  # key -> model already loaded in this process

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def done(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, label: str, result: dict, step_seconds: list, model=None, model_spec=None,
              rank: int = 0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if model is not None:
            import io

            buffer = io.BytesIO()
            torch.save({name: t.detach().cpu() for name, t in model.state_dict().items()}, buffer)
            write_atomic(self.folder / f"{key}.pt", buffer.getvalue())
        part = {"key": key, "label": label, "rank": rank, "fingerprint": self.fingerprint, "model": model_spec,
                "result": result, "step_seconds": list(step_seconds)}
        write_atomic(self.path(key), (json.dumps(part, allow_nan=True) + "\n").encode())

    def read(self, key: str) -> dict:
        path = self.path(key)
        try:
            part = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"--resume: {str(path)!r} is not a readable part ({error}); "
                            "delete it to retrain it") from None
        if part.get("fingerprint") != self.fingerprint:
            raise UserError(f"--resume: {str(path)!r} was made by another config or other corpora; run with the "
                            "same flags, or without --resume into a new --out")
        return part

    def check_all(self, keys: list[str]) -> list[str]:
        """The keys whose parts are already there, each checked to come from this config."""
        found = [key for key in keys if self.done(key)]
        for key in found:
            self.read(key)
        return found

    def load_model(self, key: str, grid) -> torch.nn.Module:
        """Rebuild the model that job `key` saved, on the grid's device."""
        if key not in self._models:
            from minilm.devices import pick_device

            spec = self.read(key)["model"]
            config = grid.train_config(grid.names[0], seed=0, model=spec["kind"], model_args=spec["args"])
            model = grid.build(config)
            weights = torch.load(self.folder / f"{key}.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(weights)
            self._models[key] = model.to(pick_device(grid.config.device))
        return self._models[key]

    def failures(self) -> list[dict]:
        """What failed ranks wrote (rank, job label, error), if anything."""
        found = []
        for path in sorted(self.folder.glob(f"rank*{FAILED_SUFFIX}")):
            with_error = json.loads(path.read_text())
            found.append(with_error)
        return found

    def write_failure(self, rank: int, label: str, error: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"rank": rank, "label": label, "error": error}
        write_atomic(self.folder / f"rank{rank}{FAILED_SUFFIX}", (json.dumps(payload) + "\n").encode())

    def clear(self) -> None:
        """Remove the parts of an earlier run (only the files this module writes)."""
        if not self.folder.is_dir():
            return
        for pattern in ("*.json", "*.pt", ".*.tmp"):
            for path in self.folder.glob(pattern):
                path.unlink()

    def clear_failures(self) -> None:
        for pattern in (f"rank*{FAILED_SUFFIX}", f"rank*{RUNNING_SUFFIX}"):
            for path in self.folder.glob(pattern):
                path.unlink(missing_ok=True)

    def write_running(self, rank: int, label: str) -> None:
        """Note which job `rank` is running, so that a rank killed from outside can be named."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / f"rank{rank}{RUNNING_SUFFIX}", (json.dumps({"label": label}) + "\n").encode())

    def running(self, rank: int) -> str | None:
        """The label of the job `rank` was running last, if it noted one."""
        path = self.folder / f"rank{rank}{RUNNING_SUFFIX}"
        return json.loads(path.read_text())["label"] if path.is_file() else None
