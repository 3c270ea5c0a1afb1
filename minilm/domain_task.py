"""`train.py --task domain-id`: fine-tune a pre-trained model to tell which domain a window comes from.

    python train.py --task domain-id --domains shakespeare,bible,legal \
        --init-from runs/mixed/ckpt.pt --labels-per-class 16 --out runs/domain-id

The pieces are in minilm/classifier.py (the head on the mean of the last hidden states, the
labelled windows, fine-tuning, accuracy); this module wires them to corpora, a checkpoint and an
output folder:

1. the domains: at least two distinct bundled corpora (or text files), each split as training
   splits it (the last 10% held out);
2. the labelled windows: `labels_per_class` from each domain's training split (drawn from the
   seed), and a fixed, balanced held-out set of `held_out_per_class` windows per domain from the
   validation splits (always drawn from HELD_OUT_SEED, so every model is scored on the same set);
3. fine-tuning all weights for `steps` steps, then the held-out accuracy (chance is 1/K);
4. the classifier checkpoint, ckpt.pt in `--out` (the run-folder rules of minilm/run_folder.py:
   checked and locked before any work, written atomically, nothing replaced that this run did
   not make). It carries "task": "domain-id", so sample.py refuses it.

A model trained with `--objective mlm` is read with bidirectional attention, every other with
its causal attention.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from minilm.classifier import DomainClassifier, FineTuneConfig, accuracy, draw_labelled_windows, fine_tune
from minilm.cli import UserError
from minilm.data import bundled_corpora, load_corpus

HELD_OUT_SEED = 0  # the held-out set is the same for every model, seed and label budget


@dataclass
class DomainTaskResult:
    """What one fine-tuning produced."""

    accuracy: float  # share of the held-out windows classified right
    num_held_out: int  # held-out windows (held_out_per_class x K)
    domains: list  # class k is domains[k]
    losses: list  # the training loss of every step
    classifier: DomainClassifier


def parse_domains(text: str) -> list[str]:
    """"shakespeare,bible" -> ["shakespeare", "bible"]: two or more distinct, known corpora."""
    domains = [name.strip() for name in str(text).split(",") if name.strip()]
    if len(domains) < 2:
        raise UserError(f"--domains: a classification task needs at least 2 domains, got {domains or text!r}")
    if len(set(domains)) != len(domains):
        raise UserError(f"--domains: each domain once, got {domains}")
    for name in domains:
        if name not in bundled_corpora() and not Path(name).expanduser().is_file():
            raise UserError(f"--domains: unknown domain {name!r}; expected bundled corpora "
                            f"({', '.join(bundled_corpora())}) or text files")
    return domains


def domain_splits(domains: list[str], tokenizer, cache_dir) -> tuple[dict, dict]:
    """({domain: training tokens}, {domain: validation tokens}), in the order of `domains`."""
    corpora = [load_corpus(name, tokenizer, cache_dir) for name in domains]
    return ({c.name: c.train for c in corpora}, {c.name: c.val for c in corpora})


def held_out_set(val_splits: dict, config: FineTuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed, balanced held-out windows (N, window) and labels (N,) from the validation splits."""
    for name, tokens in val_splits.items():
        if len(tokens) // config.window < config.held_out_per_class:
            raise UserError(f"--domains: the validation split of {name} holds only {len(tokens) // config.window} "
                            f"windows of {config.window} tokens; the held-out set takes "
                            f"{config.held_out_per_class} per domain")
    return draw_labelled_windows(val_splits, config.held_out_per_class, config.window, HELD_OUT_SEED,
                                 what="validation split")


def fine_tune_and_score(lm: torch.nn.Module, causal: bool, train_splits: dict, held_out: tuple,
                        config: FineTuneConfig, progress: bool = False) -> DomainTaskResult:
    """Fine-tune a classifier on `lm` (changed in place) with the config's labelled windows; score it."""
    block_size = getattr(lm.config, "block_size", config.window)
    if config.window > block_size:
        raise UserError(f"--task domain-id: windows of {config.window} tokens are longer than the model's "
                        f"context {block_size}")
    x, labels = draw_labelled_windows(train_splits, config.labels_per_class, config.window, config.seed)
    torch.manual_seed(config.seed)  # the head's initial weights
    classifier = DomainClassifier(lm, len(train_splits), causal=causal)
    losses = fine_tune(classifier, x, labels, config.steps, config.lr, config.batch_size, config.seed, progress)
    held_x, held_labels = held_out
    return DomainTaskResult(accuracy(classifier, held_x, held_labels), len(held_x), list(train_splits), losses,
                            classifier)


def run_domain_task(init_from: str, domains: list[str], config: FineTuneConfig, out_dir: str = "",
                    overwrite: bool = False, device: str = "auto", cache_dir: str = "auto",
                    progress: bool = True) -> DomainTaskResult:
    """The whole of `train.py --task domain-id`: check, load, fine-tune, score, save."""
    from minilm.checkpoint import load_model
    from minilm.devices import pick_device
    from minilm.run_folder import CHECKPOINT_NAME, RunFolder
    from minilm.training import resolve_cache_dir

    if not init_from:
        raise UserError("--task domain-id: needs --init-from CKPT, the pre-trained model to fine-tune")
    folder = RunFolder.open(out_dir, False, overwrite, True)[0] if out_dir else None
    try:
        torch_device = pick_device(device)
        lm, tokenizer, checkpoint = load_model(init_from, torch_device)
        objective = (checkpoint.get("train_config") or {}).get("objective", "clm")
        train_splits, val_splits = domain_splits(domains, tokenizer, resolve_cache_dir(cache_dir))
        held_out = held_out_set(val_splits, config)
        result = fine_tune_and_score(lm, objective != "mlm", train_splits, held_out, config, progress)
        if folder is not None:
            record = {"task": "domain-id", "accuracy": result.accuracy, "held_out": result.num_held_out,
                      "domains": result.domains, "init_from": str(init_from), "run_id": folder.run_id}
            folder.save(CHECKPOINT_NAME, {
                "task": "domain-id", "domains": result.domains, "model_kind": checkpoint["model_kind"],
                "model_config": lm.config.to_dict(), "model": lm.state_dict(),
                "head": result.classifier.head.state_dict(), "causal": objective != "mlm",
                "tokenizer": tokenizer.to_json(), "finetune_config": dataclasses.asdict(config),
                "init_from": str(init_from), "accuracy": result.accuracy, "run_id": folder.run_id})
            folder.write_log([record])
        return result
    finally:
        if folder is not None:
            folder.close()
