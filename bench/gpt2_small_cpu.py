"""The CPU cost of GPT-2 small's shape (124M parameters) in minilm: one training step and scoring.

    python bench/gpt2_small_cpu.py [--batch-size 1] [--block-size 256] [--repeats 3]

The model is random (a GPTConfig of GPT-2 small's shape, nothing downloaded): the cost of a step
does not depend on the weights. Prints the median seconds of a training step (forward, backward,
AdamW update) and of scoring (a forward pass without gradients), and the tokens per second.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from minilm.gpt import GPT, GPTConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0))
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-4)
    idx = torch.randint(0, 50257, (args.batch_size, args.block_size + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    tokens = args.batch_size * args.block_size

    def train_step():
        model.train()
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def score():
        model.eval()
        model(x, y)

    print(f"GPT-2 small shape: {model.num_params() / 1e6:.1f}M parameters, batch {args.batch_size} x "
          f"{args.block_size} tokens, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"torch {torch.__version__}")
    for name, fn in (("training step", train_step), ("scoring", score)):
        fn()  # warm-up (allocates AdamW's moments on the first step)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        print(f"{name:14s} median {median:7.2f} s  ({tokens / median:8.1f} tokens/s)  runs: "
              + ", ".join(f"{s:.2f}" for s in seconds))


if __name__ == "__main__":
    main()
