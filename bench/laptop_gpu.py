"""On a laptop GPU: estimated training FLOPs, memory, ranks per GPU and wall time of the GPU models.

    python bench/laptop_gpu.py                                   # every figure an estimate
    python bench/laptop_gpu.py --tflops 28.3 --mfu 0.25 --memory-gib 8
    python bench/laptop_gpu.py --results runs/gpu/results.json   # MFU and peak memory from bench/gpu.sh

The models: `gpu-small` (minilm.training.PRESETS) and the GPT of the mismatch grid's `gpu` preset
(minilm.mismatch.PRESETS), each with its own steps x batch x context tokens. Nothing is trained or
timed here: every figure comes from the shapes and these formulas (docs/gpu.md says which figures a
GPU run replaces).

Training FLOPs per token, forward + backward (PaLM, Chowdhery et al. 2022, appendix B; the 6 N term
is Kaplan et al. 2020, section 2.1, whose attention term counts one of the two T-long products):
    6 N + 12 L T d        N non-embedding parameters, L layers, T context, d width
Memory of one training process:
    weights, gradients and AdamW's two moments, all float32:   16 bytes per parameter
    activations kept for the backward pass, bf16 autocast, per layer (Korthikanti et al. 2022,
    "Reducing Activation Recomputation in Large Transformer Models", section 4.1, less its
    5 a T^2 B term: fused attention kernels keep no T x T matrix):
        34 T B d bytes with dropout, 32 T B d without (the two 1-byte residual dropout masks)
    plus the logits and their float32 log-softmax: 6 T B V bytes
    plus one CUDA context per process (--context-gib; torch.cuda.max_memory_allocated leaves it out)
Ranks that fit = floor(GPU memory / memory of one process).
Wall time = training FLOPs / (bf16 tensor TFLOP/s x MFU); ranks sharing one GPU share its FLOP/s,
so with the GPU busy, more ranks do not shorten the total.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from minilm.cli import OneLineErrorParser, UserError  # noqa: E402

# RTX 4060 Laptop GPU, 60 W variant: dense bf16 tensor rate with float32 accumulation, as listed by
# https://hmc-tech.com/gpu/nvidia-geforce-rtx-4060-laptop-60w-vs-nvidia-geforce-rtx-4060-laptop-45w
# (a specification site; the 110 W variant is listed at 28.26).
DEFAULT_TFLOPS = 21.5
DEFAULT_MFU = 0.3  # an assumption until bench/gpu.sh has measured one (--results)
DEFAULT_CONTEXT_GIB = 0.5  # an assumption: CUDA context and kernels of one process
GIB = 2**30


@dataclass
class ModelShape:
    """What the estimates need to know about one model and its training budget."""

    name: str
    n_layer: int
    n_embd: int
    block_size: int  # T
    batch_size: int  # B
    steps: int
    vocab_size: int  # V
    dropout: float
    params: int  # all parameters (a tied matrix once)
    non_embedding_params: int  # N of 6 N

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.block_size


def training_flops_per_token(non_embedding_params: int, n_layer: int, block_size: int, n_embd: int) -> int:
    """6 N + 12 L T d (PaLM appendix B)."""
    return 6 * non_embedding_params + 12 * n_layer * block_size * n_embd


def weights_and_optimizer_bytes(params: int) -> int:
    """float32 weights, gradients and AdamW's two moments: 16 bytes per parameter."""
    return 16 * params


def activation_bytes(n_layer: int, block_size: int, batch_size: int, n_embd: int, vocab_size: int,
                     dropout: bool) -> int:
    """(34 or 32) L T B d + 6 T B V: Korthikanti et al.'s bf16 count without the T x T term."""
    per_layer = (34 if dropout else 32) * block_size * batch_size * n_embd
    return n_layer * per_layer + 6 * block_size * batch_size * vocab_size


def ranks_that_fit(memory_bytes: float, per_process_bytes: float) -> int:
    return math.floor(memory_bytes / per_process_bytes)


def gpu_models() -> list[ModelShape]:
    """gpu-small and the mismatch grid's gpu GPT, counted from real (CPU) models of their shapes."""
    from minilm import GPT, GPTConfig
    from minilm.data import ByteTokenizer
    from minilm.mismatch import PRESETS as MISMATCH_PRESETS
    from minilm.training import PRESETS as TRAINING_PRESETS

    vocab_size = ByteTokenizer().vocab_size
    small = TRAINING_PRESETS["gpu-small"]
    grid = MISMATCH_PRESETS["gpu"]
    shapes = [("gpu-small", small["model_args"]["gpt"], small["block_size"], small["batch_size"], small["steps"]),
              ("mismatch gpu: one GPT", grid.gpt_args(), grid.block_size, grid.batch_size, grid.steps)]
    models = []
    for name, model_args, block_size, batch_size, steps in shapes:
        model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, **model_args))
        models.append(ModelShape(name, model_args["n_layer"], model_args["n_embd"], block_size, batch_size, steps,
                                 vocab_size, model_args.get("dropout", 0.0), model.num_params(),
                                 model.num_params(non_embedding=True)))
    return models


def matrix_models() -> int:
    """Specialists in the grid's cross-domain matrix: seeds x bundled domains (the grid trains more)."""
    from minilm.data import bundled_corpora
    from minilm.mismatch import PRESETS as MISMATCH_PRESETS

    return MISMATCH_PRESETS["gpu"].seeds * len(bundled_corpora())


def read_measured(path: str) -> dict:
    """MFU and peak memory of bench/gpu.sh's results.json (None where that run has none)."""
    try:
        summary = json.loads(Path(path).read_text())["summary"]
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"--results: {path!r} is not a readable results.json of bench/gpu.sh ({error})") from error
    mfu = summary.get("mfu_percent_compiled") or summary.get("mfu_percent_eager")
    return {"mfu": mfu / 100 if mfu else None, "gpu": summary.get("gpu"),
            "peak_mib": summary.get("peak_cuda_mib_compiled") or summary.get("peak_cuda_mib_eager")}


def estimate(model: ModelShape, tflops: float, mfu: float, context_gib: float, memory_gib: float,
             measured_peak_mib: float | None = None) -> dict:
    flops = training_flops_per_token(model.non_embedding_params, model.n_layer, model.block_size, model.n_embd)
    weights = weights_and_optimizer_bytes(model.params)
    activations = activation_bytes(model.n_layer, model.block_size, model.batch_size, model.n_embd,
                                   model.vocab_size, model.dropout > 0)
    tensors = measured_peak_mib * 2**20 if measured_peak_mib else weights + activations
    per_process = tensors + context_gib * GIB
    total_flops = flops * model.tokens
    return {"model": model.name, "params_m": model.params / 1e6, "tokens_m": model.tokens / 1e6,
            "flops_per_token_m": flops / 1e6, "train_pflop": total_flops / 1e15,
            "weights_optimizer_mib": weights / 2**20, "activations_mib": activations / 2**20,
            "per_process_gib": per_process / GIB, "memory_from": "measured" if measured_peak_mib else "estimate",
            "ranks_in_memory": ranks_that_fit(memory_gib * GIB, per_process),
            "minutes": total_flops / (tflops * 1e12 * mfu) / 60}


def main(argv=None) -> int:
    parser = OneLineErrorParser(prog="bench/laptop_gpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                        help="the laptop GPU's dense bf16 tensor TFLOP/s (default: RTX 4060 Laptop, 60 W)")
    parser.add_argument("--mfu", type=float, default=None,
                        help=f"model FLOPs utilisation to assume (default: --results', else {DEFAULT_MFU})")
    parser.add_argument("--memory-gib", type=float, default=8.0, help="the laptop GPU's memory in GiB")
    parser.add_argument("--context-gib", type=float, default=DEFAULT_CONTEXT_GIB,
                        help="memory of one process's CUDA context, in GiB (an assumption)")
    parser.add_argument("--results", help="bench/gpu.sh's results.json: its MFU and gpu-small peak memory")
    args = parser.parse_args(argv)
    try:
        for name in ("tflops", "memory_gib"):
            if not getattr(args, name) > 0:
                raise UserError(f"--{name.replace('_', '-')}: expected a number > 0, got {getattr(args, name)}")
        if args.mfu is not None and not 0 < args.mfu <= 1:
            raise UserError(f"--mfu: expected a fraction in (0, 1], got {args.mfu}")
        if not args.context_gib >= 0:
            raise UserError(f"--context-gib: expected a number >= 0, got {args.context_gib}")
        measured = read_measured(args.results) if args.results else {"mfu": None, "gpu": None, "peak_mib": None}
    except UserError as error:
        print(f"bench/laptop_gpu.py: error: {error}", file=sys.stderr)
        return 2
    mfu = args.mfu or measured["mfu"] or DEFAULT_MFU
    mfu_source = ("--mfu" if args.mfu else f"measured on {measured['gpu']} by bench/gpu.sh" if measured["mfu"]
                  else "assumed")
    rows = []
    for model in gpu_models():
        peak = measured["peak_mib"] if model.name == "gpu-small" else None
        rows.append(estimate(model, args.tflops, mfu, args.context_gib, args.memory_gib, peak))
    grid_models = matrix_models()
    grid_gpt = next(row for row in rows if row["model"].startswith("mismatch"))
    print(f"assumed GPU: {args.tflops:g} bf16 TFLOP/s, MFU {mfu:.0%} ({mfu_source}), {args.memory_gib:g} GiB, "
          f"{args.context_gib:g} GiB CUDA context per process")
    header = (f"{'model':<22} {'params':>7} {'tokens':>7} {'FLOP/tok':>9} {'PFLOP':>7} {'W+opt':>7} {'activ.':>7} "
              f"{'process':>8} {'ranks':>5} {'minutes':>8}")
    print(header)
    print(f"{'':<22} {'M':>7} {'M':>7} {'M':>9} {'':>7} {'MiB':>7} {'MiB':>7} {'GiB':>8} {'fit':>5} {'est.':>8}")
    for row in rows:
        print(f"{row['model']:<22} {row['params_m']:>7.2f} {row['tokens_m']:>7.1f} {row['flops_per_token_m']:>9.1f} "
              f"{row['train_pflop']:>7.2f} {row['weights_optimizer_mib']:>7.0f} {row['activations_mib']:>7.0f} "
              f"{row['per_process_gib']:>8.2f} {row['ranks_in_memory']:>5d} {row['minutes']:>8.1f}")
    print(f"the grid's cross-domain matrix alone ({grid_models} GPTs): {grid_models * grid_gpt['train_pflop']:.1f} "
          f"PFLOP, {grid_models * grid_gpt['minutes']:.0f} minutes (mixing, transfer, tokenizers, the LSTM add more)")
    print("process memory: " + ", ".join(f"{row['model']}: {row['memory_from']}" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
