"""Output safety for every command that writes: check the place first, write atomically, one run
per folder, and end quietly when the reader of stdout goes away.

The rules (docs/README_train.md lists what each failure says):

1. Check before work. `check_output_dir` and `check_output_file` look at an output path before any
   data or model is loaded, so a path that cannot work (a file where a folder is needed, a path
   under a file, a missing parent folder, a read-only place) costs the user one line, not minutes.
2. Write atomically. `atomic_write(path, write_fn)` writes to a temporary file in the same folder,
   named `.NAME.XXXXXXXX.tmp`, flushes it to disk and renames it over `path` (`os.replace`, atomic on
   POSIX and Windows): a reader sees the old file or the new one, never half of one. A full disk
   becomes one `DiskFullError` line naming the file; the old file is left as it was.
3. Clean up. A write killed between the two steps leaves its temporary file behind;
   `remove_stale_temp_files` removes them at the next start (call it while holding the run lock,
   so it never removes the temporary file of a write in progress).
4. One run per folder. `RunLock` holds an OS-level lock (the `filelock` package: `flock` on POSIX,
   `msvcrt.locking` on Windows) that the operating system releases when the process ends in any
   way, so a lock left by a killed run is never mistaken for a live one. The holder's pid, start
   time and command line go to a side file, so the second run can name the first.
5. Broken pipes. `python train.py ... | head` closes stdout early; `exit_quietly_on_broken_pipe`
   turns the BrokenPipeError of the next print into a quiet exit.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from minilm.cli import UserError

DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
LOCK_NAME = ".minilm.lock"  # the OS-locked file in an output folder
LOCK_INFO_NAME = ".minilm.lock.json"  # who holds it: pid, start time, command


class DiskFullError(UserError):
    """The disk (or the user's quota) filled up while writing a file; the old file is unchanged."""


class OutputInUseError(UserError):
    """Another live run holds the output folder's lock."""


# ----------------------------------------------------------------------------------------------
# 1. Checking output paths before any work
# ----------------------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its closest existing ancestor."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _writable(folder: Path) -> bool:
    # os.access asks the kernel, so a read-only file system (EROFS) is caught even for root.
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, with one UserError line naming `flag`, a folder path that cannot be written.

    The folder may not exist yet (it will be created with its parents); what is refused is an
    existing file at `path`, a path that runs through a file, and a folder (or the closest existing
    ancestor) that this process may not write into. Nothing is created here.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag}: {str(path)!r} is a file; expected a folder (or a path that does not exist yet)")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{flag}: {str(path)!r} lies under {str(existing)!r}, which is a file, not a folder")
    if not _writable(existing):
        raise UserError(f"{flag}: cannot write into {str(existing)!r} (read-only or no permission)")
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, with one UserError line naming `flag`, a file path that cannot be written.

    Refused: a folder at `path`, a parent folder that does not exist (a file output never creates
    folders: a typo in the folder name would otherwise go unnoticed), a parent that is a file,
    and a parent this process may not write into (atomic writes create a temporary file there).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag}: {str(path)!r} is a folder; expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        existing = _nearest_existing(parent)
        if not existing.is_dir():
            raise UserError(f"{flag}: {str(path)!r} lies under {str(existing)!r}, which is a file, not a folder")
        raise UserError(f"{flag}: the folder {str(parent)!r} does not exist; create it first")
    if not parent.is_dir():
        raise UserError(f"{flag}: {str(path)!r} lies under {str(parent)!r}, which is a file, not a folder")
    if not _writable(parent):
        raise UserError(f"{flag}: cannot write into {str(parent)!r} (read-only or no permission)")
    return path


def make_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """`check_output_dir`, then create the folder (and its parents)."""
    path = check_output_dir(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a race with another process, or a file system that refuses
        raise UserError(f"{flag}: cannot create the folder {str(path)!r} ({error.strerror or error})") from None
    return path


# ----------------------------------------------------------------------------------------------
# 2. Atomic writes
# ----------------------------------------------------------------------------------------------


class _RecordingWriter:
    """A file handle that remembers the OSError of a failed write.

    Some writers (torch.save) wrap the OSError of the file they write into their own RuntimeError;
    the recorded error still tells a full disk from a bug.
    """

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _disk_full(error: BaseException, recorded: OSError | None) -> bool:
    for candidate in (error, recorded, error.__cause__, error.__context__):
        if isinstance(candidate, OSError) and candidate.errno in DISK_FULL_ERRNOS:
            return True
    return False


def temp_name_prefix(path: Path) -> str:
    """Temporary files for `path` are `.NAME.XXXXXXXX.tmp` in the same folder (see checkpoint.py)."""
    return f".{path.name}."


def atomic_write(path: str | os.PathLike, write_fn: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: `write_fn(handle)` fills a temporary file in the same folder
    (binary mode), which is flushed to disk and renamed over `path`.

    On any failure the temporary file is removed and `path` is left as it was. A full disk or
    quota (ENOSPC, EDQUOT), also when the writer wraps it in another exception, becomes one
    DiskFullError line naming the file.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=temp_name_prefix(path), suffix=".tmp",
                                         delete=False)
    writer = _RecordingWriter(handle)
    try:
        with handle:
            write_fn(writer)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
        os.replace(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, Exception) and _disk_full(error, writer.error):
            raise DiskFullError(f"{path}: the disk is full (no space left while writing it); "
                                "the previous version of the file is unchanged") from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace `path` by `data`, atomically (see `atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace `path` by `text`, atomically; bytes are written as given (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def remove_stale_temp_files(folder: str | os.PathLike, names: list[str] | None = None) -> list[Path]:
    """Remove the `.NAME.*.tmp` files that interrupted atomic writes left in `folder`.

    `names` limits it to the temporary files of those outputs (e.g. ["ckpt.pt", "log.jsonl"]);
    None removes every such file. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefixes = [f".{name}." for name in names] if names is not None else ["."]
    removed = []
    for entry in folder.iterdir():
        if entry.name.endswith(".tmp") and any(entry.name.startswith(p) for p in prefixes) and entry.is_file():
            try:
                entry.unlink()
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


# ----------------------------------------------------------------------------------------------
# 3. One run per output folder
# ----------------------------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe probe here; the OS lock itself is authoritative on Windows
    try:
        os.kill(pid, 0)  # signal 0: checks the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _describe_holder(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']} on {info.get('host', '?')}, started {info.get('started', '?')}: "
                f"{info.get('command', '?')}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not readable)"


class RunLock:
    """An exclusive lock on an output folder for the life of a run (a context manager).

        with RunLock(out_dir, "--out"):
            ...  # the only run writing into out_dir

    A second run on the same folder gets an OutputInUseError line naming the first (pid, host,
    start time, command). The OS releases the lock when the holder exits, however it exits, so a
    lock file left by a killed run does not block the next one. Where the file system cannot lock
    (filelock falls back to a lock file whose existence is the lock), a lock whose holder process
    is gone is recognised from the side file and taken over.
    """

    def __init__(self, folder: str | os.PathLike, flag: str):
        from filelock import FileLock

        self.folder = Path(folder)
        self.flag = flag
        self.info_path = self.folder / LOCK_INFO_NAME
        self._lock = FileLock(str(self.folder / LOCK_NAME), timeout=0)

    def acquire(self) -> RunLock:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            if not self._holder_is_gone():
                raise OutputInUseError(f"{self.flag}: {str(self.folder)!r} is in use by another run "
                                       f"({_describe_holder(self.info_path)}); wait for it to end or choose "
                                       f"another {self.flag}") from None
            Path(self._lock.lock_file).unlink(missing_ok=True)
            try:
                self._lock.acquire()
            except Timeout:
                raise OutputInUseError(f"{self.flag}: {str(self.folder)!r} is in use by another run") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv) or "python"}
        atomic_write_text(self.info_path, json.dumps(info) + "\n")
        return self

    def _holder_is_gone(self) -> bool:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), info.get("host")
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return host == socket.gethostname() and pid != os.getpid() and not _process_alive(pid)

    def release(self) -> None:
        if self._lock.is_locked:
            self.info_path.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


# ----------------------------------------------------------------------------------------------
# 4. Run ids and broken pipes
# ----------------------------------------------------------------------------------------------


def new_run_id() -> str:
    """A fresh id for a run: sortable by start time, unique by its random tail (e.g. 20260101-120000-3fa9c2d1)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(4)


def exit_quietly_on_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command's `main` so that a closed stdout (`... | head`) ends it quietly with status 0.

    Python would print a BrokenPipeError traceback, and a second one when it flushes stdout at
    exit; pointing stdout at the null device silences that second flush.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass  # stdout is not a real file (e.g. captured in tests): nothing to silence
            return 0

    return wrapper
