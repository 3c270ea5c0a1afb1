"""Small timings behind design choices in minilm, each against its alternative in the same run.

    .venv/bin/python bench/micro.py

1. One-token decoding (GPTDecoder, nanoGPT's CPU model shape): its products as written,
   `torch.addmm(b, x, W_t)` with W_t a contiguous (in, out) copy, against `F.linear(x, W, b)`
   with W stored (out, in) as nn.Linear keeps it; everything else the same.
2. Drawing one token (bench/sample.py's exponential race vs torch.multinomial, which
   sampling.draw calls), one row of 256 probabilities, and whether the two pick the same tokens
   from the same seeded generator (200 seeds, 3 rows of 50); and what generation's per-token
   finiteness check (sampling.require_finite) costs.
3. GELU forward + backward, tanh form vs exact (erf), on a (12, 64, 512) activation: the MLP
   hidden layer of nanoGPT's CPU shapes.
4. A whole training step of that model (4 x 128, block 64, batch 12, no biases), tanh vs exact
   GELU, the two models' steps interleaved.
5. A training step with SDPA's flash kernel, its math backend, and the readable attention.
6. With --profile: where the time of that training step goes (matrix products, attention, GELU,
   ...), eager and with torch.compile (torch profiler).
Each figure is the median over repeats (microseconds or milliseconds per call).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.compile_ab import nanogpt_cpu_model, train_step  # noqa: E402
from bench.sample import exponential_race  # noqa: E402
from minilm.gpt import GPT, GPTConfig  # noqa: E402
from minilm.sampling import require_finite  # noqa: E402


def median_seconds(fn, repeats: int, inner: int) -> float:
    """Median over `repeats` of the mean time of `inner` calls of fn (after a warm-up)."""
    for _ in range(inner):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def one_token_products(tokens: int = 500, rounds: int = 7) -> None:
    """GPTDecoder as written (addmm on (in, out) copies) against the same decoder given nn.Linear's
    own (out, in) weights and F.linear, generating greedily from a random model, rounds alternating."""
    import minilm.gpt_decoder as gd

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=128)).eval()
    transposed = model.decoder()
    as_linear = model.decoder()
    for layer, block in zip(as_linear.layers, model.h, strict=True):
        for key, module in (("c_attn", block.attn.c_attn), ("attn_proj", block.attn.c_proj),
                            ("c_fc", block.mlp.c_fc), ("mlp_proj", block.mlp.c_proj)):
            layer[key] = (module.weight.detach(), module.bias.detach())  # (out, in), as nn.Linear keeps it
    as_linear.lm_head_t = model.lm_head.weight.detach().t()  # a view: the (V, C) storage, read transposed
    addmm = gd._affine

    def decode(decoder, affine):
        gd._affine = affine
        try:
            logits, state = decoder.step(torch.tensor([[10]]))
            for _ in range(tokens):
                logits, state = decoder.step(logits[:, -1].argmax(-1, keepdim=True), state)
        finally:
            gd._affine = addmm

    def linear(x, weight, bias):
        return F.linear(x, weight, bias)

    times = {"addmm": [], "linear": []}
    with torch.inference_mode():
        decode(transposed, addmm), decode(as_linear, linear)  # warm-up
        for _ in range(rounds):
            for name, decoder, affine in (("addmm", transposed, addmm), ("linear", as_linear, linear)):
                start = time.perf_counter()
                decode(decoder, affine)
                times[name].append((time.perf_counter() - start) / tokens)
    a, b = statistics.median(times["linear"]), statistics.median(times["addmm"])
    print(f"1. one-token decoding ({tokens} greedy tokens, median of {rounds}): F.linear on (out, in) weights "
          f"{a * 1e3:.3f} ms/token, addmm on (in, out) copies {b * 1e3:.3f} ms/token -> {a / b:.2f}x")


def drawing_a_token() -> None:
    probs = torch.softmax(torch.randn(1, 256), dim=-1)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        m = median_seconds(lambda: torch.multinomial(probs, 1, generator=generator), 21, 500)
        d = median_seconds(lambda: exponential_race(probs, generator), 21, 500)
    same = 0
    for seed in range(200):  # does the race pick multinomial's tokens from the same generator state?
        rows = torch.softmax(3 * torch.randn(3, 50, generator=torch.Generator().manual_seed(seed)), dim=-1)
        same += torch.equal(exponential_race(rows, torch.Generator().manual_seed(seed)),
                            torch.multinomial(rows, 1, generator=torch.Generator().manual_seed(seed)))
    with torch.inference_mode():
        w = median_seconds(lambda: require_finite(probs), 21, 500)
    print(f"2. one token from 256: torch.multinomial {m * 1e6:6.1f} us, exponential race {d * 1e6:6.1f} us "
          f"-> {m / d:.2f}x; same tokens as multinomial for {same} of 200 seeds; "
          f"require_finite (the per-token nan/inf check) {w * 1e6:5.1f} us")


def gelu_forms() -> None:
    x = torch.randn(12, 64, 512, requires_grad=True)
    grad = torch.randn(12, 64, 512)
    tanh = median_seconds(lambda: F.gelu(x, approximate="tanh").backward(grad), 15, 5)
    exact = median_seconds(lambda: F.gelu(x).backward(grad), 15, 5)
    print(f"3. GELU fwd+bwd (12, 64, 512): tanh {tanh * 1e3:6.2f} ms, exact {exact * 1e3:6.2f} ms "
          f"-> tanh costs {tanh / exact:.2f}x")


def interleaved_training_steps(variants: dict, steps: int) -> dict:
    """Median seconds of a training step (batch 12 x 64) for each variant, name -> (model, context
    manager factory); the variants' steps take turns so that the machine's drift hits all alike."""
    x = torch.randint(0, 256, (12, 64))  # (B, T)
    y = torch.randint(0, 256, (12, 64))  # (B, T)
    runs = {name: (model, torch.optim.AdamW(model.param_groups(0.1), lr=1e-3, fused=True), context, [])
            for name, (model, context) in variants.items()}
    for i in range(steps + 10):
        for model, optimizer, context, times in runs.values():
            start = time.perf_counter()
            with context():
                train_step(model, model, optimizer, x, y)
            if i >= 10:  # the first steps warm up
                times.append(time.perf_counter() - start)
    return {name: statistics.median(run[3]) for name, run in runs.items()}


def training_step_gelu(steps: int) -> None:
    medians = interleaved_training_steps({activation: (nanogpt_cpu_model(activation=activation), nullcontext)
                                          for activation in ("gelu_tanh", "gelu")}, steps)
    tanh, exact = medians["gelu_tanh"], medians["gelu"]
    print(f"4. training step, nanoGPT CPU shapes: tanh GELU {tanh * 1e3:6.2f} ms, exact {exact * 1e3:6.2f} ms "
          f"-> {tanh / exact:.2f}x (median of {steps} interleaved steps, {torch.get_num_threads()} threads)")


def training_step_attention(steps: int) -> None:
    """The attention of a training step three ways: SDPA with the flash kernel PyTorch picks on
    the CPU (the fast path), SDPA forced to its math backend, and the readable path (scores, mask,
    softmax written out)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    medians = interleaved_training_steps({
        "flash": (nanogpt_cpu_model(), nullcontext),
        "math": (nanogpt_cpu_model(), lambda: sdpa_kernel(SDPBackend.MATH)),
        "readable": (nanogpt_cpu_model(kernels="readable"), nullcontext),
    }, steps)
    flash = medians["flash"]
    print(f"5. training step, nanoGPT CPU shapes, attention: SDPA flash {flash * 1e3:6.2f} ms, "
          f"SDPA math {medians['math'] * 1e3:6.2f} ms ({medians['math'] / flash:.2f}x), readable "
          f"{medians['readable'] * 1e3:6.2f} ms ({medians['readable'] / flash:.2f}x) "
          f"(median of {steps} interleaved steps)")


PROFILE_GROUPS = {  # operator name -> the part of a training step it belongs to
    "matrix products": lambda name: name in ("aten::mm", "aten::addmm", "aten::bmm"),
    "attention kernel": lambda name: "scaled_dot_product" in name,
    "GELU": lambda name: name in ("aten::gelu", "aten::gelu_backward"),
    "layer norm": lambda name: "layer_norm" in name,
    "optimizer + clipping": lambda name: name in ("aten::_fused_adamw_", "aten::linalg_vector_norm"),
    "compiled kernels": lambda name: name.startswith("## Call CompiledFxGraph"),
}


def profile_training_step(compiled: bool, steps: int = 20) -> None:
    """Where a training step's time goes (exact GELU), eager or compiled: the share of each part in
    the profiler's self CPU time (the profiler itself slows the step down). In a compiled step the
    fused kernels inductor writes (GELU, layer norm, adds, cross-entropy) show as "compiled
    kernels"; the matrix products and the attention kernel stay library calls."""
    from torch.profiler import ProfilerActivity, profile

    model = nanogpt_cpu_model()
    optimizer = torch.optim.AdamW(model.param_groups(0.1), lr=1e-3, fused=True)
    forward = torch.compile(model) if compiled else model
    x, y = torch.randint(0, 256, (12, 64)), torch.randint(0, 256, (12, 64))

    def step():
        train_step(forward, model, optimizer, x, y)

    for _ in range(5):
        step()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ms_per_step = 1000 * (time.perf_counter() - started) / steps
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {group: sum(e.self_cpu_time_total for e in events if belongs(e.key)) / total
              for group, belongs in PROFILE_GROUPS.items()}
    shares["everything else"] = 1.0 - sum(shares.values())
    kind = "compiled" if compiled else "eager"
    print(f"6. profile of {steps} {kind} training steps ({ms_per_step:.1f} ms/step under the profiler), "
          "share of self CPU time:")
    for group, share in shares.items():
        if share > 0.0005:
            print(f"   {group:<22} {share:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Timings behind minilm's design choices.")
    parser.add_argument("--steps", type=int, default=60, help="interleaved training steps per model in part 4")
    parser.add_argument("--profile", action="store_true", help="6. also profile training steps, eager and compiled")
    parser.add_argument("--only-profile", action="store_true", help="run part 6 alone")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (parts 1-2 use 1 thread)")
    if not args.only_profile:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # batch-1 generation runs on one thread (bench/sample.py)
        one_token_products()
        drawing_a_token()
        torch.set_num_threads(threads)
        gelu_forms()
        training_step_gelu(args.steps)
        training_step_attention(args.steps)
    if args.profile or args.only_profile:
        profile_training_step(compiled=False)
        profile_training_step(compiled=True)


if __name__ == "__main__":
    main()
