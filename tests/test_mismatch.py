"""The domain-mismatch grid (`python -m minilm.mismatch`) end to end at the micro preset, and its
refusals of bad input.

The micro grid (2 domains, 2 seeds, a 1-layer 32-wide GPT, 20 steps per model) runs once for the
module, in about 15-30 seconds on 2 cores; the tests then read its report. The bad-input tests
must fail before anything is trained, so each of them is fast.
"""
from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from minilm import mismatch

MICRO_DOMAINS = ["shakespeare", "bible"]
# Keys whose value may legitimately be null in report.json (a ratio with nothing to divide by,
# a correlation over too few pairs, the note that is only there without matplotlib).
MAY_BE_NULL = {"plot_note", "gain_after_8", "a_rise_fraction_of_gap", "forgetting_removed", "median_step_ms",
               "spearman_token_cost_vs_model_ratio", "spearman_jaccard_vs_model_ratio", "processor",
               "spearman_off_domain_ratio", "spearman_early_vs_end"}


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def run_micro_once(tmp_path_factory):
    """The whole grid at the micro preset, run once per test session (the modules that need it share
    the folder); returns (out dir, report.json, exit code)."""
    out_dir = tmp_path_factory.getbasetemp() / "mismatch-micro" / "report"
    done = out_dir.parent / "exit_code"
    if not done.is_file():
        code = mismatch.main(["--preset", "micro", "--domains", ",".join(MICRO_DOMAINS), "--out", str(out_dir)])
        done.write_text(str(code))
    code = int(done.read_text())
    report = json.loads((out_dir / "report.json").read_text()) if code == 0 else None
    return out_dir, report, code


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """Run the whole grid once at the micro preset; returns (out dir, report.json, exit code)."""
    return run_micro_once(tmp_path_factory)


def walk(value, path="report"):
    """Yield (path, leaf) for every leaf of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")
    else:
        yield path, value


# ----------------------------------------------------------------------------------------------
# The micro grid
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_micro_grid_writes_a_complete_report(micro_run):
    out_dir, report, code = micro_run
    assert code == 0
    assert (out_dir / "report.md").is_file() and (out_dir / "report.json").is_file()

    names = MICRO_DOMAINS
    assert list(report["domains"]) == names
    # 1. the matrix: matrix[trained_on][evaluated_on], per seed, spreads, gaps
    for key in ("matrix", "std", "min", "max", "gap", "ratio"):
        assert set(report[key]) == set(names) and all(set(report[key][t]) == set(names) for t in names), key
    assert len(report["per_seed"]) == report["config"]["seeds"] == 2
    for t in names:
        for e in names:
            seeds = [rows[t][e] for rows in report["per_seed"]]
            assert report["min"][t][e] <= report["matrix"][t][e] <= report["max"][t][e]
            assert report["matrix"][t][e] == pytest.approx(sum(seeds) / len(seeds))
        assert report["ratio"][t][t] == pytest.approx(1.0) and report["gap"][t][t] == pytest.approx(0.0)
    assert len(report["gaps_vs_specialist"]) == len(names) * (len(names) - 1)
    assert all(isinstance(g["beyond_spread"], bool) for g in report["gaps_vs_specialist"])
    # 2. mixing
    for kind in ("equal", "proportional"):
        assert set(report["mixing"]["bpb"][kind]) == set(names)
        assert sum(report["mixing"]["weights"][kind].values()) == pytest.approx(1.0)
    # 3. transfer: one run per replay fraction, curves with a point before training starts
    transfer = report["transfer"]
    assert [transfer["a"], transfer["b"]] == names  # shakespeare -> bible, the default pair
    fractions = report["config"]["replay_fractions"]
    assert [s["replay"] for s in transfer["summary"]] == fractions == [0.0, 0.01, 0.05, 0.25]
    for run in list(transfer["runs"].values()) + [transfer["scratch"]]:
        curve = run["curve"]
        assert curve["step"][0] == 0 and curve["step"][-1] == report["config"]["steps"]
        assert len(curve[transfer["a"]]) == len(curve[transfer["b"]]) == len(curve["step"])
    # 4. tokenizers
    tokenizers = report["tokenizers"]
    for key in ("bytes_per_token", "token_cost", "jaccard"):
        assert set(tokenizers[key]) == set(names), key
    assert all(tokenizers["jaccard"][t][t] == pytest.approx(1.0) for t in names)
    assert all(tokenizers["bytes_per_token"][t][e] >= 1.0 for t in names for e in names)
    # 5. LSTM vs GPT at (nearly) matched size
    models = report["lstm_vs_gpt"]["models"]
    assert abs(models["lstm"]["params"] - models["gpt"]["params"]) <= 0.05 * models["gpt"]["params"]
    for kind in ("gpt", "lstm"):
        assert len(models[kind]["bits_by_position"]) == report["config"]["block_size"]
        assert len(models[kind]["bits_by_bucket"]) == len(report["lstm_vs_gpt"]["position_buckets"])
    # the config and the machine are recorded
    assert report["config"]["preset"] == "micro" and "platform" in report["machine"]


@pytest.mark.slow
def test_micro_grid_numbers_are_finite(micro_run):
    _, report, code = micro_run
    assert code == 0
    numbers = 0
    for path, leaf in walk(report):
        if leaf is None:
            assert path.rsplit(".", 1)[-1] in MAY_BE_NULL, f"{path} is null (a NaN or infinity?)"
        elif isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            assert math.isfinite(leaf), path
            numbers += 1
    assert numbers > 100
    # bits per byte of a byte-level model: positive, and (after even a few steps) below 8 + a margin
    assert all(0 < report["matrix"][t][e] < 9 for t in MICRO_DOMAINS for e in MICRO_DOMAINS)


@pytest.mark.slow
def test_micro_grid_markdown_and_pictures(micro_run):
    out_dir, report, code = micro_run
    assert code == 0
    text = (out_dir / "report.md").read_text()
    for heading in ("## 1. Cross-domain matrix", "## 2. Counting baseline", "## 3. Generalisation along training",
                    "## 4. Mixed-domain training", "## 5. Transfer and forgetting", "## 6. LSTM vs Transformer",
                    "## 7. Tokenizer mismatch"):
        assert heading in text
    assert "| trained on \\ evaluated on | shakespeare | bible |" in text
    if have_matplotlib():
        for name in ("matrix.png", "ngram_matrix.png", "curves.png", "forgetting.png", "tradeoff.png",
                     "loss_by_position.png"):
            assert (out_dir / name).stat().st_size > 1000, name
            assert f"]({name})" in text
        assert report["plot_note"] is None
    else:
        assert report["plot_note"] and "pip install" in text


@pytest.mark.slow
def test_without_matplotlib_tables_are_written_with_a_note(micro_run, tmp_path, monkeypatch):
    _, report, code = micro_run
    assert code == 0
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    files = mismatch.write_report(report, tmp_path)
    assert files == ["report.md", "report.json"]
    assert not list(tmp_path.glob("*.png"))
    text = (tmp_path / "report.md").read_text()
    assert "matplotlib is not installed" in text and "pip install -e .[plot]" in text
    assert "| trained on \\ evaluated on |" in text
    assert json.loads((tmp_path / "report.json").read_text())["plot_note"] == mismatch.PLOT_NOTE


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr naming the input, exit status 2, nothing trained
# ----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_training_in_bad_input_tests(request, monkeypatch):
    """Outside the micro grid, any training is a failure: bad input must be refused before it."""
    if "micro_run" in request.fixturenames:
        return

    def refuse(*args, **kwargs):
        raise AssertionError("training started; bad input must be refused before any training")

    monkeypatch.setattr(mismatch.Grid, "train", refuse)


def run_expecting_error(args, capsys) -> str:
    code = mismatch.main(args)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minilm.mismatch: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_unknown_corpus_is_refused(tmp_path, capsys):
    line = run_expecting_error(["--preset", "micro", "--domains", "shakespeare,klingon",
                                "--out", str(tmp_path / "out")], capsys)
    assert "--domains" in line and "'klingon'" in line and "shakespeare" in line
    assert not (tmp_path / "out").exists()


def test_corpus_too_small_for_split_and_context_is_refused(tmp_path, capsys):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("too short to hold a window of context\n" * 3)
    line = run_expecting_error(["--preset", "micro", "--corpus", f"tiny={tiny}", "--domains", "shakespeare,tiny",
                                "--out", str(tmp_path / "out")], capsys)
    assert "--corpus tiny" in line and "too small" in line and "block_size + 1" in line


def test_malformed_corpus_flag_is_refused(tmp_path, capsys):
    line = run_expecting_error(["--preset", "micro", "--corpus", "no-equals-sign", "--out", str(tmp_path / "o")],
                               capsys)
    assert "--corpus" in line and "NAME=PATH" in line
    line = run_expecting_error(["--preset", "micro", "--corpus", f"ghost={tmp_path / 'missing.txt'}",
                                "--out", str(tmp_path / "o")], capsys)
    assert "--corpus ghost" in line and "not an existing file" in line


def test_existing_out_dir_needs_overwrite(tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "report.md").write_text("an earlier report\n")
    line = run_expecting_error(["--preset", "micro", "--domains", "shakespeare,bible", "--out", str(out_dir)], capsys)
    assert "--out" in line and "--overwrite" in line
    assert (out_dir / "report.md").read_text() == "an earlier report\n"


def test_bad_transfer_pair_and_too_few_domains_are_refused(tmp_path, capsys):
    line = run_expecting_error(["--preset", "micro", "--domains", "shakespeare,bible", "--transfer",
                                "shakespeare,legal", "--out", str(tmp_path / "o")], capsys)
    assert "--transfer" in line
    line = run_expecting_error(["--preset", "micro", "--domains", "shakespeare", "--out", str(tmp_path / "o")], capsys)
    assert "--domains" in line and "at least 2" in line


# ----------------------------------------------------------------------------------------------
# Small pieces
# ----------------------------------------------------------------------------------------------


def test_summary_flags_gaps_beyond_the_seed_spread():
    names = ["a", "b"]
    per_seed = [{"a": {"a": 1.00, "b": 3.0}, "b": {"a": 1.02, "b": 2.0}},
                {"a": {"a": 1.10, "b": 3.1}, "b": {"a": 1.06, "b": 2.1}}]
    summary = mismatch.summarise_seeds(per_seed, names)
    assert summary["matrix"]["a"]["b"] == pytest.approx(3.05)
    flags = {(g["trained_on"], g["evaluated_on"]): g["beyond_spread"] for g in summary["gaps_vs_specialist"]}
    assert flags == {("b", "a"): False, ("a", "b"): True}  # b on a overlaps a's own range; a on b does not
    assert summary["columns_where_in_domain_is_best"] == ["b"]  # b's model is (slightly) better on a


def test_spearman_and_jaccard():
    assert mismatch.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert mismatch.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert mismatch.spearman([1, 1, 1], [1, 2, 3]) is None
    assert mismatch.jaccard_index({b"ab", b"cd"}, {b"cd", b"ef"}) == pytest.approx(1 / 3)


def test_matched_lstm_is_close_to_the_gpt_size():
    config = mismatch.PRESETS["cpu-quick"]
    from minilm.gpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(block_size=config.block_size, **config.gpt_args()))
    args = mismatch.matched_lstm_args(config, gpt.num_params())
    from minilm.lstm import LSTMLM, LSTMConfig

    lstm = LSTMLM(LSTMConfig(**args))
    assert abs(lstm.num_params() - gpt.num_params()) <= 0.02 * gpt.num_params()


def test_gpu_preset_builds_its_models_and_fits_every_bundled_corpus():
    """The gpu preset cannot be run in CI (no GPU), but its pieces can be checked: the GPT and
    the parameter-matched LSTM build at its sizes, and every bundled corpus holds windows of its
    context in both splits (load_domains checks that first)."""
    from minilm.gpt import GPT, GPTConfig
    from minilm.lstm import LSTMLM, LSTMConfig

    config = mismatch.PRESETS["gpu"]
    assert config.block_size == 256 and config.seeds >= 3
    with torch.device("meta"):  # shapes only: no memory for the weights
        gpt = GPT(GPTConfig(block_size=config.block_size, **config.gpt_args()))
        lstm = LSTMLM(LSTMConfig(**mismatch.matched_lstm_args(config, gpt.num_params())))
    assert gpt.num_params() > 10_000_000
    assert abs(lstm.num_params() - gpt.num_params()) <= 0.02 * gpt.num_params()
    for name, spec in mismatch.choose_domains(None, {}).items():
        mismatch.check_corpus_size(name, spec, config.block_size)  # raises UserError if too small
