"""The mismatch report's experiments on objectives: `multitask` (causal, masked, both on one domain,
with the gradient cosine along the `both` run) and `finetune` (a domain classifier from three
starts and a few labels). They run in the shared micro grid (seconds); the unit tests check what
the micro numbers cannot: same start and batches, the probe's cosine, which models are the starts."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from test_mismatch import MICRO_DOMAINS, run_micro_once

from minilm.gradients import flat_gradient
from minilm.mismatch.config import PRESETS
from minilm.mismatch.domains import choose_domains, load_domains
from minilm.mismatch.experiments import finetune, mixing, multitask
from minilm.mismatch.grid import Grid
from minilm.objectives import masked_lm_loss
from minilm.training import build_model


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    out_dir, report, code = run_micro_once(tmp_path_factory)
    assert code == 0
    return out_dir, report


@pytest.fixture(scope="module")
def grid():
    config = PRESETS["micro"]
    domains = load_domains(choose_domains("shakespeare,bible", {}), config)
    return Grid(config, domains, ("shakespeare", "bible"))


def test_the_multitask_section_has_both_scores_for_each_model_and_the_cosine_curve(micro):
    out_dir, report = micro
    m = report["multitask"]
    seeds = report["config"]["seeds"]
    assert m["seeds"] == seeds == 2 and m["domain"] == "shakespeare"
    for objective in ("clm", "mlm", "both"):
        for score in ("causal_bpb", "masked_bpb"):
            values = m["scores"][objective][score]["per_seed"]
            assert len(values) == seeds and all(0 < v < 9 for v in values)
            assert m["scores"][objective][score]["mean"] == pytest.approx(np.mean(values))
    steps = report["config"]["steps"]
    assert m["cosine"]["steps"] == list(range(0, steps + 1, steps // multitask.COSINE_POINTS))
    values = np.array(m["cosine"]["per_seed"])  # (seeds, points)
    assert values.shape == (seeds, len(m["cosine"]["steps"])) and np.all(np.abs(values) <= 1)
    assert m["cosine"]["second_half_mean"] == pytest.approx(values[:, values.shape[1] // 2:].mean())
    parts = {p.stem for p in (out_dir / "parts").glob("multitask.*.json")}
    assert parts == {f"multitask.{o}.seed{s}" for o in ("clm", "mlm", "both") for s in range(seeds)}
    text = (out_dir / "report.md").read_text()
    section = text.split("Multi-task training")[1].split("\n## ")[0]
    assert "**How to read it.**" in section and "| masked only |" in section and "2 seeds" in section
    if "multitask.png" in report["figures"]:
        assert (out_dir / "multitask.png").stat().st_size > 0


def test_the_finetune_section_has_an_accuracy_per_start_label_count_and_seed(micro):
    out_dir, report = micro
    f = report["finetune"]
    config = f["config"]
    assert config["label_counts"] == [1, 4] and config["seeds"] == 2 and config["classes"] == MICRO_DOMAINS
    held_out = config["held_out_per_class"] * len(MICRO_DOMAINS)
    for start in finetune.STARTS:
        for count in ("1", "4"):
            accuracies = f["accuracy"][start][count]
            assert len(accuracies) == 2
            for a in accuracies:  # a share of the fixed held-out set
                assert 0 <= a <= 1 and a * held_out == pytest.approx(round(a * held_out))
    text = (out_dir / "report.md").read_text()
    section = text.split("Fine-tuning with few labels")[1].split("\n## ")[0]
    assert "**How to read it.**" in section and "(c) mixed masked LM" in section
    assert json.loads((out_dir / "report.json").read_text())["finetune"]["chance"] == 1 / len(MICRO_DOMAINS)


def test_the_three_multitask_models_start_alike_and_train_on_the_same_batches(grid, monkeypatch):
    seen = {}

    def recording_train(config, model=None, tokenizer=None, on_eval=None):
        seen[config.objective] = (config, {k: v.clone() for k, v in model.state_dict().items()}, on_eval)
        raise StopIteration  # no training needed to see how it would start

    monkeypatch.setattr(multitask, "train", recording_train)
    for objective in ("clm", "mlm", "both"):
        with pytest.raises(StopIteration):
            multitask.train_with_objective(grid, objective, seed=1, probe=objective == "both")
    base = dataclasses.replace(seen["clm"][0], objective="both", eval_interval=seen["both"][0].eval_interval)
    assert seen["both"][0] == base  # same data, seed (so batches), budget
    assert seen["both"][0].eval_interval == grid.config.steps // multitask.COSINE_POINTS
    for objective in ("mlm", "both"):
        for name, tensor in seen["clm"][1].items():
            assert torch.equal(tensor, seen[objective][1][name]), name
    assert seen["clm"][2] is None and seen["both"][2] is not None


def test_the_probe_gives_the_cosine_of_the_two_objectives_gradients(grid):
    torch.manual_seed(0)
    config = grid.train_config("shakespeare", seed=0)
    model = build_model(config, 257)  # a byte GPT with the mask token
    probe = multitask.cosine_probe(grid, 256)
    windows = grid.domains["shakespeare"].eval_set.windows[:grid.config.batch_size]
    x, y = windows[:, :-1], windows[:, 1:]
    g_causal = flat_gradient(model, (x, y))
    g_masked = flat_gradient(model, lambda m: masked_lm_loss(m, x, 256, torch.Generator().manual_seed(0)))
    expected = float(g_causal @ g_masked / (g_causal.norm() * g_masked.norm()))
    first = probe(model, 0)["grad_cosine"]
    assert first == pytest.approx(expected, rel=1e-9) and abs(first) < 0.999
    assert probe(model, 5)["grad_cosine"] == first  # a fixed batch and fixed masks


def test_finetune_starts_from_the_mixing_model_and_a_masked_model_of_its_data(grid, monkeypatch):
    mixed = object()
    monkeypatch.setattr(Grid, "model", lambda self, key: mixed if key == "mixing.equal" else None)
    assert finetune.start_model(grid, "causal") == (mixed, True)
    trained = []

    class Trained:
        model = "masked model"

    def recording_train(self, config, model=None):
        trained.append(config)
        return Trained()

    monkeypatch.setattr(Grid, "train", recording_train)
    assert finetune.start_model(grid, "masked") == ("masked model", False)
    weights = mixing.mixture_weights(grid, "equal")  # the mixing experiment's equal mix, seed 0
    equal_mix = {grid.domains[n].spec: w for n, w in weights.items() if n != "shakespeare"}
    assert trained[0] == dataclasses.replace(grid.train_config("shakespeare", seed=0, mix=equal_mix), objective="mlm")
    random_model, causal = finetune.start_model(grid, "random")
    assert causal and random_model.config.vocab_size == 256
