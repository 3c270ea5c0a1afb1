"""Generation speed, whole generations timed in one run: every path minilm has, and the outside baselines.

The model has the shape of nanoGPT's README CPU config (4 layers, 4 heads, 128 wide, block 64,
vocabulary 256 bytes); the weights are random (speed does not depend on them) unless --ckpt is
given. Each round generates --tokens new tokens from a one-token prompt ("\\n") with nanoGPT's
sample.py settings (temperature 0.8, top-k 200). The paths:

    GPTDecoder    generate(decoder="fast"): GPTDecoder.step with a KV cache (the default)
    GPT.step      generate(decoder="step"): GPT.step with a KV cache, the path a reader follows
    race          as GPTDecoder, but each token drawn by the exponential race below instead of
                  torch.multinomial (the measured aside: it stays here unless it pays >= 1.1x)
    watch         as GPTDecoder, but the per-step finiteness check (one `bool` per token) replaced
                  by a running sum on the device read once at the end (no wait per token)
    no-cache      generate_without_cache: the full forward over the last block_size tokens every
                  step, as nanoGPT's sample.py does
    transformers  (when Hugging Face `transformers` is importable) GPT2LMHeadModel of the same
                  shape, `generate(do_sample=True)` with its KV cache; its positions stop at 64,
                  so each round is 8 calls of at most 63 new tokens from the one-token prompt

The paths are timed in alternating rounds, so load from other processes hits all alike, and the
median round is reported, with the ratios, tokens per CPU-second of this process (less sensitive
to other jobs than the wall clock, though not immune), peak memory and model FLOPs utilisation
(MFU) against a float32 matmul rate measured in the same run. FLOPs per generated token, forward
only: 2N + 4 L T d, N = non-embedding parameters, T = the average context length.
Targets: GPTDecoder >= 3x no-cache (nanoGPT-style) and >= 2x transformers, in the same run.

Threads: one by default. Batch-1 generation of a small model is a chain of tiny matrix-vector
products; splitting each over threads costs more than it saves, and on a machine shared with
other jobs two threads per process can slow everything down. `--threads 0` compares.

    .venv/bin/python bench/sample.py
    .venv/bin/python bench/sample.py --tokens 500 --rounds 5 --threads 0 --profile
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from unittest import mock

import torch
from tqdm import tqdm

from minilm import sampling
from minilm.gpt import GPT, GPTConfig
from minilm.sampling import generate, generate_without_cache


def exponential_race(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row, drawn without torch.multinomial: probs (B, V) -> (B, 1).

    Give every token an independent waiting time E_i ~ Exp(1). Then E_i / p_i is exponential with
    rate p_i, and the first of these clocks to ring is token i with probability p_i / sum_j p_j,
    so argmax_i p_i / E_i is one exact draw (the Gumbel-max trick in another form). It skips
    multinomial's checks of its input. A token with probability 0 never wins (E_i is kept > 0).
    """
    waits = torch.empty_like(probs).exponential_(generator=generator)  # (B, V), E_i ~ Exp(1)
    waits.clamp_min_(torch.finfo(waits.dtype).tiny)
    return torch.argmax(probs / waits, dim=-1, keepdim=True)  # (B, 1)


class DeviceSideWatch:
    """The alternative to checking every step's logits with one `bool` (a wait per token): add
    each step's sum into a float32 total on the device (nan or inf there stays for good) and
    read it once at the end."""

    def __init__(self):
        self.total = None

    def __call__(self, logits: torch.Tensor, new_tokens: int = 0) -> None:  # stands in for require_finite
        s = logits.sum().float()
        self.total = s if self.total is None else self.total.add_(s)

    def check(self) -> None:
        if self.total is not None and not bool(torch.isfinite(self.total)):
            raise ValueError("non-finite logits during generation")


def matmul_flops_per_s(device: torch.device, n: int = 512, repeats: int = 20) -> float:
    """Achieved float32 matmul rate (FLOP/s) of an n x n @ n x n product, best of a few tries."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n ** 3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call of fn."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def average_context(prompt_len: int, new_tokens: int, block_size: int) -> float:
    """Mean number of keys each generated token attends to under GPT.step's re-fill policy."""
    total, n = 0, min(prompt_len, block_size)
    for _ in range(new_tokens):
        total += n
        n = n + 1 if n + 1 <= block_size else max(block_size // 2, 1)
    return total / max(new_tokens, 1)


def profile_step(model: GPT, device: torch.device, steps: int = 200) -> None:
    """Where the time of one cached decoding step goes: the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    idx = torch.zeros(1, 1, dtype=torch.long, device=device)
    with torch.inference_mode():
        _, state = model.step(idx)
        for _ in range(20):  # warm up, and stay below block_size so no re-fill is profiled
            _, state = model.step(idx, state)
        state_start = state
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            state = state_start
            for i in range(steps):
                _, state = model.step(idx, state if i % 40 else state_start)
        wall = time.perf_counter() - start
    print(f"\nprofile: {steps} cached steps (profiler overhead included: {wall / steps * 1e3:.2f} ms/step)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def transformers_generator(config: GPTConfig, tokens: int, temperature: float, top_k: int):
    """A callable that generates `tokens` tokens with transformers' GPT-2 of the same shape, or
    None when transformers is not installed."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_config = GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                           n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(hf_config).eval()
    prompt = torch.tensor([[10]])

    def run():
        done = 0
        while done < tokens:  # its learned positions stop at block_size: restart from the prompt
            n = min(config.block_size - 1, tokens - done)
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=True, temperature=temperature, top_k=top_k,
                                 pad_token_id=0)
            done += out.shape[1] - 1
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description="Generation tokens/s of every path, batch 1, in one run.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tokens", type=int, default=500, help="new tokens per round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each path (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads; 0 = PyTorch's default")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    parser.add_argument("--ckpt", default=None, help="time this checkpoint's model instead of a random one")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--top-k", type=int, default=200, help="top-k (nanoGPT's default)")
    parser.add_argument("--profile", action="store_true", help="also profile the cached step by operator")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.ckpt:
        from minilm.checkpoint import load_model

        model = load_model(args.ckpt, device)[0]
    else:
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
        model = GPT(config).to(device).eval()
    c = model.config
    prompt = [10]  # "\n"
    settings = dict(temperature=args.temperature, top_k=args.top_k)

    def run(decoder="fast"):
        return generate(model, prompt, args.tokens, generator=torch.Generator(device).manual_seed(1),
                        decoder=decoder, **settings)

    def with_race():
        with mock.patch.object(sampling, "draw", exponential_race):
            run()

    def with_watch():
        watch = DeviceSideWatch()
        with mock.patch.object(sampling, "require_finite", watch):
            run()
        watch.check()

    def uncached():
        generate_without_cache(model, prompt, args.tokens, generator=torch.Generator(device).manual_seed(1),
                               **settings)

    same = torch.equal(run(), run("step"))
    with mock.patch.object(sampling, "draw", exponential_race):
        race_same = torch.equal(run(), run("step"))
    print(f"minilm generation bench: {platform.processor() or platform.machine()}, {device}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model: {c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, block {c.block_size}, "
          f"vocab {c.vocab_size}; batch 1, {args.tokens} new tokens, temperature {args.temperature}, "
          f"top-k {args.top_k}")
    print(f"paths: {sampling.generation_path(model, 'fast')} and {sampling.generation_path(model, 'step')} "
          f"pick the same tokens from the same seed: {same} (with the race: {race_same})")
    rss_before = peak_rss_mib()
    paths = {"GPTDecoder": run, "GPT.step": lambda: run("step"), "race": with_race, "watch": with_watch,
             "no-cache": uncached}
    hf = transformers_generator(c, args.tokens, args.temperature, args.top_k) if device.type == "cpu" else None
    if hf is not None and not args.ckpt:
        paths["transformers"] = hf
    else:
        print("(transformers not importable or --ckpt/--device given: no in-run transformers baseline)")
    for fn in paths.values():  # warm-up
        fn()
    times = {name: [] for name in paths}  # (wall, cpu) per round
    for _ in tqdm(range(args.rounds), desc="rounds", leave=False):  # alternate: outside load hits every path
        for name, fn in paths.items():
            times[name].append(timed(fn, device))
    rate = {name: args.tokens / statistics.median(w for w, _ in t) for name, t in times.items()}
    best = {name: args.tokens / min(w for w, _ in t) for name, t in times.items()}
    per_cpu_s = {name: args.tokens / statistics.median(c for _, c in t) for name, t in times.items()}

    flops_rate = matmul_flops_per_s(device)
    N = model.num_params(non_embedding=True)
    T_avg = average_context(len(prompt), args.tokens, c.block_size)
    flops_per_token = 2 * N + 4 * c.n_layer * T_avg * c.n_embd
    for name in paths:
        mfu = rate[name] * flops_per_token / flops_rate
        print(f"{name:>12}: {rate[name]:7.0f} tokens/s median of {args.rounds} (best {best[name]:.0f}), "
              f"{1e3 / rate[name]:.2f} ms/token, MFU {mfu:.2%}; {per_cpu_s[name]:.0f} tokens per CPU-second")

    def ratio(a, b, note=""):
        print(f"{'ratio':>12}: {a} / {b} = {rate[a] / rate[b]:.2f}x (CPU-seconds: {per_cpu_s[a] / per_cpu_s[b]:.2f}x)"
              f"{note}")

    ratio("GPTDecoder", "GPT.step", " (the fast decoder stays only if it pays)")
    ratio("race", "GPTDecoder", " (the race would replace torch.multinomial only at >= 1.10x)")
    ratio("watch", "GPTDecoder", " (what the per-step finiteness check costs)")
    ratio("GPTDecoder", "no-cache", " (target >= 3x)")
    if "transformers" in rate:
        ratio("GPTDecoder", "transformers", " (target >= 2x)")
    load, cores = os.getloadavg()[0], os.cpu_count()
    busy = " (above the core count: other jobs share the cores and wall-clock rates drop)" if load > cores else ""
    print(f"        load: average {load:.1f} on {cores} cores{busy}")
    print(f"      memory: peak RSS {peak_rss_mib():.0f} MiB (after import and model: {rss_before:.0f} MiB); "
          f"KV cache at block_size: {2 * c.n_layer * c.block_size * c.n_embd * 4 / 2**10:.0f} KiB")
    if device.type == "cuda":
        print(f"           peak CUDA memory allocated {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    print(f"      matmul: {flops_rate / 1e9:.1f} GFLOP/s (float32 512x512); model FLOPs/token "
          f"{flops_per_token / 1e6:.2f} M (N = {N:,} non-embedding params, mean context {T_avg:.1f})")
    if args.profile:
        profile_step(model, device)


if __name__ == "__main__":
    main()
