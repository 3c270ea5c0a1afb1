"""The training loop: schedule, config checks, resume equality, grad accumulation, DDP on CPU,
Ctrl-C, the command line's handling of bad input, and the CI regression run."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minilm.checkpoint import load_model, read_checkpoint
from minilm.data import REPO_ROOT, UserError
from minilm.training import PRESETS, TrainConfig, learning_rate, train
from tests.tolerances import assert_close

TINY_FLAGS = ["--preset", "ci-tiny", "--block-size", "16", "--batch-size", "4", "--n-layer", "1", "--n-head", "2",
              "--n-embd", "16", "--eval-windows", "8", "--eval-interval", "3", "--threads", "1", "--no-progress"]


def tiny_config(**overrides) -> TrainConfig:
    """A 1-layer, 16-wide GPT on 16-token windows: a dozen steps take well under a second."""
    settings = dict(data="shakespeare", block_size=16, batch_size=4, steps=12, lr=3e-3, min_lr=3e-4,
                    warmup_steps=3, eval_interval=4, eval_windows=8, eval_batch_size=8, threads=1,
                    progress=False, verbose=False, model_args=dict(n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    settings.update(overrides)
    return TrainConfig(**settings)


def load_train_script():
    spec = importlib.util.spec_from_file_location("train_script", REPO_ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(argv, capsys):
    """Run train.py's main() in this process; returns (exit status, stdout, stderr)."""
    try:
        status = load_train_script().main(argv)
    except SystemExit as exit_:  # argparse errors exit directly
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def read_log(out_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


# --- schedule and config ----------------------------------------------------------------------


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    config = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    warmup = [learning_rate(s, config) for s in range(100)]
    assert warmup[0] == pytest.approx(1e-3 / 101) and warmup[99] == pytest.approx(1e-3 * 100 / 101)
    assert all(b - a == pytest.approx(1e-3 / 101) for a, b in zip(warmup, warmup[1:], strict=False))
    assert learning_rate(100, config) == pytest.approx(1e-3)
    assert learning_rate(550, config) == pytest.approx(0.5 * (1e-3 + 1e-4))  # halfway down the cosine
    decay = [learning_rate(s, config) for s in range(100, 1001)]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    assert learning_rate(1000, config) == pytest.approx(1e-4) and learning_rate(5000, config) == 1e-4


@pytest.mark.parametrize("field, value, flag", [
    ("batch_size", 0, "--batch-size"), ("steps", -5, "--steps"), ("lr", float("nan"), "--lr"),
    ("lr", 0.0, "--lr"), ("beta2", 1.0, "--beta2"), ("grad_accum", 1.5, "--grad-accum"),
    ("mix", {"bible": 1.2}, "--mix"), ("mix", {"bible": 0.6, "legal": 0.5}, "--mix"), ("model", "rnn", "--model"),
    ("log_interval", -1, "--log-interval"),
])
def test_bad_numbers_in_the_config_name_their_flag(field, value, flag):
    with pytest.raises(UserError, match=flag):
        TrainConfig(**{field: value})


def test_presets_set_sizes_and_explicit_settings_win():
    config = TrainConfig.from_preset("nanogpt-cpu", steps=10, model_args={"n_layer": 2})
    assert (config.block_size, config.batch_size, config.steps) == (64, 12, 10)
    assert config.model_args == {"n_layer": 2, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False,
                                 "activation": "gelu"}
    assert set(PRESETS) >= {"cpu-tiny", "gpu-small", "nanogpt-cpu", "ci-tiny"}
    with pytest.raises(UserError, match="--preset"):
        TrainConfig.from_preset("huge")


def test_the_loss_is_read_every_step_on_the_cpu_and_every_log_interval_when_asked():
    """log_interval=0 (the default) reads the loss at every step on the CPU; an explicit interval
    reads it at every N-th step and at the last. The loss read at a step does not depend on how
    often it is read."""
    every = train(tiny_config(steps=12))
    assert [step for step, _ in every.train_losses] == list(range(12))
    sparse = train(tiny_config(steps=12, log_interval=5))
    assert [step for step, _ in sparse.train_losses] == [4, 9, 11]
    assert sparse.train_losses == [every.train_losses[i] for i in (4, 9, 11)]
    assert len(sparse.step_seconds) == len(every.step_seconds) == 12


# --- resume, accumulation, continuing a model --------------------------------------------------


def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """Dropout is on, so the torch RNG state matters as much as the sampler's and the optimizer's."""
    settings = dict(model_args=dict(n_layer=1, n_head=2, n_embd=16, dropout=0.1), log_interval=1)
    whole = train(tiny_config(out_dir=str(tmp_path / "whole"), **settings))
    first = train(tiny_config(out_dir=str(tmp_path / "split"), stop_at_step=6, **settings))
    assert first.interrupted and first.step == 6
    second = train(tiny_config(out_dir=str(tmp_path / "split"), resume=True, **settings))
    assert first.train_losses + second.train_losses == whole.train_losses  # bit for bit
    assert [r["val_loss"] for r in second.history] == [r["val_loss"] for r in whole.history]
    assert [r["step"] for r in read_log(tmp_path / "split")] == [0, 4, 8, 12]  # no eval logged twice
    resumed_weights = read_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]
    for name, tensor in read_checkpoint(tmp_path / "whole" / "ckpt.pt")["model"].items():
        assert torch.equal(tensor, resumed_weights[name]), name


def test_grad_accumulation_matches_one_big_batch():
    big = train(tiny_config(batch_size=8, steps=5, eval_interval=5))
    accumulated = train(tiny_config(batch_size=4, grad_accum=2, steps=5, eval_interval=5))
    assert_close(torch.tensor(accumulated.final["val_loss"]), torch.tensor(big.final["val_loss"]),
                 "fast_path_float32", "val loss after 5 steps")


def test_best_checkpoint_and_log_are_written(tmp_path):
    result = train(tiny_config(out_dir=str(tmp_path)))
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [0, 4, 8, 12] and log == result.history
    assert {"train_loss", "val_loss", "val_bpb", "lr", "tokens_per_sec"} <= set(log[-1])
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["best_val_loss"] == min(r["val_loss"] for r in log) == result.best_val_loss
    latest = read_checkpoint(tmp_path / "ckpt.pt")
    assert latest["step"] == 12 and latest["train_config"]["steps"] == 12
    assert latest["data_state"]["steps_drawn"] == 12


def test_a_loaded_model_continues_on_another_corpus_with_replay(tmp_path):
    train(tiny_config(out_dir=str(tmp_path), steps=4))
    model, tokenizer, _ = load_model(tmp_path / "ckpt.pt")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(tiny_config(data="bible", mix={"shakespeare": 0.25}, eval_extra=["legal"], steps=4),
                   model=model, tokenizer=tokenizer)
    assert result.model is model
    assert set(result.final["val_bpb_by_corpus"]) == {"bible", "shakespeare", "legal"}
    assert result.final["val_bpb"] == result.final["val_bpb_by_corpus"]["bible"]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lstm_trains_and_its_checkpoint_loads(tmp_path):
    from minilm.checkpoint import model_registry

    if "lstm" not in model_registry():
        pytest.skip("minilm.lstm is not available yet")
    result = train(tiny_config(model="lstm", out_dir=str(tmp_path), steps=4,
                               model_args=dict(n_layer=1, n_embd=16, n_hidden=16)))
    assert result.final["val_loss"] < result.history[0]["val_loss"]
    model, _, checkpoint = load_model(tmp_path / "ckpt.pt")
    assert checkpoint["model_kind"] == "lstm" and type(model).__name__ == "LSTMLM"


# --- the command line: bad input -----------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["--data", "no_such_corpus"], "--data: 'no_such_corpus' is neither a bundled corpus"),
    (["--preset", "huge"], "--preset: unknown preset 'huge'"),
    (["--device", "tpu"], "--device: unknown device 'tpu'"),
    (["--steps", "0"], "--steps: expected a positive integer"),
    (["--lr", "fast"], "--lr: expected a number, got 'fast'"),
    (["--batch-size", "-3"], "--batch-size: expected a positive integer"),
    (["--mix", "bible"], "--mix: expected KEY=VALUE"),
    (["--n-layer", "0"], "GPTConfig.n_layer: expected a positive integer, got 0"),
    (["--block-size", "2000000"], "expected at least block_size + 1 = 2000001"),
    (["--resume"], "--resume: no checkpoint to resume"),
    (["--eval-only"], "--eval-only: needs --ckpt"),
])
def test_bad_input_gives_one_line_and_status_2(argv, expected, tmp_path, capsys):
    argv = argv + ["--out", str(tmp_path / "run")] if "--out" not in argv else argv
    status, _, err = run_cli(argv, capsys)
    assert status == 2
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_empty_and_too_short_corpus_files(tmp_path, capsys):
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_bytes(b"")
    short.write_text("To be, or not to be\n" * 2)  # 40 bytes: 36 for training
    for path, expected in [(tmp_path / "absent.txt", "neither a bundled corpus"), (empty, "is empty"),
                           (short, "has 36 training tokens; expected at least block_size + 1 = 65")]:
        status, _, err = run_cli(["--data", str(path), "--out", ""], capsys)
        assert status == 2 and expected in err and err.count("\n") == 1


def test_existing_run_is_never_overwritten_and_resume_refuses_another_model(tmp_path, capsys):
    out = str(tmp_path / "run")
    status, _, _ = run_cli(TINY_FLAGS + ["--steps", "3", "--out", out], capsys)
    assert status == 0
    checkpoint_bytes = (tmp_path / "run" / "ckpt.pt").read_bytes()
    status, _, err = run_cli(TINY_FLAGS + ["--steps", "3", "--out", out], capsys)
    assert status == 2 and "already holds a checkpoint" in err
    status, _, err = run_cli(["--resume", "--out", out, "--model", "lstm", "--no-progress"], capsys)
    assert status == 2 and err.count("\n") == 1
    status, _, err = run_cli(["--resume", "--out", out, "--n-embd", "32", "--no-progress"], capsys)
    assert status == 2 and "different model config" in err
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == checkpoint_bytes
    status, _, _ = run_cli(["--resume", "--out", out, "--steps", "6", "--no-progress"], capsys)
    assert status == 0 and read_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 6


def test_eval_only_prints_the_bits_per_byte_the_run_logged_and_refuses_bad_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(TINY_FLAGS + ["--steps", "3", "--out", str(out)], capsys)[0] == 0
    logged = read_log(out)[-1]["val_bpb"]
    status, printed, _ = run_cli(["--eval-only", "--ckpt", str(out / "ckpt.pt"), "--data", "shakespeare",
                                  "--eval-windows", "8"], capsys)
    assert status == 0 and f"{logged:.4f} bits per byte" in printed
    status, printed, _ = run_cli(["--eval-only", "--ckpt", str(out / "ckpt.pt"), "--data", "poetry_zh"], capsys)
    assert status == 0 and "poetry_zh (val" in printed
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((out / "ckpt.pt").read_bytes()[:1000])
    for ckpt, expected in [(damaged, "truncated or corrupt"), (tmp_path / "none.pt", "no checkpoint file")]:
        status, _, err = run_cli(["--eval-only", "--ckpt", str(ckpt)], capsys)
        assert status == 2 and expected in err and err.count("\n") == 1


# --- processes: Ctrl-C and DDP -------------------------------------------------------------------


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *TINY_FLAGS, "--steps", "100000",
                                "--eval-interval", "100000", "--out", str(out)],
                               env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out / "log.jsonl").exists() and time.time() < deadline:  # step-0 eval done: training runs
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "checkpoint saved" in stdout
    checkpoint = read_checkpoint(out / "ckpt.pt")
    assert 0 < checkpoint["step"] < 100000 and checkpoint["data_state"]["steps_drawn"] == checkpoint["step"]


def test_ddp_with_two_gloo_processes_matches_one_process_with_the_same_global_batch(tmp_path):
    common = [*TINY_FLAGS, "--steps", "4", "--eval-interval", "2", "--dropout", "0"]
    single = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *common, "--batch-size", "8",
                             "--out", str(tmp_path / "one")], env=subprocess_env(), capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(REPO_ROOT / "train.py"), *common, "--batch-size", "4", "--out", str(tmp_path / "two")],
                            env=subprocess_env(), capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [r["step"] for r in two] == [0, 2, 4]
    assert_close(torch.tensor([r["val_loss"] for r in two]), torch.tensor([r["val_loss"] for r in one]),
                 "fast_path_float32", "val loss, 2 processes vs 1")
    weights_one = read_checkpoint(tmp_path / "one" / "ckpt.pt")["model"]
    for name, tensor in read_checkpoint(tmp_path / "two" / "ckpt.pt")["model"].items():
        assert_close(tensor, weights_one[name], "fast_path_float32", name)
    assert not any(k.startswith("module.") for k in weights_one)  # unwrapped from DDP


# --- the CI regression run -----------------------------------------------------------------------

# Recorded run: `train(TrainConfig.from_preset("ci-tiny", threads=1))` (2-layer, 64-wide GPT, 500
# steps of 16 x 64 bytes of Shakespeare) reached val 3.287 bits/byte on 2026-11-23 (2-core CPU).
# The threshold leaves ~0.16 bits of margin for other CPUs' float rounding; the untrained model
# scores ~8.0 and a bigram-level model ~3.5, so a broken pipeline or schedule fails it.
CI_BITS_PER_BYTE_THRESHOLD = 3.45


def test_ci_regression_tiny_run_reaches_the_recorded_bits_per_byte():
    result = train(TrainConfig.from_preset("ci-tiny", threads=1, progress=False, verbose=False))
    assert result.history[0]["val_bpb"] > 7.5  # starts near uniform over 256 bytes
    assert result.final["val_bpb"] < CI_BITS_PER_BYTE_THRESHOLD, result.final
    assert math.isfinite(result.final["train_loss"])


def test_bpe_tokenizer_run_counts_bytes_and_its_checkpoint_refuses_another_tokenizer(tmp_path):
    bpe = pytest.importorskip("minilm.bpe")
    text = (REPO_ROOT / "data" / "shakespeare.txt").read_text(encoding="utf-8")[:20000]
    tokenizer_path = tmp_path / "tokenizer.json"
    bpe.BPETokenizer.train(text, 300).save(str(tokenizer_path))
    out = tmp_path / "run"
    result = train(tiny_config(tokenizer=str(tokenizer_path), out_dir=str(out), steps=3, eval_interval=3))
    record = result.final
    assert record["val_bpb"] < record["val_loss"] / math.log(2)  # a BPE token covers more than one byte
    model, tokenizer, _ = load_model(out / "ckpt.pt")
    assert tokenizer.vocab_size == 300 and model.config.vocab_size == 300
    with pytest.raises(UserError, match="different"):
        train(tiny_config(tokenizer="bytes", out_dir=str(out), steps=6, resume=True))


# --- the command line's flags and help -----------------------------------------------------------


def test_every_config_field_has_a_flag_and_every_default_is_stated_once():
    """train.py derives its flags from TrainConfig's fields: a new field needs a help text (or to be
    named Python-only), and each option's help gives its default exactly once."""
    import dataclasses

    script = load_train_script()
    with_help = {name for helps in script.HELP.values() for name in helps}
    assert with_help | set(script.NO_FLAG) == {f.name for f in dataclasses.fields(TrainConfig)}
    parser = script.build_parser()
    for action in parser._actions:
        if action.help and action.option_strings != ["-h", "--help"]:
            assert action.help.count("(default") <= 1, action.option_strings
            takes_one_value = type(action).__name__ == "_StoreAction"  # not a switch, not repeatable
            if takes_one_value and action.option_strings[0] not in ("--ckpt", "--hf"):
                assert action.help.count("(default") == 1, action.option_strings
    text = parser.format_help()
    assert "(default: from --preset) (default" not in text and "(default: None)" not in text
    assert "(default: 1337)" in " ".join(text.split())  # --seed: not from a preset, so its value
