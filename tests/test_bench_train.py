"""bench/train.py's own logic (not its timings): the figures it reports and its flag checks."""
from __future__ import annotations

import importlib.util
import json

import pytest

from minilm.data import REPO_ROOT


def bench_main(argv, capsys):
    spec = importlib.util.spec_from_file_location("bench_train", REPO_ROOT / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(argv)
    return status, capsys.readouterr()


FAST = ["--preset", "ci-tiny", "--iters", "40", "--warmup-iters", "5", "--eval-interval", "20", "--threads", "1"]


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
    status, captured = bench_main(["--preset", "ci-tiny", *argv], capsys)
    assert status == 2
    assert captured.err.startswith("bench/train.py: error: ") and message in captured.err
    assert captured.err.count("\n") == 1
