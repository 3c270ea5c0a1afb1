"""The remedies' experiments of the mismatch report (augmentation, tempered_mixing, domain_tags,
gradient_conflict): their sections in the shared micro run, and their summaries on hand-made cases."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from test_mismatch import run_micro_once

from minilm.mismatch.experiments import BY_NAME, augmentation, gradient_conflict, tempered_mixing
from minilm.mixing import tempered_weights
from minilm.training import train
from tests.test_training import tiny_config

NEW = ("augmentation", "tempered_mixing", "domain_tags", "gradient_conflict")


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    out_dir, report, code = run_micro_once(tmp_path_factory)
    assert code == 0
    return out_dir, report


def section(out_dir, title: str) -> str:
    text = (out_dir / "report.md").read_text()
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_each_new_experiment_has_its_section_figure_and_how_to_read_it(micro):
    out_dir, report = micro
    titles = {"augmentation": "Data augmentation", "tempered_mixing": "Tempered mixing",
              "domain_tags": "Domain tags", "gradient_conflict": "Gradient conflict"}
    for name in NEW:
        assert name in report["experiments"] and name in report
        text = section(out_dir, titles[name])
        assert "**How to read it.**" in text
        for figure in BY_NAME[name].module.FIGURES:  # drawn when matplotlib is installed, else named nowhere
            drawn = report["plot_note"] is None
            assert (out_dir / figure).is_file() == drawn and (f"({figure})" in text) == drawn
        assert BY_NAME[name].minutes["micro"] > 0


def test_augmentation_pairs_each_seed_with_the_specialist_of_that_seed(micro):
    _, report = micro
    aug = report["augmentation"]
    seeds = report["config"]["seeds"]
    assert aug["seeds"] == seeds == 2 and aug["source"] == report["transfer_pair"][0]
    assert set(aug["variants"]) == {"case", "layout", "speakers", "typos", "all"}
    for v in aug["variants"].values():
        assert len(v["per_seed"]) == seeds
        prices = [v["per_seed"][s][aug["source"]] - report["per_seed"][s][aug["source"]][aug["source"]]
                  for s in range(seeds)]
        assert v["price"] == pytest.approx(sum(prices) / seeds)
        assert v["price_std"] == pytest.approx(float(torch.tensor(prices).std()))
    assert aug["variants"]["all"]["augment"] == ["case=0.5", "layout=0.5", "speakers=0.5", "typos=0.5"]


def test_price_and_gain_on_a_hand_made_case():
    price, gain = augmentation.price_and_gain({"s": 2.5, "a": 3.0, "b": 4.0}, {"s": 2.0, "a": 3.5, "b": 4.1}, "s")
    assert price == pytest.approx(0.5) and gain == pytest.approx((0.5 + 0.1) / 2)


def test_tempered_mixing_reuses_the_mixing_models_and_trains_only_the_middle_alphas(micro):
    _, report = micro
    tm = report["tempered_mixing"]
    assert tm["bpb"]["0"] == report["mixing"]["bpb"]["equal"]
    assert tm["bpb"]["1"] == report["mixing"]["bpb"]["proportional"]
    assert tm["bpb"]["0.3"] != tm["bpb"]["0"] and set(tm["bpb"]) == {"0", "0.3", "0.7", "1"}
    assert tm["weights"]["0.7"] == pytest.approx(tempered_weights(tm["train_bytes"], 0.7))
    assert tm["weights"]["1"] == pytest.approx(report["mixing"]["weights"]["proportional"])
    grid = SimpleNamespace(names=["a", "b"])
    assert [job.key for job in tempered_mixing.jobs(grid)] == ["tempered_mixing.alpha0.3", "tempered_mixing.alpha0.7"]


def test_domain_tags_scores_every_domain_with_right_no_and_wrong_tags(micro):
    _, report = micro
    dt = report["domain_tags"]
    assert dt["tags"] == ["<domain:shakespeare>", "<domain:bible>"]
    for name, v in dt["per_domain"].items():
        assert set(v["wrong_by_tag"]) == {n for n in report["domains"] if n != name}
        assert v["wrong"] == pytest.approx(sum(v["wrong_by_tag"].values()) / len(v["wrong_by_tag"]))
        assert v["wrong_tag_cost"] == pytest.approx(v["wrong"] - v["right"])
        gap = v["untagged_mixed"] - v["specialist"]
        assert v["recovered"] == (pytest.approx((v["untagged_mixed"] - v["right"]) / gap) if gap > 0 else None)


def test_the_watched_run_is_the_mixing_experiments_equal_run(micro):
    _, report = micro
    gc = report["gradient_conflict"]
    steps = report["config"]["steps"]
    assert gc["same_as_mixing_equal"] and gc["bpb"] == report["mixing"]["bpb"]["equal"]
    assert gc["curve"]["step"] == list(range(0, steps + 1, gc["interval"]))
    for cosines in gc["curve"]["cosines"]:
        for a in cosines:
            assert cosines[a][a] == pytest.approx(1.0)
            for b in cosines:
                assert cosines[a][b] == pytest.approx(cosines[b][a]) and -1 <= cosines[a][b] <= 1 + 1e-9


def test_gradient_conflict_summary_on_a_hand_made_case():
    """Three domains, four measurements over 8 steps: the second half is steps 4 and 8; the pair costs
    and the rank correlation are worked out by hand."""
    names = ["a", "b", "c"]

    def cosines(ab, ac, bc):
        return {"a": {"a": 1, "b": ab, "c": ac}, "b": {"a": ab, "b": 1, "c": bc}, "c": {"a": ac, "b": bc, "c": 1}}

    curve = {"step": [0, 2, 4, 8], "cosines": [cosines(0, 0, 0), cosines(9, 9, 9), cosines(0.2, -0.4, 0.6),
                                                 cosines(0.4, 0.0, 0.8)]}
    ratio = {"a": {"a": 1, "b": 1.5, "c": 2.0}, "b": {"a": 1.3, "b": 1, "c": 1.2}, "c": {"a": 3.0, "b": 1.0, "c": 1}}
    grid = SimpleNamespace(names=names, config=SimpleNamespace(steps=8))
    parts = {gradient_conflict.KEY: {"result": {"interval": 2, "curve": curve, "bpb": {n: 1.0 for n in names}}}}
    gc = gradient_conflict.summarise(grid, parts, {"ratio": ratio})["gradient_conflict"]
    assert gc["mean_second_half"]["a"]["b"] == pytest.approx(0.3) and gc["second_half_points"] == 2
    assert gc["pair_cosine"] == pytest.approx({"a|b": 0.3, "a|c": -0.2, "b|c": 0.7})
    assert gc["pair_off_domain_cost"] == pytest.approx({"a|b": 1.4, "a|c": 2.5, "b|c": 1.1})
    # cosines rank (a|c, a|b, b|c) = (1, 2, 3); costs rank (b|c, a|b, a|c) = (1, 2, 3): perfectly reversed
    assert gc["spearman"] == pytest.approx(-1.0)
    assert gc["most_conflicting"] == "a|c" and gc["most_aligned"] == "b|c"
    assert not gc["same_as_mixing_equal"]  # no mixing experiment in this report


def test_watching_a_run_changes_nothing_and_sees_every_step():
    seen = []

    def watch(step, model):
        seen.append(step)
        gradient_conflict.gradient_cosines(model, {"x": lambda m: m(torch.zeros(1, 4, dtype=torch.long),
                                                                        torch.ones(1, 4, dtype=torch.long))[1]})

    settings = dict(steps=5, eval_interval=5, log_interval=1,
                    model_args=dict(n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    watched = train(tiny_config(**settings), on_step=watch)
    plain = train(tiny_config(**settings))
    assert seen == [0, 1, 2, 3, 4, 5]
    assert watched.train_losses == plain.train_losses and math.isfinite(watched.final["val_loss"])
