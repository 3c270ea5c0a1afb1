"""The LSTM / Elman RNN language model (minilm/lstm.py) against its NumPy twin
(minilm/reference/lstm.py), against torch.nn.LSTM / nn.RNN, and against itself (carried state).

Weights are redrawn at random (not the initial ones: the forget bias of 1 and the tiny embedding
would hide mistakes), and every test also feeds a random initial state, so that every parameter
and every state entry matters.
"""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st
from strategies import central_differences
from strategies_lstm import examples, lstm_configs, seeds, stack_cases
from tolerances import assert_close

from minilm.lstm import LSTMLM, LSTMCell, LSTMConfig, RecurrentStack, RNNCell
from minilm.reference import lstm as ref
from minilm.reference.loss import cross_entropy_backward, cross_entropy_forward
from minilm.reference.params import params_from_torch

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def randomize(module: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Overwrite every parameter with N(0, scale^2) draws from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=torch.float64))
    return module


def make_stack(case, dtype=torch.float64) -> RecurrentStack:
    torch.manual_seed(case.seed)
    stack = RecurrentStack(case.In, case.H, case.L, dropout=0.0, cell=case.cell)
    return randomize(stack, case.seed).to(dtype).eval()


def stack_inputs(case):
    """x (B, T, In) and a random initial state (tuple of (L, B, H)) as float64 arrays."""
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal((case.B, case.T, case.In))
    state = tuple(rng.standard_normal((case.L, case.B, case.H)) for _ in range(case.num_states))
    return x, state


def make_lm(config: LSTMConfig, seed: int) -> LSTMLM:
    torch.manual_seed(seed)
    return randomize(LSTMLM(config), seed).double().eval()


def lm_inputs(config: LSTMConfig, B: int, T: int, seed: int):
    """idx (B, T), targets (B, T) with some -1 (at least one counted), a random initial state."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(-1, config.vocab_size, size=(B, T))
    targets[0, -1] = rng.integers(0, config.vocab_size)
    n_states = 2 if config.cell == "lstm" else 1
    state = tuple(rng.standard_normal((config.n_layer, B, config.n_hidden)) for _ in range(n_states))
    return idx, targets, state


def as_tensors(arrays, requires_grad: bool = False, dtype=torch.float64):
    return tuple(torch.tensor(a, dtype=dtype, requires_grad=requires_grad) for a in arrays)


# ----------------------------------------------------------------------------------------------
# float64: PyTorch vs the NumPy twin
# ----------------------------------------------------------------------------------------------


@examples(30)
@given(case=stack_cases())
def test_stack_forward_and_bptt_match_twin(case):
    """Outputs and final state to 1e-10; autograd vs hand-written BPTT to 1e-8 for the input,
    the initial state and every parameter. The loss uses both y and the final state, so that
    the gradient arriving at the final state (dstate) is exercised too."""
    stack = make_stack(case)
    x, state0 = stack_inputs(case)
    p = params_from_torch(stack)
    y_ref, state_ref, cache = ref.recurrent_stack_forward(x, p, state0, case.cell)

    x_t = torch.tensor(x, requires_grad=True)
    state0_t = as_tensors(state0, requires_grad=True)
    y, state = stack(x_t, state0_t)
    assert_close(y, y_ref, "forward_float64", "y")
    for name, s, s_ref in zip(("h", "c"), state, state_ref, strict=False):
        assert_close(s, s_ref, "forward_float64", f"final {name}")

    rng = np.random.default_rng(case.seed + 1)
    dy = rng.standard_normal(y_ref.shape)  # (B, T, H)
    dstate = tuple(rng.standard_normal(s.shape) for s in state_ref)  # each (L, B, H)
    loss = (y * torch.tensor(dy)).sum() + sum((s * torch.tensor(d)).sum() for s, d in zip(state, dstate, strict=True))
    loss.backward()
    dx_ref, dstate0_ref, dp_ref = ref.recurrent_stack_backward(dy, dstate, cache)
    assert_close(x_t.grad, dx_ref, "grad_float64", "dx")
    for name, s, d_ref in zip(("h0", "c0"), state0_t, dstate0_ref, strict=False):
        assert_close(s.grad, d_ref, "grad_float64", f"d {name}")
    grads = dict(stack.named_parameters())
    assert set(grads) == set(dp_ref)
    for name, param in grads.items():
        assert_close(param.grad, dp_ref[name], "grad_float64", f"d {name}")


@examples(30)
@given(config=lstm_configs(), B=st.integers(1, 3), T=st.integers(1, 6), seed=seeds)
def test_lm_matches_twin(config, B, T, seed):
    """The whole model (embedding, stack, projection / tied / untied head, cross-entropy with -1
    targets) from a random initial state: logits, loss, final state; every parameter's gradient."""
    model = make_lm(config, seed)
    idx, targets, state0 = lm_inputs(config, B, T, seed)
    p = params_from_torch(model)
    logits_ref, state_ref, cache = ref.lstm_lm_forward(idx, p, state0, config.cell)
    loss_ref, loss_cache = cross_entropy_forward(logits_ref, targets)

    logits, loss, state = model.forward_with_state(torch.tensor(idx), torch.tensor(targets), as_tensors(state0))
    assert_close(logits, logits_ref, "forward_float64", "logits")
    assert_close(loss, loss_ref, "forward_float64", "loss")
    for s, s_ref in zip(state, state_ref, strict=True):
        assert_close(s, s_ref, "forward_float64", "final state")

    loss.backward()
    dlogits, _ = cross_entropy_backward(1.0, loss_cache)
    _, dp_ref = ref.lstm_lm_backward(dlogits, cache)
    grads = dict(model.named_parameters())
    assert set(grads) == set(dp_ref) == set(p)
    for name, param in grads.items():
        assert_close(param.grad, dp_ref[name], "grad_float64", f"d {name}")


# ----------------------------------------------------------------------------------------------
# the NumPy BPTT against finite differences (no PyTorch involved)
# ----------------------------------------------------------------------------------------------


def central_difference(f, array: np.ndarray) -> np.ndarray:
    """d f / d array by central differences (the shared helper in tests/strategies.py)."""
    return central_differences(f, {"a": array})["a"]


@examples(12)
@given(case=stack_cases(max_B=2, max_T=3, max_width=3, max_layers=2))
def test_stack_bptt_matches_finite_differences(case):
    """Every entry of dx, d(initial state) and dp against central differences of a scalar that
    uses the outputs and the final state."""
    stack = make_stack(case)
    x, state0 = stack_inputs(case)
    state0 = tuple(s.copy() for s in state0)
    p = params_from_torch(stack)
    rng = np.random.default_rng(case.seed + 2)
    dy = rng.standard_normal((case.B, case.T, case.H))
    dstate = tuple(rng.standard_normal((case.L, case.B, case.H)) for _ in state0)

    def scalar():
        y, state, _ = ref.recurrent_stack_forward(x, p, state0, case.cell)
        return (y * dy).sum() + sum((s * d).sum() for s, d in zip(state, dstate, strict=True))

    _, _, cache = ref.recurrent_stack_forward(x, p, state0, case.cell)
    dx, dstate0, dp = ref.recurrent_stack_backward(dy, dstate, cache)
    assert_close(dx, central_difference(scalar, x), "finite_difference", "dx")
    for s, d in zip(state0, dstate0, strict=True):
        assert_close(d, central_difference(scalar, s), "finite_difference", "d initial state")
    for name in p:
        assert_close(dp[name], central_difference(scalar, p[name]), "finite_difference", f"d {name}")


@examples(8)
@given(config=lstm_configs(max_vocab=5, max_width=3, max_layers=2), T=st.integers(1, 3), seed=seeds)
def test_lm_backward_matches_finite_differences(config, T, seed):
    """The LM's loss gradient for every parameter (tied embedding: both uses summed)."""
    model = make_lm(config, seed)
    idx, targets, state0 = lm_inputs(config, 2, T, seed)
    p = params_from_torch(model)

    def loss():
        logits, _, _ = ref.lstm_lm_forward(idx, p, state0, config.cell)
        return cross_entropy_forward(logits, targets)[0]

    logits, _, cache = ref.lstm_lm_forward(idx, p, state0, config.cell)
    _, loss_cache = cross_entropy_forward(logits, targets)
    _, dp = ref.lstm_lm_backward(cross_entropy_backward(1.0, loss_cache)[0], cache)
    for name in p:
        assert_close(dp[name], central_difference(loss, p[name]), "finite_difference", f"d {name}")


# ----------------------------------------------------------------------------------------------
# parity with torch.nn.LSTM / torch.nn.RNN (float32, weights copied in)
# ----------------------------------------------------------------------------------------------


def torch_builtin_copy(stack: RecurrentStack) -> nn.Module:
    """An nn.LSTM / nn.RNN (batch_first) holding our weights: our single bias goes to bias_ih,
    bias_hh = 0 (the built-ins add the two)."""
    Builtin = nn.LSTM if stack.cell == "lstm" else nn.RNN
    builtin = Builtin(stack.input_size, stack.hidden_size, stack.num_layers, batch_first=True)
    with torch.no_grad():
        for layer, cell in enumerate(stack.layers):
            getattr(builtin, f"weight_ih_l{layer}").copy_(cell.weight_ih)
            getattr(builtin, f"weight_hh_l{layer}").copy_(cell.weight_hh)
            getattr(builtin, f"bias_ih_l{layer}").copy_(cell.bias)
            getattr(builtin, f"bias_hh_l{layer}").zero_()
    return builtin.to(next(stack.parameters()).dtype)


@examples(30)
@given(case=stack_cases(max_B=4, max_T=12, max_width=16))
def test_matches_torch_builtin_float32(case):
    """Outputs and final (h, c) agree with nn.LSTM (nn.RNN for the Elman cell) to 1e-6 in float32,
    for 1-3 layers, batch-first input, from zeros and from a given state."""
    stack = make_stack(case, dtype=torch.float32)
    builtin = torch_builtin_copy(stack)
    x, state0 = stack_inputs(case)
    x = torch.tensor(x, dtype=torch.float32)
    state0 = as_tensors(state0, dtype=torch.float32)
    with torch.no_grad():
        for start in (None, state0):
            y, state = stack(x, start)
            if case.cell == "lstm":
                y_builtin, state_builtin = builtin(x, start)  # state (h, c)
            else:
                y_builtin, h_builtin = builtin(x, None if start is None else start[0])
                state_builtin = (h_builtin,)
            assert_close(y, y_builtin, "lstm_parity_float32", "y vs torch built-in")
            for name, s, s_builtin in zip(("h", "c"), state, state_builtin, strict=False):
                assert_close(s, s_builtin, "lstm_parity_float32", f"final {name} vs torch built-in")


# ----------------------------------------------------------------------------------------------
# generation: carried state == one full forward
# ----------------------------------------------------------------------------------------------


@examples(20)
@given(config=lstm_configs(), B=st.integers(1, 3), T=st.integers(1, 8), split=st.integers(0, 8), seed=seeds)
def test_step_with_carried_state_matches_full_forward(config, B, T, split, seed):
    """step(prompt) then step(one token, state) ... gives the logits of forward(whole sequence);
    so does one chunk then another."""
    model = make_lm(config, seed)
    idx, _, _ = lm_inputs(config, B, T, seed)
    idx = torch.tensor(idx)
    with torch.no_grad():
        full, _ = model(idx)  # (B, T, V)
        k = 1 + split % T  # prompt length 1..T
        logits, state = model.step(idx[:, :k])
        pieces = [logits]
        for t in range(k, T):  # the generation loop, one token at a time
            logits, state = model.step(idx[:, t:t + 1], state)
            pieces.append(logits)
        stepped = torch.cat(pieces, dim=1)  # (B, T, V)
        _, _, full_state = model.forward_with_state(idx)
    assert_close(stepped, full, "forward_float64", "logits step by step vs full forward")
    for s, s_full in zip(state, full_state, strict=True):
        assert_close(s, s_full, "forward_float64", "carried state vs full forward")


# ----------------------------------------------------------------------------------------------
# construction details
# ----------------------------------------------------------------------------------------------


def test_gate_layout_and_forget_bias():
    """Rows stacked i, f, g, o like nn.LSTM; forget bias 1; the rest uniform in +-1/sqrt(H)."""
    H, In = 5, 3
    cell = LSTMCell(In, H)
    assert cell.weight_ih.shape == (4 * H, In) and cell.weight_hh.shape == (4 * H, H)
    assert cell.bias.shape == (4 * H,)
    assert torch.equal(cell.bias[H:2 * H], torch.ones(H))
    bound = 1 / H**0.5
    others = torch.cat([cell.bias[:H], cell.bias[2 * H:], cell.weight_ih.flatten(), cell.weight_hh.flatten()])
    assert others.abs().max() <= bound and others.std() > 0
    rnn = RNNCell(In, H)
    assert rnn.weight_ih.shape == (H, In) and rnn.weight_hh.shape == (H, H) and rnn.bias.shape == (H,)


def test_lstm_cell_equations_on_one_step():
    """One step by hand from the equations in the docstring, gate by gate."""
    torch.manual_seed(0)
    cell = randomize(LSTMCell(3, 2), 0).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    h, c = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    W_ih, W_hh, b = cell.weight_ih, cell.weight_hh, cell.bias
    gate = lambda k: x @ W_ih[2 * k:2 * k + 2].T + h @ W_hh[2 * k:2 * k + 2].T + b[2 * k:2 * k + 2]  # noqa: E731
    i, f, g, o = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), torch.tanh(gate(2)), torch.sigmoid(gate(3))
    c_expected = f * c + i * g
    h_expected = o * torch.tanh(c_expected)
    h_new, c_new = cell(cell.project_inputs(x[:, None])[:, 0], (h, c))
    assert_close(h_new, h_expected, "forward_float64", "h")
    assert_close(c_new, c_expected, "forward_float64", "c")


def test_dropout_only_between_layers():
    """In training mode a 1-layer stack ignores its dropout (nothing between layers); a 2-layer
    stack does not; eval mode turns it off."""
    x = torch.randn(2, 4, 3)
    one = RecurrentStack(3, 5, num_layers=1, dropout=0.5).train()
    assert torch.equal(one(x)[0], one(x)[0])
    torch.manual_seed(0)
    two = RecurrentStack(3, 5, num_layers=2, dropout=0.5).train()
    assert not torch.equal(two(x)[0], two(x)[0])
    two.eval()
    assert torch.equal(two(x)[0], two(x)[0])


@pytest.mark.parametrize("tie, E, H", [(True, 6, 6), (True, 4, 6), (False, 4, 6)])
def test_params_tying_and_groups(tie, E, H):
    """Tied: no head, a projection only when H != E, the shared matrix counted once. AdamW groups:
    decay exactly the weight matrices, never biases or the embedding; every parameter once."""
    model = LSTMLM(LSTMConfig(vocab_size=11, n_embd=E, n_hidden=H, n_layer=2, tie_weights=tie))
    names = set(model.state_dict())
    assert ("head.weight" in names) == (not tie)
    assert ("proj.weight" in names) == (tie and H != E)
    expected = 11 * E + (11 * H if not tie else 0) + (E * H if tie and H != E else 0)
    expected += (4 * H * E + 4 * H * H + 4 * H) + (4 * H * H + 4 * H * H + 4 * H)
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - 11 * E
    groups = model.param_groups(0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    named = dict(model.named_parameters())
    matrices = ("weight_ih", "weight_hh", "proj.weight", "head.weight")
    assert decayed == {id(p) for n, p in named.items() if n.endswith(matrices)}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in model.parameters())


def test_config_round_trip():
    config = LSTMConfig(vocab_size=7, n_embd=3, n_hidden=4, n_layer=3, dropout=0.25, cell="rnn", tie_weights=False)
    assert LSTMConfig.from_dict(config.to_dict()) == config


def test_training_reduces_loss():
    """A few AdamW steps memorise a short repeating sequence (the whole pipeline learns)."""
    torch.manual_seed(0)
    model = LSTMLM(LSTMConfig(vocab_size=8, n_embd=8, n_hidden=16, n_layer=2))
    data = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7] * 3])  # (1, 24)
    optimizer = torch.optim.AdamW(model.param_groups(0.0), lr=3e-2)
    losses = []
    for _ in range(25):
        _, loss = model(data[:, :-1], data[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


def test_no_torch_recurrent_modules_in_minilm():
    """The package builds its recurrences from tensor ops: no nn.LSTM / nn.RNN / torch.lstm / _VF
    in the code of minilm/ (the AST, so docstrings may still name them), and none in a model."""
    builtins = {"LSTM", "LSTMCell", "RNN", "RNNCell", "RNNBase", "GRU", "GRUCell", "lstm", "lstm_cell",
                "rnn_tanh", "rnn_tanh_cell", "gru"}
    package = pathlib.Path(__file__).resolve().parents[1] / "minilm"
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in ("nn", "torch", "_VF") and node.attr in builtins:
                offenders.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torch") \
                    and any(alias.name in builtins | {"_VF"} for alias in node.names):
                offenders.append(f"{path.name}:{node.lineno} from {node.module} import ...")
    assert offenders == []
    for cell in ("lstm", "rnn"):
        model = LSTMLM(LSTMConfig(vocab_size=5, n_embd=3, n_hidden=4, n_layer=2, cell=cell))
        assert not any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in model.modules())


# ----------------------------------------------------------------------------------------------
# bad input: clear errors that name the argument
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("vocab_size", 0), ("vocab_size", 2.5), ("n_embd", -1), ("n_hidden", 0), ("n_layer", 0),
    ("n_layer", True), ("dropout", 1.0), ("dropout", -0.1), ("dropout", "0.1"), ("cell", "gru"),
    ("tie_weights", 1),
])
def test_bad_config_field_is_named(field, value):
    with pytest.raises(ValueError, match=rf"LSTMConfig\.{field}"):
        LSTMConfig(**{field: value})


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="unknown field.*n_head"):
        LSTMConfig.from_dict({**LSTMConfig().to_dict(), "n_head": 4})


@pytest.fixture(scope="module")
def small_lms():
    torch.manual_seed(0)
    return {cell: LSTMLM(LSTMConfig(vocab_size=10, n_embd=4, n_hidden=5, n_layer=2, cell=cell))
            for cell in ("lstm", "rnn")}


@pytest.mark.parametrize("idx, match", [
    (torch.zeros(2, 0, dtype=torch.long), r"idx must have shape \(B, T\) with T >= 1"),
    (torch.zeros(3, dtype=torch.long), r"idx must have shape \(B, T\)"),
    (torch.zeros(2, 3), r"idx must be an int64 tensor"),
    (torch.tensor([[1, 10]]), r"idx has token ids .* outside the vocabulary .*vocab_size=10"),
    (torch.tensor([[-1, 2]]), r"idx has token ids .* outside the vocabulary"),
])
def test_bad_idx_is_named(small_lms, idx, match):
    for model in small_lms.values():
        with pytest.raises(ValueError, match=match):
            model(idx)
        with pytest.raises(ValueError, match=match):
            model.step(idx)


def test_bad_targets_are_named(small_lms):
    model = small_lms["lstm"]
    idx = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        model(idx, torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="targets has token ids"):
        model(idx, torch.tensor([[1, 2, 10]]))
    model(idx, torch.tensor([[1, -1, 9]]))  # -1 is the ignore index: allowed


@pytest.mark.parametrize("cell, make_state, match", [
    ("lstm", lambda: (torch.zeros(2, 1, 5),), r"state must be a tuple \('h', 'c'\) of 2 tensor"),
    ("lstm", lambda: torch.zeros(2, 1, 5), r"state must be a tuple"),
    ("lstm", lambda: (torch.zeros(2, 1, 5), torch.zeros(1, 1, 5)), r"state c must have shape .* \(2, 1, 5\)"),
    ("lstm", lambda: (torch.zeros(2, 3, 5), torch.zeros(2, 3, 5)), r"state h must have shape .* \(2, 1, 5\)"),
    ("lstm", lambda: (torch.zeros(2, 1, 4), torch.zeros(2, 1, 5)), r"state h must have shape"),
    ("rnn", lambda: (torch.zeros(2, 1, 5), torch.zeros(2, 1, 5)), r"state must be a tuple \('h',\) of 1 tensor"),
    ("rnn", lambda: (torch.zeros(1, 5),), r"state h must have shape"),
])
def test_bad_state_is_named(small_lms, cell, make_state, match):
    with pytest.raises(ValueError, match=match):
        small_lms[cell].step(torch.tensor([[1, 2]]), make_state())


def test_bad_stack_input_is_named():
    stack = RecurrentStack(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, In\) with T >= 1 and In = 3"):
        stack(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"x must have shape .* T >= 1"):
        stack(torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match=r"cell must be one of"):
        RecurrentStack(3, 4, cell="gru")
