"""train.py and minilm.training under faults: files the user owns, output paths, a second run, signals,
a full disk, broken pipes, changed flags on resume, strict values, divergence, stray torchrun variables.

Each test names the class of failure it covers; each class has a case beyond the examples of the
issue that listed them. Runs are tiny (a 1-layer, 16-wide GPT) and mostly in this process."""
from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

from minilm.checkpoint import load_model, read_checkpoint
from minilm.data import REPO_ROOT, ByteTokenizer, UserError
from minilm.training import TrainConfig, train
from tests.test_training import TINY_FLAGS, read_log, run_cli, subprocess_env, tiny_config

QUICK = TINY_FLAGS + ["--steps", "3"]  # evaluations at steps 0 and 3


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- files the user owns are never replaced without --overwrite -------------------------------------


@pytest.mark.parametrize("name", ["log.jsonl", "best.pt"])
def test_a_file_of_another_run_in_out_is_refused_and_kept(tmp_path, capsys, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    status, _, err = run_cli(QUICK + ["--out", str(out)], capsys)
    assert status == 2 and one_line(err)
    assert f"holds {name} that this run did not make" in err and "--overwrite" in err
    assert (out / name).read_bytes() == b"the user's own file"
    assert not (out / "ckpt.pt").exists()


def test_resume_refuses_a_best_model_and_a_log_copied_in_from_another_run(tmp_path, capsys):
    """Beyond the examples: on --resume, the run id tells the run's own files from others'."""
    for name in ("a", "b"):
        assert run_cli(QUICK + ["--out", str(tmp_path / name)], capsys)[0] == 0
    ids = {name: read_checkpoint(tmp_path / name / "ckpt.pt")["run_id"] for name in ("a", "b")}
    assert ids["a"] != ids["b"]
    for path in (tmp_path / "a" / "ckpt.pt", tmp_path / "a" / "best.pt"):
        assert read_checkpoint(path)["run_id"] == ids["a"]
    assert {record["run_id"] for record in read_log(tmp_path / "a")} == {ids["a"]}
    foreign_best = (tmp_path / "b" / "best.pt").read_bytes()
    (tmp_path / "a" / "best.pt").write_bytes(foreign_best)
    resume = ["--resume", "--out", str(tmp_path / "a"), "--steps", "6", "--no-progress"]
    status, _, err = run_cli(resume, capsys)
    assert status == 2 and one_line(err) and "best.pt that the run being resumed did not make" in err
    assert (tmp_path / "a" / "best.pt").read_bytes() == foreign_best
    (tmp_path / "a" / "log.jsonl").write_text((tmp_path / "b" / "log.jsonl").read_text())
    status, _, err = run_cli(resume, capsys)
    assert status == 2 and "best.pt, log.jsonl" in err
    assert run_cli(resume + ["--overwrite"], capsys)[0] == 0
    assert {record["run_id"] for record in read_log(tmp_path / "a")} == {ids["a"]}
    assert read_checkpoint(tmp_path / "a" / "ckpt.pt")["step"] == 6


def test_overwrite_starts_a_new_run_whose_files_all_carry_its_id(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"step": 0}\n{"step": 99}\n')
    (out / ".ckpt.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)  # left by a write that was killed
    assert run_cli(QUICK + ["--out", str(out), "--overwrite"], capsys)[0] == 0
    run_id = read_checkpoint(out / "ckpt.pt")["run_id"]
    assert [(r["step"], r["run_id"]) for r in read_log(out)] == [(0, run_id), (3, run_id)]
    assert temp_files(out) == []


# --- output paths that cannot work fail before any work ---------------------------------------------


@pytest.mark.parametrize("layout, expected", [
    ("file", "is a file; expected a folder"),
    ("under_file", "which is a file, not a folder"),
    ("deep_under_file", "which is a file, not a folder"),  # beyond the examples: two levels below a file
])
def test_an_out_that_cannot_be_a_folder_fails_before_the_data_is_read(tmp_path, capsys, layout, expected):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    out = {"file": a_file, "under_file": a_file / "run", "deep_under_file": a_file / "x" / "run"}[layout]
    status, _, err = run_cli(QUICK + ["--data", "no_such_corpus", "--out", str(out)], capsys)
    assert status == 2 and one_line(err) and err.startswith("train.py: error: --out: ") and expected in err
    assert a_file.read_text() == "mine"


def test_a_read_only_out_fails_at_once(tmp_path, capsys, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    status, _, err = run_cli(QUICK + ["--data", "no_such_corpus", "--out", str(tmp_path / "run")], capsys)
    assert status == 2 and one_line(err) and "--out: cannot write into" in err


# --- one run per output folder ------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from minilm.outputs import RunLock
    with RunLock(sys.argv[1], "--out"):
        print("locked", flush=True)
        sys.stdin.read()
""")


def test_a_second_run_into_the_same_out_stops_naming_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=subprocess_env())
    try:
        assert first.stdout.readline().strip() == "locked"
        status, _, err = run_cli(QUICK + ["--out", str(out)], capsys)
        assert status == 2 and one_line(err) and f"is in use by another run (pid {first.pid} " in err
        assert not (out / "ckpt.pt").exists()
    finally:
        first.stdin.close()
        first.wait(timeout=30)
    assert run_cli(QUICK + ["--out", str(out)], capsys)[0] == 0  # released when the first ends


# --- signals, a full disk, a closed stdout -----------------------------------------------------------


def wait_for(predicate, seconds=60.0):
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.1)
    assert predicate()


def test_sigterm_during_training_saves_a_checkpoint_like_ctrl_c(tmp_path, capsys, monkeypatch):
    from minilm.data import BatchSampler

    real_next_step, calls = BatchSampler.next_step, []

    def next_step(self, grad_accum=1):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a cluster's scheduler sends it
        return real_next_step(self, grad_accum)

    monkeypatch.setattr(BatchSampler, "next_step", next_step)
    out = tmp_path / "run"
    status, printed, err = run_cli(TINY_FLAGS + ["--steps", "100", "--eval-interval", "100", "--out", str(out)],
                                   capsys)
    assert status == 143 and "checkpoint saved" in printed and err == ""
    assert read_checkpoint(out / "ckpt.pt")["step"] == 5


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc for torch being loaded")
def test_ctrl_c_before_the_training_loop_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *QUICK, "--out", str(out)],
                               env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def torch_loading():
        try:
            return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
        except OSError:
            return True  # already gone

    wait_for(torch_loading)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and one_line(stderr) and "interrupted" in stderr, stderr
    assert not (out / "ckpt.pt").exists()


def save_that_fills_the_disk_on_call(monkeypatch, number: int):
    """torch.save, but in its `number`-th call the disk fills up after 1,000 bytes (torch.save wraps
    the OSError of its writer in a RuntimeError, as with a real full disk)."""
    real_save, calls = torch.save, []

    class FillingHandle:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def flush(self):
            self.handle.flush()

    def save(obj, handle, *args, **kwargs):
        calls.append(1)
        return real_save(obj, FillingHandle(handle) if len(calls) == number else handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_while_checkpointing_is_one_line_and_the_last_checkpoint_stays_loadable(tmp_path, capsys,
                                                                                              monkeypatch):
    out = tmp_path / "run"
    save_that_fills_the_disk_on_call(monkeypatch, 3)  # ckpt.pt at step 3
    status, _, err = run_cli(QUICK + ["--out", str(out)], capsys)
    assert status == 2 and one_line(err) and "ckpt.pt: the disk is full" in err
    monkeypatch.undo()
    assert read_checkpoint(out / "ckpt.pt")["step"] == 0 and temp_files(out) == []
    load_model(out / "ckpt.pt")


def test_a_full_disk_while_writing_the_log_is_one_line_too(tmp_path, capsys, monkeypatch):
    """Beyond the example: the disk fills up in fsync (as delayed allocation reports it), for log.jsonl."""
    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 5:  # step 0: lock info, log, ckpt, best; step 3: the log
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    status, _, err = run_cli(QUICK + ["--out", str(out)], capsys)
    assert status == 2 and one_line(err) and "log.jsonl: the disk is full" in err
    assert [r["step"] for r in read_log(out)] == [0] and temp_files(out) == []


def test_a_second_ctrl_c_during_a_save_exits_quietly_without_a_half_written_file(tmp_path, capsys, monkeypatch):
    from minilm.data import BatchSampler

    real_next_step, real_save, saves = BatchSampler.next_step, torch.save, []

    def next_step(self, grad_accum=1):
        if self.steps_drawn == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: save at the end of this step
        return real_next_step(self, grad_accum)

    def save(obj, handle, *args, **kwargs):
        saves.append(1)
        if len(saves) == 3:  # the save after the first Ctrl-C (step 0 wrote ckpt.pt and best.pt)
            handle.write(b"PK\x03\x04 half a checkpoint")
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, mid-write
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(BatchSampler, "next_step", next_step)
    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    status, _, err = run_cli(QUICK + ["--out", str(out)], capsys)
    assert status == 130 and one_line(err) and "interrupted" in err and len(saves) == 3
    monkeypatch.undo()
    assert read_checkpoint(out / "ckpt.pt")["step"] == 0 and temp_files(out) == []


class PipeClosedAfterOneLine:
    """A stdout whose reader leaves after the first line, as `| head -1` does."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        if "\n" in self.text:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.text += text
        return len(text)

    def flush(self):
        pass

    def fileno(self):
        raise io.UnsupportedOperation("not a real file")


def test_output_piped_into_a_reader_that_leaves_ends_quietly_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    pipe = PipeClosedAfterOneLine()
    monkeypatch.setattr(sys, "stdout", pipe)
    status, _, err = run_cli(TINY_FLAGS + ["--steps", "100", "--eval-interval", "2", "--out", str(out)], capsys)
    assert status == 0 and err == "" and pipe.text.startswith("step      0")
    assert read_checkpoint(out / "ckpt.pt")["step"] == 2  # it saved and stopped, as after Ctrl-C
    monkeypatch.setattr(sys, "stdout", PipeClosedAfterOneLine())
    result = train(tiny_config(steps=100, eval_interval=2, verbose=True))  # every rank stops at the same step
    assert (result.stop_reason, result.step) == ("stdout closed", 2)


# --- the log: one record per evaluated step after any interruptions -----------------------------------


def test_the_log_has_one_record_per_eval_step_after_repeated_interruptions(tmp_path):
    out = str(tmp_path / "run")
    for stop in (2, 5, 9):
        result = train(tiny_config(out_dir=out, stop_at_step=stop, resume=stop != 2))
        assert result.step == stop
        # a run killed after logging an evaluation but before its checkpoint leaves one record too many
        log = Path(out) / "log.jsonl"
        log.write_text(log.read_text() + json.dumps({**read_log(out)[-1], "step": stop + 1}) + "\n")
        train(tiny_config(out_dir=out, resume=True, stop_at_step=stop))  # resumes and stops at once
        assert [r["step"] for r in read_log(out)] == [s for s in (0, 4, 8) if s <= stop]
    train(tiny_config(out_dir=out, resume=True))
    assert [r["step"] for r in read_log(out)] == [0, 4, 8, 12]


def test_a_run_saved_before_run_ids_existed_resumes_again_and_again(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out_dir=str(out), stop_at_step=5))
    for name in ("ckpt.pt", "best.pt"):  # as an older minilm wrote them: no run id anywhere
        checkpoint = read_checkpoint(out / name)
        del checkpoint["run_id"]
        for record in checkpoint["history"]:
            del record["run_id"]
        torch.save(checkpoint, out / name)
    (out / "log.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "run_id"}) + "\n"
                                           for r in read_log(out)))
    train(tiny_config(out_dir=str(out), resume=True, stop_at_step=9))
    assert train(tiny_config(out_dir=str(out), resume=True)).step == 12
    assert [r["step"] for r in read_log(out)] == [0, 4, 8, 12]


def test_a_run_saved_when_kernels_was_called_attn_impl_resumes(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out_dir=str(out), stop_at_step=5))
    checkpoint = read_checkpoint(out / "ckpt.pt")
    config = checkpoint["model_config"]
    config["attn_impl"] = {"fused": "fast", "readable": "readable"}[config.pop("kernels")]
    torch.save(checkpoint, out / "ckpt.pt")
    assert train(tiny_config(out_dir=str(out), resume=True)).step == 12


# --- --resume keeps its meaning -------------------------------------------------------------------------


@pytest.mark.parametrize("flags, named", [
    (["--seed", "7"], "--seed: different from the run being resumed (1337 in"),
    (["--grad-accum", "2"], "--grad-accum: different"),
    (["--mix", "bible=0.2"], "--mix: different"),
    (["--model-arg", "bias=false"], "--model-arg bias: different model config (True in"),  # beyond the examples
    (["--preset", "cpu-tiny"], "--preset: different from the run being resumed ('ci-tiny' in"),
])
def test_resume_refuses_flags_that_define_the_run(tmp_path, capsys, flags, named):
    out = str(tmp_path / "run")
    assert run_cli(QUICK + ["--out", out], capsys)[0] == 0
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    status, _, err = run_cli(["--resume", "--out", out, "--steps", "6", "--no-progress", *flags], capsys)
    assert status == 2 and one_line(err) and named in err, err
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before


def test_resume_takes_steering_changes_records_them_and_keeps_its_tokenizer_when_the_file_moved(tmp_path, capsys):
    from minilm.bpe import BPETokenizer

    text = (REPO_ROOT / "data" / "shakespeare.txt").read_text(encoding="utf-8")[:5000]
    tokenizer_path = tmp_path / "tok.json"
    BPETokenizer.train(text, 270).save(str(tokenizer_path))
    out = str(tmp_path / "run")
    assert run_cli(QUICK + ["--tokenizer", str(tokenizer_path), "--out", out], capsys)[0] == 0
    tokenizer_path.rename(tmp_path / "moved.json")
    status, _, err = run_cli(["--resume", "--out", out, "--steps", "6", "--lr", "0.001", "--no-progress"], capsys)
    assert status == 0, err
    last = read_log(out)[-1]
    assert last["step"] == 6 and last["resumed_with"]["steps"] == [3, 6] and last["resumed_with"]["lr"][1] == 0.001
    assert "resumed_with" not in read_log(out)[0]


# --- values parsed strictly -------------------------------------------------------------------------


def test_model_arg_booleans_are_strict(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(QUICK + ["--model-arg", "bias=no", "--out", str(out)], capsys)[0] == 0
    assert read_checkpoint(out / "ckpt.pt")["model_config"]["bias"] is False
    assert not any(name.endswith(".bias") for name in read_checkpoint(out / "ckpt.pt")["model"])
    for value in ("maybe", "off", "2"):  # "off" and "2": beyond the example
        status, _, err = run_cli(QUICK + ["--model-arg", f"tie_weights={value}", "--out", ""], capsys)
        assert status == 2 and one_line(err) and "--model-arg tie_weights: expected true/false/1/0/yes/no" in err


@pytest.mark.parametrize("flags, expected", [
    (["--min-lr", "0.01", "--lr", "0.001"], "--min-lr: 0.01 is above --lr 0.001"),
    (["--model-arg", "n_layer=two"], "--model-arg n_layer: expected an integer, got 'two'"),
    (["--lr", "nan"], "--lr: expected a finite number"),
])
def test_values_are_parsed_strictly(capsys, flags, expected):
    status, _, err = run_cli(QUICK + flags + ["--out", ""], capsys)
    assert status == 2 and one_line(err) and expected in err, err


@pytest.mark.parametrize("flag", ["--data", "--eval-extra"])
def test_a_corpus_that_is_not_utf8_is_named_with_its_flag_unless_allow_binary(tmp_path, capsys, flag):
    text = (REPO_ROOT / "data" / "shakespeare.txt").read_bytes()[:20000]
    binary = tmp_path / "binary.txt"
    binary.write_bytes(text[:12345] + b"\xff\xfe" + text[12345:])
    corpus = ["--data", str(binary)] if flag == "--data" else ["--eval-extra", str(binary)]
    status, _, err = run_cli(QUICK + corpus + ["--out", ""], capsys)
    assert status == 2 and one_line(err) and flag in err and "12345" in err, err
    status, _, err = run_cli(QUICK + corpus + ["--out", "", "--allow-binary"], capsys)
    assert status == 0, err


# --- divergence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_interval", ["1", "5"])  # every step, and (beyond the example) every 5th
def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_finite_checkpoint(tmp_path, capsys, log_interval):
    out = tmp_path / "run"
    status, _, err = run_cli(TINY_FLAGS + ["--steps", "40", "--eval-interval", "20", "--lr", "1e30", "--min-lr", "0",
                                           "--grad-clip", "0", "--log-interval", log_interval, "--out", str(out)],
                             capsys)
    assert status == 2 and one_line(err) and "training diverged: the loss became nan by step" in err, err
    assert "last finite loss" in err and "try a lower --lr" in err
    step = int(err.split("by step ")[1].split()[0])
    assert step <= 5 * int(log_interval)
    model, _, checkpoint = load_model(out / "ckpt.pt")
    assert checkpoint["step"] == 0 and all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_eval_only_of_non_finite_weights_says_so(tmp_path, capsys, bad):
    out = tmp_path / "run"
    assert run_cli(QUICK + ["--out", str(out)], capsys)[0] == 0
    checkpoint = read_checkpoint(out / "ckpt.pt")
    name = next(k for k in checkpoint["model"] if "ln_1" in k)  # not a tied weight (its twin would overwrite it)
    checkpoint["model"][name] = torch.full_like(checkpoint["model"][name], bad)
    torch.save(checkpoint, tmp_path / "broken.pt")
    status, printed, err = run_cli(["--eval-only", "--ckpt", str(tmp_path / "broken.pt")], capsys)
    assert status == 2 and one_line(err) and f"non-finite weights (nan or inf in {name})" in err
    assert "nan" not in printed


# --- leftover torchrun variables -------------------------------------------------------------------


@pytest.mark.parametrize("env, expected", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x"}, "LOCAL_RANK='x' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 is outside"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR is not"),
])
def test_stray_torchrun_variables_give_one_line(capsys, monkeypatch, env, expected):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, _, err = run_cli(QUICK + ["--out", ""], capsys)
    assert status == 2 and one_line(err) and expected in err, err


def test_distributed_false_ignores_the_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(UserError, match="RANK is not"):
        train(tiny_config(steps=1))
    result = train(tiny_config(steps=1, distributed=False))
    assert result.step == 1 and not torch.distributed.is_initialized()


# --- --init-from and --hf -------------------------------------------------------------------------------


def test_init_from_a_checkpoint_starts_from_its_weights_with_a_fresh_optimizer(tmp_path):
    first = train(tiny_config(out_dir=str(tmp_path / "a"), steps=4))
    result = train(tiny_config(init_from=str(tmp_path / "a" / "ckpt.pt"), steps=2, eval_interval=2,
                               model_args={}))
    assert result.history[0]["val_loss"] == first.history[-1]["val_loss"]  # the same weights at step 0
    assert result.model.config.to_dict() == first.model.config.to_dict()
    assert result.history[-1]["lr"] == pytest.approx(tiny_config().lr * 2 / 4)  # a fresh schedule
    with pytest.raises(UserError, match="--ckpt: no checkpoint file"):
        train(tiny_config(init_from=str(tmp_path / "absent.pt")))


def test_a_run_initialised_from_another_kind_of_model_saves_that_kind_and_resumes(tmp_path):
    lstm = dict(model="lstm", model_args=dict(n_layer=1, n_embd=16, n_hidden=16))
    train(tiny_config(out_dir=str(tmp_path / "lstm"), steps=2, **lstm))
    settings = dict(init_from=str(tmp_path / "lstm" / "ckpt.pt"), out_dir=str(tmp_path / "b"), steps=8)
    first = train(tiny_config(stop_at_step=5, **settings))  # a GPT config: the loaded model decides
    assert first.config.model == "lstm" and read_checkpoint(tmp_path / "b" / "ckpt.pt")["model_kind"] == "lstm"
    assert train(tiny_config(resume=True, **settings)).step == 8


def fake_hf_module(model):
    module = types.ModuleType("minilm.hf")
    module.calls = []

    def from_hf(name_or_dir):
        module.calls.append(name_or_dir)
        return model, ByteTokenizer()

    module.from_hf = from_hf
    return module


def test_hf_models_go_through_minilm_hf_or_get_one_line_when_it_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "minilm.hf", None)  # as if minilm/hf.py did not exist
    with pytest.raises(UserError, match="--init-from: the Hugging Face interop module minilm.hf is not available"):
        train(tiny_config(init_from="hf:gpt2"))
    status, _, err = run_cli(["--eval-only", "--hf", "gpt2"], capsys)
    assert status == 2 and one_line(err) and "--hf: the Hugging Face interop module" in err
    model = train(tiny_config(steps=1)).model
    fake = fake_hf_module(model)
    monkeypatch.setitem(sys.modules, "minilm.hf", fake)
    result = train(tiny_config(init_from="hf:some/model", steps=1, model_args={}))
    assert result.model is model and fake.calls == ["some/model"]
    status, printed, _ = run_cli(["--eval-only", "--hf", "local_dir", "--eval-windows", "8"], capsys)
    assert status == 0 and "bits per byte" in printed and fake.calls[-1] == "local_dir"


def test_train_config_fields_are_validated_by_the_shared_helper():
    with pytest.raises(UserError, match="--compile: expected true or false, got 'yes'"):
        TrainConfig(compile="yes")
    with pytest.raises(UserError, match="--seed: expected an integer >= 0"):
        TrainConfig(seed=1.5)
    with pytest.raises(UserError, match="^--out: expected a string"):  # named as train.py spells it
        TrainConfig(out_dir=None)
