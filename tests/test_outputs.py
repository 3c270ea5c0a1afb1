"""minilm.outputs: output paths checked before work, atomic writes (a full disk keeps the old file),
stale temporary files, the run lock, run ids and quiet broken pipes."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from minilm.cli import UserError
from minilm.data import REPO_ROOT
from minilm.outputs import (
    LOCK_INFO_NAME,
    LOCK_NAME,
    DiskFullError,
    OutputInUseError,
    RunLock,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    exit_quietly_on_broken_pipe,
    make_output_dir,
    new_run_id,
    remove_stale_temp_files,
)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def pretend_read_only(monkeypatch, folder):
    """os.access says `folder` is not writable (as on a read-only mount; chmod does not stop root)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.samefile(p, folder) else real_access(p, mode))


# --- 1. checking output paths ------------------------------------------------------------------


def test_output_folder_checks_refuse_a_file_a_path_under_a_file_and_a_read_only_place(tmp_path, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(UserError, match=r"^--out: .*notes.txt' is a file; expected a folder"):
        check_output_dir(a_file, "--out")
    with pytest.raises(UserError, match=r"^--out: .*lies under .*notes.txt', which is a file"):
        check_output_dir(a_file / "run" / "deeper", "--out")
    assert check_output_dir(tmp_path / "new" / "run", "--out") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    pretend_read_only(monkeypatch, tmp_path)
    with pytest.raises(UserError, match=r"^--out: cannot write into .* \(read-only or no permission\)"):
        check_output_dir(tmp_path / "new" / "run", "--out")
    assert a_file.read_text() == "mine"


def test_output_file_checks_refuse_a_folder_a_missing_parent_a_parent_file_and_a_read_only_place(tmp_path,
                                                                                                monkeypatch):
    (tmp_path / "folder").mkdir()
    (tmp_path / "corpus.txt").write_text("text")
    with pytest.raises(UserError, match=r"^--out: .*folder' is a folder; expected a file path"):
        check_output_file(tmp_path / "folder", "--out")
    with pytest.raises(UserError, match=r"^--out: the folder .*typo' does not exist"):
        check_output_file(tmp_path / "typo" / "tok.json", "--out")
    with pytest.raises(UserError, match=r"^--out: .*which is a file"):
        check_output_file(tmp_path / "corpus.txt" / "tok.json", "--out")
    assert check_output_file(tmp_path / "tok.json", "--out") == tmp_path / "tok.json"
    pretend_read_only(monkeypatch, tmp_path)
    with pytest.raises(UserError, match=r"^--out: cannot write into"):
        check_output_file(tmp_path / "tok.json", "--out")


def test_make_output_dir_creates_parents_only_after_the_check(tmp_path):
    assert make_output_dir(tmp_path / "a" / "b", "--out").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="which is a file"):
        make_output_dir(tmp_path / "f" / "b", "--out")


# --- 2. atomic writes ----------------------------------------------------------------------------


class FillsUp:
    """A writer that writes `budget` bytes, then fails as a full disk (or quota) does."""

    def __init__(self, budget: int, code: int):
        self.budget, self.code = budget, code

    def __call__(self, handle):
        handle.write(b"x" * self.budget)
        handle.flush()
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_gives_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, code):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old and good")
    with pytest.raises(DiskFullError) as caught:
        atomic_write(target, FillsUp(4096, code))
    message = str(caught.value)
    assert str(target) in message and "disk is full" in message and "\n" not in message
    assert target.read_bytes() == b"old and good"
    assert leftovers(tmp_path) == []


def test_a_full_disk_inside_torch_save_is_recognised_through_its_runtime_error(tmp_path):
    target = tmp_path / "ckpt.pt"
    torch.save({"w": torch.ones(3)}, target)

    def save_partway(handle):
        class Full:
            written = 0

            def write(self, data):
                Full.written += len(data)
                if Full.written > 1000:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return handle.write(data)

            def flush(self):
                handle.flush()

        torch.save({"w": torch.randn(10_000)}, Full())

    with pytest.raises(DiskFullError, match="disk is full"):
        atomic_write(target, save_partway)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert leftovers(tmp_path) == []


def test_other_failures_propagate_unchanged_and_leave_no_temp_file(tmp_path):
    target = tmp_path / "log.jsonl"
    target.write_text("old\n")

    def broken(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, broken)

    def denied(handle):
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(OSError) as caught:
        atomic_write(target, denied)
    assert not isinstance(caught.value, DiskFullError)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_atomic_text_and_bytes_replace_the_file_and_keep_bytes_exactly(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "line one\r\nline two\n")
    assert target.read_bytes() == b"line one\r\nline two\n"
    atomic_write_bytes(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff" and leftovers(tmp_path) == []


def test_stale_temp_files_of_interrupted_writes_are_removed_and_nothing_else(tmp_path):
    for name in [".ckpt.pt.abc123.tmp", ".log.jsonl.x.tmp", ".best.pt.q.tmp", "ckpt.pt", "notes.tmp", ".hidden"]:
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temp_files(tmp_path, ["ckpt.pt", "log.jsonl"])
    assert sorted(p.name for p in removed) == [".ckpt.pt.abc123.tmp", ".log.jsonl.x.tmp"]
    assert sorted(p.name for p in remove_stale_temp_files(tmp_path)) == [".best.pt.q.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "ckpt.pt", "notes.tmp"]
    assert remove_stale_temp_files(tmp_path / "absent") == []


# --- 3. the run lock -----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from minilm.outputs import RunLock
    with RunLock(sys.argv[1], "--out"):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the test closes our stdin (or kills us)
""")


def start_holder(folder):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_is_refused_naming_the_first_and_the_lock_is_released_on_exit_or_kill(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(OutputInUseError, match=rf"^--out: .* is in use by another run \(pid {holder.pid} "):
            RunLock(tmp_path, "--out").acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with RunLock(tmp_path, "--out"):  # released at a normal exit
        info = json.loads((tmp_path / LOCK_INFO_NAME).read_text())
        assert info["pid"] == os.getpid()
    assert not (tmp_path / LOCK_INFO_NAME).exists()
    killed = start_holder(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    with RunLock(tmp_path, "--out"):  # released by the OS when the holder is killed
        pass


def test_a_lock_in_the_same_process_is_refused_too(tmp_path):
    with RunLock(tmp_path, "--out-dir"):
        with pytest.raises(OutputInUseError, match=r"^--out-dir: "):
            RunLock(tmp_path, "--out-dir").acquire()


def test_a_stale_lock_file_of_a_dead_process_does_not_block(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text("")
    (tmp_path / LOCK_INFO_NAME).write_text(json.dumps({"pid": dead.pid, "host": "elsewhere", "started": "then"}))
    with RunLock(tmp_path, "--out"):
        assert json.loads((tmp_path / LOCK_INFO_NAME).read_text())["pid"] == os.getpid()


# --- 4. run ids and broken pipes -----------------------------------------------------------------


def test_run_ids_are_fresh():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(isinstance(i, str) and len(i) >= 16 for i in ids)


def test_a_closed_stdout_ends_a_command_quietly():
    script = textwrap.dedent("""
        import sys
        from minilm.outputs import exit_quietly_on_broken_pipe

        @exit_quietly_on_broken_pipe
        def main():
            for i in range(200_000):
                print("line", i)
            return 3

        sys.exit(main())
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
    assert process.stdout.readline() == b"line 0\n"
    process.stdout.close()  # the reader goes away, as `| head -1` does
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0 and stderr == ""


def test_the_wrapper_passes_through_other_results():
    assert exit_quietly_on_broken_pipe(lambda: 5)() == 5
    with pytest.raises(ValueError):
        exit_quietly_on_broken_pipe(lambda: int("x"))()
