"""An LSTM (or Elman RNN) language model, written from the gate equations.

The baseline the Transformer is compared with. Read top to bottom: the two recurrent cells (LSTM
and Elman RNN), the multi-layer stack that runs a cell over a sequence, the config, and the
language model (embedding -> stack -> output layer) with the same interface as the GPT.
No `nn.LSTM` / `nn.LSTMCell` / `nn.RNN` here: every gate is a tensor operation you can read.
The NumPy float64 twin (forward and hand-written backpropagation through time) is
`minilm/reference/lstm.py`; the tests check one against the other and against `torch.nn.LSTM`.

Shape letters used in comments:
    B  batch size      T  sequence length (time)     E  embedding width (n_embd)
    H  hidden size     G  number of gates (4 for the LSTM, 1 for the Elman RNN)
    In input width of a layer (E for the first layer, H above it)      V  vocabulary size

The one trick for speed: the input half of every gate, x_t W_ih^T + b, does not depend on the
previous step, so it is computed for the whole sequence in one matmul before the time loop.
Only h_{t-1} W_hh^T has to wait for the previous step, and that is the loop.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.cli import UserError, config_from_dict, validate_config

# ----------------------------------------------------------------------------------------------
# The cells: one time step, given the input half of the gates already computed
# ----------------------------------------------------------------------------------------------


class LSTMCell(nn.Module):
    """One LSTM layer's parameters and its update for one time step (Hochreiter & Schmidhuber 1997,
    with the forget gate of Gers et al. 2000).

    Parameters, laid out like `torch.nn.LSTM` (gate order i, f, g, o stacked along the rows):
        weight_ih (4H, In)   weight_hh (4H, H)   bias (4H,)   (nn.LSTM splits the bias in two:
                                                                bias_ih + bias_hh = our bias)
    Equations for one step, with x_t (B, In), h_{t-1} and c_{t-1} (B, H):

        gates = x_t W_ih^T + b + h_{t-1} W_hh^T        (B, 4H)
        i_t = sigmoid(gates[:,   0: H])                (B, H)   input gate: how much to write
        f_t = sigmoid(gates[:,  H:2H])                 (B, H)   forget gate: how much to keep
        g_t = tanh   (gates[:, 2H:3H])                 (B, H)   cell candidate: what to write
        o_t = sigmoid(gates[:, 3H:4H])                 (B, H)   output gate: how much to show
        c_t = f_t * c_{t-1} + i_t * g_t                (B, H)   the cell (memory) state
        h_t = o_t * tanh(c_t)                          (B, H)   the hidden state = the output

    `project_inputs` computes x_t W_ih^T + b for all t at once; `forward` does the rest of one step.
    """

    num_gates = 4
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G = self.num_gates
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size))  # (4H, In)
        self.weight_hh = nn.Parameter(torch.empty(G * hidden_size, hidden_size))  # (4H, H)
        self.bias = nn.Parameter(torch.empty(G * hidden_size))  # (4H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) like nn.LSTM, then forget-gate bias = 1.

        A forget bias of 1 makes f_t start near sigmoid(1) = 0.73, so the cell remembers by
        default and gradients flow back through c early in training (Jozefowicz et al. 2015).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(weight, -bound, bound)
        H = self.hidden_size
        with torch.no_grad():
            self.bias[H : 2 * H].fill_(1.0)  # the f rows

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """x_t W_ih^T + b for every time step at once: one matmul for the whole sequence."""
        return F.linear(x, self.weight_ih, self.bias)  # (B, T, In) -> (B, T, 4H)

    def forward(self, xw_t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One step: xw_t (B, 4H) = x_t W_ih^T + b, state = (h, c) each (B, H) -> new (h, c)."""
        h, c = state
        gates = torch.addmm(xw_t, h, self.weight_hh.t())  # xw_t + h W_hh^T: (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g  # (B, H)
        h = o * torch.tanh(c)  # (B, H)
        return h, c


class RNNCell(nn.Module):
    """The Elman RNN (Elman 1990): the simplest recurrent cell, one tanh layer.

        h_t = tanh(W [h_{t-1}, x_t] + b) = tanh(x_t W_ih^T + b + h_{t-1} W_hh^T)   (B, H)

    with W = [W_hh | W_ih] split into weight_hh (H, H) and weight_ih (H, In), bias (H,).
    The same interface as LSTMCell with one gate and a state of h alone, so the stack and the
    language model work with either. It forgets fast: gradients through many tanh steps vanish.
    """

    num_gates = 1
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))  # (H, In)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))  # (H, H)
        self.bias = nn.Parameter(torch.empty(hidden_size))  # (H,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)) like nn.RNN."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(weight, -bound, bound)

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """x_t W_ih^T + b for every time step at once."""
        return F.linear(x, self.weight_ih, self.bias)  # (B, T, In) -> (B, T, H)

    def forward(self, xw_t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One step: xw_t (B, H) = x_t W_ih^T + b, state = (h,) with h (B, H) -> new (h,)."""
        (h,) = state
        h = torch.tanh(torch.addmm(xw_t, h, self.weight_hh.t()))  # (B, H)
        return (h,)


CELLS = {"lstm": LSTMCell, "rnn": RNNCell}

# ----------------------------------------------------------------------------------------------
# The stack: run a cell over the sequence, layer after layer
# ----------------------------------------------------------------------------------------------


class RecurrentStack(nn.Module):
    """`num_layers` recurrent layers; layer l reads the outputs h_t of layer l-1 (the first reads x).

    forward(x, state=None) -> (y, state), batch first like nn.LSTM(batch_first=True):
        x      (B, T, In)   the input sequence
        state  a tuple of (num_layers, B, H) tensors: (h, c) for the LSTM, (h,) for the Elman RNN;
               None starts from zeros. The returned state is the one after the last step, so
               feeding it back continues the sequence.
        y      (B, T, H)    the top layer's h_t for every t
    Dropout is applied to each layer's outputs before the next layer reads them (not after the
    top layer), as in nn.LSTM. Parameters are named `layers.{l}.weight_ih` etc.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 cell: str = "lstm"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        Cell = CELLS[cell]
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cell = cell
        self.num_states = len(Cell.state_names)
        self.layers = nn.ModuleList(
            [Cell(input_size if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers)]
        )
        self.dropout = nn.Dropout(dropout)

    def zero_state(self, batch_size: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The start-of-text state: zeros of shape (num_layers, B, H), dtype/device of `like`."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        return tuple(like.new_zeros(shape) for _ in range(self.num_states))

    def check_state(self, state, batch_size: int) -> None:
        """Raise a ValueError naming `state` unless it is a tuple of (num_layers, B, H) tensors."""
        expected = (self.num_layers, batch_size, self.hidden_size)
        names = self.layers[0].state_names
        if not isinstance(state, (tuple, list)) or len(state) != self.num_states:
            raise ValueError(f"state must be a tuple {names} of {self.num_states} tensor(s) of shape "
                             f"(num_layers, B, H) = {expected} for cell={self.cell!r}, got {_describe(state)}")
        for name, s in zip(names, state, strict=True):
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != expected:
                raise ValueError(f"state {name} must have shape (num_layers, B, H) = {expected}, "
                                 f"got {_describe(s)}")

    def forward(self, x: torch.Tensor, state=None):
        if x.dim() != 3 or x.shape[1] == 0 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape (B, T, In) with T >= 1 and In = {self.input_size}, "
                             f"got {tuple(x.shape)}")
        B = x.shape[0]
        if state is None:
            state = self.zero_state(B, x)
        self.check_state(state, B)
        final_states = []
        for layer, cell in enumerate(self.layers):
            if layer > 0:
                x = self.dropout(x)  # between layers only
            xw = cell.project_inputs(x)  # (B, T, G*H): the input half of the gates, all t at once
            layer_state = tuple(s[layer] for s in state)  # each (B, H)
            outputs = []
            for xw_t in xw.unbind(dim=1):  # (B, G*H) per step; unbind, not xw[:, t], keeps backward O(T)
                layer_state = cell(xw_t, layer_state)
                outputs.append(layer_state[0])  # h_t (B, H)
            x = torch.stack(outputs, dim=1)  # (B, T, H)
            final_states.append(layer_state)
        new_state = tuple(torch.stack(s, dim=0) for s in zip(*final_states, strict=True))  # each (num_layers, B, H)
        return x, new_state


def _describe(value) -> str:
    """A short description of what was passed, for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: [" + ", ".join(_describe(v) for v in value) + "]"
    return repr(value)


# ----------------------------------------------------------------------------------------------
# The language model
# ----------------------------------------------------------------------------------------------


@dataclass
class LSTMConfig:
    """Everything needed to rebuild an LSTMLM (stored in checkpoints as a plain dict)."""

    vocab_size: int = 256  # V: 256 for the byte tokenizer
    n_embd: int = 128  # E: token embedding width
    n_hidden: int = 256  # H: hidden (and cell) state size of every layer
    n_layer: int = 2  # number of stacked recurrent layers
    dropout: float = 0.0  # on the embeddings, between layers, and on the top layer's outputs
    cell: str = "lstm"  # "lstm" or "rnn" (Elman)
    tie_weights: bool = True  # output layer = embedding matrix (with an H -> E projection if H != E)

    def __post_init__(self):
        validate_config(self, {
            "vocab_size": ("int", 1), "n_embd": ("int", 1), "n_hidden": ("int", 1), "n_layer": ("int", 1),
            "dropout": ("number", 0.0, 1.0), "cell": ("choice", tuple(sorted(CELLS))), "tie_weights": ("bool",),
        })
        if self.dropout == 1.0:  # nn.Dropout(1.0) would zero every activation
            raise UserError(f"LSTMConfig.dropout: expected a number in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LSTMConfig":
        return config_from_dict(cls, d)


class LSTMLM(nn.Module):
    """Next-token prediction with a recurrent stack:

        x_t      = wte[idx_t]                       (B, T, E)   token embedding
        h_t      = RecurrentStack(x)_t              (B, T, H)   top layer's hidden state
        logits_t = h_t W_out^T                      (B, T, V)

    With tie_weights, W_out is the embedding matrix wte (V, E) (Press & Wolf 2017); when H != E a
    projection P (E, H) comes first: logits_t = (h_t P^T) wte^T. Without tying, W_out = head (V, H).

    Interface (docs/CONTRACTS.md): forward(idx, targets=None) -> (logits, loss) from a zero state;
    step(idx, state=None) -> (logits, state) to continue from a carried state (generation);
    forward_with_state(idx, targets, state) -> (logits, loss, state) for training that carries the
    state across batches (detach it between batches with `detach_state`).
    """

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        V, E, H = config.vocab_size, config.n_embd, config.n_hidden
        self.wte = nn.Embedding(V, E)
        self.drop = nn.Dropout(config.dropout)
        self.rnn = RecurrentStack(E, H, config.n_layer, config.dropout, config.cell)
        self.proj = nn.Linear(H, E, bias=False) if config.tie_weights and H != E else None
        self.head = None if config.tie_weights else nn.Linear(H, V, bias=False)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        if self.head is not None:
            nn.init.normal_(self.head.weight, mean=0.0, std=0.02)

    def output_weight(self) -> torch.Tensor:
        """W_out: the untied head (V, H), or the embedding matrix (V, E) when tied."""
        return self.wte.weight if self.head is None else self.head.weight

    def forward_with_state(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state=None):
        """idx (B, T) int64 -> (logits (B, T, V), loss or None, state after the last position)."""
        self._check_ids(idx, "idx")
        if targets is not None:
            if tuple(targets.shape) != tuple(idx.shape):
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
            self._check_ids(targets, "targets", allow_ignore=True)
        x = self.drop(self.wte(idx))  # (B, T, E)
        y, state = self.rnn(x, state)  # (B, T, H), each state tensor (n_layer, B, H)
        y = self.drop(y)  # (B, T, H)
        if self.proj is not None:
            y = self.proj(y)  # (B, T, E)
        logits = F.linear(y, self.output_weight())  # (B, T, V)
        loss = None
        if targets is not None:
            V = logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)
        return logits, loss, state

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """The contract's forward: every sequence starts from the zero state."""
        logits, loss, _ = self.forward_with_state(idx, targets)
        return logits, loss

    def step(self, idx: torch.Tensor, state=None):
        """Continue from `state` (None = start of text) with idx (B, T): (logits (B, T, V), new state)."""
        logits, _, state = self.forward_with_state(idx, None, state)
        return logits, state

    @staticmethod
    def detach_state(state):
        """Cut the graph between batches (truncated BPTT) but keep the values."""
        return None if state is None else tuple(s.detach() for s in state)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied output matrix counted once); non_embedding drops wte."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
        return n

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay the weight matrices (W_ih, W_hh, projection, untied head); not the
        biases, not the embedding (nor the output layer when it is the embedding)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():  # a tied matrix appears once
            is_matrix = p.dim() >= 2 and not name.startswith("wte.")
            (decay if is_matrix else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def _check_ids(self, ids: torch.Tensor, name: str, allow_ignore: bool = False) -> None:
        """Raise a ValueError naming `name` unless ids is a (B, T) integer tensor, T >= 1, in vocab."""
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must be an int64 tensor of token ids, got {_describe(ids)}"
                             + (f" of dtype {ids.dtype}" if isinstance(ids, torch.Tensor) else ""))
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name} must have shape (B, T) with T >= 1, got {tuple(ids.shape)}")
        V = self.config.vocab_size
        low = -1 if allow_ignore else 0
        if ids.numel() and (int(ids.min()) < low or int(ids.max()) >= V):
            allowed = f"[0, {V})" + (" or -1 (ignored)" if allow_ignore else "")
            raise ValueError(f"{name} has token ids in [{int(ids.min())}, {int(ids.max())}] outside the "
                             f"vocabulary {allowed} (vocab_size={V})")
