"""The domain classifier: the pooled mean ignores padding, the head's shape, labelled windows, and a
quick fit on two trivially separable domains."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minilm.classifier import DomainClassifier, FineTuneConfig, accuracy, draw_labelled_windows, fine_tune, masked_mean
from minilm.cli import UserError
from minilm.gpt import GPT, GPTConfig
from minilm.lstm import LSTMLM, LSTMConfig
from tests.tolerances import assert_close

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


def tiny_gpt(seed=0, block_size=16, dtype=torch.float64):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=257, block_size=block_size, n_layer=1, n_head=2, n_embd=16)).to(dtype)


def test_masked_mean_against_a_hand_computed_case():
    h = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [100.0, 100.0]]], dtype=torch.float64)  # (1, 3, 2)
    assert_close(masked_mean(h, torch.tensor([[1, 1, 0]])), [[2.0, 20.0]], "torch_builtin_float64")
    assert_close(masked_mean(h, None), [[104 / 3, 140 / 3]], "torch_builtin_float64")


@pytest.mark.parametrize("causal", [True, False])
def test_padding_changes_nothing(causal):
    """Right padding: whatever the padding tokens are, the logits equal those of the real tokens alone."""
    classifier = DomainClassifier(tiny_gpt(), num_classes=3, causal=causal)
    real = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 5 + [0] * 4])
    with torch.no_grad():
        alone = classifier(real)  # (1, 3)
        for pad in (0, 7, 255):
            padded = torch.cat([real, torch.full((1, 4), pad)], dim=1)  # (1, 9)
            assert_close(classifier(padded, mask), alone, "fast_path_float64")
        unmasked = classifier(torch.cat([real, torch.full((1, 4), 7)], dim=1))
    assert (unmasked - alone).abs().max() > 1e-6  # without the mask the padding would count


def test_head_output_shape_and_which_attention_it_reads():
    lm = tiny_gpt()
    x = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
    assert DomainClassifier(lm, num_classes=5)(x).shape == (4, 5)
    causal = DomainClassifier(lm, 2, causal=True).hidden_states(x)
    both_ways = DomainClassifier(lm, 2, causal=False).hidden_states(x)
    assert causal.shape == (4, 16, 16)
    assert_close(causal[:, -1], both_ways[:, -1], "fast_path_float64")  # the last position sees everything anyway
    assert (causal[:, 0] - both_ways[:, 0]).abs().max() > 1e-6  # the first does not, causally


def test_a_model_without_a_final_layer_norm_is_refused():
    with pytest.raises(UserError, match="GPT"):
        DomainClassifier(LSTMLM(LSTMConfig(vocab_size=256, n_embd=8, n_hidden=8, n_layer=1)), 2)


def splits(sizes):
    """Token i of a split is i // 64: every aligned window of 64 tokens holds its slot number."""
    return {name: (np.arange(size) // 64).astype(np.uint16) for name, size in sizes.items()}


def test_labelled_windows_are_balanced_distinct_aligned_and_fixed_by_the_seed():
    x, labels = draw_labelled_windows(splits({"a": 640, "b": 1000}), per_class=5, window=64, seed=0)
    assert x.shape == (10, 64) and labels.tolist() == [0] * 5 + [1] * 5
    assert (x == x[:, :1]).all()  # aligned: each window is one slot
    assert len(set(x[:5, 0].tolist())) == 5 and len(set(x[5:, 0].tolist())) == 5  # distinct slots
    x_again, _ = draw_labelled_windows(splits({"a": 640, "b": 1000}), per_class=5, window=64, seed=0)
    assert torch.equal(x, x_again)
    x_other, _ = draw_labelled_windows(splits({"a": 640, "b": 1000}), per_class=5, window=64, seed=1)
    assert not torch.equal(x, x_other)
    everything, _ = draw_labelled_windows(splits({"a": 640, "b": 1000}), per_class=10, window=64, seed=0)
    assert everything[:10, 0].tolist() == list(range(10))  # all ten slots of a, in order


@pytest.mark.parametrize("per_class, match", [(0, "positive integer"), (11, "holds only 10 windows")])
def test_bad_label_counts_are_one_line_errors(per_class, match):
    with pytest.raises(UserError, match=match) as info:
        draw_labelled_windows(splits({"a": 640, "b": 1000}), per_class=per_class, window=64, seed=0)
    assert "\n" not in str(info.value) and "--labels-per-class" in str(info.value)


def test_one_domain_is_refused_and_the_config_is_validated():
    with pytest.raises(UserError, match="--domains"):
        draw_labelled_windows(splits({"a": 640}), per_class=1, window=64, seed=0)
    with pytest.raises(UserError, match="--labels-per-class"):
        FineTuneConfig(labels_per_class=0)
    with pytest.raises(UserError, match="--lr"):
        FineTuneConfig(lr=0.0)


def test_fine_tuning_separates_two_trivially_different_domains():
    """Lower-case letters against digits: a few steps on 8 labels per class reach >= 95% held out."""
    rng = np.random.default_rng(0)
    letters = rng.integers(ord("a"), ord("z") + 1, size=2000).astype(np.uint16)
    digits = rng.integers(ord("0"), ord("9") + 1, size=2000).astype(np.uint16)
    train = {"letters": letters[:1500], "digits": digits[:1500]}
    val = {"letters": letters[1500:], "digits": digits[1500:]}
    x, labels = draw_labelled_windows(train, per_class=8, window=16, seed=0)
    held_x, held_labels = draw_labelled_windows(val, per_class=30, window=16, seed=1234, what="validation split")
    classifier = DomainClassifier(tiny_gpt(dtype=torch.float32), num_classes=2)
    before = accuracy(classifier, held_x, held_labels)
    losses = fine_tune(classifier, x, labels, steps=30, lr=1e-2, batch_size=16, seed=0)
    assert losses[-1] < losses[0]
    after = accuracy(classifier, held_x, held_labels)
    assert after >= 0.95, (before, after)
