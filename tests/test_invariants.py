"""Properties a reader can check by thinking, tested on the PyTorch layers and the NumPy twins.

Each test states one fact about the model that follows from its equations (causality, softmax
rows, RoPE geometry, permutation symmetry, the loss at init, padding) and checks it on random
inputs. None compares two implementations: these would catch a mistake made the same way in both.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    attention_cases,
    examples,
    gpt_configs,
    random_params,
    seeds,
    torch_grads,
)
from tolerances import TOL, assert_close, max_error

from minilm import GPT, GPTConfig, layers
from minilm import reference as ref


def randn(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


def logits_of(model, idx, mask=None):
    with torch.no_grad():
        return model(torch.tensor(idx), attention_mask=None if mask is None else torch.tensor(mask))[0]


# ---------------------------------------------------------------------------------------------
# causality
# ---------------------------------------------------------------------------------------------

@examples(20)
@given(config=gpt_configs(), data=st.data(), seed=seeds)
def test_causality(config, data, seed):
    """Changing the tokens after position t leaves the logits at positions <= t unchanged, in the
    model (both attention paths, as drawn by the config) and in the twin."""
    T = data.draw(st.integers(1, config.block_size))
    t = data.draw(st.integers(0, T - 1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, T))
    changed = idx.copy()
    changed[:, t + 1:] = rng.integers(0, config.vocab_size, size=(2, T - t - 1))
    model = GPT(config).double()
    p = random_params(model, seed)
    assert_close(logits_of(model, changed)[:, :t + 1], logits_of(model, idx)[:, :t + 1],
                 "forward_float64", "model logits up to t")
    twin = lambda i: ref.gpt_forward(i, p, config)[0][:, :t + 1]
    assert_close(twin(changed), twin(idx), "forward_float64", "twin logits up to t")


# ---------------------------------------------------------------------------------------------
# softmax weights
# ---------------------------------------------------------------------------------------------

@examples(20)
@given(case=attention_cases(), seed=seeds)
def test_attention_rows_sum_to_one_and_masked_weights_are_zero(case, seed):
    """Each query's weights over the keys form a distribution, and a key it may not see gets
    weight exactly 0 (exp(-inf) = 0, not merely small). Checked on the twin's cached weights and
    on the readable PyTorch path's `attention_weights`."""
    allowed = np.broadcast_to(ref.allowed_keys(case.T, case.mask), (case.B, case.nh, case.T, case.T))
    q, k = randn(seed, case.B, case.nh, case.T, case.hs), randn(seed + 1, case.B, case.nh, case.T, case.hs)
    allowed_t = layers.allowed_keys(case.T, None if case.mask is None else torch.tensor(case.mask), "cpu")
    assert np.array_equal(np.broadcast_to(allowed_t.numpy(), allowed.shape), allowed), "allowed-keys rule"
    att_torch = layers.attention_weights(torch.tensor(q), torch.tensor(k), allowed_t).numpy()
    _, (_, _, _, att_twin, _) = ref.attention_forward(q, k, randn(seed + 2, *q.shape), allowed)
    for att, who in [(att_twin, "twin"), (att_torch, "torch readable")]:
        assert_close(att.sum(axis=-1), np.ones(att.shape[:-1]), "forward_float64", f"{who} row sums")
        assert np.all(att[~allowed] == 0.0), f"{who}: a masked key got nonzero weight"
        assert np.all(att[allowed] > 0.0), f"{who}: an allowed key got zero weight"


@examples(15)
@given(case=attention_cases(), seed=seeds)
def test_identical_keys_give_the_mean_of_the_values(case, seed):
    """If every key is the same vector, every score in a row is equal, softmax is uniform over
    the allowed keys, and the output is the plain average of the values a query may see."""
    rng = np.random.default_rng(seed)
    q, v = rng.standard_normal((2, case.B, case.nh, case.T, case.hs))
    k = np.broadcast_to(rng.standard_normal((case.B, case.nh, 1, case.hs)), q.shape).copy()
    allowed = np.broadcast_to(ref.allowed_keys(case.T, case.mask), (case.B, case.nh, case.T, case.T))
    expected = (allowed @ v) / allowed.sum(axis=-1, keepdims=True)  # mean of the visible values
    y_twin, _ = ref.attention_forward(q, k, v, allowed)
    assert_close(y_twin, expected, "forward_float64", "twin")
    module = layers.SelfAttention(case.C, case.nh).double()
    allowed_t = layers.allowed_keys(case.T, None if case.mask is None else torch.tensor(case.mask), "cpu")
    qt, kt, vt = torch.tensor(q), torch.tensor(k), torch.tensor(v)
    assert_close(layers.attention(qt, kt, vt, allowed_t), expected, "forward_float64", "readable")
    mask_t = None if case.mask is None else torch.tensor(case.mask)
    fast = module.fused_attention(qt, kt, vt, allowed_t, mask_t, causal=True)
    assert_close(fast, expected, "forward_float64", "fast")


# ---------------------------------------------------------------------------------------------
# RoPE geometry
# ---------------------------------------------------------------------------------------------

@examples(20)
@given(hs=st.integers(1, 4).map(lambda h: 2 * h), s=st.integers(0, 60), t=st.integers(0, 60),
       shift=st.integers(0, 60), seed=seeds)
def test_rope_preserves_norms_and_scores_depend_on_offset_only(hs, s, t, shift, seed):
    """RoPE rotates pairs of channels, so |rope(x, t)| = |x|; and rope(q, s) . rope(k, t) equals
    rope(q, s + d) . rope(k, t + d) for any shift d: scores only see the offset s - t."""
    q, k = randn(seed, 1, 1, 1, hs), randn(seed + 1, 1, 1, 1, hs)

    def rotate_torch(x, position):
        cos, sin = layers.rope_cos_sin(torch.tensor([position]), hs)
        return layers.apply_rope(torch.tensor(x), cos, sin).numpy()

    def rotate_twin(x, position):
        return ref.apply_rope_forward(x, *ref.rope_cos_sin(np.array([position]), hs))[0]

    for rotate, who in [(rotate_torch, "torch"), (rotate_twin, "twin")]:
        assert_close(np.linalg.norm(rotate(q, s)), np.linalg.norm(q), "forward_float64", f"{who} norm")
        score = float(np.sum(rotate(q, s) * rotate(k, t)))
        shifted = float(np.sum(rotate(q, s + shift) * rotate(k, t + shift)))
        assert_close(shifted, score, "forward_float64", f"{who} score after shifting both positions")


# ---------------------------------------------------------------------------------------------
# permutation symmetry without positions
# ---------------------------------------------------------------------------------------------

@examples(15)
@given(case=attention_cases(rope=False, masked=False), seed=seeds)
def test_bidirectional_attention_is_permutation_equivariant(case, seed):
    """Without positions and without a mask, attention treats its inputs as a set: permuting the
    positions of x permutes the outputs the same way, Attn(x[perm]) = Attn(x)[perm]. (Each output
    is a weighted sum over all positions, and the weights depend only on the vectors.)

    The causal mask breaks this on purpose (it singles out an order), so the property is stated for
    bidirectional attention: the twin and both PyTorch paths with causal=False."""
    perm = np.random.default_rng(seed).permutation(case.T)
    x = randn(seed, case.B, case.T, case.C)
    module = layers.SelfAttention(case.C, case.nh, bias=case.bias).double()
    p = random_params(module, seed)
    y, _ = ref.self_attention_forward(x, p, case.nh, causal=False)
    y_perm, _ = ref.self_attention_forward(x[:, perm], p, case.nh, causal=False)
    assert_close(y_perm, y[:, perm], "forward_float64", "twin")

    for fused in (False, True):
        module.fused = fused
        with torch.no_grad():
            y_t = module(torch.tensor(x), torch.arange(case.T), causal=False)
            y_t_perm = module(torch.tensor(x[:, perm]), torch.arange(case.T), causal=False)
        assert_close(y_t_perm, y_t[:, perm], "forward_float64", f"torch (fused={fused})")


@examples(10)
@given(config=gpt_configs(), data=st.data(), seed=seeds)
def test_a_future_token_changes_earlier_outputs_only_when_bidirectional(config, data, seed):
    """Change the last token of a text. Causal (GPT): the logits before it stay exactly as they
    were. Bidirectional (causal=False, BERT): every earlier position sees the change, in the model
    (both kernel paths, as drawn by the config) and in the twin. Heads 4 wide: layer norm maps a
    1-wide vector to 0 and a 2-wide one to +-1, which could hide a changed token."""
    config = GPTConfig(**{**config.to_dict(), "block_size": max(config.block_size, 2), "n_embd": 4 * config.n_head})
    T = data.draw(st.integers(2, config.block_size))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, T))
    changed = idx.copy()
    changed[:, -1] = (idx[:, -1] + 1) % config.vocab_size  # a different token at the last position
    model = GPT(config).double()
    p = random_params(model, seed)

    def model_logits(i, causal):
        with torch.no_grad():
            return model(torch.tensor(i), causal=causal)[0][:, :-1]  # (B, T-1, V)

    def twin_logits(i, causal):
        return ref.gpt_forward(i, p, config, causal=causal)[0][:, :-1]  # (B, T-1, V)

    for logits, who in [(model_logits, "model"), (twin_logits, "twin")]:
        assert_close(logits(changed, True), logits(idx, True), "forward_float64", f"{who}, causal")
        for b in range(2):  # every earlier position of every row moves
            moved = [max_error(logits(changed, False)[b, t], logits(idx, False)[b, t]) for t in range(T - 1)]
            assert min(moved) > 1e3 * TOL["forward_float64"], f"{who}, bidirectional: row {b} moved by {moved}"


@examples(10)
@given(config=gpt_configs(n_layer=1, pos_emb="none"), data=st.data(), seed=seeds)
def test_without_positions_the_last_output_ignores_the_order_of_the_prefix(config, data, seed):
    """The causal model with pos_emb="none" and one layer: the logits at the last position are
    the same for any order of the tokens before it. The last query attends over the set of all
    positions (a sum, blind to order) and everything else acts position by position.

    With two or more layers this fails in general: the earlier positions' states feed the second
    layer, and each of those depends on its own prefix, which the permutation changes. With
    learned positions it fails too (checked below on the same tokens, so the test is not empty)."""
    T = data.draw(st.integers(2, config.block_size)) if config.block_size >= 2 else 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, T))
    shuffled = idx.copy()
    shuffled[:, :-1] = idx[:, rng.permutation(T - 1)]
    model = GPT(config).double()
    random_params(model, seed)
    assert_close(logits_of(model, shuffled)[:, -1], logits_of(model, idx)[:, -1], "forward_float64", "last logits")


def test_learned_positions_do_see_the_order():
    """The counterpart of the test above: with positions, reordering the prefix changes the output."""
    config = GPTConfig(vocab_size=7, block_size=6, n_layer=1, n_head=2, n_embd=8, pos_emb="learned")
    model = GPT(config).double()
    random_params(model, 0)
    idx = np.array([[1, 2, 3, 4, 5, 6]])
    shuffled = np.array([[3, 1, 2, 5, 4, 6]])
    err = max_error(logits_of(model, shuffled)[:, -1], logits_of(model, idx)[:, -1])
    assert err > 1e3 * TOL["forward_float64"], "learned positions should make the order matter"


# ---------------------------------------------------------------------------------------------
# the loss at initialisation
# ---------------------------------------------------------------------------------------------

@examples(4)
@given(pos_emb=st.sampled_from(["learned", "sinusoidal", "rope", "none"]), tie=st.booleans(), seed=seeds)
def test_loss_at_init_is_close_to_log_vocab(pos_emb, tie, seed):
    """At GPT-2 init the logits are nearly equal, the prediction nearly uniform, and the loss is
    about ln V. Targets are random tokens, not the inputs: with tied weights the logit of the
    input token is wte[x] . LN(wte[x] + ...), biased upward, so target = input would read low."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=32, pos_emb=pos_emb,
                       tie_weights=tie)
    model = GPT(config)
    idx = torch.randint(0, 256, (4, 64))
    targets = torch.randint(0, 256, (4, 64))
    with torch.no_grad():
        _, loss = model(idx, targets)
    assert_close(loss.item(), math.log(256), "init_loss", "loss at init")


# ---------------------------------------------------------------------------------------------
# layer norm symmetry
# ---------------------------------------------------------------------------------------------

@examples(20)
@given(B=st.integers(1, 3), T=st.integers(1, 4), C=st.integers(2, 9), shift=st.floats(-10, 10),
       scale=st.floats(0.1, 10), seed=seeds)
def test_layernorm_ignores_shift_and_scale(B, T, C, shift, scale, seed):
    """LN(x + b) = LN(x) for any constant b added to a row, since the mean removes it. And
    LN(a x) = LN(x) for a > 0, exactly so once eps is scaled with the variance:
    (a x - a mu) / sqrt(a^2 var + a^2 eps) = (x - mu) / sqrt(var + eps)."""
    x = randn(seed, B, T, C)
    for eps in (1e-5, 0.1):
        ln, ln_scaled = layers.LayerNorm(C, eps=eps).double(), layers.LayerNorm(C, eps=scale ** 2 * eps).double()
        p = random_params(ln, seed)
        ln_scaled.load_state_dict(ln.state_dict())
        xt = torch.tensor(x)
        with torch.no_grad():
            base = ln(xt)
            assert_close(ln(xt + shift), base, "forward_float64", "torch LN shifted")
            assert_close(ln_scaled(scale * xt), base, "forward_float64", "torch LN scaled")
        twin_base = ref.layer_norm_forward(x, p, eps)[0]
        assert_close(ref.layer_norm_forward(x + shift, p, eps)[0], twin_base, "forward_float64", "twin shifted")
        assert_close(ref.layer_norm_forward(scale * x, p, scale ** 2 * eps)[0], twin_base, "forward_float64",
                     "twin scaled")


# ---------------------------------------------------------------------------------------------
# padding
# ---------------------------------------------------------------------------------------------

@examples(15)
@given(config=gpt_configs(max_block=8), data=st.data(), seed=seeds)
def test_right_padding_does_not_change_real_positions(config, data, seed):
    """Appending padding after the real tokens (masked out) leaves the logits at the real positions
    unchanged, for every position scheme: causality already hides later keys, and positions of
    the real tokens do not move."""
    if config.block_size < 2:
        config = GPTConfig(**{**config.to_dict(), "block_size": 2})
    T = data.draw(st.integers(1, config.block_size - 1))
    n_pad = data.draw(st.integers(1, config.block_size - T))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, T))
    padded = np.concatenate([idx, rng.integers(0, config.vocab_size, size=(2, n_pad))], axis=1)
    mask = np.concatenate([np.ones((2, T), bool), np.zeros((2, n_pad), bool)], axis=1)
    model = GPT(config).double()
    p = random_params(model, seed)
    assert_close(logits_of(model, padded, mask)[:, :T], logits_of(model, idx), "forward_float64", "model")
    twin_padded = ref.gpt_forward(padded, p, config, attention_mask=mask)[0][:, :T]
    assert_close(twin_padded, ref.gpt_forward(idx, p, config)[0], "forward_float64", "twin")


@examples(15)
@given(config=gpt_configs(max_block=8, pos_emb="rope") | gpt_configs(max_block=8, pos_emb="none"),
       data=st.data(), seed=seeds)
def test_left_padding_with_mask_does_not_change_real_positions(config, data, seed):
    """Left padding moves the real tokens to later positions. With RoPE the scores depend only on
    offsets, and without positions not at all, so once the mask hides the padded keys the logits
    at the real positions equal those of the unpadded sequence. (Learned or sinusoidal absolute
    positions would change: this property is specific to relative and absent positions.)"""
    if config.block_size < 2:
        config = GPTConfig(**{**config.to_dict(), "block_size": 2})
    T = data.draw(st.integers(1, config.block_size - 1))
    n_pad = data.draw(st.lists(st.integers(1, config.block_size - T), min_size=2, max_size=2))
    width = T + max(n_pad)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(2, T))
    padded = rng.integers(0, config.vocab_size, size=(2, width))  # junk under the padding
    mask = np.zeros((2, width), bool)
    for b in range(2):  # row b: width - T padded slots, then the real tokens
        padded[b, width - T:] = idx[b]
        mask[b, width - T:] = True
    model = GPT(config).double()
    p = random_params(model, seed)
    assert_close(logits_of(model, padded, mask)[:, -T:], logits_of(model, idx), "forward_float64", "model")
    twin_padded = ref.gpt_forward(padded, p, config, attention_mask=mask)[0][:, -T:]
    assert_close(twin_padded, ref.gpt_forward(idx, p, config)[0], "forward_float64", "twin")


# ---------------------------------------------------------------------------------------------
# weight tying
# ---------------------------------------------------------------------------------------------

def test_tied_gradient_is_the_sum_of_both_uses():
    """An untied model holding the same matrix in wte and lm_head computes the same function;
    the tied model's one gradient equals the sum of the untied model's two."""
    base = dict(vocab_size=9, block_size=5, n_layer=1, n_head=2, n_embd=8)
    tied, untied = GPT(GPTConfig(**base, tie_weights=True)).double(), GPT(GPTConfig(**base, tie_weights=False)).double()
    p = random_params(tied, 0)
    ref.params_to_torch(untied, p)
    rng = np.random.default_rng(0)
    idx, targets = torch.tensor(rng.integers(0, 9, (2, 5))), torch.tensor(rng.integers(0, 9, (2, 5)))
    for model in (tied, untied):
        logits, _ = model(idx)
        torch.nn.functional.cross_entropy(logits.view(-1, 9), targets.view(-1)).backward()
    g_tied, g_untied = torch_grads(tied), torch_grads(untied)
    assert_close(g_tied["wte.weight"], g_untied["wte.weight"] + g_untied["lm_head.weight"], "grad_float64",
                 "tied gradient")
