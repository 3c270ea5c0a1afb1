"""bench/train.py's own logic (not its timings): the figures it reports and its flag checks."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re

import pytest
import torch

from minilm.data import REPO_ROOT
from minilm.training import train


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", REPO_ROOT / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_main(argv, capsys, module=None):
    status = (module or load_bench()).main(argv)
    return status, capsys.readouterr()


# on the CPU whatever the machine has: these tests check the logic, and a GPU's log interval differs
FAST = ["--preset", "ci-tiny", "--device", "cpu", "--iters", "40", "--warmup-iters", "5", "--eval-interval", "20",
        "--threads", "1"]


def test_time_to_target_is_the_first_evaluation_at_or_below_it(tmp_path, capsys):
    status, _ = bench_main([*FAST, "--target-val-loss", "100", "--json", str(tmp_path / "a.json")], capsys)
    assert status == 0
    figures = json.loads((tmp_path / "a.json").read_text())
    assert [step for step, _, _ in figures["evals"]] == [0, 20, 40]
    # every loss is below 100, so the first evaluation (step 0) reaches it
    assert figures["target_reached_at_step"] == 0
    assert 0 <= figures["seconds_to_target"] <= figures["evals"][-1][2]
    assert figures["best_val_loss"] == min(loss for _, loss, _ in figures["evals"])
    assert figures["tokens_per_sec"] > 0 and 0 < figures["mfu_percent"]


def test_an_unreached_target_is_reported_as_such(tmp_path, capsys):
    status, captured = bench_main([*FAST, "--target-val-loss", "0.001", "--json", str(tmp_path / "b.json")], capsys)
    assert status == 0
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["target_reached_at_step"] is None and figures["seconds_to_target"] is None
    assert "target_reached_at_step  None" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--iters", "40", "--target-val-loss", "1.5"], "--target-val-loss: needs --eval-interval"),
    (["--iters", "40", "--eval-interval", "25", "--log-interval", "10"], "--eval-interval: expected a multiple"),
    (["--iters", "5"], "--iters: expected more than --warmup-iters=10"),
])
def test_bad_flags_get_one_line_errors(argv, message, capsys):
    status, captured = bench_main(["--preset", "ci-tiny", "--device", "cpu", *argv], capsys)
    assert status == 2
    assert captured.err.startswith("bench/train.py: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def stopped_at(step):
    """train(), stopped after `step` steps as Ctrl-C (or timeout --signal=INT) stops it."""
    return lambda config: train(dataclasses.replace(config, stop_at_step=step))


def test_an_interrupted_run_still_reports_the_steps_it_timed(tmp_path, capsys):
    module = load_bench()
    module.train = stopped_at(15)
    status, _ = bench_main([*FAST, "--json", str(tmp_path / "c.json")], capsys, module)
    assert status == 0
    figures = json.loads((tmp_path / "c.json").read_text())
    assert figures["interrupted"] is True and figures["steps_done"] == 15
    assert figures["timed_iters"] == 15 - 5 and figures["tokens_per_sec"] > 0 and figures["mfu_percent"] > 0


def test_a_run_interrupted_during_warmup_has_no_speed_figures(tmp_path, capsys):
    module = load_bench()
    module.train = stopped_at(3)
    status, captured = bench_main([*FAST, "--json", str(tmp_path / "d.json")], capsys, module)
    assert status == 0
    figures = json.loads((tmp_path / "d.json").read_text())
    assert figures["timed_iters"] == 0 and figures["steps_done"] == 3
    assert figures["tokens_per_sec"] is None and figures["mfu_percent"] is None and figures["ms_per_iter"] is None
    assert re.search(r"^tokens_per_sec +None$", captured.out, re.MULTILINE)


def test_warmup_defaults_to_the_first_log_interval(tmp_path, capsys):
    argv = ["--preset", "ci-tiny", "--device", "cpu", "--iters", "60", "--log-interval", "4", "--eval-interval", "60",
            "--threads", "1", "--json", str(tmp_path / "e.json")]
    status, _ = bench_main(argv, capsys)
    assert status == 0
    figures = json.loads((tmp_path / "e.json").read_text())
    assert figures["warmup_iters"] == 12 and figures["timed_iters"] == 60 - 12  # 10 rounded up to a multiple of 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_the_figures_hold_bf16_matmuls_and_peak_gpu_memory(tmp_path, capsys):
    argv = ["--preset", "ci-tiny", "--device", "cuda", "--iters", "100", "--eval-interval", "50",
            "--json", str(tmp_path / "f.json")]
    status, _ = bench_main(argv, capsys)
    assert status == 0
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures["warmup_iters"] == 50 and figures["timed_iters"] == 50
    assert figures["matmul_dtype"] == "bfloat16" and figures["matmul_tflops"] > 0
    # read before the probe's three 8192 x 8192 bf16 matrices (384 MiB) exist: ci-tiny needs far less
    assert 0 < figures["peak_cuda_mib"] < 384
    assert figures["gpu"] == torch.cuda.get_device_name()
