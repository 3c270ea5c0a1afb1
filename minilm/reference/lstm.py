"""NumPy float64 twin of minilm/lstm.py: the LSTM and Elman RNN forward, and backpropagation
through time (BPTT) written by hand.

Reads line by line against the PyTorch code. Parameter dicts are keyed like the PyTorch
modules' state_dict(): a cell has "weight_ih" (G*H, In), "weight_hh" (G*H, H), "bias" (G*H,);
a stack has "layers.{l}.weight_ih" ...; the language model has "wte.weight", "rnn.layers.{l}...",
and "proj.weight" / "head.weight" when present. No dropout here: the twin is the eval-mode model.

The recurrent pieces carry a state besides their input and output, so their signatures extend
the usual `xxx_forward(x, p) -> (y, cache)` / `xxx_backward(dy, cache) -> (dx, dp)`:
    forward(x, p, state)        -> (y, state_after_last_step, cache)
    backward(dy, dstate, cache) -> (dx, dstate_before_first_step, dp)
where dstate is the gradient arriving at the final state (zeros when only y is used).
States are tuples: (h, c) for the LSTM, (h,) for the Elman RNN.

Shape letters: B batch, T time, In layer input width, H hidden size, G gates (4 LSTM, 1 RNN),
E embedding width, V vocabulary size, L number of layers.
"""
from __future__ import annotations

import numpy as np

from minilm.reference.embedding import embedding_backward, embedding_forward
from minilm.reference.params import sub, with_prefix


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------------
# The cells: one step, given xw_t = x_t W_ih^T + b
# ----------------------------------------------------------------------------------------------


def lstm_cell_forward(xw_t, state, p):
    """One LSTM step. xw_t (B, 4H), state (h, c) each (B, H), p["weight_hh"] (4H, H).

        gates = xw_t + h W_hh^T;  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of its 4 slices
        c' = f * c + i * g;  h' = o * tanh(c')
    """
    h, c = state
    gates = xw_t + h @ p["weight_hh"].T  # (B, 4H)
    i, f, g, o = np.split(gates, 4, axis=1)  # each (B, H)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c_new = f * c + i * g  # (B, H)
    tanh_c = np.tanh(c_new)  # (B, H)
    h_new = o * tanh_c  # (B, H)
    cache = (h, c, i, f, g, o, tanh_c, p["weight_hh"])
    return (h_new, c_new), cache


def lstm_cell_backward(dstate, cache):
    """Gradients of one LSTM step. dstate = (dh', dc') each (B, H), the gradient at the new state.

    Returns dxw_t (B, 4H) (= d gates), dstate_prev (dh, dc), and {"weight_hh": (4H, H)}.
    Uses sigmoid' = s (1 - s) and tanh' = 1 - tanh^2.
    """
    h, c, i, f, g, o, tanh_c, W_hh = cache
    dh_new, dc_new = dstate
    do = dh_new * tanh_c  # (B, H)
    dc_new = dc_new + dh_new * o * (1.0 - tanh_c**2)  # (B, H): h' = o tanh(c') also depends on c'
    df = dc_new * c  # (B, H)
    di = dc_new * g  # (B, H)
    dg = dc_new * i  # (B, H)
    dc = dc_new * f  # (B, H)
    dgates = np.concatenate(  # (B, 4H): back through the nonlinearities, in gate order i, f, g, o
        [di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)], axis=1
    )
    dh = dgates @ W_hh  # (B, H)
    dW_hh = dgates.T @ h  # (4H, H)
    return dgates, (dh, dc), {"weight_hh": dW_hh}


def rnn_cell_forward(xw_t, state, p):
    """One Elman step. xw_t (B, H), state (h,) with h (B, H): h' = tanh(xw_t + h W_hh^T)."""
    (h,) = state
    h_new = np.tanh(xw_t + h @ p["weight_hh"].T)  # (B, H)
    return (h_new,), (h, h_new, p["weight_hh"])


def rnn_cell_backward(dstate, cache):
    """Gradients of one Elman step: dxw_t (B, H), (dh,), {"weight_hh": (H, H)}."""
    h, h_new, W_hh = cache
    (dh_new,) = dstate
    dpre = dh_new * (1.0 - h_new**2)  # (B, H)
    dh = dpre @ W_hh  # (B, H)
    dW_hh = dpre.T @ h  # (H, H)
    return dpre, (dh,), {"weight_hh": dW_hh}


CELLS = {"lstm": (lstm_cell_forward, lstm_cell_backward, 2), "rnn": (rnn_cell_forward, rnn_cell_backward, 1)}

# ----------------------------------------------------------------------------------------------
# One layer over the sequence, and the stack of layers
# ----------------------------------------------------------------------------------------------


def recurrent_layer_forward(x, p, state, cell="lstm"):
    """One layer over the whole sequence. x (B, T, In), state a tuple of (B, H) -> y (B, T, H)."""
    cell_forward = CELLS[cell][0]
    xw = x @ p["weight_ih"].T + p["bias"]  # (B, T, G*H): the input half of the gates, all t at once
    outputs, step_caches = [], []
    for t in range(x.shape[1]):
        state, step_cache = cell_forward(xw[:, t], state, p)
        outputs.append(state[0])  # h_t (B, H)
        step_caches.append(step_cache)
    y = np.stack(outputs, axis=1)  # (B, T, H)
    return y, state, (x, p, cell, step_caches)


def recurrent_layer_backward(dy, dstate, cache):
    """BPTT through one layer. dy (B, T, H), dstate a tuple of (B, H) at the final state.

    Walks time backwards: the gradient reaching h_t is dy[:, t] (from the output) plus what
    step t+1 sends back through h_t; c_t only gets the latter. Returns dx (B, T, In), the
    gradient at the initial state, and dp for weight_ih, weight_hh, bias.
    """
    x, p, cell, step_caches = cache
    cell_backward = CELLS[cell][1]
    dxw = np.zeros((x.shape[0], x.shape[1], p["weight_ih"].shape[0]))  # (B, T, G*H)
    dW_hh = np.zeros_like(p["weight_hh"])  # (G*H, H)
    for t in reversed(range(x.shape[1])):
        dstate = (dstate[0] + dy[:, t],) + tuple(dstate[1:])  # h_t feeds the output and step t+1
        dxw[:, t], dstate, dp_t = cell_backward(dstate, step_caches[t])
        dW_hh += dp_t["weight_hh"]
    dx = dxw @ p["weight_ih"]  # (B, T, In)
    dp = {
        "weight_ih": np.einsum("btg,bti->gi", dxw, x),  # (G*H, In)
        "weight_hh": dW_hh,  # (G*H, H)
        "bias": dxw.sum(axis=(0, 1)),  # (G*H,)
    }
    return dx, dstate, dp


def num_layers(p: dict, prefix: str = "") -> int:
    """How many layers a stack's params dict holds (keys "{prefix}layers.{l}.weight_ih")."""
    L = 0
    while f"{prefix}layers.{L}.weight_ih" in p:
        L += 1
    return L


def zero_state(p, batch_size: int, cell="lstm"):
    """Start-of-text state: a tuple of (L, B, H) zero arrays."""
    L, H = num_layers(p), p["layers.0.weight_hh"].shape[1]
    return tuple(np.zeros((L, batch_size, H)) for _ in range(CELLS[cell][2]))


def recurrent_stack_forward(x, p, state=None, cell="lstm"):
    """The stack: layer l reads layer l-1's outputs. x (B, T, In), state tuple of (L, B, H) or None.

    Returns y (B, T, H) of the top layer, the final state (tuple of (L, B, H)), and the cache.
    """
    if state is None:
        state = zero_state(p, x.shape[0], cell)
    layer_caches, final_states = [], []
    for layer in range(num_layers(p)):
        layer_p = {name: p[f"layers.{layer}.{name}"] for name in ("weight_ih", "weight_hh", "bias")}
        layer_state = tuple(s[layer] for s in state)  # each (B, H)
        x, layer_state, layer_cache = recurrent_layer_forward(x, layer_p, layer_state, cell)  # (B, T, H)
        final_states.append(layer_state)
        layer_caches.append(layer_cache)
    new_state = tuple(np.stack(s, axis=0) for s in zip(*final_states, strict=True))  # each (L, B, H)
    return x, new_state, layer_caches


def recurrent_stack_backward(dy, dstate, cache):
    """BPTT through the stack, top layer first. dy (B, T, H); dstate tuple of (L, B, H) or None.

    Returns dx (B, T, In), the gradient at the initial state (tuple of (L, B, H)), and dp keyed
    "layers.{l}.weight_ih" etc.
    """
    layer_caches = cache
    L = len(layer_caches)
    if dstate is None:
        cell = layer_caches[0][2]
        B, H = dy.shape[0], dy.shape[2]
        dstate = tuple(np.zeros((L, B, H)) for _ in range(CELLS[cell][2]))  # only y is used
    dp, dstate0 = {}, [None] * L
    for layer in reversed(range(L)):
        layer_dstate = tuple(ds[layer] for ds in dstate)  # each (B, H)
        dy, dstate0[layer], layer_dp = recurrent_layer_backward(dy, layer_dstate, layer_caches[layer])
        for name, grad in layer_dp.items():
            dp[f"layers.{layer}.{name}"] = grad
    dstate0 = tuple(np.stack(ds, axis=0) for ds in zip(*dstate0, strict=True))  # each (L, B, H)
    return dy, dstate0, dp


# ----------------------------------------------------------------------------------------------
# The language model: embedding -> stack -> (projection) -> output layer
# (the loss is minilm.reference.loss.cross_entropy_forward / _backward, shared with the GPT)
# ----------------------------------------------------------------------------------------------


def lstm_lm_forward(idx, p, state=None, cell="lstm"):
    """LSTMLM.forward_with_state without the loss. idx (B, T) ints -> logits (B, T, V), final state.

    The model's shape is read from the keys of p: "proj.weight" present = tied with a projection,
    "head.weight" present = untied head, neither = tied with H == E.
    """
    x, embedding_cache = embedding_forward(idx, sub(p, "wte"))  # (B, T, E)
    y, state, rnn_cache = recurrent_stack_forward(x, sub(p, "rnn"), state, cell)  # (B, T, H)
    top = y  # (B, T, H)
    if "proj.weight" in p:
        y = top @ p["proj.weight"].T  # (B, T, E)
    W_out = p["head.weight"] if "head.weight" in p else p["wte.weight"]  # (V, H) or (V, E)
    logits = y @ W_out.T  # (B, T, V)
    return logits, state, (p, embedding_cache, rnn_cache, top, y)


def lstm_lm_backward(dlogits, cache, dstate=None):
    """Gradients of every parameter from dlogits (B, T, V) (and dstate at the final state).

    Returns (dstate at the initial state, dp keyed like p). With tying, the embedding matrix
    gets two contributions: from the output layer and from the rows the lookup used.
    """
    p, embedding_cache, rnn_cache, top, y = cache
    W_out = p["head.weight"] if "head.weight" in p else p["wte.weight"]  # (V, H) or (V, E)
    dW_out = np.einsum("btv,btk->vk", dlogits, y)  # (V, H) or (V, E)
    dy = dlogits @ W_out  # (B, T, H) or (B, T, E)
    dp = {}
    if "proj.weight" in p:
        dp["proj.weight"] = np.einsum("bte,bth->eh", dy, top)  # (E, H)
        dy = dy @ p["proj.weight"]  # (B, T, H)
    dx, dstate0, rnn_dp = recurrent_stack_backward(dy, dstate, rnn_cache)  # dx (B, T, E)
    dp.update(with_prefix(rnn_dp, "rnn"))
    _, embedding_dp = embedding_backward(dx, embedding_cache)  # each lookup's gradient to its row
    dp["wte.weight"] = embedding_dp["weight"]  # (V, E)
    if "head.weight" in p:
        dp["head.weight"] = dW_out
    else:
        dp["wte.weight"] = dp["wte.weight"] + dW_out  # tied: the output layer's share
    return dstate0, dp
