"""The two Python steps of `bash bench/gpu.sh`: describe the torch/CUDA setup, and merge every
part's figures into one results file.

    python bench/gpu_results.py describe --json OUT/torch_info.json
    python bench/gpu_results.py merge OUT          # -> OUT/results.json, and a summary on stdout

`merge` reads what the parts left in OUT (parts.tsv: each part's exit status, seconds and budget;
budgets.tsv: the parts planned; nvidia_smi.log; torch_info.json; test_cuda.xml; eager.json,
compiled.json, target.json) and tolerates any of them missing or unreadable: that part's figures
are null and the summary says why. Its exit status is 0 when every planned part ran clean, 1 when
not. Only `describe` imports torch, so a broken torch cannot stop the merge.

The headline figures (`summary` in results.json):
    compile_speedup = tokens/s with --compile / tokens/s eager
    mfu_percent     = tokens/s x FLOPs per token / (bf16 matmul FLOP/s measured in the same part)
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

TRAINING_PARTS = ("eager", "compiled", "target")
TEST_PARTS = ("test_cuda", "suite")


def describe() -> tuple[dict, bool]:
    """torch, CUDA and the device as a dict, and whether a CUDA GPU is there."""
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "commit": git_commit()}
    if info["cuda_available"]:
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, gpu_count=torch.cuda.device_count(),
                    capability=f"{properties.major}.{properties.minor}",
                    gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info, info["cuda_available"]


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def part_status(exit_status: int) -> str:
    """What a part's exit status means under `timeout --signal=INT --kill-after=...`."""
    if exit_status == 0:
        return "ok"
    if exit_status == 124:
        return "timed out (stopped by SIGINT; its figures cover the steps done)"
    if exit_status == 137:
        return "timed out (killed)"
    if exit_status == 127:
        return "command not found"
    return f"failed (exit {exit_status})"


def read_table(path: Path) -> list[list[str]]:
    """Tab-separated rows; [] when the file is missing."""
    if not path.is_file():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


def read_json(path: Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        problems.append(f"{path.name}: unreadable JSON ({error})")
        return None


def read_nvidia_smi(path: Path) -> dict | None:
    """The first GPU's row of `nvidia-smi --query-gpu=... --format=csv`, keyed by the header."""
    if not path.is_file():
        return None
    rows = [row for row in csv.reader(path.read_text().splitlines()) if row]
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return None
    return {key.strip(): value.strip() for key, value in zip(rows[0], rows[1], strict=True)}


def read_junit(path: Path, problems: list[str]) -> dict | None:
    """Counts of a pytest --junitxml file, and the names of the tests that failed."""
    if not path.is_file():
        return None
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        problems.append(f"{path.name}: unreadable XML ({error})")
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"] = [f"{case.get('classname')}::{case.get('name')}" for suite in suites
                              for case in suite.iter("testcase")
                              if case.find("failure") is not None or case.find("error") is not None]
    return counts


def ratio(numerator, denominator):
    return round(numerator / denominator, 3) if numerator and denominator else None


def summarise(results: dict) -> dict:
    """The headline figures; None wherever the part that measures one did not leave it."""
    def figure(part, key):
        return (results.get(part) or {}).get(key)

    matmul_rates = [figure(part, "matmul_tflops") for part in TRAINING_PARTS if figure(part, "matmul_tflops")]
    tests = results.get("tests", {}).get("test_cuda") or {}
    return {
        "gpu": (results.get("torch_info") or {}).get("gpu") or (results.get("nvidia_smi") or {}).get("name"),
        "commit": (results.get("torch_info") or {}).get("commit"), "date": results.get("date"),
        "wall_seconds": results.get("wall_seconds"),
        "cuda_tests_passed": tests.get("passed"), "cuda_tests_failed": tests.get("failures"),
        "cuda_tests_errors": tests.get("errors"), "cuda_tests_skipped": tests.get("skipped"),
        "bf16_matmul_tflops": max(matmul_rates) if matmul_rates else None,
        "tokens_per_sec_eager": figure("eager", "tokens_per_sec"),
        "tokens_per_sec_compiled": figure("compiled", "tokens_per_sec"),
        "compile_speedup": ratio(figure("compiled", "tokens_per_sec"), figure("eager", "tokens_per_sec")),
        "mfu_percent_eager": figure("eager", "mfu_percent"),
        "mfu_percent_compiled": figure("compiled", "mfu_percent"),
        "peak_cuda_mib_eager": figure("eager", "peak_cuda_mib"),
        "peak_cuda_mib_compiled": figure("compiled", "peak_cuda_mib"),
        "compile_first_step_seconds": figure("compiled", "first_step_seconds"),
        "target_val_loss": figure("target", "target_val_loss"),
        "seconds_to_target": figure("target", "seconds_to_target"),
        "target_reached_at_step": figure("target", "target_reached_at_step"),
        "best_val_loss": figure("target", "best_val_loss"),
        "mfu_percent_target_run": figure("target", "mfu_percent"),
        "tokens_per_sec_target_run": figure("target", "tokens_per_sec"),
    }


def merge(out: Path) -> tuple[dict, list[str]]:
    """results.json's content, and the parts that did not run clean."""
    problems: list[str] = []
    planned = {row[0]: int(row[1]) for row in read_table(out / "budgets.tsv") if len(row) >= 2}
    parts = {}
    for row in read_table(out / "parts.tsv"):
        if len(row) < 4:
            problems.append(f"parts.tsv: a short row {row}")
            continue
        name, status, seconds, budget = row[0], int(row[1]), int(row[2]), int(row[3])
        parts[name] = {"status": part_status(status), "exit": status, "seconds": seconds, "budget_s": budget,
                       "log": f"{name}.log"}
    for name in planned:
        if name != "merge" and name not in parts:
            parts[name] = {"status": "did not run", "exit": None, "seconds": None, "budget_s": planned[name],
                           "log": None}
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "parts": parts, "budget_total_s": sum(planned.values()),
               "wall_seconds": sum(part["seconds"] for part in parts.values() if part["seconds"] is not None),
               "nvidia_smi": read_nvidia_smi(out / "nvidia_smi.log"),
               "torch_info": read_json(out / "torch_info.json", problems),
               "tests": {name: read_junit(out / f"{name}.xml", problems) for name in TEST_PARTS if name in parts}}
    for name in TRAINING_PARTS:
        if name in parts:
            results[name] = read_json(out / f"{name}.json", problems)
            if results[name] is None:
                problems.append(f"{name}: no figures ({name}.json missing)")
    results["summary"] = summarise(results)
    results["problems"] = problems
    failed = [name for name, part in parts.items() if part["status"] != "ok"]
    results["failed_parts"] = failed
    return results, failed


def write_json_atomically(path: Path, content: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(temporary, path)


def print_summary(results: dict) -> None:
    print(f"{'part':<12} {'status':<50} {'seconds':>7} {'budget':>6}")
    for name, part in results["parts"].items():
        print(f"{name:<12} {part['status']:<50} {part['seconds'] if part['seconds'] is not None else '-':>7} "
              f"{part['budget_s']:>6}")
    print(f"budget of the parts and the merge: {results['budget_total_s']} s")
    width = max(len(key) for key in results["summary"])
    for key, value in results["summary"].items():
        print(f"{key:<{width}}  {value}")
    for problem in results["problems"]:
        print(f"problem: {problem}")
    failed = results["failed_parts"]
    print(f"failed parts: {', '.join(failed)}" if failed else "every part ran clean")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe_parser = commands.add_parser("describe", help="torch, CUDA and the device as JSON")
    describe_parser.add_argument("--json", required=True, help="write the description here")
    merge_parser = commands.add_parser("merge", help="merge the parts' figures into OUT/results.json")
    merge_parser.add_argument("out", help="the folder bench/gpu.sh wrote to")
    args = parser.parse_args(argv)
    if args.command == "describe":
        info, has_cuda = describe()
        write_json_atomically(Path(args.json), info)
        print(json.dumps(info, indent=2))
        if not has_cuda:
            print("bench/gpu_results.py: error: torch sees no CUDA GPU", file=sys.stderr)
        return 0 if has_cuda else 1
    out = Path(args.out)
    if not out.is_dir():
        print(f"bench/gpu_results.py: error: {args.out!r} is not a folder; expected bench/gpu.sh's OUT",
              file=sys.stderr)
        return 2
    results, failed = merge(out)
    write_json_atomically(out / "results.json", results)
    print_summary(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
