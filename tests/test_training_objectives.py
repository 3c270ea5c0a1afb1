"""train.py --objective clm|mlm|both: the mask token in the tokenizer and checkpoint, exact resume of
the masks, the scores logged and printed by --eval-only, and the bad inputs."""
from __future__ import annotations

import pytest
import torch

from minilm.checkpoint import load_model, read_checkpoint
from minilm.objectives import causal_bits_per_byte, masked_bits_per_byte
from minilm.training import TrainConfig, train
from tests.test_training import TINY_FLAGS, read_log, run_cli, tiny_config
from tests.tolerances import assert_close


def test_an_interrupted_and_resumed_mlm_run_equals_the_uninterrupted_one(tmp_path):
    """The masks come from their own generator: its state must travel in the checkpoint."""
    whole = train(tiny_config(objective="mlm", out_dir=str(tmp_path / "whole"), log_interval=1))
    first = train(tiny_config(objective="mlm", out_dir=str(tmp_path / "split"), stop_at_step=6, log_interval=1))
    second = train(tiny_config(objective="mlm", out_dir=str(tmp_path / "split"), resume=True, log_interval=1))
    assert first.interrupted and first.step == 6
    assert first.train_losses + second.train_losses == whole.train_losses  # bit for bit
    weights = read_checkpoint(tmp_path / "split" / "ckpt.pt")["model"]
    for name, tensor in read_checkpoint(tmp_path / "whole" / "ckpt.pt")["model"].items():
        assert torch.equal(tensor, weights[name]), name


def test_the_mask_token_and_the_objective_are_in_the_checkpoint_and_the_masked_loss_is_trained(tmp_path):
    result = train(tiny_config(objective="mlm", out_dir=str(tmp_path / "mlm"), steps=4, eval_interval=4))
    checkpoint = read_checkpoint(tmp_path / "mlm" / "ckpt.pt")
    assert checkpoint["train_config"]["objective"] == "mlm"
    model, tokenizer, _ = load_model(tmp_path / "mlm" / "ckpt.pt")
    assert tokenizer.vocab_size == 257 and tokenizer.special_id("<mask>") == 256
    assert model.config.vocab_size == 257
    record = read_log(tmp_path / "mlm")[-1]
    assert "val_masked_bpb" in record and "val_causal_bpb" not in record
    assert record["val_bpb"] == record["val_masked_bpb"]  # the main score of an mlm run is the masked one
    assert len(result.history) == 2
    # the same config with clm trains a 256-way model whose loss is the causal one
    clm = train(tiny_config(steps=4, eval_interval=4))
    assert clm.model.config.vocab_size == 256 and "val_masked_bpb" not in clm.final


def test_both_logs_and_eval_only_prints_both_scores(tmp_path, capsys):
    out = tmp_path / "both"
    status, _, err = run_cli(TINY_FLAGS + ["--steps", "3", "--objective", "both", "--mlm-weight", "0.5",
                                           "--out", str(out)], capsys)
    assert status == 0, err
    record = read_log(out)[-1]
    model, tokenizer, checkpoint = load_model(out / "ckpt.pt")
    assert checkpoint["train_config"]["mlm_weight"] == 0.5
    # what the loop logged is what the scorers give on the saved model and its fixed validation windows
    from minilm.data import load_corpus, validation_windows

    corpus = load_corpus("shakespeare", tokenizer, None)
    windows = validation_windows(corpus.val, 16, 8)
    causal = causal_bits_per_byte(model, windows, tokenizer).bits_per_byte
    assert_close(record["val_causal_bpb"], causal, "forward_float32")
    assert_close(record["val_masked_bpb"], masked_bits_per_byte(model, windows, 256).bits_per_byte, "forward_float32")
    assert record["val_causal_bpb"] != record["val_masked_bpb"]
    status, printed, _ = run_cli(["--eval-only", "--ckpt", str(out / "ckpt.pt"), "--eval-windows", "8"], capsys)
    assert status == 0
    assert f"{record['val_causal_bpb']:.4f} causal bits per byte" in printed
    assert f"{record['val_masked_bpb']:.4f} masked bits per byte" in printed


def test_the_causal_score_of_a_both_model_ignores_the_mask_logit():
    """Raising the mask's logit changes nothing in the causal score over the 256 byte ids."""
    result = train(tiny_config(objective="both", steps=2, eval_interval=2))
    model = result.model.eval()

    class MaskLogitRaised(torch.nn.Module):
        def forward(self, idx, targets=None, **kwargs):
            logits, _ = model(idx, **kwargs)  # (B, T, 257)
            return logits + 50.0 * (torch.arange(logits.shape[-1]) == 256), None

    windows = torch.randint(0, 256, (4, 17), generator=torch.Generator().manual_seed(0))
    before = causal_bits_per_byte(model, windows, result.tokenizer).bits_per_byte
    assert causal_bits_per_byte(MaskLogitRaised(), windows, result.tokenizer).bits_per_byte == before


@pytest.mark.parametrize("argv, expected", [
    (["--objective", "bert"], "--objective: invalid choice: 'bert'"),
    (["--mlm-weight", "-1"], "--mlm-weight: expected a finite number >= 0, got -1.0"),
    (["--objective", "mlm", "--model", "lstm"], "--objective mlm: needs --model gpt"),
])
def test_bad_objective_input_gives_one_line_and_writes_nothing(argv, expected, tmp_path, capsys):
    status, _, err = run_cli(TINY_FLAGS + argv + ["--out", str(tmp_path / "run")], capsys)
    assert status == 2, err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_resume_keeps_the_objective(tmp_path):
    train(tiny_config(objective="mlm", out_dir=str(tmp_path / "run"), steps=2, eval_interval=2))
    with pytest.raises(Exception, match="--objective"):
        train(tiny_config(objective="clm", out_dir=str(tmp_path / "run"), steps=4, resume=True))
    assert TrainConfig().objective == "clm"


def test_on_eval_adds_its_numbers_to_each_record_and_leaves_the_run_unchanged():
    seen = []

    def measure(model, step):
        seen.append(step)
        return {"probe": float(step) * 2}

    plain = train(tiny_config(objective="both", steps=6, eval_interval=2, log_interval=1))
    probed = train(tiny_config(objective="both", steps=6, eval_interval=2, log_interval=1), on_eval=measure)
    assert seen == [0, 2, 4, 6] and [r["probe"] for r in probed.history] == [0.0, 4.0, 8.0, 12.0]
    assert probed.train_losses == plain.train_losses


def test_sample_py_refuses_a_masked_only_or_classifier_checkpoint(tmp_path, capsys):
    import importlib.util

    from minilm.data import REPO_ROOT

    spec = importlib.util.spec_from_file_location("sample_script", REPO_ROOT / "sample.py")
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    train(tiny_config(objective="mlm", out_dir=str(tmp_path / "mlm"), steps=1, eval_interval=1))
    train(tiny_config(objective="both", out_dir=str(tmp_path / "both"), steps=1, eval_interval=1))
    classifier = read_checkpoint(tmp_path / "both" / "ckpt.pt")
    classifier["task"] = "domain-id"  # what train.py --task writes beside the fine-tuned GPT
    torch.save(classifier, tmp_path / "classifier.pt")
    for ckpt, expected in [(tmp_path / "mlm" / "ckpt.pt", "--objective mlm"),
                           (tmp_path / "classifier.pt", "domain-id classifier")]:
        status = sample.main(["--ckpt", str(ckpt), "--prompt", "To be", "--max-new-tokens", "3"])
        err = capsys.readouterr().err
        assert status == 2 and expected in err and err.count("\n") == 1, err
    assert sample.main(["--ckpt", str(tmp_path / "both" / "ckpt.pt"), "--prompt", "To be",
                        "--max-new-tokens", "3"]) == 0  # both objectives: it can still continue a text
