"""A few-second tour: one forward/backward pass of a tiny GPT on Shakespeare's bytes, checked
against the NumPy twin.

    python -m minilm.demo

It builds a tiny byte-level GPT (vocab V = 256) at its GPT-2 initialisation, reads a batch of
random windows of data/shakespeare.txt, runs the PyTorch model forward and backward in float64,
runs the NumPy twin (`minilm.reference.gpt_loss`, hand-written backward) on the same weights and
bytes, and prints a small table:

    loss          about ln(V) at init: the model predicts nearly uniformly over the 256 bytes
    max errors    how far the two implementations are apart (float64 rounding, ~1e-15)
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from minilm import GPT, GPTConfig
from minilm import reference as ref
from minilm.data import read_corpus


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max(1, max |expected|), the measure the tests use."""
    return float(np.max(np.abs(actual - expected)) / max(1.0, float(np.max(np.abs(expected)))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="shakespeare", help="bundled corpus name or path (default: shakespeare)")
    parser.add_argument("--batch", type=int, default=4, help="B, sequences per batch")
    parser.add_argument("--block", type=int, default=32, help="T, bytes per sequence")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    torch.manual_seed(args.seed)
    config = GPTConfig(vocab_size=256, block_size=args.block, n_layer=2, n_head=4, n_embd=32)
    model = GPT(config).double()  # float64, to compare with the float64 twin

    name, path, data = read_corpus(args.data)
    tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int64)  # one token per byte
    rng = np.random.default_rng(args.seed)
    starts = rng.integers(0, len(tokens) - args.block - 1, size=args.batch)
    idx = np.stack([tokens[s:s + args.block] for s in starts])  # (B, T) inputs
    targets = np.stack([tokens[s + 1:s + args.block + 1] for s in starts])  # (B, T) next bytes

    # PyTorch: forward, mean cross-entropy over the next bytes, autograd backward
    logits, loss = model(torch.from_numpy(idx), torch.from_numpy(targets))  # (B, T, V), scalar
    loss.backward()

    # NumPy twin: the same weights, the same bytes, a hand-written backward
    params = ref.params_from_torch(model)
    loss_np, logits_np, grads_np = ref.gpt_loss(idx, targets, params, config)

    forward_error = relative_error(logits.detach().numpy(), logits_np)
    grad_errors = {n: relative_error(p.grad.numpy(), grads_np[n]) for n, p in model.named_parameters()}
    worst = max(grad_errors, key=grad_errors.get)

    print(f"minilm demo: GPT with {config.n_layer} layers, {config.n_head} heads, C={config.n_embd}, "
          f"{model.num_params():,} parameters; batch of {args.batch} x {args.block} bytes of {path.name}")
    print()
    rows = [
        ("loss, PyTorch (nats/byte)", f"{loss.item():.6f}"),
        ("loss, NumPy twin", f"{loss_np:.6f}"),
        ("ln(V), uniform guess", f"{math.log(config.vocab_size):.6f}"),
        ("max forward error (logits)", f"{forward_error:.1e}"),
        ("max gradient error", f"{grad_errors[worst]:.1e}  ({worst}, {len(grad_errors)} tensors)"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print()
    print(f"errors are relative to scale; the tests require <= 1e-10 (forward) and <= 1e-8 (gradients) "
          f"in float64. {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
