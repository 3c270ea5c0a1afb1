"""bench/gpu.sh without a GPU: a fake `nvidia-smi` and a fake python (PYTHON=...) stand in for the
parts, which succeed, fail, stop at SIGINT or ignore it, as each test says; bench/gpu_results.py
runs for real. What is checked: the results file, that no part stops the others, and that the
budgets of the default run stay under ten minutes."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from minilm.data import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu.sh"
DEFAULT_PARTS = ["nvidia_smi", "torch_info", "test_cuda", "eager", "compiled", "target"]

# FAKE_<part> = ok | fail | interruptible (stops at SIGINT, writing half its figures) | stuck (ignores SIGINT)
FAKE_PYTHON = r"""#!/usr/bin/env bash
for arg in "$@"; do [[ $arg == *gpu_results.py ]] && [[ $* != *describe* ]] && exec "$REAL_PYTHON" "$@"; done
case " $* " in
    *" describe "*) part=torch_info ;;
    *" -m pytest "*) part=test_cuda ;;
    *" --target-val-loss "*) part=target ;;
    *" --compile "*) part=compiled ;;
    *" bench/train.py "*) part=eager ;;
    *" minilm.mismatch "*) part=grid ;;
    *) echo "fake python: unexpected call: $*" >&2; exit 3 ;;
esac
mode_name=FAKE_$part
mode=${!mode_name:-ok}
json="" xml="" previous=""
for arg in "$@"; do
    [[ $previous == --json ]] && json=$arg
    [[ $arg == --junitxml=* ]] && xml=${arg#--junitxml=}
    previous=$arg
done
figures() {  # figures TOKENS_PER_SEC INTERRUPTED
    case $part in
    torch_info) echo '{"gpu": "Fake GPU", "cuda_available": true}' >"$json" ;;
    test_cuda) echo '<testsuites><testsuite tests="15" failures="0" errors="0" skipped="1">
        <testcase classname="tests.test_cuda" name="test_a"/></testsuite></testsuites>' >"$xml" ;;
    *) echo "{\"tokens_per_sec\": $1, \"mfu_percent\": 10.0, \"matmul_tflops\": 500.0, \"peak_cuda_mib\": 900.0,
        \"first_step_seconds\": 30.0, \"interrupted\": $2, \"target_val_loss\": 1.47, \"seconds_to_target\": 80.0,
        \"target_reached_at_step\": 4000, \"best_val_loss\": 1.46}" >"$json" ;;
    esac
}
tokens=1000
[[ $part == compiled ]] && tokens=2500
echo "fake $part: $mode"
case $mode in
    ok) figures $tokens false ;;
    fail) echo "simulated failure"; exit 1 ;;
    interruptible) trap 'figures 400 true; exit 0' INT; sleep 20 & wait ;;
    stuck) trap '' INT; sleep 20 ;;
esac
"""

FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
echo "name, memory.total [MiB], driver_version, clocks.current.sm [MHz], clocks.max.sm [MHz]"
echo "Fake GPU, 81559 MiB, 550.00, 1980 MHz, 1980 MHz"
"""


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("python", FAKE_PYTHON), ("nvidia-smi", FAKE_NVIDIA_SMI)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(fakes, out, args=(), **settings):
    """bash bench/gpu.sh with the fakes, the script's own budgets unless `settings` name some."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BUDGET_", "FAKE_")) and key not in ("GRACE", "OUT", "PYTHON")}
    env.update(PATH=f"{fakes}{os.pathsep}{env['PATH']}", OUT=str(out), PYTHON=str(fakes / "python"),
               REAL_PYTHON=sys.executable, **settings)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_a_clean_run_merges_every_figure_into_one_file_within_ten_minutes_of_budgets(fakes, tmp_path):
    out = tmp_path / "out"
    done = run_script(fakes, out)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text())
    assert list(results["parts"]) == DEFAULT_PARTS
    assert all(part["status"] == "ok" for part in results["parts"].values())
    assert results["failed_parts"] == [] and results["problems"] == []
    summary = results["summary"]
    assert summary["gpu"] == "Fake GPU" and results["nvidia_smi"]["memory.total [MiB]"] == "81559 MiB"
    assert summary["tokens_per_sec_eager"] == 1000 and summary["tokens_per_sec_compiled"] == 2500
    assert summary["compile_speedup"] == 2.5
    assert summary["bf16_matmul_tflops"] == 500.0 and summary["seconds_to_target"] == 80.0
    assert summary["cuda_tests_passed"] == 14 and summary["cuda_tests_skipped"] == 1
    assert "every part ran clean" in done.stdout
    assert summary["date"] == results["date"] and summary["wall_seconds"] == sum(
        part["seconds"] for part in results["parts"].values())
    # the budgets are the script's own: every part's, plus the merge's, under ten minutes in all
    budgets = dict(line.split("\t") for line in (out / "budgets.tsv").read_text().splitlines())
    assert list(budgets) == [*DEFAULT_PARTS, "merge"]
    assert {name: part["budget_s"] for name, part in results["parts"].items()} == \
        {name: int(seconds) for name, seconds in budgets.items() if name != "merge"}
    assert results["budget_total_s"] == sum(int(seconds) for seconds in budgets.values()) < 600


def test_failed_and_timed_out_parts_do_not_stop_the_others(fakes, tmp_path):
    out = tmp_path / "out"
    done = run_script(fakes, out, FAKE_test_cuda="fail", FAKE_eager="interruptible", FAKE_compiled="stuck",
                      BUDGET_eager="2", BUDGET_compiled="2", GRACE="1")
    assert done.returncode == 1
    results = json.loads((out / "results.json").read_text())
    parts = results["parts"]
    assert parts["test_cuda"]["exit"] == 1 and parts["test_cuda"]["status"] == "failed (exit 1)"
    assert parts["eager"]["exit"] == 124 and parts["compiled"]["exit"] == 137
    assert parts["target"]["status"] == "ok"  # ran after all of them
    assert results["failed_parts"] == ["test_cuda", "eager", "compiled"]
    assert "failed parts: test_cuda, eager, compiled" in done.stdout
    # SIGINT let the eager part write what it had; the killed part left nothing, and the merge says so
    assert results["eager"]["interrupted"] is True and results["summary"]["tokens_per_sec_eager"] == 400
    assert results["compiled"] is None and results["summary"]["compile_speedup"] is None
    assert "compiled: no figures (compiled.json missing)" in results["problems"]
    assert results["summary"]["seconds_to_target"] == 80.0


def test_optional_parts_run_alone_and_an_unknown_part_is_one_line(fakes, tmp_path):
    done = run_script(fakes, tmp_path / "grid", args=["grid"], FAKE_grid="fail")
    results = json.loads((tmp_path / "grid" / "results.json").read_text())
    assert list(results["parts"]) == ["grid"] and results["failed_parts"] == ["grid"] and done.returncode == 1
    grid_call = (tmp_path / "grid" / "grid.log").read_text()
    assert "fake grid: fail" in grid_call
    done = run_script(fakes, tmp_path / "bad", args=["speed"])
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("bench/gpu.sh: error: unknown part 'speed'")


def load_gpu_results():
    spec = importlib.util.spec_from_file_location("gpu_results", REPO_ROOT / "bench" / "gpu_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_tolerates_parts_that_never_ran_and_broken_files(tmp_path):
    (tmp_path / "budgets.tsv").write_text("eager\t60\ntarget\t240\nmerge\t15\n")
    (tmp_path / "parts.tsv").write_text("eager\t0\t50\t60\n")
    (tmp_path / "eager.json").write_text("{not json")
    results, failed = load_gpu_results().merge(tmp_path)
    assert results["parts"]["target"]["status"] == "did not run" and failed == ["target"]
    assert results["eager"] is None and any("eager.json: unreadable JSON" in p for p in results["problems"])
    assert results["summary"]["tokens_per_sec_eager"] is None and results["budget_total_s"] == 315


def test_describe_says_when_torch_sees_no_gpu(tmp_path, monkeypatch):
    module = load_gpu_results()
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    status = module.main(["describe", "--json", str(tmp_path / "info.json")])
    info = json.loads((tmp_path / "info.json").read_text())
    assert status == 1 and info["cuda_available"] is False and "gpu" not in info


# ----------------------------------------------------------------------------------------------
# bench/laptop_gpu.py: the estimates' formulas on hand-computed cases
# ----------------------------------------------------------------------------------------------


def load_laptop_gpu():
    spec = importlib.util.spec_from_file_location("laptop_gpu", REPO_ROOT / "bench" / "laptop_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_training_flops_and_memory_formulas_on_a_hand_computed_case():
    laptop = load_laptop_gpu()
    # 6 N + 12 L T d with N=100, L=2, T=8, d=4: 600 + 768
    assert laptop.training_flops_per_token(100, n_layer=2, block_size=8, n_embd=4) == 1368
    # 32 L T B d + 6 T B V with L=1, T=2, B=3, d=4, V=5: 768 + 180; dropout adds 2 T B d per layer
    assert laptop.activation_bytes(1, block_size=2, batch_size=3, n_embd=4, vocab_size=5, dropout=False) == 948
    assert laptop.activation_bytes(1, block_size=2, batch_size=3, n_embd=4, vocab_size=5, dropout=True) == 996
    assert laptop.weights_and_optimizer_bytes(1000) == 16000
    model = laptop.ModelShape("hand", n_layer=2, n_embd=4, block_size=8, batch_size=3, steps=10, vocab_size=5,
                              dropout=0.0, params=1000, non_embedding_params=100)
    row = laptop.estimate(model, tflops=1e-6, mfu=0.5, context_gib=0.0, memory_gib=1.0)
    # 240 tokens x 1368 FLOPs at 0.5 MFLOP/s; 16000 + 2 x 32 x 8 x 3 x 4 + 6 x 8 x 3 x 5 bytes per process
    assert row["minutes"] == pytest.approx(240 * 1368 / 0.5e6 / 60)
    assert row["per_process_gib"] * 2**30 == pytest.approx(16000 + 6144 + 720)
    assert row["ranks_in_memory"] == 2**30 // (16000 + 6144 + 720)


def test_the_calculator_takes_mfu_and_peak_memory_from_a_gpu_run(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"summary": {"gpu": "Fake GPU", "mfu_percent_compiled": 12.0,
                                               "peak_cuda_mib_compiled": 3072.0}}))
    laptop = load_laptop_gpu()
    assert laptop.main(["--results", str(results), "--context-gib", "1", "--memory-gib", "8"]) == 0
    out = capsys.readouterr().out
    assert "MFU 12% (measured on Fake GPU by bench/gpu.sh)" in out
    small = next(line for line in out.splitlines() if line.startswith("gpu-small"))
    assert small.split()[-3:-1] == ["4.00", "2"]  # 3 GiB measured + 1 GiB context; 2 fit in 8 GiB
    assert "gpu-small: measured" in out and "mismatch gpu: one GPT: estimate" in out


def test_the_calculator_refuses_a_bad_flag_in_one_line(capsys):
    assert load_laptop_gpu().main(["--mfu", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err == "bench/laptop_gpu.py: error: --mfu: expected a fraction in (0, 1], got 1.5\n"
