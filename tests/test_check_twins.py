"""`python -m minilm.check_twins` (make check-twins): one row per tensor, and a FAIL where the twin is off."""
from __future__ import annotations

import re

import numpy as np
import torch
from tolerances import TOL

from minilm import GPT, GPTConfig, check_twins
from minilm import reference as ref


def tiny_case(seed=0):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=11, block_size=5, n_layer=1, n_head=2, n_embd=8)
    model = GPT(config).double()
    rng = np.random.default_rng(seed)
    idx, targets = rng.integers(0, 11, (2, 5)), rng.integers(0, 11, (2, 5))
    return model, idx, targets


def test_every_parameter_gets_a_row_and_all_are_ok():
    model, idx, targets = tiny_case()
    for causal in (True, False):
        rows, _ = check_twins.twin_rows(model, ref.params_from_torch(model), idx, targets, causal)
        names = [name for name, *_ in rows]
        assert names == ["logits", "loss"] + [f"grad {n}" for n, _ in model.named_parameters()]
        assert all(ok for *_, ok in rows), check_twins.format_table(rows)


def test_the_tolerances_are_the_suites():
    """The tolerance column is the suite's float64 TOL (tests/tolerances.py) scaled by max(1, max |twin|),
    and the diff column is max |PyTorch - twin|, computed here independently for the logits."""
    model, idx, targets = tiny_case()
    params = ref.params_from_torch(model)
    rows, _ = check_twins.twin_rows(model, params, idx, targets)
    _, logits_np, grads_np = ref.gpt_loss(idx, targets, params, model.config)
    table = {name: (diff, tol) for name, diff, tol, _ in rows}
    with torch.no_grad():
        logits = model(torch.from_numpy(idx))[0].numpy()
    assert table["logits"][0] == np.max(np.abs(logits - logits_np))
    assert table["logits"][1] == TOL["forward_float64"] * max(1.0, np.max(np.abs(logits_np)))
    name = "h.0.mlp.c_fc.weight"
    assert table[f"grad {name}"][1] == TOL["grad_float64"] * max(1.0, np.max(np.abs(grads_np[name])))


def test_a_twin_off_in_one_weight_is_flagged():
    """A twin given a different bias of one layer differs in the logits and in the gradients that
    flow through that layer; the table says FAIL there."""
    model, idx, targets = tiny_case()
    params = ref.params_from_torch(model)
    params["h.0.mlp.c_fc.bias"] = params["h.0.mlp.c_fc.bias"] + 1e-3
    rows, _ = check_twins.twin_rows(model, params, idx, targets)
    verdict = {name: ok for name, *_, ok in rows}
    assert not verdict["logits"] and not verdict["grad h.0.mlp.c_proj.weight"]
    assert "FAIL" in check_twins.format_table(rows)


def test_the_command_prints_the_table_and_exits_0(capsys):
    assert check_twins.main(["--batch", "2", "--block", "8"]) == 0
    out = capsys.readouterr().out
    assert "max abs diff" in out and "grad h.1.attn.c_attn.weight" in out
    assert re.search(r"\n(\d+) of \1 tensors within tolerance", out), out
    assert "FAIL" not in out
