"""Training-step throughput of our LSTM vs torch.nn.LSTM of the same size, on CPU, in one run.

Both sides are the same LSTMLM (embedding, recurrent stack, tied output layer, cross-entropy,
AdamW); only `model.rnn` differs: ours (gate equations, a Python loop over time) or
`torch.nn.LSTM` (one C++ call) behind a thin adapter. A training step is forward + backward +
AdamW step; we report tokens per second (B * T tokens per step) and the ratio ours / nn.LSTM.
The two are timed in alternating rounds so that load from other processes hits both alike;
the median round is reported. Timings on a shared machine are noisy: rerun before quoting.
One thread by default: on a small machine shared with other jobs, two threads per process
oversubscribe the cores and both sides slow down ~10x (spin-waiting), which measures the
neighbours, not the LSTM. Pass --threads 2 (or more) on an idle machine.

What limits ours (torch profiler, 1 thread): the matmuls are the same on both sides, but autograd
differentiates each step on its own, so dW_hh is built as T small products dgates_t^T h_{t-1}
(inner size B: slow GEMMs) plus T additions of a (4H, H) matrix; oneDNN's LSTM (what nn.LSTM runs
on CPU) does one large GEMM over all steps. This costs about a third of our step at H=512, B=16,
so the ratio falls with larger H and smaller B (~0.5x there, ~0.7-0.9x at the defaults). The
Python loop itself (about ten small ops per step) matters only for tiny models.

    .venv/bin/python bench/lstm.py                      # defaults below
    .venv/bin/python bench/lstm.py --hidden 512 --layers 1 --batch 64 --seq 128 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from minilm.lstm import LSTMLM, LSTMConfig


class TorchLSTMStack(nn.Module):
    """torch.nn.LSTM with the interface of minilm.lstm.RecurrentStack: forward(x, state) -> (y, state)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)

    def forward(self, x, state=None):
        y, (h, c) = self.lstm(x, state)  # (B, T, H), each (num_layers, B, H)
        return y, (h, c)


def make_model(config: LSTMConfig, use_torch_lstm: bool, seed: int) -> LSTMLM:
    torch.manual_seed(seed)
    model = LSTMLM(config)
    if use_torch_lstm:
        model.rnn = TorchLSTMStack(config.n_embd, config.n_hidden, config.n_layer)
    return model


def time_steps(model: LSTMLM, optimizer, idx, targets, steps: int) -> float:
    """Seconds for `steps` training steps (forward + backward + AdamW step)."""
    start = time.perf_counter()
    for _ in range(steps):
        _, loss = model(idx, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--embd", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = LSTMConfig(vocab_size=args.vocab, n_embd=args.embd, n_hidden=args.hidden,
                        n_layer=args.layers, dropout=0.0, cell="lstm", tie_weights=True)
    generator = torch.Generator().manual_seed(0)
    idx = torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator)  # (B, T)
    targets = torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator)  # (B, T)

    runs = {}
    for name, use_torch in (("minilm LSTM", False), ("torch.nn.LSTM", True)):
        model = make_model(config, use_torch, seed=0)
        optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3)
        time_steps(model, optimizer, idx, targets, steps=2)  # warm-up: allocator, kernels
        runs[name] = (model, optimizer, [])
    for _ in range(args.rounds):  # alternate so background load hits both alike
        for model, optimizer, seconds in runs.values():
            seconds.append(time_steps(model, optimizer, idx, targets, args.steps))

    tokens = args.batch * args.seq * args.steps
    print(f"LSTM LM: V={args.vocab} E={args.embd} H={args.hidden} layers={args.layers} "
          f"B={args.batch} T={args.seq}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    rate = {}
    for name, (model, _, seconds) in runs.items():
        rate[name] = tokens / statistics.median(seconds)
        print(f"  {name:14s} {rate[name]:10.0f} tokens/s  (median of {args.rounds} rounds of "
              f"{args.steps} steps; {model.num_params():,} params)")
    print(f"  ratio minilm / nn.LSTM: {rate['minilm LSTM'] / rate['torch.nn.LSTM']:.2f}x  (target >= 0.5x)")


if __name__ == "__main__":
    main()
