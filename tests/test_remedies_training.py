"""The remedies for mismatch in the training loop: --augment in the batch sampler (plain runs
unchanged, augmented runs exact under resume and data parallelism), --mix-domains / --mix-alpha
(tempered weights), and --domain-tags (the tag at the start of each row, recorded in the
checkpoint, scored on identical bytes with the right, no and a wrong tag)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from minilm.augment import Augmenter
from minilm.checkpoint import load_model, read_checkpoint
from minilm.cli import UserError
from minilm.data import BatchSampler, ByteTokenizer
from minilm.metrics import evaluate
from minilm.mixing import tempered_weights
from minilm.objectives import ByteLogitsOnly
from minilm.tags import bits_per_byte_with_tag, tag_domains, tag_id, tag_scores, tagged_tokenizer, tagged_windows
from minilm.training import Distributed, prepare, train
from tests.test_training import run_cli, tiny_config
from tests.tolerances import assert_close

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 8).encode()


def byte_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64)


def plain_batches_as_before(sources, weights, block_size, batch_size, seed, steps):
    """The sampler's rule before augmentation and tags existed, written out: the reference a plain
    run must still equal bit for bit. Returns (batches, the generator's state after)."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor(weights, dtype=torch.float64)
    batches = []
    for _ in range(steps):
        if len(sources) == 1:
            source_of_row = torch.zeros(batch_size, dtype=torch.long)
        else:
            source_of_row = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        uniform = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        rows = []
        for r in range(batch_size):
            tokens = sources[int(source_of_row[r])]
            num_starts = len(tokens) - block_size
            start = min(int(float(uniform[r]) * num_starts), num_starts - 1)
            rows.append(tokens[start:start + block_size + 1])
        windows = torch.from_numpy(np.stack(rows).astype(np.int64))
        batches.append((windows[:, :-1], windows[:, 1:]))
    return batches, generator.get_state()


@pytest.mark.parametrize("augmenter", [None, Augmenter({"case": 0.0, "typos": 0.0})])
def test_a_run_without_augmentation_draws_nothing_extra_and_is_unchanged(augmenter):
    sources = [byte_array(TEXT), byte_array(TEXT.upper()[:300])]
    sampler = BatchSampler(sources, [0.7, 0.3], 16, 5, seed=3, augmenter=augmenter)
    got = [sampler.next_step()[0] for _ in range(4)]
    expected, state = plain_batches_as_before(sources, [0.7, 0.3], 16, 5, seed=3, steps=4)
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    assert torch.equal(sampler.generator.get_state(), state)  # not one draw more


def test_augmented_windows_keep_their_length_and_come_from_the_sampler_generator():
    sources = [byte_array(TEXT)]
    make = lambda seed: BatchSampler(sources, [1.0], 32, 6, seed=seed,  # noqa: E731
                                     augmenter=Augmenter({"case": 1.0, "typos": 1.0}))
    first, again, other = make(1), make(1), make(2)
    batches = [first.next_step(grad_accum=2) for _ in range(3)]
    for step in batches:
        for x, y in step:
            assert x.shape == y.shape == (6, 32)
            assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
            assert int(x.max()) < 256
    assert all(torch.equal(a[0], b[0]) for s, t in zip(batches, [again.next_step(2) for _ in range(3)], strict=True)
               for a, b in zip(s, t, strict=True))
    assert not torch.equal(batches[0][0][0], other.next_step(2)[0][0])
    plain = BatchSampler(sources, [1.0], 32, 6, seed=1).next_step(2)
    assert not torch.equal(batches[0][0][0], plain[0][0])  # the transforms did change the text


def test_augmented_sampler_resumes_exactly_and_splits_over_ranks_like_one_process():
    sources = [byte_array(TEXT)]
    augmenter = Augmenter({"case": 0.5, "layout": 0.5, "typos": 0.5})
    whole = BatchSampler(sources, [1.0], 24, 4, seed=5, augmenter=augmenter)
    expected = [whole.next_step()[0][0] for _ in range(4)]
    resumed = BatchSampler(sources, [1.0], 24, 4, seed=5, augmenter=augmenter)
    resumed.next_step(), resumed.next_step()
    state = resumed.state_dict()
    again = BatchSampler(sources, [1.0], 24, 4, seed=99, augmenter=augmenter)
    again.load_state_dict(state)
    assert torch.equal(again.next_step()[0][0], expected[2]) and torch.equal(again.next_step()[0][0], expected[3])
    ranks = [BatchSampler(sources, [1.0], 24, 2, seed=5, augmenter=augmenter, rank=r, world_size=2) for r in (0, 1)]
    split = [torch.cat([ranks[0].next_step()[0][0], ranks[1].next_step()[0][0]]) for _ in range(4)]
    for a, b in zip(split, expected, strict=True):
        assert torch.equal(a, b)


def test_a_tagged_row_is_its_source_tag_then_contiguous_bytes_of_that_source():
    sources = [byte_array(TEXT), byte_array(bytes(range(65, 91)) * 20)]
    sampler = BatchSampler(sources, [0.5, 0.5], 12, 16, seed=0, tags=[256, 257])
    x, y = sampler.next_step()[0]
    rows = torch.cat([x, y[:, -1:]], dim=1).numpy()  # (B, T+1)
    assert set(rows[:, 0]) == {256, 257}
    for row in rows:
        text = sources[row[0] - 256]
        starts = [s for s in range(len(text) - 11) if np.array_equal(text[s:s + 12], row[1:])]
        assert starts, row


def test_tempered_mixing_sets_the_sampler_weights_from_the_corpora_sizes(tmp_path):
    (tmp_path / "alpha.txt").write_bytes(b"a small corpus of plain words. " * 40)
    (tmp_path / "beta.txt").write_bytes(b"BETA IS A LARGER CORPUS IN CAPITALS. " * 160)
    config = tiny_config(data=str(tmp_path / "alpha.txt"), mix_domains=[str(tmp_path / "beta.txt")],
                         mix_alpha=0.3, cache_dir="")
    run, _, _ = prepare(config, None, None, torch.device("cpu"), Distributed())
    sizes = {"alpha": int(len(b"a small corpus of plain words. ") * 40 * 0.9),
             "beta": int(len(b"BETA IS A LARGER CORPUS IN CAPITALS. ") * 160 * 0.9)}
    expected = tempered_weights(sizes, 0.3)
    assert_close(run.sampler.weights, torch.tensor([expected["alpha"], expected["beta"]], dtype=torch.float64),
                 "forward_float64", "sampler weights")
    assert run.sampler.weights[0] < 0.5  # the smaller domain is drawn less often than with equal weights


# --- domain tags --------------------------------------------------------------------------------


class BigramModel(nn.Module):
    """Logits at position t depend on the token at t only: a tag before w_0 can change nothing but
    the prediction of w_0, which scoring with tags does not count."""

    def __init__(self, vocab_size: int = 258):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx, targets=None):
        return self.table(idx), None  # (B, T, V)


def test_scores_with_and_without_a_tag_cover_the_same_bytes():
    torch.manual_seed(0)
    model = BigramModel()
    windows = torch.randint(0, 256, (5, 17))  # (N, T+1)
    untagged = bits_per_byte_with_tag(model, windows, None, batch_size=2)
    reference = evaluate(ByteLogitsOnly(model), windows[:, :-1], ByteTokenizer(), batch_size=2)  # w_1 .. w_{T-1}
    assert_close(torch.tensor(untagged), torch.tensor(reference.bits_per_byte), "fast_path_float32", "no tag")
    for tag in (256, 257):
        assert_close(torch.tensor(bits_per_byte_with_tag(model, windows, tag, batch_size=3)), torch.tensor(untagged),
                     "fast_path_float32", "a tag changes nothing for a bigram model")


def test_the_tag_logits_are_dropped_before_the_softmax():
    model = BigramModel()
    with torch.no_grad():
        model.table.weight.zero_()
        model.table.weight[:, 256:] = 50.0  # all the mass on the tags: dropped, the bytes are uniform
    windows = torch.randint(0, 256, (3, 9))
    assert_close(torch.tensor(bits_per_byte_with_tag(model, windows, 256)), torch.tensor(8.0),
                 "fast_path_float32", "uniform over 256 bytes")


def test_tag_scores_name_right_none_and_the_mean_of_the_wrong_tags():
    tokenizer = tagged_tokenizer(["a", "b", "c"])
    assert tag_domains(tokenizer) == ["a", "b", "c"] and tag_id(tokenizer, "b") == 257
    torch.manual_seed(1)
    model = BigramModel(259)
    windows = torch.randint(0, 256, (4, 9))
    with torch.no_grad():
        model.table.weight[256:] = 0.0
        model.table.weight[257, 72] = 9.0  # the tag of b predicts a byte: only w_0, which is not scored...
    scores = tag_scores(model, tokenizer, windows, "a")
    assert set(scores["wrong_by_tag"]) == {"b", "c"}
    assert scores["wrong"] == pytest.approx((scores["wrong_by_tag"]["b"] + scores["wrong_by_tag"]["c"]) / 2)
    assert scores["right"] == pytest.approx(scores["none"])
    with pytest.raises(UserError, match="domain tag 'z': this model has tags for a, b, c"):
        tag_scores(model, tokenizer, windows, "z")
    assert tagged_windows(windows, 258)[:, 0].tolist() == [258] * 4
    assert torch.equal(tagged_windows(windows, 258)[:, 1:], windows[:, :-1])


def test_a_tagged_mixed_run_records_its_tags_in_the_checkpoint_and_scores_with_them(tmp_path):
    (tmp_path / "alpha.txt").write_bytes(b"a small corpus of plain words, all lower case. " * 40)
    (tmp_path / "beta.txt").write_bytes(b"BETA IS ANOTHER CORPUS IN CAPITALS. " * 60)
    out = tmp_path / "run"
    result = train(tiny_config(data=str(tmp_path / "alpha.txt"), mix_domains=[str(tmp_path / "beta.txt")],
                               domain_tags=True, cache_dir="", out_dir=str(out), steps=4))
    saved = json.loads(read_checkpoint(out / "ckpt.pt")["tokenizer"])
    assert saved["special_tokens"] == ["<domain:alpha>", "<domain:beta>"]
    model, tokenizer, _ = load_model(out / "ckpt.pt", "cpu")
    assert model.config.vocab_size == 258 and tag_domains(tokenizer) == ["alpha", "beta"]
    windows = torch.from_numpy(byte_array(b"BETA IS ANOTHER CORPUS IN CAPITALS. " * 3)[:68].reshape(4, 17))
    scores = tag_scores(result.model, tokenizer, windows, "beta")
    assert math.isfinite(scores["right"]) and list(scores["wrong_by_tag"]) == ["alpha"]
    assert scores["right"] != scores["wrong"]  # a trained GPT does read its tag


def test_an_augmented_run_resumes_exactly(tmp_path):
    settings = dict(augment=["case=0.5", "typos=0.5", "layout=0.3"], log_interval=1, steps=8)
    whole = train(tiny_config(out_dir=str(tmp_path / "whole"), **settings))
    first = train(tiny_config(out_dir=str(tmp_path / "split"), stop_at_step=4, **settings))
    second = train(tiny_config(out_dir=str(tmp_path / "split"), resume=True, **settings))
    assert first.train_losses + second.train_losses == whole.train_losses  # bit for bit
    plain = train(tiny_config(log_interval=1, steps=8))
    assert plain.train_losses != whole.train_losses  # the augmentation did reach the batches


@pytest.mark.parametrize("flags, message", [
    (["--augment", "case=1.5"], "--augment 'case=1.5': expected a probability in [0, 1], got '1.5'"),
    (["--augment", "upper=0.5"], "--augment 'upper=0.5': unknown transform 'upper'; expected one of case, layout"),
    (["--mix-domains", "bible", "--mix-alpha", "-0.1"], "--mix-alpha: expected a number in [0, 1], got -0.1"),
    (["--mix-domains", "bible", "--mix-alpha", "2"], "--mix-alpha: expected a number in [0, 1], got 2.0"),
    (["--domain-tags"], "--domain-tags: needs a mixture of domains"),
    (["--mix-domains", "bible", "--mix", "legal=0.2"], "--mix-domains: give either --mix"),
    (["--mix-domains", " , "], "--mix-domains: expected corpus names"),
    (["--mix-domains", "bible,bible"], "names a corpus twice"),
    (["--augment", "case=0.5", "--tokenizer", "tok.json"], "--augment: transforms bytes, so it needs the bytes"),
])
def test_bad_remedy_flags_are_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    status, _, err = run_cli(["--preset", "ci-tiny", "--out", str(out), "--no-progress", *flags], capsys)
    assert status == 2 and err.startswith("train.py: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_tagged_tempered_run_resumes_exactly_with_the_tokenizer_of_its_checkpoint(tmp_path):
    (tmp_path / "alpha.txt").write_bytes(b"a small corpus of plain words, all lower case. " * 40)
    (tmp_path / "beta.txt").write_bytes(b"BETA IS ANOTHER CORPUS IN CAPITALS. " * 60)
    settings = dict(data=str(tmp_path / "alpha.txt"), mix_domains=[str(tmp_path / "beta.txt")], mix_alpha=0.7,
                    domain_tags=True, augment=["typos=0.5"], cache_dir="", steps=6, log_interval=1)
    whole = train(tiny_config(out_dir=str(tmp_path / "whole"), **settings))
    first = train(tiny_config(out_dir=str(tmp_path / "split"), stop_at_step=3, **settings))
    second = train(tiny_config(out_dir=str(tmp_path / "split"), resume=True, **settings))
    assert len(whole.train_losses) == 6 and first.train_losses + second.train_losses == whole.train_losses
    assert tag_domains(second.tokenizer) == ["alpha", "beta"]


def test_a_tagged_run_puts_each_domain_tag_before_its_training_and_validation_rows(tmp_path):
    (tmp_path / "alpha.txt").write_bytes(b"a small corpus of plain words, all lower case. " * 40)
    (tmp_path / "beta.txt").write_bytes(b"BETA IS ANOTHER CORPUS IN CAPITALS. " * 60)
    config = tiny_config(data=str(tmp_path / "alpha.txt"), mix_domains=[str(tmp_path / "beta.txt")],
                         domain_tags=True, cache_dir="", batch_size=32)
    run, _, _ = prepare(config, None, None, torch.device("cpu"), Distributed())
    x, _ = run.sampler.next_step()[0]
    for row in x.tolist():
        assert row[0] in (256, 257) and max(row[1:]) < 256
        assert (row[0] == 257) == (bytes(row[1:]).upper() == bytes(row[1:]))  # beta's rows are in capitals
    assert [s.windows[:, 0].unique().tolist() for s in run.eval_sets] == [[256], [257]]
