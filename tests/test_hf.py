"""minilm.hf: a Hugging Face GPT-2 imported into minilm computes what `transformers` computes,
and a minilm GPT exported to a GPT-2 folder loads in `transformers` and back, bit for bit.

Everything is built here, without the network: a tiny random `GPT2LMHeadModel` (two layers,
non-zero biases and layer-norm shifts) saved with `save_pretrained`, and a small byte-level BPE
trained by `tokenizers` and saved as GPT-2 files (vocab.json, merges.txt, tokenizer.json).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tokenizers
import torch
from hypothesis import given
from strategies_bpe import examples, unicode_text
from tolerances import assert_close

from minilm import hf
from minilm.bpe import BPETokenizer
from minilm.cli import UserError
from minilm.data import ByteTokenizer
from minilm.gpt import GPT
from minilm.reference.generate import greedy_generate
from minilm.reference.kv_cache import gpt_step
from minilm.sampling import generate
from minilm.training import TrainConfig, train

transformers = pytest.importorskip("transformers", reason="the Hugging Face interop tests need transformers "
                                   "(pip install -e '.[interop,dev]')")
pytest.importorskip("safetensors", reason="the Hugging Face interop tests need safetensors")

EOT = "<|endoftext|>"
TRAINING_TEXT = ("The cat sat on the mat. It's 2024: naïve café, Grüße aus Köln! 你好，世界。 東京 "
                 "emoji 🙂👍🏽 and   spaces\n\n\tdigits 1234567 e\u0301 don't we'll ") * 30


def _tiny_gpt2_config(vocab_size: int, **changes):
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def _randomize(module, seed: int = 0) -> None:
    """Every parameter random, biases and layer-norm shifts included, so a dropped term shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if name.endswith("bias") or ".ln_" in name else 0.2
            p.copy_(torch.randn(p.shape, generator=generator) * scale + (1.0 if "ln_" in name and
                                                                         name.endswith("weight") else 0.0))


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """(folder, transformers model in float64): GPT2LMHeadModel + a `tokenizers` byte-level BPE."""
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator([TRAINING_TEXT], vocab_size=400, min_frequency=2, show_progress=False)
    tok.add_special_tokens([EOT])  # at the end of the vocab, as in GPT-2 (id 50256 there)
    tok.save_model(str(folder))
    tok.save(str(folder / "tokenizer.json"))
    # GPT-2's vocab.json lists "<|endoftext|>" (tokenizers' save_model leaves added tokens out)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    (folder / "vocab.json").write_text(json.dumps({**vocab, EOT: tok.token_to_id(EOT)}), encoding="utf-8")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(_tiny_gpt2_config(tok.get_vocab_size()))
    _randomize(model)
    model.save_pretrained(folder)
    return folder, model.double().eval()


@pytest.fixture(scope="module")
def imported(gpt2_folder):
    folder, _ = gpt2_folder
    model, tokenizer = hf.from_hf(folder)
    return model.double().eval(), tokenizer


def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer.encode(text)])


# ----------------------------------------------------------------------------------------------
# Import: the same numbers as transformers
# ----------------------------------------------------------------------------------------------


def test_gpt_from_hf_is_the_imported_model(gpt2_folder, imported):
    folder, _ = gpt2_folder
    ours, _ = imported
    model = GPT.from_hf(folder)
    assert isinstance(model, GPT) and model.config == ours.config
    for (name, p), (_, q) in zip(model.state_dict().items(), ours.state_dict().items(), strict=True):
        assert torch.equal(p.double(), q), name


def test_sample_py_hf_prints_the_greedy_continuation_of_the_imported_model(gpt2_folder):
    from test_sampling import run_main

    folder, _ = gpt2_folder
    model, tokenizer = hf.from_hf(folder)
    prompt = "The cat sat"
    expected = tokenizer.decode(generate(model, tokenizer.encode(prompt), max_new_tokens=12, greedy=True)[0].tolist())
    status, out, err = run_main("--hf", str(folder), "--prompt", prompt, "--greedy", "--max-new-tokens", "12",
                                "--device", "cpu")
    assert status == 0, err
    assert out == expected + "\n"
    status, _, err = run_main("--hf", str(folder / "missing"), "--prompt", prompt)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "--hf" in err, err


def test_imported_logits_equal_transformers_in_float64(gpt2_folder, imported):
    _, theirs = gpt2_folder
    ours, tokenizer = imported
    idx = _ids(tokenizer, "The cat sat on the mat. 你好 🙂" + EOT + " It's")
    assert idx.shape[1] > 10 and idx.max() < ours.config.vocab_size
    with torch.no_grad():
        expected = theirs(idx).logits
        logits, _ = ours(idx)
    assert_close(logits, expected, "forward_float64", "logits vs transformers")


def test_imported_gradients_equal_transformers_in_float64(gpt2_folder, imported):
    _, theirs = gpt2_folder
    ours, tokenizer = imported
    idx = _ids(tokenizer, "naïve café, Grüße aus Köln! digits 1234")
    theirs.zero_grad()
    ours.zero_grad()
    logits = theirs(idx[:, :-1]).logits  # (its own loss is computed in float32)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1))
    _, loss = ours(idx[:, :-1], idx[:, 1:])
    assert_close(loss, expected, "forward_float64", "loss")
    expected.backward()
    loss.backward()
    theirs_grads = {name.removeprefix("transformer."): p.grad for name, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        expected_grad = theirs_grads[name] if name != "lm_head.weight" else theirs_grads["wte.weight"]
        if hf.is_conv1d_weight(name):
            expected_grad = expected_grad.T
        assert_close(p.grad, expected_grad, "grad_float64", name)


def test_greedy_generation_equals_transformers_generate(gpt2_folder, imported):
    _, theirs = gpt2_folder
    ours, tokenizer = imported
    prompt = _ids(tokenizer, "The cat")
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                               max_new_tokens=20, min_new_tokens=20, pad_token_id=0)
    tokens = generate(ours, prompt, max_new_tokens=20, greedy=True)
    assert tokens.tolist() == expected.tolist()
    assert len(set(tokens[0, prompt.shape[1]:].tolist())) > 1  # not a constant run that any model gives


def test_kv_cache_path_equals_the_full_forward(imported):
    ours, tokenizer = imported
    idx = _ids(tokenizer, "emoji 🙂 and   spaces 1234 don't")
    with torch.no_grad():
        full, _ = ours(idx)
        logits, state = ours.step(idx[:, :5], None)
        pieces = [logits]
        for t in range(5, idx.shape[1]):
            logits, state = ours.step(idx[:, t:t + 1], state)
            pieces.append(logits)
    assert_close(torch.cat(pieces, dim=1), full, "fast_path_float64", "cached steps vs forward")


def test_numpy_twin_runs_the_imported_gpt2(gpt2_folder, imported):
    folder, _ = gpt2_folder
    ours, tokenizer = imported
    config, params = hf.read_hf_params(folder)
    prompt = tokenizer.encode("The cat sat")
    with torch.no_grad():
        expected_logits, _ = ours(torch.tensor([prompt]))
    logits, _ = gpt_step(np.asarray([prompt]), params, config)
    assert_close(logits, expected_logits, "forward_float64", "twin logits vs GPT")
    n_new = 12
    expected = generate(ours, prompt, max_new_tokens=n_new, greedy=True)[0].tolist()
    assert greedy_generate(prompt, params, config, n_new) == expected


def test_numpy_twin_command_prints_the_greedy_continuation(gpt2_folder, imported, capsys):
    from minilm.reference.generate import main
    folder, _ = gpt2_folder
    ours, tokenizer = imported
    expected = generate(ours, tokenizer.encode("The cat"), max_new_tokens=6, greedy=True)[0].tolist()
    assert main(["--hf", str(folder), "--prompt", "The cat", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == tokenizer.decode(expected) + "\n"
    assert main(["--hf", str(folder), "--prompt", "The cat", "--max-new-tokens", "40"]) == 2
    assert "exceed the model's context of 32" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Import: other layouts, and what is refused
# ----------------------------------------------------------------------------------------------


def _copy_tokenizer(source, target) -> None:
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        shutil.copy(source / name, target / name)


def test_a_gpt2model_folder_and_an_old_bin_with_mask_buffers_import(gpt2_folder, imported, tmp_path):
    folder, theirs = gpt2_folder
    ours, tokenizer = imported
    idx = _ids(tokenizer, "The cat sat on the mat.")
    with torch.no_grad():
        expected, _ = ours(idx)
    # saved from GPT2Model: no "transformer." prefix and no lm_head (tied)
    bare = tmp_path / "gpt2model"
    theirs.transformer.float().save_pretrained(bare)
    theirs.double()
    _copy_tokenizer(folder, bare)
    assert "h.0.ln_1.weight" in _tensors(bare) and "lm_head.weight" not in _tensors(bare)
    model, _ = hf.from_hf(bare)
    with torch.no_grad():
        assert torch.equal(model.double()(idx)[0], expected)
    # a large model comes in shards, listed by model.safetensors.index.json
    sharded = tmp_path / "sharded"
    theirs.float().save_pretrained(sharded, max_shard_size="20KB")
    theirs.double()
    _copy_tokenizer(folder, sharded)
    assert (sharded / "model.safetensors.index.json").is_file() and len(list(sharded.glob("*.safetensors"))) > 1
    model, _ = hf.from_hf(sharded)
    with torch.no_grad():
        assert torch.equal(model.double()(idx)[0], expected)
    # the original GPT-2 release: pytorch_model.bin, no prefix, with the causal-mask buffers
    old = tmp_path / "old_bin"
    old.mkdir()
    shutil.copy(folder / "config.json", old / "config.json")
    _copy_tokenizer(folder, old)
    state = {k.removeprefix("transformer."): v.float() for k, v in theirs.state_dict().items()
             if k != "lm_head.weight"}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, 32, 32).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, old / "pytorch_model.bin")
    model, _ = hf.from_hf(old)
    with torch.no_grad():
        assert torch.equal(model.double()(idx)[0], expected)


@pytest.mark.parametrize("changes, field", [
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"n_inner": 24}, "n_inner"),
    ({"activation_function": "gelu_fast"}, "activation_function"),
    ({"model_type": "llama"}, "model_type"),
    ({"attn_pdrop": 0.3}, "attn_pdrop"),
])
def test_configs_minilm_cannot_express_are_refused_naming_the_field(gpt2_folder, tmp_path, changes, field):
    folder, _ = gpt2_folder
    copy = tmp_path / "changed"
    shutil.copytree(folder, copy)
    document = json.loads((copy / "config.json").read_text())
    document.update(changes)
    (copy / "config.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match=field) as error:
        hf.from_hf(copy)
    assert "\n" not in str(error.value)


def test_n_inner_that_is_a_multiple_of_the_width_is_the_mlp_ratio(gpt2_folder):
    fields = hf.gpt_config_fields_from_hf({"model_type": "gpt2", "n_embd": 16, "n_inner": 48})
    assert fields["mlp_ratio"] == 3
    assert hf.gpt_config_fields_from_hf({"model_type": "gpt2", "n_embd": 16})["mlp_ratio"] == 4
    assert hf.gpt_config_fields_from_hf({"model_type": "gpt2", "activation_function": "gelu"})["activation"] == "gelu"


def _tensors(folder):
    from safetensors.numpy import load_file
    return load_file(str(folder / "model.safetensors"))


def _rewrite(folder, target, edit) -> None:
    from safetensors.numpy import save_file
    shutil.copytree(folder, target)
    tensors = _tensors(folder)
    edit(tensors)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"transformer.h.0.attn.extra": np.zeros(3, np.float32)}), "does not use"),
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), "no tensor 'h.1.mlp.c_fc.bias'"),
    (lambda t: t.update({"transformer.h.0.attn.c_attn.weight": t["transformer.h.0.attn.c_attn.weight"].T.copy()}),
     "'h.0.attn.c_attn.weight' has shape"),
    (lambda t: t.update({"lm_head.weight": t["transformer.wte.weight"] + 1}), "lm_head.weight differs"),
])
def test_every_tensor_must_be_used_and_every_shape_fit(gpt2_folder, tmp_path, edit, message):
    folder, _ = gpt2_folder
    _rewrite(folder, tmp_path / "edited", edit)
    with pytest.raises(UserError, match=message):
        hf.from_hf(tmp_path / "edited")


def test_hub_names_offline_say_how_to_pass_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="offline.*pass a local folder"):
        hf.from_hf("gpt2")
    with pytest.raises(UserError, match="not a folder"):
        hf.from_hf(str(tmp_path / "nothing_here"))
    with pytest.raises(UserError, match="no config.json"):
        hf.from_hf(tmp_path)


def test_an_untied_head_imports_from_its_own_tensor(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    config = _tiny_gpt2_config(json.loads((folder / "config.json").read_text())["vocab_size"],
                               tie_word_embeddings=False, activation_function="relu")
    torch.manual_seed(1)
    theirs = transformers.GPT2LMHeadModel(config)
    _randomize(theirs, seed=1)
    assert not torch.equal(theirs.lm_head.weight, theirs.transformer.wte.weight)
    theirs.save_pretrained(tmp_path / "untied")
    _copy_tokenizer(folder, tmp_path / "untied")
    ours, tokenizer = hf.from_hf(tmp_path / "untied")
    assert not ours.config.tie_weights and ours.config.activation == "relu"
    idx = _ids(tokenizer, "The cat sat")
    with torch.no_grad():
        assert_close(ours.double()(idx)[0], theirs.double().eval()(idx).logits, "forward_float64", "untied logits")


# ----------------------------------------------------------------------------------------------
# The tokenizer: the ids of `tokenizers`
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def their_tokenizer(gpt2_folder):
    folder, _ = gpt2_folder
    return tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def from_vocab_and_merges(gpt2_folder, tmp_path_factory):
    folder, _ = gpt2_folder
    only_files = tmp_path_factory.mktemp("vocab_merges_only")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(folder / name, only_files / name)
    return hf.load_hf_tokenizer(only_files)


def test_both_tokenizer_routes_give_the_same_vocab_merges_and_special_token(imported, from_vocab_and_merges,
                                                                           gpt2_folder, tmp_path):
    _, from_json = imported
    assert from_json.special_tokens == from_vocab_and_merges.special_tokens == {EOT: from_json.vocab_size - 1}
    assert from_json.id_to_token == from_vocab_and_merges.id_to_token
    assert from_json.merges == from_vocab_and_merges.merges and len(from_json.merges) > 50
    # the token may also be named only by tokenizer_config.json, past the end of vocab.json
    folder, _ = gpt2_folder
    shutil.copy(folder / "merges.txt", tmp_path / "merges.txt")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    eot_id = vocab.pop(EOT)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"added_tokens_decoder": {str(eot_id): {"content": EOT, "special": True}}, "eos_token": EOT}))
    named_by_config = hf.load_hf_tokenizer(tmp_path)
    assert named_by_config.id_to_token == from_json.id_to_token and named_by_config.special_tokens == {EOT: eot_id}


@examples(150)
@given(text=unicode_text(80), cut=unicode_text(10))
def test_ids_equal_tokenizers_on_unicode_heavy_text(imported, from_vocab_and_merges, their_tokenizer, text, cut):
    _, ours = imported
    text = text + EOT + cut + TRAINING_TEXT[:40]
    expected = their_tokenizer.encode(text).ids
    assert ours.encode(text) == expected
    assert from_vocab_and_merges.encode(text) == expected
    assert ours.decode(expected) == their_tokenizer.decode(expected, skip_special_tokens=False)


def test_long_runs_of_spaces_digits_and_cjk_match_tokenizers(imported, their_tokenizer):
    _, ours = imported
    for text in [" " * 300 + "x", "1234567890" * 40, "你好世界東京" * 50, "\n\n\t " * 60 + "\u0301" * 20,
                 "🙂" * 100 + EOT * 3, "\x00\x01\x7f\x85" * 20]:
        assert ours.encode(text) == their_tokenizer.encode(text).ids


# ----------------------------------------------------------------------------------------------
# Export: minilm checkpoints as GPT-2 folders
# ----------------------------------------------------------------------------------------------


def _trained_checkpoint(tmp_path, preset: str, steps: int = 3, tokenizer=None, **model_args):
    config = TrainConfig.from_preset(preset, steps=steps, eval_interval=steps, eval_windows=2, batch_size=4,
                                     out_dir=str(tmp_path / f"run_{preset}"), progress=False, verbose=False,
                                     cache_dir="", data=str(tmp_path / "text.txt"), model_args=model_args,
                                     overwrite=True)
    (tmp_path / "text.txt").write_text(TRAINING_TEXT, encoding="utf-8")
    result = train(config, tokenizer=tokenizer)
    return result.checkpoint_path, result.model.eval(), result.tokenizer


def _check_in_transformers(out, model, tokenizer, text):
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer.encode(text)
    assert their_tokenizer(text)["input_ids"] == ids
    idx = torch.tensor([ids])
    with torch.no_grad():
        expected, _ = model(idx)
        logits = theirs(idx).logits
    # float32: within 1e-5 of the largest logit's magnitude
    assert float((logits - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


@pytest.mark.parametrize("preset", ["ci-tiny", "cpu-tiny"])
def test_the_readme_models_export_load_in_transformers_and_round_trip(tmp_path, preset):
    ckpt, model, tokenizer = _trained_checkpoint(tmp_path, preset, steps=2)
    out = tmp_path / "exported"
    assert hf.main(["export", "--ckpt", str(ckpt), "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= set(os.listdir(out))
    _check_in_transformers(out, model, tokenizer, "ROMEO: naïve 你好\n  1234 🙂")
    again, again_tokenizer = hf.from_hf(out)
    assert isinstance(again_tokenizer, ByteTokenizer) and again.config == model.config
    state = model.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in again.state_dict().items())


def test_a_bpe_model_without_biases_untied_with_relu_exports(tmp_path):
    tokenizer = BPETokenizer.train(TRAINING_TEXT, 256 + 1 + 60, special_tokens=[EOT])
    ckpt, model, _ = _trained_checkpoint(tmp_path, "ci-tiny", tokenizer=tokenizer, bias=False, tie_weights=False,
                                         activation="relu")
    out = tmp_path / "exported"
    hf.export_checkpoint(ckpt, out)
    config = json.loads((out / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["activation_function"] == "relu"
    _check_in_transformers(out, model, tokenizer, "The cat" + EOT + " naïve café 🙂")
    again, again_tokenizer = hf.from_hf(out)
    assert again_tokenizer.to_json() == tokenizer.to_json()
    for name, value in again.state_dict().items():  # biases come back as the zeros written for them
        expected = model.state_dict().get(name, torch.zeros_like(value))
        assert torch.equal(value, expected), name
    assert any(name.endswith("bias") for name in again.state_dict())


def test_export_refuses_non_learned_positions_and_an_existing_folder(tmp_path, capsys):
    ckpt, _, _ = _trained_checkpoint(tmp_path, "ci-tiny", steps=1, pos_emb="rope")
    assert hf.main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "pos_emb='rope'" in error and error.count("\n") == 1 and not (tmp_path / "x").exists()
    ckpt, _, _ = _trained_checkpoint(tmp_path, "ci-tiny", steps=1)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's file")
    assert hf.main(["export", "--ckpt", str(ckpt), "--out", str(mine)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "the user's file"
    assert hf.main(["export", "--ckpt", str(ckpt), "--out", str(mine), "--overwrite"]) == 0
    assert (mine / "model.safetensors").is_file() and not (mine / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


# ----------------------------------------------------------------------------------------------
# Fine-tuning the imported model
# ----------------------------------------------------------------------------------------------


def test_fine_tuning_the_imported_model_lowers_its_loss(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    model, tokenizer = hf.from_hf(folder)
    (tmp_path / "text.txt").write_text(TRAINING_TEXT, encoding="utf-8")
    config = TrainConfig(data=str(tmp_path / "text.txt"), block_size=32, batch_size=8, steps=15, lr=3e-3,
                         warmup_steps=2, eval_interval=15, eval_windows=8, progress=False, verbose=False,
                         cache_dir="", device="cpu")
    result = train(config, model=model, tokenizer=tokenizer)
    first, last = result.history[0], result.history[-1]
    assert first["step"] == 0 and last["step"] == 15
    assert last["val_loss"] < first["val_loss"] - 0.5


def test_train_py_fine_tunes_and_scores_an_hf_model_from_the_command_line(gpt2_folder, tmp_path, capsys):
    from test_training import read_log, run_cli

    folder, _ = gpt2_folder
    (tmp_path / "text.txt").write_text(TRAINING_TEXT, encoding="utf-8")
    common = ["--data", str(tmp_path / "text.txt"), "--block-size", "32", "--eval-windows", "8", "--threads", "1",
              "--device", "cpu", "--cache-dir", ""]
    status, out, err = run_cli(["--eval-only", "--hf", str(folder)] + common, capsys)
    assert status == 0 and "bits per byte" in out, err
    before = float(out.split("nats/token")[0].split("loss")[-1])
    status, _, err = run_cli(["--init-from", f"hf:{folder}", "--steps", "15", "--batch-size", "8", "--lr", "3e-3",
                              "--warmup-steps", "2", "--eval-interval", "15", "--no-progress",
                              "--out", str(tmp_path / "run")] + common, capsys)
    assert status == 0, err
    log = read_log(tmp_path / "run")
    assert abs(log[0]["val_loss"] - before) < 1e-4  # training started from the imported weights
    assert log[-1]["step"] == 15 and log[-1]["val_loss"] < before - 0.5


def test_a_hub_name_online_is_fetched_by_huggingface_hub_into_its_cache(gpt2_folder, monkeypatch):
    import huggingface_hub
    folder, _ = gpt2_folder
    asked = {}

    def fake_snapshot_download(repo_id, allow_patterns):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(folder)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model, tokenizer = hf.load_for_sampling("openai-community/gpt2")
    assert asked["repo_id"] == "openai-community/gpt2"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(asked["allow_patterns"])
    assert not model.training and tokenizer.special_tokens == {EOT: model.config.vocab_size - 1}

    def unreachable(repo_id, allow_patterns):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore lines")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(UserError, match="could not fetch 'gpt2'.*couldn't connect.*pass a local folder") as error:
        hf.from_hf("gpt2")
    assert "\n" not in str(error.value)


def test_an_lstm_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TRAINING_TEXT, encoding="utf-8")
    config = TrainConfig.from_preset("ci-tiny", model="lstm", steps=1, eval_interval=1, eval_windows=2, batch_size=2,
                                     out_dir=str(tmp_path / "lstm"), progress=False, verbose=False, cache_dir="",
                                     data=str(tmp_path / "text.txt"))
    train(config)
    assert hf.main(["export", "--ckpt", str(tmp_path / "lstm" / "ckpt.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "only GPT models export" in capsys.readouterr().err and not (tmp_path / "x").exists()
