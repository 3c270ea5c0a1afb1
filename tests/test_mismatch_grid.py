"""The mismatch grid's machinery: the experiment registry, parts and --resume, the grid spread
over processes, and the refusals of bad input that concern them.

One micro grid on two domains runs once for the module (seconds); the resume and 2-process tests
compare every number of their reports with it.
"""
from __future__ import annotations

import json
import os
import types
from pathlib import Path

import numpy as np
import pytest
from test_mismatch import run_micro_once

from minilm import mismatch
from minilm.cli import UserError
from minilm.mismatch import experiments as registry
from minilm.mismatch.grid import Job
from minilm.mismatch.parts import Parts
from minilm.mismatch.schedule import deal, run_jobs

MICRO = ["--preset", "micro", "--domains", "shakespeare,bible"]
NOT_NUMBERS = {"timing", "started", "machine", "command", "figures", "ranks"}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"


def numbers(report: dict) -> dict:
    """Every leaf of report.json by its path, except what legitimately differs between runs."""
    def walk(value, path):
        if isinstance(value, dict):
            for key, item in value.items():
                if not (path == "" and key in NOT_NUMBERS):
                    yield from walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, f"{path}[{i}]")
        else:
            yield path, value
    return dict(walk(report, ""))


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The micro grid on two domains, one process (run once per session, shared with test_mismatch):
    (out dir, report.json)."""
    out_dir, report, code = run_micro_once(tmp_path_factory)
    assert code == 0
    return out_dir, report


def count_training(monkeypatch) -> list:
    """Record the label of every model trained from now on (by wrapping Grid.train)."""
    trained = []
    original = mismatch.Grid.train

    def recording(self, config, model=None):
        trained.append((config.data, config.model, config.seed, dict(config.mix)))
        return original(self, config, model)

    monkeypatch.setattr(mismatch.Grid, "train", recording)
    return trained


# ----------------------------------------------------------------------------------------------
# The registry: one list for the run order, the section numbers, --experiments, --help and docs
# ----------------------------------------------------------------------------------------------


def test_docs_list_equals_the_registry():
    assert registry.markdown_list() in DOCS.read_text()


def test_help_lists_every_experiment_in_order(capsys):
    with pytest.raises(SystemExit):
        mismatch.main(["--help"])
    text = capsys.readouterr().out
    positions = [text.index(f"{n}. {e.name}") for n, e in enumerate(registry.EXPERIMENTS, start=1)]
    assert positions == sorted(positions)


def test_select_pulls_in_prerequisites_and_refuses_unknown_names():
    assert [e.name for e in registry.select("transfer")] == ["matrix", "transfer"]
    assert [e.name for e in registry.select("tokenizers,mixing")] == ["matrix", "mixing", "tokenizers"]
    assert registry.select(None) == [e for e in registry.EXPERIMENTS if not e.only_with]
    with pytest.raises(UserError, match="'nope'"):
        registry.select("matrix,nope")


def test_report_sections_are_numbered_from_the_registry(serial_run):
    out_dir, report = serial_run
    text = (out_dir / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ") and line[3].isdigit()]
    default = registry.select(None)  # without --init-from: every experiment but those that need a flag
    assert [h.split(".")[0] for h in headings] == [f"## {n}" for n in range(1, len(default) + 1)]
    assert report["experiments"] == [e.name for e in default]
    # the job count: one part per job, as each experiment declares them
    parts = sorted(p.stem for p in (out_dir / "parts").glob("*.json"))
    # matrix, ngram, mixing, transfer, lstm_vs_gpt, tokenizers; augmentation, tempered_mixing, domain_tags,
    # gradient_conflict; multitask, finetune; fluency_novelty
    assert len(parts) == report["timing"]["jobs"] == (2 * 2 + 2 + 2 + (4 + 1) + 2 + 2 + 5 * 2 + 2 + 1 + 1
                                                      + 3 * 2 + 3 + 1)


def test_a_selected_experiment_runs_with_its_prerequisite_only(tmp_path, serial_run, monkeypatch):
    trained = count_training(monkeypatch)
    out_dir = tmp_path / "mixing"
    assert mismatch.main(MICRO + ["--experiments", "mixing", "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["experiments"] == ["matrix", "mixing"] and "transfer" not in report
    assert len(trained) == 2 * 2 + 2
    text = (out_dir / "report.md").read_text()
    assert "## 2. Mixed-domain training" in text and "## 3." not in text
    assert "- Section 2 rests on one seed" in text
    assert report["mixing"] == serial_run[1]["mixing"]


def test_the_notes_name_exactly_the_sections_that_rest_on_one_seed(serial_run):
    out_dir, report = serial_run
    numbers = {name: n for n, name in enumerate(report["experiments"], start=1)}
    single = ("mixing", "transfer", "lstm_vs_gpt", "tempered_mixing", "domain_tags", "gradient_conflict")
    one_seed = sorted(numbers[name] for name in single if name in numbers)  # not matrix, curves, counting, ...
    expected = "- Sections " + ", ".join(map(str, one_seed)) + " rest on one seed (seed 0)"
    assert expected in (out_dir / "report.md").read_text()


# ----------------------------------------------------------------------------------------------
# Parts and --resume
# ----------------------------------------------------------------------------------------------


def test_resume_retrains_only_the_missing_part(tmp_path, serial_run, monkeypatch):
    serial_dir, serial_report = serial_run
    out_dir = tmp_path / "resumed"
    out_dir.mkdir()
    (out_dir / "parts").mkdir()
    for path in (serial_dir / "parts").iterdir():
        (out_dir / "parts" / path.name).write_bytes(path.read_bytes())
    (out_dir / "parts" / "mixing.equal.json").unlink()
    trained = count_training(monkeypatch)
    assert mismatch.main(MICRO + ["--out", str(out_dir), "--resume"]) == 0
    assert len(trained) == 1 and trained[0][3]  # one model, and it is a mixture
    assert numbers(json.loads((out_dir / "report.json").read_text())) == numbers(serial_report)


def test_resume_refuses_parts_of_another_config(tmp_path, serial_run, monkeypatch, capsys):
    serial_dir, _ = serial_run
    out_dir = tmp_path / "other"
    (out_dir / "parts").mkdir(parents=True)
    for path in (serial_dir / "parts").glob("matrix.*"):
        (out_dir / "parts" / path.name).write_bytes(path.read_bytes())
    trained = count_training(monkeypatch)
    assert mismatch.main(MICRO + ["--steps", "21", "--out", str(out_dir), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "another config" in err[0]
    assert trained == []


def test_a_failing_job_stops_with_one_line_and_keeps_the_finished_parts(tmp_path, monkeypatch, capsys):
    original = mismatch.Grid.train

    def fail_on_mixtures(self, config, model=None):
        if config.mix:
            raise RuntimeError("out of memory")
        return original(self, config, model)

    monkeypatch.setattr(mismatch.Grid, "train", fail_on_mixtures)
    out_dir = tmp_path / "failed"
    assert mismatch.main(MICRO + ["--experiments", "mixing", "--out", str(out_dir)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bar
    assert len(errors) == 1 and errors[0].startswith("python -m minilm.mismatch: error: ")
    assert "mixed (equal weights) failed" in errors[0] and "out of memory" in errors[0]
    assert len(list((out_dir / "parts").glob("matrix.*.json"))) == 4


# ----------------------------------------------------------------------------------------------
# The grid over processes
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_give_every_number_of_one(tmp_path, serial_run, capsys):
    out_dir = tmp_path / "two"
    assert mismatch.main(MICRO + ["--out", str(out_dir), "--jobs", "2"]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["ranks"] == 2
    written_by = [json.loads(p.read_text())["rank"] for p in (out_dir / "parts").glob("*.json")]
    assert sorted(set(written_by)) == [0, 1] and abs(written_by.count(0) - written_by.count(1)) <= 1
    assert numbers(report) == numbers(serial_run[1])
    assert (out_dir / "report.md").read_text().split("## 1.")[1] == \
        (serial_run[0] / "report.md").read_text().split("## 1.")[1]


def test_jobs_are_dealt_in_dependency_order():
    jobs = [Job(f"j{i}", f"job {i}", run=None) for i in range(5)]
    assert [j.key for j in deal(jobs, 0, 2)] == ["j0", "j2", "j4"]
    assert [j.key for j in deal(jobs, 1, 2)] == ["j1", "j3"]
    assert deal(jobs, 6, 7) == []


def test_more_ranks_than_jobs_idle_and_say_it_once(tmp_path):
    said = []
    grid = types.SimpleNamespace(step_seconds=[])
    parts = Parts(tmp_path / "parts", "f")
    jobs = [Job("only", "the only job", run=lambda grid: ({"x": 1.5}, None), trains=False)]
    results = run_jobs(grid, jobs, parts, rank=0, world=3, say=said.append)
    assert results["only"]["result"] == {"x": 1.5}
    assert len(said) == 1 and "ranks 1-2 stay idle" in said[0]
    assert run_jobs(grid, jobs, parts, rank=2, world=3, say=said.append) is None  # nothing left to do
    assert len(said) == 1


# ----------------------------------------------------------------------------------------------
# Bad input: one line, before any training
# ----------------------------------------------------------------------------------------------


def refused(args, capsys, monkeypatch) -> str:
    trained = count_training(monkeypatch)
    assert mismatch.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m minilm.mismatch: error: "), lines
    assert trained == []
    return lines[0]


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_must_be_positive(jobs, tmp_path, capsys, monkeypatch):
    line = refused(MICRO + ["--jobs", jobs, "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert "--jobs" in line and jobs in line


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    line = refused(MICRO + ["--out", str(a_file)], capsys, monkeypatch)
    assert "--out" in line and "not a folder" in line
    line = refused(MICRO + ["--out", str(a_file / "report")], capsys, monkeypatch)
    assert "--out" in line and "is a file" in line
    assert a_file.read_text() == "mine\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_is_refused(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = refused(MICRO + ["--out", str(locked / "report")], capsys, monkeypatch)
    finally:
        locked.chmod(0o700)
    assert "--out" in line and "not writable" in line


def test_corpus_that_is_not_utf8_is_refused_with_its_byte_offset(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf".encode() + "\xe9 au lait\n".encode("latin-1") + b"x" * 2000)
    line = refused(MICRO + ["--corpus", f"cafe={bad}", "--domains", "shakespeare,cafe", "--out",
                            str(tmp_path / "o")], capsys, monkeypatch)
    assert str(bad) in line and "UTF-8" in line and "byte offset 3" in line


def test_unknown_experiment_is_refused(tmp_path, capsys, monkeypatch):
    line = refused(MICRO + ["--experiments", "matrix,attention", "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert "--experiments" in line and "'attention'" in line and "matrix" in line
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------
# The counting baseline
# ----------------------------------------------------------------------------------------------


def test_ngram_scores_each_window_on_its_own():
    """window_bits_per_byte equals -log2 P summed by hand with KneserNeyLM.prob, the context of each
    target being only the bytes before it in its own window (the first target has one byte)."""
    from tolerances import TOL, max_error

    from minilm.mismatch.experiments.ngram import window_bits_per_byte
    from minilm.ngram import KneserNeyLM

    rng = np.random.default_rng(0)
    lm = KneserNeyLM(3, vocab_size=8).fit(rng.integers(0, 8, size=400))
    windows = rng.integers(0, 8, size=(5, 7))  # (W, T+1)
    bits = [-np.log2(lm.prob(list(w[:i]), int(w[i]))) for w in windows for i in range(1, len(w))]
    assert max_error(window_bits_per_byte(lm, windows), np.mean(bits)) <= TOL["fast_path_float64"]
    # one long text would give the first target of each window the previous window as context
    joined = -np.log2(np.exp(-lm.nats(windows.reshape(-1), start=0))).reshape(5, 7)[:, 1:].mean()
    assert max_error(window_bits_per_byte(lm, windows), joined) > TOL["fast_path_float64"]


def test_the_report_carries_the_baseline_in_every_specialist_table(serial_run):
    out_dir, report = serial_run
    ngram = report["ngram"]
    names = list(report["domains"])
    assert ngram["order"] == 6 and set(ngram["matrix"]) == set(names)
    for e in names:
        assert ngram["specialist"][e] == ngram["matrix"][e][e]
        assert ngram["neural_over_ngram"][e] == pytest.approx(report["matrix"][e][e] / ngram["matrix"][e][e])
        assert ngram["ratio"][e][e] == pytest.approx(1.0)
    text = (out_dir / "report.md").read_text()
    sections = {section.split(". ", 1)[1].split(" ")[0]: section for section in text.split("\n## ")[1:-1]}
    for title in ("Cross-domain", "Counting", "Mixed-domain", "Transfer", "LSTM"):
        assert "6-gram" in sections[title], title
    assert "Off domain, counting pays" in text


@pytest.mark.parametrize("order", ["0", "9"])
def test_ngram_order_outside_1_to_8_is_refused(order, tmp_path, capsys, monkeypatch):
    line = refused(MICRO + ["--ngram-order", order, "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert "--ngram-order" in line and order in line


# ----------------------------------------------------------------------------------------------
# Generalisation along training
# ----------------------------------------------------------------------------------------------


def test_curves_fit_and_rank_a_hand_made_case():
    """Three domains, 2 seeds, evaluations at steps 0, 25, 50, 75, 100. Off-domain = 2 * in-domain + k
    for each pair (k its own), so every fit is slope 2, offset k; the costs keep their order, so
    the rank correlation of the costs at step 25 (nearest 25%) and at the end is 1."""
    from tolerances import TOL, max_error

    from minilm.mismatch.experiments import curves
    from minilm.mismatch.experiments.matrix import specialist_key

    names = ["a", "b", "c"]
    steps = [0, 25, 50, 75, 100]
    offsets = {("a", "b"): 0.1, ("a", "c"): 0.5, ("b", "a"): 0.2, ("b", "c"): 0.9, ("c", "a"): 0.3, ("c", "b"): 0.7}
    parts = {}
    for seed, shift in ((0, -0.01), (1, 0.01)):  # the seeds' mean removes the shift
        for t in names:
            inside = [5.0 - 0.02 * s + shift for s in steps]
            curve = {"step": steps, t: inside}
            curve.update({e: [2 * x + offsets[t, e] for x in inside] for e in names if e != t})
            parts[specialist_key(t, seed)] = {"result": {"curve": curve}}
    grid = types.SimpleNamespace(names=names, config=types.SimpleNamespace(seeds=2, curve_windows=4))
    cv = curves.summarise(grid, parts, {})["curves"]
    for (t, e), k in offsets.items():
        assert max_error([cv["fit"][t][e]["slope"], cv["fit"][t][e]["offset"]], [2.0, k]) <= TOL["forward_float64"]
    assert cv["early_step"] == 25
    expected = (2 * (5.0 - 0.5) + offsets["a", "b"]) / (5.0 - 0.5)  # a on b over b's specialist at step 25
    assert max_error(cv["cost_early"]["a"]["b"], expected) <= TOL["forward_float64"]
    assert cv["spearman_early_vs_end"] == pytest.approx(1.0)


def test_the_report_has_the_curves(serial_run):
    out_dir, report = serial_run
    cv = report["curves"]
    assert cv["step"][0] == 0 and cv["step"][-1] == report["config"]["steps"]
    assert len(cv["step"]) == report["config"]["curve_points"] + 1
    assert set(cv["fit"]["shakespeare"]) == {"bible"}
    assert "Generalisation along training" in (out_dir / "report.md").read_text()


def test_cpu_preset_lies_between_cpu_quick_and_gpu_and_fits_every_bundled_corpus():
    """The cpu preset is not run in CI; its pieces are checked: a budget between cpu-quick's and
    gpu's, a context long enough for a loss-by-position bucket beyond 8-15, and every bundled
    corpus holds windows of that context in both splits."""
    presets = mismatch.PRESETS
    cpu = presets["cpu"]
    assert presets["cpu-quick"].tokens_per_model() < cpu.tokens_per_model() < presets["gpu"].tokens_per_model()
    assert cpu.block_size > 16 and cpu.seeds == 3
    for name, spec in mismatch.choose_domains(None, {}).items():
        mismatch.check_corpus_size(name, spec, cpu.block_size)
    assert all("cpu" in e.minutes for e in registry.EXPERIMENTS if e.minutes is not None)


def test_overwrite_clears_old_parts_but_not_a_users_file(tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    (out_dir / "parts").mkdir(parents=True)
    (out_dir / "parts" / "matrix.stale.json").write_text("{}\n")
    (out_dir / "parts" / "notes.txt").write_text("mine\n")
    assert mismatch.main(MICRO + ["--experiments", "matrix", "--steps", "2", "--seeds", "1", "--overwrite",
                                  "--out", str(out_dir)]) == 0
    assert (out_dir / "parts" / "notes.txt").read_text() == "mine\n"
    assert not (out_dir / "parts" / "matrix.stale.json").exists()
    assert (out_dir / "parts" / "matrix.bible.seed0.json").is_file()
