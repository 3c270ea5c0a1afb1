"""Checkpoints: atomic writes, format checks, clear errors for damaged or mismatched files."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from minilm.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    capture_rng_state,
    check_compatible,
    load_model,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from minilm.data import ByteTokenizer
from minilm.gpt import GPT, GPTConfig


def tiny_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**dict(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=16), **overrides}))


def checkpoint_of(model, kind="gpt"):
    return {"model_kind": kind, "model_config": model.config.to_dict(), "model": model.state_dict(),
            "step": 3, "tokenizer": ByteTokenizer().to_json(), "rng": capture_rng_state()}


def test_save_then_load_model_gives_the_same_outputs(tmp_path):
    model = tiny_gpt()
    path = save_checkpoint(tmp_path / "run" / "ckpt.pt", checkpoint_of(model))
    loaded, tokenizer, checkpoint = load_model(path)
    assert checkpoint["format"] == FORMAT_VERSION and checkpoint["step"] == 3
    assert isinstance(tokenizer, ByteTokenizer) and not loaded.training
    idx = torch.randint(0, 256, (2, 8))
    model.eval()
    assert torch.equal(loaded(idx)[0], model(idx)[0])
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def test_save_replaces_atomically_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, checkpoint_of(tiny_gpt(seed=1)))
    before = path.read_bytes()

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a write

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, checkpoint_of(tiny_gpt(seed=2)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_missing_truncated_and_garbage_files_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        read_checkpoint(tmp_path / "nope.pt")
    path = save_checkpoint(tmp_path / "ckpt.pt", checkpoint_of(tiny_gpt()))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
            load_model(bad)
        assert "\n" not in str(info.value)


def test_a_torch_file_that_is_not_a_minilm_checkpoint_or_has_another_format_is_refused(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="no 'format' field"):
        read_checkpoint(other)
    future = tmp_path / "future.pt"
    torch.save({**checkpoint_of(tiny_gpt()), "format": FORMAT_VERSION + 1}, future)
    with pytest.raises(CheckpointError, match="format"):
        read_checkpoint(future)


def test_unknown_kind_bad_config_and_mismatched_weights_are_caught_before_use(tmp_path):
    model = tiny_gpt()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, checkpoint_of(model, kind="transformer-xl"))
    with pytest.raises(CheckpointError, match="kind 'transformer-xl'"):
        load_model(path)
    bad_config = checkpoint_of(model)
    bad_config["model_config"] = {**bad_config["model_config"], "n_wings": 2}
    save_checkpoint(path, bad_config)
    with pytest.raises(CheckpointError, match="invalid gpt config"):
        load_model(path)
    other_shape = checkpoint_of(model)
    other_shape["model_config"] = {**other_shape["model_config"], "n_embd": 32}
    save_checkpoint(path, other_shape)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(path)


def test_check_compatible_refuses_another_model_kind_shape_or_tokenizer():
    checkpoint = checkpoint_of(tiny_gpt())
    config, tokenizer_json = checkpoint["model_config"], checkpoint["tokenizer"]
    check_compatible(checkpoint, "gpt", config, tokenizer_json)
    with pytest.raises(CheckpointError, match="'gpt' model"):
        check_compatible(checkpoint, "lstm", config, tokenizer_json)
    with pytest.raises(CheckpointError, match="n_layer"):
        check_compatible(checkpoint, "gpt", {**config, "n_layer": 2}, tokenizer_json)
    with pytest.raises(CheckpointError, match="different tokenizer"):
        check_compatible(checkpoint, "gpt", config, '{"type": "bpe"}')


def test_rng_states_survive_a_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint(tmp_path / "ckpt.pt", {**checkpoint_of(tiny_gpt()), "rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(read_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_unwrap_model_strips_torch_compile():
    model = tiny_gpt()
    assert unwrap_model(torch.compile(model)) is model
    assert unwrap_model(model) is model
