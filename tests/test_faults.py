"""Faults a user can run into, one section per class: what the user owns is never replaced, output
paths that cannot work fail at once, full disks and closed pipes, crafted checkpoints and damaged
caches, special tokens that could not be decoded back, and files that are not UTF-8 text.

Every error is one line that names the flag (or file) the user gave.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minilm.checkpoint
import minilm.data
import minilm.outputs
from minilm import bpe
from minilm.bpe import BPETokenizer
from minilm.checkpoint import (
    CheckpointError,
    check_model_fits,
    load_model,
    parameter_bytes,
    read_checkpoint,
    save_checkpoint,
)
from minilm.data import REPO_ROOT, ByteTokenizer, UserError, cached_tokens, first_invalid_utf8, load_corpus, read_corpus
from minilm.gpt import GPT, GPTConfig
from minilm.lstm import LSTMLM, LSTMConfig
from minilm.outputs import DiskFullError

EOT = "<|endoftext|>"


def run_bpe(argv, capsys) -> tuple[int, str, str]:
    try:
        status = bpe.main(argv)
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line(text: str) -> str:
    text = text.strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def tiny_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**dict(vocab_size=256, block_size=8, n_layer=1, n_head=2, n_embd=16), **overrides}))


def checkpoint_of(model, kind="gpt"):
    return {"model_kind": kind, "model_config": model.config.to_dict(), "model": model.state_dict(),
            "step": 3, "tokenizer": ByteTokenizer().to_json()}


class FullDiskFile:
    """A temporary file on a disk that fills up: each write stores half its bytes, then ENOSPC."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        data = bytes(data)
        self.real.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False


def fill_the_disk(monkeypatch):
    real = tempfile.NamedTemporaryFile
    monkeypatch.setattr(minilm.outputs.tempfile, "NamedTemporaryFile", lambda *a, **k: FullDiskFile(real(*a, **k)))


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes((REPO_ROOT / "data" / "shakespeare.txt").read_bytes()[:3000])
    return path


# ----------------------------------------------------------------------------------------------
# 1. Files the user owns are never replaced without --overwrite (python -m minilm.bpe train)
# ----------------------------------------------------------------------------------------------


def test_bpe_train_refuses_to_write_over_its_own_input_even_by_another_name(corpus_file, capsys):
    before = corpus_file.read_bytes()
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(corpus_file),
                              "--quiet"], capsys)
    assert status == 2 and "--out" in one_line(err) and "input file" in err
    other_spelling = corpus_file.parent / ".." / corpus_file.parent.name / corpus_file.name  # the same file
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(other_spelling),
                              "--quiet", "--overwrite"], capsys)
    assert status == 2 and "input file" in one_line(err)
    assert corpus_file.read_bytes() == before


def test_bpe_train_refuses_an_existing_output_unless_overwrite(corpus_file, tmp_path, capsys):
    out = tmp_path / "tok.json"
    out.write_text("my notes, not a tokenizer")
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(out), "--quiet"], capsys)
    assert status == 2 and "--out" in one_line(err) and "--overwrite" in err
    assert out.read_text() == "my notes, not a tokenizer"
    status, _, _ = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(out), "--quiet",
                            "--overwrite"], capsys)
    assert status == 0 and BPETokenizer.load(out).vocab_size == 300


# ----------------------------------------------------------------------------------------------
# 2. Output paths that cannot work fail at once, before any work
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, expected", [("missing/tok.json", "does not exist"),
                                             ("a_folder", "is a folder"),
                                             ("a_file/tok.json", "which is a file")])
def test_bpe_train_checks_out_before_reading_anything(tmp_path, capsys, where, expected):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    not_text = tmp_path / "binary.bin"
    not_text.write_bytes(b"\xff" * 10)  # reading it would fail: the --out error must come first
    status, _, err = run_bpe(["train", str(not_text), "--vocab-size", "300", "--out", str(tmp_path / where),
                              "--quiet"], capsys)
    assert status == 2 and one_line(err).startswith("python -m minilm.bpe: error: --out") and expected in err


def test_bpe_train_removes_the_temporary_files_of_an_interrupted_write(corpus_file, tmp_path, capsys):
    stale = tmp_path / ".tok.json.abcd1234.tmp"
    stale.write_bytes(b"half a tokenizer")
    unrelated = tmp_path / ".notes.txt.abcd1234.tmp"
    unrelated.write_bytes(b"not ours")
    status, _, _ = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(tmp_path / "tok.json"),
                            "--quiet"], capsys)
    assert status == 0 and not stale.exists() and unrelated.exists()


# ----------------------------------------------------------------------------------------------
# 4. Faults: a full disk, a closed pipe
# ----------------------------------------------------------------------------------------------


def test_bpe_train_on_a_full_disk_gives_one_line_and_keeps_the_old_tokenizer(corpus_file, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "tok.json"
    assert run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--out", str(out), "--quiet"], capsys)[0] == 0
    before = out.read_bytes()
    fill_the_disk(monkeypatch)
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "320", "--out", str(out), "--quiet",
                              "--overwrite"], capsys)
    assert status == 2 and "disk is full" in one_line(err) and "tok.json" in err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "tok.json"]  # no temp file left


def test_a_checkpoint_save_on_a_full_disk_keeps_the_last_good_checkpoint_loadable(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ckpt.pt", checkpoint_of(tiny_gpt(seed=1)))
    fill_the_disk(monkeypatch)
    with pytest.raises(DiskFullError, match="ckpt.pt: the disk is full"):
        save_checkpoint(path, checkpoint_of(tiny_gpt(seed=2)))
    monkeypatch.undo()
    model, _, _ = load_model(path)
    assert torch.equal(model.wte.weight, tiny_gpt(seed=1).wte.weight)


def test_a_token_cache_on_a_full_disk_falls_back_to_memory(tmp_path, monkeypatch):
    fill_the_disk(monkeypatch)
    tokens = cached_tokens(b"hello world", ByteTokenizer(), tmp_path, "greeting")
    assert bytes(np.asarray(tokens).astype(np.uint8)) == b"hello world"
    assert list(tmp_path.iterdir()) == []


def buffered_env() -> dict:
    """The environment without PYTHONUNBUFFERED: stdout into a pipe is then block-buffered, as for a
    user, and a short output meets the closed pipe only when it is flushed."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("extra", [[], ["--tokens"]])
def test_bpe_encode_into_a_closed_pipe_ends_quietly(tmp_path, extra):
    tokenizer = tmp_path / "tok.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BPETokenizer.train("to be or not to be " * 50, 270).save(tokenizer)
    text = tmp_path / "long.txt"
    text.write_text("to be or not to be, that is the question\n" * 20_000)  # far more than a pipe holds
    process = subprocess.Popen([sys.executable, "-m", "minilm.bpe", "encode", "--tokenizer", str(tokenizer),
                                "--file", str(text), *extra], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=buffered_env())
    process.stdout.read(64)  # like `| head -c 64`: read a little, then go away
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and err == ""


def test_a_short_bpe_output_into_a_pipe_closed_before_it_is_written_ends_quietly(tmp_path):
    tokenizer = tmp_path / "tok.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BPETokenizer.train("to be or not to be " * 50, 270).save(tokenizer)
    process = subprocess.Popen([sys.executable, "-m", "minilm.bpe", "encode", "--tokenizer", str(tokenizer),
                                "--text", "to be"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=buffered_env())
    process.stdout.close()  # gone before the command has started: its one buffered line meets a closed pipe
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and err == ""


# ----------------------------------------------------------------------------------------------
# 5. Checkpoints are validated before they are used
# ----------------------------------------------------------------------------------------------


def crafted(tmp_path, **changes):
    checkpoint = checkpoint_of(tiny_gpt())
    for key, value in changes.items():
        if key in checkpoint["model_config"]:
            checkpoint["model_config"][key] = value
        else:
            checkpoint[key] = value
    path = tmp_path / "crafted.pt"
    torch.save({"format": minilm.checkpoint.FORMAT_VERSION, **checkpoint}, path)
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"model_kind": ["gpt"]}, "'model_kind' should be of type str"),
    ({"model_config": "n_layer=2"}, "'model_config' should be of type dict"),
    ({"tokenizer": {"type": "bytes"}}, "'tokenizer' should be of type str"),
    ({"model": [1, 2]}, "'model' should be of type dict"),
    ({"dropout": "0.1"}, "invalid gpt config"),
    ({"n_head": 3}, "invalid gpt config"),  # 16 is not divisible by 3
    ({"n_layer": 0}, "invalid gpt config"),
    ({"step": "300"}, "'step' should be of type int"),
    ({"step": -5}, "'step' is -5"),
    ({"history": {"0": 1.0}}, "'history' should be of type list"),
    ({"best_val_loss": "inf"}, "'best_val_loss' should be of type int or float"),
])
def test_crafted_checkpoint_fields_give_one_line(tmp_path, changes, expected):
    with pytest.raises(CheckpointError, match=expected) as info:
        load_model(crafted(tmp_path, **changes))
    assert "--ckpt" in one_line(str(info.value))


def test_a_model_too_big_for_the_machine_is_refused_before_any_tensor_is_allocated(tmp_path, monkeypatch):
    path = crafted(tmp_path, n_embd=100_000)  # 1.2e8 parameters per layer, about 120 GB in all
    built_on = []  # the device of every GPT built: only "meta" (shapes without storage) may appear
    real_init = GPT.__init__

    def recording_init(self, config):
        built_on.append(torch.empty(0).device.type)
        real_init(self, config)

    monkeypatch.setattr(GPT, "__init__", recording_init)
    monkeypatch.setattr(minilm.checkpoint, "physical_memory_bytes", lambda: 2**30)
    with pytest.raises(CheckpointError, match="more than this machine's memory") as info:
        load_model(path)
    assert "--ckpt" in one_line(str(info.value)) and built_on == ["meta"]


def test_a_huge_config_is_refused_with_the_real_estimate_and_real_memory(tmp_path):
    # 100 layers of width 100,000 hold 1.2e13 parameters (48 TB): more than any machine's memory
    with pytest.raises(CheckpointError, match="for its parameters alone"):
        load_model(crafted(tmp_path, n_embd=100_000, n_layer=100, n_head=4))


@pytest.mark.parametrize("model_class, config", [
    (GPT, GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=8, tie_weights=False)),
    (GPT, GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, pos_emb="rope")),
    (LSTMLM, LSTMConfig(vocab_size=50, n_embd=6, n_hidden=10, n_layer=2)),
])
def test_the_memory_estimate_counts_every_parameter_once(model_class, config):
    model = model_class(config)
    expected = sum(p.numel() * p.element_size() for p in model.parameters())
    expected += sum(b.numel() * b.element_size() for b in model.buffers())
    assert parameter_bytes(model_class, config) == expected == 4 * model.num_params() + 4 * sum(
        b.numel() for b in model.buffers())


def test_a_model_that_fits_in_ram_but_not_on_the_gpu_is_refused_for_the_gpu(monkeypatch):
    config = LSTMConfig(vocab_size=50, n_embd=6, n_hidden=10, n_layer=2)
    needed = parameter_bytes(LSTMLM, config)
    monkeypatch.setattr(minilm.checkpoint, "physical_memory_bytes", lambda: 10 * needed)
    monkeypatch.setattr(minilm.checkpoint, "device_memory_bytes", lambda device: needed - 1)
    with pytest.raises(CheckpointError, match="the GPU's memory"):
        check_model_fits(LSTMLM, config, "cuda", "--ckpt x.pt")
    monkeypatch.setattr(minilm.checkpoint, "device_memory_bytes", lambda device: needed)
    assert check_model_fits(LSTMLM, config, "cuda") == needed  # exactly enough passes


def test_a_zeroed_token_cache_is_detected_and_rebuilt(tmp_path, capsys):
    tokens = cached_tokens(b"hello world", ByteTokenizer(), tmp_path, "greeting")
    (path,) = tmp_path.glob("*.npy")
    header = len(path.read_bytes()) - tokens.nbytes
    del tokens
    path.write_bytes(path.read_bytes()[:header] + bytes(11 * 2))  # same header and size, zeroed contents
    tokens = cached_tokens(b"hello world", ByteTokenizer(), tmp_path, "greeting")
    assert bytes(np.asarray(tokens).astype(np.uint8)) == b"hello world"
    assert "damaged" in one_line(capsys.readouterr().err)


def test_a_token_cache_with_one_changed_token_or_no_checksum_is_rebuilt(tmp_path):
    cached_tokens(b"abcdef", ByteTokenizer(), tmp_path, "x")
    (path,) = tmp_path.glob("*.npy")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one bit of the last token
    path.write_bytes(bytes(data))
    assert bytes(np.asarray(cached_tokens(b"abcdef", ByteTokenizer(), tmp_path, "x")).astype(np.uint8)) == b"abcdef"
    (checksum,) = tmp_path.glob("*.sha256")
    checksum.unlink()
    path.write_bytes(bytes(data))
    assert bytes(np.asarray(cached_tokens(b"abcdef", ByteTokenizer(), tmp_path, "x")).astype(np.uint8)) == b"abcdef"
    assert checksum.exists()


# ----------------------------------------------------------------------------------------------
# 7. Special tokens that the `tokenizers` library could not give back are refused or warned about
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("special", ["a", "\n", "€", " "])
def test_a_single_character_special_token_is_refused(special):
    with pytest.raises(ValueError, match="single character"):
        BPETokenizer.train("a b c\n€ " * 20, 300, special_tokens=[special])


@pytest.mark.parametrize("special", ["EOS", " the", "pad2"])
def test_an_ordinary_word_as_special_token_is_warned_about(special):
    with pytest.warns(UserWarning, match="ordinary word"):
        BPETokenizer.train("the end EOS pad2 " * 20, 300, special_tokens=[special])


@pytest.mark.parametrize("special", [EOT, "[SEP]", "<é>", "<pad>"])
def test_marker_special_tokens_pass_quietly(special):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*ordinary word.*")
        BPETokenizer.train("the end " * 20, 300, special_tokens=[special])


def test_the_bpe_command_line_prints_the_warning_and_the_refusal_in_one_line(corpus_file, tmp_path, capsys):
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--special", "EOS",
                              "--out", str(tmp_path / "a.json"), "--quiet"], capsys)
    assert status == 0 and "warning: special token 'EOS' is an ordinary word" in err
    status, _, err = run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--special", "x",
                              "--out", str(tmp_path / "b.json"), "--quiet"], capsys)
    assert status == 2 and "single character" in one_line(err)


# ----------------------------------------------------------------------------------------------
# 8. Text is text
# ----------------------------------------------------------------------------------------------


def test_a_corpus_that_is_not_utf8_names_the_file_and_the_absolute_byte_offset(tmp_path):
    path = tmp_path / "mostly_text.txt"
    data = bytearray(b"plain text. " * 100)
    data[1150] = 0xFF  # in the held-out tenth, so an offset relative to the split would be wrong
    path.write_bytes(bytes(data))
    for tokenizer in (ByteTokenizer(), BPETokenizer.train("plain text " * 10, 260)):
        with pytest.raises(UserError, match=r"--data: .*mostly_text.txt.* byte 1150 \(0xff\)") as info:
            load_corpus(path, tokenizer, cache_dir=None)
        one_line(str(info.value))


def test_allow_binary_lets_the_byte_tokenizer_take_any_bytes_but_not_bpe(tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(bytes(np.random.default_rng(0).integers(1, 256, 2000, dtype=np.uint8)))
    corpus = load_corpus(path, ByteTokenizer(), cache_dir=None, allow_binary=True)
    assert corpus.train_bytes + corpus.val_bytes == 2000
    with pytest.raises(UserError, match="not valid UTF-8"):
        load_corpus(path, BPETokenizer.train("plain text " * 10, 260), cache_dir=None, allow_binary=True)


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16 little-endian"), ("utf-16-be", "UTF-16 big-endian"),
                                            ("utf-32", "UTF-32 little-endian")])
def test_utf16_and_utf32_files_with_a_byte_order_mark_are_named(tmp_path, encoding, name):
    path = tmp_path / "wide.txt"
    text = "Hello, wide world.\n" * 20
    path.write_bytes(text.encode(encoding) if encoding != "utf-16-be" else b"\xfe\xff" + text.encode(encoding))
    with pytest.raises(UserError, match=f"is {name} text") as info:
        read_corpus(path, flag="--mix")
    assert one_line(str(info.value)).startswith("--mix:")  # the flag the user gave
    with pytest.raises(ValueError, match=f"this is {name.split()[0]} text"):
        bpe.read_text(path)


def test_utf16_without_a_byte_order_mark_is_not_taken_for_text(tmp_path):
    path = tmp_path / "no_bom.txt"
    path.write_bytes(("ASCII-only text in UTF-16 " * 20).encode("utf-16-le"))  # valid UTF-8, half NUL bytes
    with pytest.raises(UserError, match="NUL bytes"):
        read_corpus(path, flag="--eval-extra")


def test_a_folder_given_as_corpus_names_the_flag(tmp_path):
    with pytest.raises(UserError, match="^--mix: .* is a folder"):
        load_corpus(tmp_path, ByteTokenizer(), cache_dir=None, flag="--mix")


def sample_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sample_script", REPO_ROOT / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_a_prompt_file_keeps_its_bytes_exactly(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", checkpoint_of(tiny_gpt()))
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes(b"line one\r\nline two\rend")
    assert sample_main()(["--ckpt", str(ckpt), "--prompt-file", str(prompt), "--max-new-tokens", "1",
                          "--device", "cpu", "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("line one\r\nline two\rend")


def test_a_utf16_prompt_file_is_named_as_such(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", checkpoint_of(tiny_gpt()))
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes("ROMEO:".encode("utf-16"))
    assert sample_main()(["--ckpt", str(ckpt), "--prompt-file", str(prompt), "--device", "cpu"]) == 2
    assert one_line(capsys.readouterr().err).startswith("sample.py: error: --prompt-file:")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab é€😀\n"), max_size=40), st.data())
def test_the_chunked_utf8_check_finds_the_first_bad_byte_across_chunk_boundaries(text, data):
    encoded = bytearray(text.encode("utf-8"))
    if encoded and data.draw(st.booleans()):
        encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.sampled_from([0x80, 0xFF, 0xC3]))
    encoded = bytes(encoded)
    try:
        encoded.decode("utf-8")
        expected = None
    except UnicodeDecodeError as error:
        expected = error.start
    original = minilm.data.CHECK_CHUNK
    for chunk in (1, 2, 3, 5, original):  # chunk edges fall inside multi-byte characters
        minilm.data.CHECK_CHUNK = chunk
        try:
            assert first_invalid_utf8(encoded) == expected, chunk
        finally:
            minilm.data.CHECK_CHUNK = original


def test_sample_into_a_pipe_closed_early_ends_quietly(tmp_path):
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", checkpoint_of(tiny_gpt()))
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "sample.py"), "--ckpt", str(ckpt), "--device", "cpu",
                                "--max-new-tokens", "50", "--num-samples", "3"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=buffered_env())
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0 and err == ""


def test_checkpoint_errors_name_the_flag_that_gave_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"^--resume: no checkpoint file"):
        read_checkpoint(tmp_path / "missing.pt", flag="--resume")
    with pytest.raises(CheckpointError, match=r"^--init-from: .*'model_kind' should be of type str"):
        load_model(crafted(tmp_path, model_kind=["gpt"]), flag="--init-from")


def test_a_word_special_token_is_warned_about_once_in_one_line_and_again_when_loaded(corpus_file, tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert run_bpe(["train", str(corpus_file), "--vocab-size", "300", "--special", "EOS", "--out", str(out),
                    "--quiet"], capsys)[2].count("ordinary word") == 1
    status, _, err = run_bpe(["encode", "--tokenizer", str(out), "--text", "to be"], capsys)
    assert status == 0 and one_line(err).startswith("python -m minilm.bpe: warning: special token 'EOS'")


def test_sample_prints_a_warning_of_the_checkpoints_tokenizer_in_one_line(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = BPETokenizer.train("to be or not to be EOS " * 50, 270, special_tokens=["EOS"])
    model = tiny_gpt(vocab_size=tokenizer.vocab_size)
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", {**checkpoint_of(model), "tokenizer": tokenizer.to_json()})
    assert sample_main()(["--ckpt", str(ckpt), "--prompt", "to", "--max-new-tokens", "2", "--device", "cpu"]) == 0
    assert one_line(capsys.readouterr().err).startswith("sample.py: warning: special token 'EOS' is an ordinary word")
