"""Mutation testing: plant one-line bugs in a copy of the repository and check that a test fails.

    nice python bench/mutants.py                 # every mutant (several minutes on 2 cores)
    python bench/mutants.py --only 7 15          # just these mutants (numbers as printed)
    python bench/mutants.py --list               # print the mutants, run nothing

Each mutant below is (file, the exact text of one line or part of it, its replacement, the test
files that should catch it). For each one the repository's tracked files are copied to a
temporary folder, the one replacement is made there, and `pytest -x` runs the listed test files
against the copy. A mutant is "killed" when pytest fails and "survives" when it passes. The kill
rate is printed at the end. A survivor means either a missing test (write one, see
tests/test_planted_bugs.py) or a harmless change (say why in docs/mutation-testing.md).

This is not part of the normal test suite: it runs the suite's files dozens of times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    path: str  # file in the repository
    old: str  # exact text, found exactly once in the file
    new: str  # what replaces it
    tests: tuple[str, ...]  # test files expected to catch it
    why: str  # the bug it stands for


LAYERS = ("tests/test_reference_layers.py", "tests/test_invariants.py")
GPT = ("tests/test_reference_gpt.py", "tests/test_invariants.py", "tests/test_planted_bugs.py")
SAMPLING = ("tests/test_sampling.py", "tests/test_planted_bugs.py")
TRAINING = ("tests/test_training.py", "tests/test_planted_bugs.py")
DATA = ("tests/test_data.py",)

MUTANTS = [
    # -- layers: attention, LayerNorm, GELU, residual block
    Mutant("minilm/layers.py", "* (1.0 / math.sqrt(self.head_size))", "* (1.0 / self.head_size)", LAYERS,
           "attention scores scaled by 1/hs instead of 1/sqrt(hs)"),
    Mutant("minilm/layers.py", "dtype=torch.bool, device=device).tril()", "dtype=torch.bool, device=device).triu()",
           LAYERS, "the causal mask lets a query see the future"),
    Mutant("minilm/layers.py", "var = xc.square().mean(dim=-1, keepdim=True)",
           "var = x.square().mean(dim=-1, keepdim=True)", LAYERS, "LayerNorm variance without centring"),
    Mutant("minilm/layers.py", "(x + 0.044715 * x ** 3)", "(x + 0.04715 * x ** 3)", LAYERS,
           "a wrong constant in the GELU approximation"),
    Mutant("minilm/layers.py", "x = x + self.mlp(self.ln_2(x))  # (B, T, C)", "x = self.mlp(self.ln_2(x))  # (B, T, C)",
           LAYERS, "the MLP's residual connection dropped"),
    Mutant("minilm/layers.py", ".tril(T_all - T_new)", ".tril(T_all - T_new - 1)",
           ("tests/test_kv_cache_and_config.py", "tests/test_invariants.py"),
           "the KV-cache mask hides each new query from itself"),
    Mutant("minilm/layers.py", "return att @ v  #", "return att.transpose(-2, -1) @ v  #", LAYERS,
           "attention weights transposed"),
    # -- gpt: initialisation, weight decay, tying, loss
    Mutant("minilm/gpt.py", "std=0.02 / math.sqrt(2 * self.config.n_layer)",
           "std=0.02 / math.sqrt(self.config.n_layer)", GPT, "residual projections scaled by 1/sqrt(n_layer)"),
    Mutant("minilm/gpt.py", "elif name.endswith(\"c_proj.weight\"):", "elif name.endswith(\"c_proj.bias\"):", GPT,
           "residual projections not scaled at all"),
    Mutant("minilm/gpt.py", "p.dim() >= 2 and id(p) not in embedding_ids", "p.dim() >= 2", GPT,
           "weight decay on the embeddings"),
    Mutant("minilm/gpt.py", "p.dim() >= 2 and id(p) not in embedding_ids", "id(p) not in embedding_ids", GPT,
           "weight decay on biases and LayerNorm gains"),
    Mutant("minilm/gpt.py", "ignore_index=-1)", "ignore_index=0)", GPT + ("tests/test_kv_cache_and_config.py",),
           "the loss ignores token 0 instead of the -1 padding"),
    # -- sampling
    Mutant("minilm/sampling.py", "return logits / temperature", "return logits * temperature", SAMPLING,
           "temperature multiplies instead of divides"),
    Mutant("minilm/sampling.py", "logits = apply_temperature(logits, temperature)  # (B, V)",
           "logits = logits  # (B, V)", SAMPLING, "temperature ignored (as if applied after the softmax)"),
    Mutant("minilm/sampling.py", "mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs",
           "mass_before = torch.cumsum(sorted_probs, dim=-1)", SAMPLING,
           "top-p drops the token that crosses p"),
    Mutant("minilm/sampling.py", "if k is None or k >= V:", "if k is None or k > V:", SAMPLING,
           "top-k with k = V filters (keeps all V anyway)"),
    Mutant("minilm/sampling.py", "torch.argmax(probs / waits, dim=-1, keepdim=True)",
           "torch.argmax(probs * waits, dim=-1, keepdim=True)", SAMPLING, "the exponential race run backwards"),
    # -- training
    Mutant("minilm/training.py", "(loss / config.grad_accum).backward()", "loss.backward()", TRAINING,
           "accumulated gradients not divided by grad_accum"),
    Mutant("minilm/training.py", "return config.lr * (step + 1) / (config.warmup_steps + 1)",
           "return config.lr * step / config.warmup_steps", TRAINING, "warmup starts at a learning rate of 0"),
    Mutant("minilm/training.py", "math.cos(math.pi * progress)", "math.cos(2 * math.pi * progress)", TRAINING,
           "cosine schedule goes back up"),
    Mutant("minilm/training.py", "torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)",
           "pass", TRAINING, "gradient clipping skipped"),
    Mutant("minilm/training.py", "optimizer.zero_grad(set_to_none=True)", "pass", TRAINING,
           "gradients never zeroed between steps"),
    # -- data
    Mutant("minilm/data.py", "cut = int(len(data) * (1.0 - val_fraction))", "cut = int(len(data) * val_fraction)",
           DATA, "the split holds out 90% instead of 10%"),
    Mutant("minilm/data.py", "num_starts = len(tokens) - self.block_size  #",
           "num_starts = len(tokens) - self.block_size - 1  #", DATA, "the last start offset is never drawn"),
    Mutant("minilm/data.py", "micro_batches.append((windows[:, :-1], windows[:, 1:]))",
           "micro_batches.append((windows[:, :-1], windows[:, :-1]))", DATA, "targets not shifted"),
    Mutant("minilm/data.py", "starts = np.arange(num_windows) * width", "starts = np.arange(num_windows) * (width + 1)",
           DATA, "validation windows skip a token between them"),
    # -- metrics
    Mutant("minilm/metrics.py", "return total_nats / LN2 / num_bytes", "return total_nats / num_bytes",
           ("tests/test_metrics.py",), "bits per byte in nats"),
    Mutant("minilm/metrics.py", "loss=total_nats / num_tokens,", "loss=total_nats / num_windows,",
           ("tests/test_metrics.py",), "mean loss per window instead of per token"),
    # -- checkpoint
    Mutant("minilm/checkpoint.py", "    torch.set_rng_state(state[\"torch\"])", "    pass",
           ("tests/test_checkpoint.py",), "torch's RNG not restored on resume"),
    # -- bpe
    Mutant("minilm/bpe.py", "            i += 2\n", "            i += 1\n", ("tests/test_bpe.py",),
           "a merge consumes one symbol instead of two"),
    # -- lstm
    Mutant("minilm/lstm.py", "self.bias[H : 2 * H].fill_(1.0)", "self.bias[0:H].fill_(1.0)", ("tests/test_lstm.py",),
           "the input gate, not the forget gate, gets the bias of 1"),
    Mutant("minilm/lstm.py", "c = f * c + i * g  # (B, H)", "c = f * c + i * o  # (B, H)", ("tests/test_lstm.py",),
           "the cell writes the output gate instead of the candidate"),
]


# Appended to the copy's conftest.py: one failing example is all a mutant run needs, so hypothesis
# skips shrinking it (shrinking a failure of a slow property test can take minutes).
NO_SHRINKING = """
from hypothesis import Phase as _Phase
from hypothesis import settings as _settings

_settings.register_profile("mutants", phases=[_Phase.explicit, _Phase.reuse, _Phase.generate], deadline=None)
_settings.load_profile("mutants")
"""


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [line for line in listing.stdout.splitlines() if (REPO_ROOT / line).is_file()]


def snapshot_repo(destination: Path) -> None:
    """Copy the tracked files (as they are in the working tree) to `destination`, and switch off
    hypothesis's shrinking there."""
    for name in tracked_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    with open(destination / "conftest.py", "a", encoding="utf-8") as conftest:
        conftest.write(NO_SHRINKING)


def apply(mutant: Mutant, root: Path) -> None:
    path = root / mutant.path
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.why!r}: {mutant.old!r} occurs {count} times in {mutant.path}, expected once")
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """("killed" | "survived" | "timeout", seconds): run pytest -x on `tests` in the copy at `root`."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.perf_counter()
    try:
        result = subprocess.run(command, check=False, cwd=root, env=env, capture_output=True, timeout=timeout)
        outcome = "killed" if result.returncode != 0 else "survived"
    except subprocess.TimeoutExpired:
        outcome = "timeout"  # the tests did not pass in time: counted as killed, and listed
    return outcome, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="+", help="run only these mutant numbers")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = [(i, m) for i, m in enumerate(MUTANTS, 1) if not args.only or i in args.only]
    if args.list:
        for i, m in chosen:
            print(f"{i:3d}  {m.path:22s} {m.why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="minilm-mutants-") as temp:
        baseline = Path(temp) / "baseline"
        snapshot_repo(baseline)  # one snapshot: later edits to the repo do not leak in
        all_tests = tuple(sorted({t for _, m in chosen for t in m.tests}))
        outcome, seconds = run_tests(baseline, all_tests, args.timeout * 4)
        if outcome != "survived":
            print("the unmutated copy fails its tests; fix the suite first", file=sys.stderr)
            return 1
        print(f"baseline: {len(all_tests)} test files pass on the unmutated copy ({seconds:.0f} s)")
        survivors, timeouts = [], []
        for i, mutant in chosen:
            root = Path(temp) / f"mutant-{i}"
            shutil.copytree(baseline, root)
            apply(mutant, root)
            outcome, seconds = run_tests(root, mutant.tests, args.timeout)
            print(f"{i:3d} {outcome.upper() if outcome == 'survived' else outcome:8s} {seconds:5.0f} s  "
                  f"{mutant.path}: {mutant.why}", flush=True)
            (survivors if outcome == "survived" else timeouts if outcome == "timeout" else []).append(i)
            shutil.rmtree(root)
    killed_count = len(chosen) - len(survivors)
    print(f"kill rate: {killed_count}/{len(chosen)} = {killed_count / len(chosen):.0%} "
          f"(of them {len(timeouts)} by timeout: {timeouts or 'none'}); survivors: {survivors or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
