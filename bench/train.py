"""Training speed: tokens/s, ms/iter, peak memory and model FLOPs utilisation (MFU).

    python bench/train.py                          # nanoGPT's CPU shapes, 200 iterations
    python bench/train.py --iters 2000             # the full comparison run, with val loss at the end
    python bench/train.py --preset gpu-small --compile --iters 500     # on a GPU
    python bench/train.py --preset gpu-small --compile --iters 5000 --eval-interval 250 \
        --target-val-loss 1.47                     # time to reach nanoGPT's val loss on a GPU

MFU compares the model's FLOP rate with a matmul FLOP rate measured in the same run, on the same
device and threads:
    FLOPs per token = 6 N + 12 L T d      (N non-embedding parameters, L layers, T context, d width)
    MFU = tokens/s x FLOPs per token / (matmul FLOPs/s)
On CUDA the loop waits for the GPU only every --log-interval steps (default 50 there, 1
elsewhere): waiting every step would stop the CPU from queueing the next step's kernels while the
GPU works. The per-step times then add up to the wall time of the timed steps, as long as
--eval-interval is a multiple of --log-interval. The first --warmup-iters steps are not timed (by
default the first log interval, at least 10 steps: so on CUDA the timing starts right after a wait
for the GPU, and no warm-up work leaks into it); evaluation is never timed. The matmul rate is bf16
on CUDA (the dtype autocast computes in there), float32 elsewhere. Peak RSS and peak CUDA memory are
read before the matmul probe allocates its matrices.

--target-val-loss X reports the first evaluation whose validation loss is <= X: its step and the
seconds since train() was called (data loading, compilation and evaluations included).

Ctrl-C (SIGINT, as `timeout --signal=INT` sends) stops training after the current step; the figures
of the steps done are still printed and written, with "interrupted": true.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

import torch  # noqa: E402

from minilm.data import UserError  # noqa: E402
from minilm.devices import pick_device  # noqa: E402
from minilm.training import TrainConfig, train  # noqa: E402


def matmul_flops_per_second(device: torch.device, dtype: torch.dtype, size: int = 1024, seconds: float = 1.0) -> float:
    """Best observed FLOP rate of a (size x size) @ (size x size) matmul: 2 size^3 FLOPs each.
    The first rounds (library start-up) only lower `best`, which keeps the fastest round."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        synchronize(device)
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - started))
    return best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_rss_mib() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="nanogpt-cpu", help="training preset to time")
    parser.add_argument("--data", default="shakespeare", help="corpus name or path")
    parser.add_argument("--iters", type=int, default=200, help="optimizer steps to run")
    parser.add_argument("--warmup-iters", type=int, default=0,
                        help="first steps left out of the timing (0 = the first log interval, at least 10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's choice)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--batch-size", type=int, default=0, help="override the preset's batch size (0 = keep)")
    parser.add_argument("--eval-interval", type=int, default=0,
                        help="evaluate every this many steps (0 = only at the end)")
    parser.add_argument("--target-val-loss", type=float, default=0.0,
                        help="report when the validation loss first reaches this (needs --eval-interval)")
    parser.add_argument("--log-interval", type=int, default=0,
                        help="wait for the device every this many steps (0 = 50 on CUDA, else 1)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        device = pick_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        log_interval = args.log_interval or (50 if device.type == "cuda" else 1)
        warmup_iters = args.warmup_iters or log_interval * -(-10 // log_interval)  # 10 rounded up to a multiple
        eval_interval = args.eval_interval or args.iters
        if eval_interval % log_interval:
            raise UserError(f"--eval-interval: expected a multiple of --log-interval={log_interval}, "
                            f"got {eval_interval}")
        if args.target_val_loss and not args.eval_interval:
            raise UserError("--target-val-loss: needs --eval-interval N to evaluate along the way")
        overrides = dict(steps=args.iters, lr_decay_steps=args.iters, eval_interval=eval_interval, device=args.device,
                         compile=args.compile, threads=args.threads, progress=False, verbose=False, out_dir="",
                         log_interval=log_interval)
        if args.batch_size:
            overrides["batch_size"] = args.batch_size
        config = TrainConfig.from_preset(args.preset, data=args.data, **overrides)
        if args.iters <= warmup_iters:
            raise UserError(f"--iters: expected more than --warmup-iters={warmup_iters}, got {args.iters}")
    except UserError as error:
        print(f"bench/train.py: error: {error}", file=sys.stderr)
        return 2

    started, started_clock = time.perf_counter(), time.time()
    result = train(config)
    wall_seconds = time.perf_counter() - started
    training_peak_rss = peak_rss_mib()  # before the matmul probe below allocates its matrices
    training_peak_cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    model = result.model
    timed = result.step_seconds[warmup_iters:]  # one entry per step; none when stopped during warm-up
    tokens_per_step = config.batch_size * config.block_size * config.grad_accum
    tokens_per_sec = tokens_per_step * len(timed) / sum(timed) if timed else None
    ms_per_iter = 1000 * sum(timed) / len(timed) if timed else None

    mc = model.config
    n_layer, width = getattr(mc, "n_layer", 0), getattr(mc, "n_embd", 0)
    non_embedding = model.num_params(non_embedding=True)
    attention_flops = 12 * n_layer * config.block_size * width if hasattr(mc, "n_head") else 0
    flops_per_token = 6 * non_embedding + attention_flops
    matmul_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    matmul_rate = matmul_flops_per_second(device, matmul_dtype, size=8192 if device.type == "cuda" else 1024)
    mfu = tokens_per_sec * flops_per_token / matmul_rate if timed else None

    figures = {
        "preset": args.preset, "device": str(device), "threads": torch.get_num_threads(), "compile": args.compile,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "torch": torch.__version__, "params": model.num_params(), "non_embedding_params": non_embedding,
        "iters": args.iters, "steps_done": result.step, "interrupted": result.interrupted,
        "warmup_iters": warmup_iters, "timed_iters": len(timed), "tokens_per_iter": tokens_per_step,
        "tokens_per_sec": round(tokens_per_sec, 1) if timed else None,
        "ms_per_iter": round(ms_per_iter, 2) if timed else None,
        # the first step holds torch.compile's compilation (Python-side, so it is in this time)
        "first_step_seconds": round(result.step_seconds[0], 2) if result.step_seconds else None,
        "flops_per_token": flops_per_token, "matmul_dtype": str(matmul_dtype).removeprefix("torch."),
        "matmul_tflops": round(matmul_rate / 1e12, 4),
        "mfu_percent": round(100 * mfu, 2) if timed else None, "peak_rss_mib": round(training_peak_rss, 1),
        "val_loss": round(result.final["val_loss"], 4), "val_bits_per_byte": round(result.final["val_bpb"], 4),
        "wall_seconds": round(wall_seconds, 1),
    }
    if device.type == "cuda":
        figures["peak_cuda_mib"] = round(training_peak_cuda / 2**20, 1)
        figures["gpu"] = torch.cuda.get_device_name(device)
    if args.target_val_loss:
        reached = next((r for r in result.history if r["val_loss"] <= args.target_val_loss), None)
        figures["target_val_loss"] = args.target_val_loss
        figures["target_reached_at_step"] = reached["step"] if reached else None
        figures["seconds_to_target"] = round(reached["time"] - started_clock, 1) if reached else None
        figures["best_val_loss"] = round(min(r["val_loss"] for r in result.history), 4)
    if args.eval_interval:
        figures["evals"] = [(r["step"], round(r["val_loss"], 4), round(r["time"] - started_clock, 1))
                            for r in result.history]
    width_of_names = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width_of_names}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
