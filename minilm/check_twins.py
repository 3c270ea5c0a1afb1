"""Check a tiny GPT against its NumPy twin, tensor by tensor: one forward and backward pass.

    python -m minilm.check_twins            (make check-twins)

It builds a tiny byte-level GPT (vocab V = 256) at its GPT-2 initialisation, reads a batch of
random windows of data/shakespeare.txt, runs the PyTorch model forward and backward in float64
(autograd), runs the NumPy twin (`minilm.reference.gpt_loss`, a hand-written backward) on the same
weights and bytes, and prints one row per compared tensor, as llm.c's test_gpt2 does:

    tensor          the logits, the loss, then the gradient of every parameter (state_dict names)
    max abs diff    max |PyTorch - twin| over the tensor's entries
    tolerance       TOL * max(1, max |twin|): relative to the tensor's scale for large values,
                    absolute for values of order one, with TOL = 1e-10 for the forward and 1e-8
                    for gradients (the suite's float64 tolerances, tests/tolerances.py)
    ok              whether the difference is within the tolerance

The exit status is 1 when any tensor is off. --bidirectional compares BERT's attention
(causal=False) instead of GPT's.
"""
from __future__ import annotations

import math

import numpy as np

FORWARD_TOL, GRAD_TOL = 1e-10, 1e-8  # float64; the same as tests/tolerances.py


def compare(actual: np.ndarray, expected: np.ndarray, tol: float) -> tuple[float, float, bool]:
    """(max abs diff, tolerance scaled to the expected values, ok)."""
    diff = float(np.max(np.abs(np.asarray(actual) - expected))) if np.size(expected) else 0.0
    scaled = tol * max(1.0, float(np.max(np.abs(expected))) if np.size(expected) else 1.0)
    return diff, scaled, diff <= scaled


def twin_rows(model, params: dict, idx: np.ndarray, targets: np.ndarray, causal: bool = True):
    """One forward/backward of `model` (float64) and of the twin with `params`. Returns (rows,
    the loss): one row (name, max abs diff, tolerance, ok) per logits, loss and parameter gradient."""
    import torch

    from minilm import reference as ref

    model.zero_grad()
    logits, loss = model(torch.from_numpy(idx), torch.from_numpy(targets), causal=causal)  # (B, T, V), scalar
    loss.backward()
    loss_np, logits_np, grads_np = ref.gpt_loss(idx, targets, params, model.config, causal=causal)
    rows = [("logits", *compare(logits.detach().numpy(), logits_np, FORWARD_TOL)),
            ("loss", *compare(loss.item(), loss_np, FORWARD_TOL))]
    for name, p in model.named_parameters():  # a tied matrix once, under its first name
        rows.append((f"grad {name}", *compare(p.grad.numpy(), grads_np[name], GRAD_TOL)))
    return rows, loss.item()


def format_table(rows: list[tuple]) -> str:
    width = max(len(name) for name, *_ in rows)
    lines = [f"  {'tensor':<{width}}  {'max abs diff':>12}  {'tolerance':>9}  ok"]
    for name, diff, tol, ok in rows:
        lines.append(f"  {name:<{width}}  {diff:12.2e}  {tol:9.1e}  {'ok' if ok else 'FAIL'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from minilm import GPT, GPTConfig
    from minilm import reference as ref
    from minilm.cli import OneLineErrorParser, UserError
    from minilm.data import read_corpus

    parser = OneLineErrorParser(prog="python -m minilm.check_twins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="shakespeare", help="bundled corpus name or path (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="B, sequences per batch (default: %(default)s)")
    parser.add_argument("--block", type=int, default=32, help="T, bytes per sequence (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and windows (default: %(default)s)")
    parser.add_argument("--bidirectional", action="store_true", help="compare causal=False attention (BERT's)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.block < 1:
        parser.error(f"--batch and --block must be >= 1, got {args.batch} and {args.block}")
    try:
        _, path, data = read_corpus(args.data)
    except UserError as error:
        parser.error(str(error))
    if len(data) < args.block + 2:
        parser.error(f"--data: {str(path)!r} holds {len(data)} bytes, fewer than --block + 2 = {args.block + 2}")

    torch.manual_seed(args.seed)
    config = GPTConfig(vocab_size=256, block_size=args.block, n_layer=2, n_head=4, n_embd=32)
    model = GPT(config).double()  # float64, to compare with the float64 twin
    tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int64)  # one token per byte
    rng = np.random.default_rng(args.seed)
    starts = rng.integers(0, len(tokens) - args.block - 1, size=args.batch)
    idx = np.stack([tokens[s:s + args.block] for s in starts])  # (B, T) inputs
    targets = np.stack([tokens[s + 1:s + args.block + 1] for s in starts])  # (B, T) next bytes

    rows, loss = twin_rows(model, ref.params_from_torch(model), idx, targets, causal=not args.bidirectional)
    attention = "bidirectional" if args.bidirectional else "causal"
    print(f"GPT ({attention}) with {config.n_layer} layers, {config.n_head} heads, C={config.n_embd}, "
          f"{model.num_params():,} parameters, float64, against its NumPy twin; a batch of "
          f"{args.batch} x {args.block} bytes of {path.name}")
    print(f"loss {loss:.4f} nats/byte (at initialisation about ln V = {math.log(config.vocab_size):.4f}, "
          f"a uniform guess over the {config.vocab_size} bytes)")
    print(format_table(rows))
    failed = [name for name, *_, ok in rows if not ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} tensors within tolerance"
          + (f"; off: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
