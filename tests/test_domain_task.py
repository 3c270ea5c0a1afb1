"""train.py --task domain-id: fine-tune a classifier on a checkpoint, score it on the fixed held-out
set, save it; the bad inputs give one line and write nothing."""
from __future__ import annotations

import pytest
import torch

from minilm.checkpoint import read_checkpoint
from minilm.classifier import DomainClassifier, FineTuneConfig, accuracy
from minilm.data import ByteTokenizer
from minilm.domain_task import domain_splits, fine_tune_and_score, held_out_set, parse_domains
from minilm.gpt import GPT, GPTConfig
from minilm.training import train
from tests.test_training import run_cli, tiny_config

DOMAINS = ["shakespeare", "poetry_zh"]


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    """A one-layer, 16-wide GPT with a 64-token context, trained for one step."""
    out = tmp_path_factory.mktemp("lm") / "run"
    train(tiny_config(block_size=64, steps=1, eval_interval=1, out_dir=str(out)))
    return out / "ckpt.pt"


def test_the_held_out_set_is_fixed_balanced_and_drawn_from_the_validation_splits():
    train_splits, val_splits = domain_splits(DOMAINS, ByteTokenizer(), None)
    config = FineTuneConfig(held_out_per_class=20, window=16)
    x, labels = held_out_set(val_splits, config)
    again, _ = held_out_set(val_splits, FineTuneConfig(held_out_per_class=20, window=16, seed=5))
    assert torch.equal(x, again)  # not the fine-tuning seed's
    assert labels.tolist() == [0] * 20 + [1] * 20
    for row, label in zip(x, labels, strict=True):
        val = torch.from_numpy(val_splits[DOMAINS[label]].astype("int64"))
        starts = [i * 16 for i in range(len(val) // 16)]
        assert any(torch.equal(row, val[s:s + 16]) for s in starts)


def test_fine_tuning_a_random_gpt_separates_two_scripts():
    """Chinese poetry and English plays differ in every byte: a few labels and steps are enough."""
    torch.manual_seed(0)
    lm = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    train_splits, val_splits = domain_splits(DOMAINS, ByteTokenizer(), None)
    config = FineTuneConfig(labels_per_class=8, held_out_per_class=20, window=16, steps=30, lr=1e-2, batch_size=16)
    result = fine_tune_and_score(lm, True, train_splits, held_out_set(val_splits, config), config)
    assert result.accuracy >= 0.9 and result.num_held_out == 40
    assert result.losses[-1] < result.losses[0]


def test_train_py_task_prints_the_accuracy_of_the_classifier_it_saves(checkpoint_path, tmp_path, capsys):
    out = tmp_path / "task"
    status, printed, err = run_cli(["--task", "domain-id", "--domains", ",".join(DOMAINS), "--init-from",
                                    str(checkpoint_path), "--labels-per-class", "4", "--preset", "ci-tiny",
                                    "--steps", "3", "--out", str(out), "--threads", "1", "--no-progress"], capsys)
    assert status == 0, err
    saved = read_checkpoint(out / "ckpt.pt")
    assert saved["task"] == "domain-id" and saved["domains"] == DOMAINS
    assert saved["finetune_config"]["labels_per_class"] == 4 and saved["finetune_config"]["steps"] == 3
    assert f"held-out accuracy {saved['accuracy']:.4f} (400 windows" in printed
    # the saved weights give the printed accuracy on the fixed held-out set
    lm = GPT(GPTConfig(**saved["model_config"]))
    lm.load_state_dict(saved["model"])
    classifier = DomainClassifier(lm, 2)
    classifier.head.load_state_dict(saved["head"])
    _, val_splits = domain_splits(DOMAINS, ByteTokenizer(), None)
    assert accuracy(classifier, *held_out_set(val_splits, FineTuneConfig())) == saved["accuracy"]
    status, _, err = run_cli(["--task", "domain-id", "--domains", ",".join(DOMAINS), "--init-from",
                              str(checkpoint_path), "--out", str(out), "--no-progress"], capsys)
    assert status == 2 and "already holds a checkpoint" in err  # never replaced


def test_parse_domains():
    assert parse_domains(" shakespeare, bible ") == ["shakespeare", "bible"]


@pytest.mark.parametrize("argv, expected", [
    (["--domains", "shakespeare"], "--domains: a classification task needs at least 2 domains"),
    (["--domains", "shakespeare,klingon"], "--domains: unknown domain 'klingon'"),
    (["--domains", "shakespeare,shakespeare"], "--domains: each domain once"),
    (["--labels-per-class", "0"], "--labels-per-class: expected a positive integer"),
    (["--labels-per-class", "100000"], "--labels-per-class 100000: the training split of shakespeare holds only"),
    (["--no-init"], "--task domain-id: needs --init-from CKPT"),
])
def test_bad_task_input_gives_one_line_and_writes_nothing(argv, expected, checkpoint_path, tmp_path, capsys):
    args = {"--domains": ",".join(DOMAINS), "--init-from": str(checkpoint_path), "--labels-per-class": "4"}
    if argv == ["--no-init"]:
        del args["--init-from"]
        argv = []
    args.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    flat = [item for pair in args.items() for item in pair]
    status, _, err = run_cli(["--task", "domain-id", *flat, "--preset", "ci-tiny", "--steps", "1",
                              "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert status == 2, err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()
