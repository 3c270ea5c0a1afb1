"""torch.compile on the training step, A/B in one process: eager vs compiled, steps interleaved.

nanoGPT's CPU shapes (4 layers, 4 heads, 128 wide, block 64, batch 12, no biases, exact GELU), a
fixed random batch, fused AdamW and gradient clipping as in minilm.training. Every variant is
warmed up (compiled) first; then the variants take turns, one step each, so drifts in the
machine's speed hit all of them alike. Prints the median ms per step and the speed-up over eager.

    .venv/bin/python bench/compile_ab.py                 # eager, compiled fast path, compiled readable path
    .venv/bin/python bench/compile_ab.py --autotune      # also mode="max-autotune" (slow to compile)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

import torch  # noqa: E402

from minilm.gpt import GPT, GPTConfig  # noqa: E402


def nanogpt_cpu_model(**overrides) -> GPT:
    """nanoGPT's CPU shapes, seeded: 4 layers x 128 wide, 4 heads, block 64, no biases, exact GELU."""
    torch.manual_seed(0)
    settings = dict(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False, activation="gelu")
    settings.update(overrides)
    return GPT(GPTConfig(**settings))


def make_variant(kernels: str, compiled: bool, mode: str | None = None):
    """(callable model, raw model, optimizer) for one variant, all from the same seed."""
    model = nanogpt_cpu_model(kernels=kernels)
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3, fused=True)
    forward = torch.compile(model, mode=mode) if compiled else model
    return forward, model, optimizer


def train_step(forward, model, optimizer, x, y) -> None:
    """One optimizer step as minilm.training takes it: forward through `forward` (the model or its
    compiled form), backward, clip to norm 1, AdamW, zero the gradients."""
    _, loss = forward(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="torch.compile A/B on the training step, interleaved.")
    parser.add_argument("--steps", type=int, default=80, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's choice)")
    parser.add_argument("--autotune", action="store_true", help='also time mode="max-autotune"')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = {"eager (fused kernels)": make_variant("fused", False),
                "compiled (fused kernels)": make_variant("fused", True),
                "compiled (readable kernels)": make_variant("readable", True)}
    if args.autotune:
        variants["compiled (fused, max-autotune)"] = make_variant("fused", True, "max-autotune")
    x = torch.randint(0, 256, (12, 64))  # (B, T)
    y = torch.randint(0, 256, (12, 64))  # (B, T)
    for name, variant in variants.items():
        started = time.perf_counter()
        for _ in range(3):
            train_step(*variant, x, y)
        print(f"{name:32s} warm-up (incl. compilation) {time.perf_counter() - started:5.1f} s", flush=True)
    times = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, variant in variants.items():
            started = time.perf_counter()
            train_step(*variant, x, y)
            times[name].append(time.perf_counter() - started)
    eager = statistics.median(times["eager (fused kernels)"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.steps} interleaved steps:")
    for name, t in times.items():
        print(f"{name:32s} {statistics.median(t) * 1e3:7.2f} ms/step  {eager / statistics.median(t):.2f}x eager")


if __name__ == "__main__":
    main()
