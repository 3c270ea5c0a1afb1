"""Tests of minilm.fluency_novelty: the sweep of sampling settings, novelty against n-gram fluency.

- novelty against a brute-force count of 8-grams (a hand-made case and random small texts);
- the n-gram bits per byte against the readable `KneserNeyLM.prob` path, each sample after its prompt;
- the sweep on a tiny GPT trained for a few steps: one point per setting, every number equal to a
  recomputation from its pieces with the scorer counted on the TRAINING split (and different
  from one counted on the validation text), determinism under the seeds;
- the front, the report section and the figure;
- bad inputs (a temperature <= 0, a top-p outside (0, 1], no settings, zero samples, ...): one line,
  nothing written by the command line.
"""
from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minilm.checkpoint import save_checkpoint
from minilm.cli import UserError, config_from_dict
from minilm.data import ByteTokenizer, split_point
from minilm.fluency_novelty import (
    DEFAULT_SETTINGS,
    FluencyNoveltyConfig,
    Setting,
    fit_scorer,
    generate_samples,
    how_to_read,
    main,
    ngram_bits_per_byte,
    novelty_of,
    pareto_front,
    prompt_offsets,
    sweep,
    write_section,
)
from minilm.gpt import GPT, GPTConfig
from minilm.ngram import KneserNeyLM
from minilm.sampling import NgramIndex
from tests.strategies import examples
from tests.tolerances import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


def brute_force_novelty(samples: list[bytes], train: bytes, n: int) -> float:
    """1 - (number of the samples' n-grams, counted at every position, that occur in train) / (their number)."""
    seen = {train[i:i + n] for i in range(len(train) - n + 1)}
    grams = [s[i:i + n] for s in samples for i in range(len(s) - n + 1)]
    return 1 - sum(g in seen for g in grams) / len(grams)


def test_novelty_of_a_hand_made_case():
    train = b"the cat sat on the mat"
    # "the cat sat" has 4 8-grams, all in train; "a dog sat on the mat!" has 14, of which the 8 from
    # " sat on " to " the mat" occur in train: 12 of 18 found. The mean of the two samples' shares,
    # (1 + 8/14) / 2, would be another number: the pooled count weighs each sample by its 8-grams.
    samples = [b"the cat sat", b"a dog sat on the mat!"]
    expected = brute_force_novelty(samples, train, 8)
    assert expected == pytest.approx(1 - 12 / 18, abs=1e-12)
    assert novelty_of(samples, NgramIndex(train, 8)) == pytest.approx(expected, abs=1e-12)


@examples(60)
@given(train=st.binary(min_size=0, max_size=40).map(lambda b: bytes(x % 3 for x in b)),
       samples=st.lists(st.binary(min_size=3, max_size=20).map(lambda b: bytes(x % 3 for x in b)),
                        min_size=1, max_size=4),
       n=st.integers(1, 3))
def test_novelty_equals_the_brute_force_count(train, samples, n):
    assert_close(novelty_of(samples, NgramIndex(train, n)), brute_force_novelty(samples, train, n),
                 "fast_path_float64", "novelty")


def test_ngram_bits_per_byte_scores_each_sample_after_its_own_prompt():
    lm = KneserNeyLM(3).fit(np.frombuffer(b"abracadabra, abracadabra!", dtype=np.uint8))
    contexts, samples = [b"xab", b"ca"], [b"ra", b"dab"]
    bits = [-math.log2(lm.prob(np.frombuffer(c + s[:i], np.uint8), s[i]))
            for c, s in zip(contexts, samples, strict=True) for i in range(len(s))]
    assert_close(ngram_bits_per_byte(lm, contexts, samples), sum(bits) / 5, "fast_path_float64", "bits per byte")


# ----------------------------------------------------------------------------------------------
# The sweep on a tiny trained model
# ----------------------------------------------------------------------------------------------


def markov_text(seed: int, length: int) -> bytes:
    """A small 'domain': words from a few syllables, so a few training steps teach the model something."""
    rng = np.random.default_rng(seed)
    syllables = [b"ka", b"to", b"ri", b"ne", b"su", b"mo"]
    out = bytearray()
    while len(out) < length:
        out += b"".join(syllables[i] for i in rng.integers(0, len(syllables), size=rng.integers(1, 4)))
        out += b"\n" if rng.random() < 0.15 else b" "
    return bytes(out[:length])


TRAIN, VAL = markov_text(0, 4000), markov_text(1, 600)
CONFIG = FluencyNoveltyConfig(settings=((0.5, 0.8), (1.2, 1.0)), seeds=2, num_samples=3, sample_len=16,
                              prompt_len=4, ngram_order=3)


@pytest.fixture(scope="module")
def trained_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    data = torch.tensor(list(TRAIN))
    generator = torch.Generator().manual_seed(0)
    for _ in range(80):
        starts = torch.randint(0, len(data) - 17, (16,), generator=generator)
        windows = torch.stack([data[s:s + 17] for s in starts.tolist()])  # (16, 17)
        _, loss = model(windows[:, :-1], windows[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def result(trained_model):
    return sweep(trained_model, ByteTokenizer(), TRAIN, VAL, CONFIG, progress=False)


def recompute(model, setting: Setting, seed: int, scorer: KneserNeyLM) -> tuple[float, float]:
    """One seed of one setting from the module's pieces: (novelty, n-gram bits per byte)."""
    val = np.frombuffer(VAL, dtype=np.uint8).astype(np.int64)
    offsets = prompt_offsets(val, CONFIG, seed)
    prompts = torch.as_tensor(np.stack([val[o:o + CONFIG.prompt_len] for o in offsets]))  # (B, P)
    new = generate_samples(model, prompts, setting, CONFIG.sample_len, seed)  # (B, L)
    samples = [bytes(row) for row in new.tolist()]
    contexts = [bytes(row) for row in prompts.tolist()]
    return novelty_of(samples, NgramIndex(TRAIN, 8)), ngram_bits_per_byte(scorer, contexts, samples)


def test_one_point_per_setting_with_a_value_per_seed(result):
    assert [(p["temperature"], p["top_p"]) for p in result["points"]] == list(CONFIG.settings)
    assert result["seeds"] == [0, 1]
    for point in result["points"] + [result["reference"]]:
        for measure in ("novelty", "ngram_bpb"):
            summary = point[measure]
            assert len(summary["per_seed"]) == 2
            assert summary["mean"] == pytest.approx(np.mean(summary["per_seed"]))
            assert summary["std"] == pytest.approx(np.std(summary["per_seed"], ddof=1))
        assert 0.0 <= point["novelty"]["mean"] <= 1.0
    json.dumps(result)  # plain JSON types only


def test_the_model_learnt_something_so_the_numbers_are_not_trivial(result):
    """A few steps of training: the samples reuse training 8-grams (novelty < 1) at T = 0.5."""
    cold = result["points"][0]
    assert cold["novelty"]["mean"] < 0.9
    assert cold["ngram_bpb"]["mean"] < result["points"][1]["ngram_bpb"]["mean"]


def test_every_number_is_recomputed_with_the_scorer_counted_on_the_training_split(trained_model, result):
    on_train = KneserNeyLM(CONFIG.ngram_order).fit(np.frombuffer(TRAIN, dtype=np.uint8))
    on_val = KneserNeyLM(CONFIG.ngram_order).fit(np.frombuffer(VAL, dtype=np.uint8))
    assert result["ngram"] == {"order": CONFIG.ngram_order, "train_bytes": len(TRAIN)}
    for point in result["points"]:
        setting = Setting(point["temperature"], point["top_p"])
        for seed in result["seeds"]:
            novelty, bits = recompute(trained_model, setting, seed, on_train)
            assert point["novelty"]["per_seed"][seed] == pytest.approx(novelty, abs=1e-12)
            assert point["ngram_bpb"]["per_seed"][seed] == pytest.approx(bits, abs=1e-12)
            # the check bites: a scorer counted on the validation text gives other numbers
            assert abs(recompute(trained_model, setting, seed, on_val)[1] - bits) > 1e-3


def test_a_given_scorer_is_used_as_it_is(trained_model, result):
    given_lm = fit_scorer(TRAIN, CONFIG.ngram_order)
    assert sweep(trained_model, ByteTokenizer(), TRAIN, VAL, CONFIG, ngram_lm=given_lm, progress=False) == result
    with pytest.raises(UserError, match="vocabulary 256"):
        sweep(trained_model, ByteTokenizer(), TRAIN, VAL, CONFIG, ngram_lm=KneserNeyLM(2, vocab_size=10).fit([1, 2]),
              progress=False)


def test_the_reference_is_the_real_continuation_of_the_same_prompts(result):
    val = np.frombuffer(VAL, dtype=np.uint8).astype(np.int64)
    scorer = fit_scorer(TRAIN, CONFIG.ngram_order)
    for seed in result["seeds"]:
        offsets = prompt_offsets(val, CONFIG, seed)
        span = CONFIG.prompt_len + CONFIG.sample_len
        contexts = [VAL[o:o + CONFIG.prompt_len] for o in offsets]
        real = [VAL[o + CONFIG.prompt_len:o + span] for o in offsets]
        assert result["reference"]["novelty"]["per_seed"][seed] == pytest.approx(
            brute_force_novelty(real, TRAIN, 8), abs=1e-12)
        assert result["reference"]["ngram_bpb"]["per_seed"][seed] == pytest.approx(
            ngram_bits_per_byte(scorer, contexts, real), abs=1e-12)


def test_deterministic_under_the_seeds(trained_model, result):
    again = sweep(trained_model, ByteTokenizer(), TRAIN, VAL, CONFIG, progress=False)
    assert again == result
    hot = result["points"][1]
    assert hot["ngram_bpb"]["per_seed"][0] != hot["ngram_bpb"]["per_seed"][1]  # seeds draw differently


# ----------------------------------------------------------------------------------------------
# The front and the report
# ----------------------------------------------------------------------------------------------


def point(novelty: float, bpb: float) -> dict:
    return {"novelty": {"mean": novelty}, "ngram_bpb": {"mean": bpb}}


def test_pareto_front_by_hand():
    points = [point(0.1, 1.0), point(0.5, 2.0), point(0.4, 2.5), point(0.5, 2.0), point(0.9, 3.0), point(0.1, 1.2)]
    # (0.4, 2.5) is beaten by (0.5, 2.0); (0.1, 1.2) by (0.1, 1.0); the two equal points do not beat each other
    assert pareto_front(points) == [True, True, False, True, True, False]


def test_the_section_has_a_row_per_setting_and_says_how_to_read_it(result):
    section = write_section(result, number=7, figures=("fluency_novelty.png",))
    assert section.startswith("## 7. Quality against diversity in generation")
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(CONFIG.settings) + 1  # header, settings, the real continuation
    cold = result["points"][0]
    assert f"| 0.5 | 0.8 | {cold['novelty']['mean']:.3f} ± {cold['novelty']['std']:.3f} |" in section
    assert "fluency_novelty.png" in section
    paragraph = how_to_read(result)
    assert "conflicting goals" in paragraph and "**How to read it.**" in section
    assert f"{cold['ngram_bpb']['mean']:.3f}" in paragraph  # the most fluent setting, measured
    assert "2 seeds" in paragraph


def made_up_result(novelties: list[float], reference_novelty: float) -> dict:
    """A result with one seed, n-gram bits per byte rising with novelty, and a given real text."""
    def summary(mean):
        return {"mean": mean, "std": None, "per_seed": [mean]}

    points = [{"temperature": 0.5 + i, "top_p": 1.0, "novelty": summary(nov), "ngram_bpb": summary(2 + 3 * nov)}
              for i, nov in enumerate(novelties)]
    for p, on_front in zip(points, pareto_front(points), strict=True):
        p["on_front"] = on_front
    return {"seeds": [0], "ngram": {"order": 4}, "points": points,
            "reference": {"novelty": summary(reference_novelty), "ngram_bpb": summary(2.5)}}


@pytest.mark.parametrize("reference_novelty, says", [
    (0.1, "every setting is more novel than the real text"),  # nearest: novelty 0.2, 2.6 bpb, 0.100 more
    (0.5, "the most fluent setting that is at least as novel (T = 1.5, top-p = 1) needs 1.300 bits per byte more"),
    (0.9, "no setting is as novel as the real text; the most novel reaches 0.800"),
])
def test_how_to_read_places_the_real_text_among_the_settings(reference_novelty, says):
    paragraph = how_to_read(made_up_result([0.2, 0.6, 0.8], reference_novelty))
    assert says in paragraph
    assert "rise with novelty (Pearson correlation 1.00" in paragraph and "One seed" in paragraph
    if reference_novelty == 0.1:
        assert "(T = 0.5, top-p = 1) still needs 0.100 bits per byte more" in paragraph


def test_the_figure_is_written(result, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minilm.fluency_novelty import figures

    assert figures(result, tmp_path, plt) == ["fluency_novelty.png"]
    assert (tmp_path / "fluency_novelty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fluency_novelty.png"]  # no temporary left


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, words", [
    (dict(settings=((0.0, 0.9),)), "temperature"),
    (dict(settings=((-1.0, 0.9),)), "temperature"),
    (dict(settings=((float("nan"), 0.9),)), "temperature"),
    (dict(settings=((1.0, 0.0),)), "top-p"),
    (dict(settings=((1.0, 1.5),)), "top-p"),
    (dict(settings=((1.0, -0.1),)), "top-p"),
    (dict(settings=()), "settings"),
    (dict(settings=((1.0,),)), "settings"),
    (dict(settings=((1.0, 0.9), (1.0, 0.9))), "settings"),
    (dict(num_samples=0), "--num-samples"),
    (dict(seeds=0), "--seeds"),
    (dict(sample_len=0), "--sample-len"),
    (dict(sample_len=7), "--sample-len"),
    (dict(prompt_len=0), "--prompt-len"),
    (dict(ngram_order=0), "--ngram-order"),
])
def test_bad_config_is_one_line(overrides, words):
    with pytest.raises(UserError) as error:
        FluencyNoveltyConfig(**overrides)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_config_in_the_result_reads_back(result):
    assert config_from_dict(FluencyNoveltyConfig, json.loads(json.dumps(result["config"]))) == CONFIG


def test_the_defaults_are_the_issue_grid():
    assert DEFAULT_SETTINGS == tuple((t, p) for t in (0.5, 0.8, 1.0, 1.2) for p in (0.8, 0.95, 1.0))
    assert FluencyNoveltyConfig().settings == DEFAULT_SETTINGS
    assert Setting(1.0, 1.0).top_p == 1.0  # the closed end of (0, 1]


def test_a_validation_split_too_short_for_prompt_and_sample_is_one_line(trained_model):
    with pytest.raises(UserError, match="validation split") as error:
        sweep(trained_model, ByteTokenizer(), TRAIN, VAL[:19], CONFIG, progress=False)
    assert "\n" not in str(error.value)


def run_main(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("flags", [["--temperatures", "0.5,0"], ["--top-ps", "0.9,1.01"], ["--top-ps", "0"],
                                   ["--temperatures", "hot"], ["--num-samples", "0"]])
def test_the_command_line_refuses_bad_settings_in_one_line_and_writes_nothing(tmp_path, flags):
    out = tmp_path / "out"
    status, _, err = run_main(["--ckpt", str(tmp_path / "missing.pt"), "--data", "shakespeare", "--out", str(out)]
                              + flags)
    assert status == 2 and err.count("\n") == 1 and err.startswith("python -m minilm.fluency_novelty: error: ")
    assert not out.exists()


def test_the_command_line_end_to_end(trained_model, tmp_path):
    corpus = tmp_path / "domain.txt"
    text = markov_text(2, 3000)
    corpus.write_bytes(text)
    ckpt = save_checkpoint(tmp_path / "ckpt.pt", {
        "model_kind": "gpt", "model_config": trained_model.config.to_dict(), "model": trained_model.state_dict(),
        "tokenizer": ByteTokenizer().to_json()})
    out = tmp_path / "report"
    status, printed, _ = run_main(["--ckpt", str(ckpt), "--data", str(corpus), "--out", str(out), "--seeds", "1",
                                   "--num-samples", "2", "--sample-len", "12", "--prompt-len", "3",
                                   "--temperatures", "1", "--top-ps", "0.9,1", "--ngram-order", "2", "--no-progress"])
    assert status == 0 and "How to read it" in printed
    saved = json.loads((out / "fluency_novelty.json").read_text())
    cut = split_point(text)
    assert saved["ngram"]["train_bytes"] == cut  # counted on the training split only
    assert [(p["temperature"], p["top_p"]) for p in saved["points"]] == [(1.0, 0.9), (1.0, 1.0)]
    assert saved["points"][0]["novelty"]["std"] is None  # one seed: no spread
    assert (out / "fluency_novelty.md").read_text().startswith("## Quality against diversity")
    # a second run does not replace the first one's files unless asked to
    (out / "fluency_novelty.md").write_text("mine")
    status, _, err = run_main(["--ckpt", str(ckpt), "--data", str(corpus), "--out", str(out)])
    assert status == 2 and "--overwrite" in err and err.count("\n") == 1
    assert (out / "fluency_novelty.md").read_text() == "mine"
