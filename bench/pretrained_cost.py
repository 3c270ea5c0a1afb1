"""The CPU cost of the mismatch grid's `pretrained` experiment with a model of GPT-2 small's shape.

    python bench/pretrained_cost.py [--preset cpu-quick] [--threads 2] [--repeats 2]

Nothing is downloaded. The "pre-trained" model is random (the cost does not depend on the
weights): a GPTConfig of GPT-2 small's shape (12 layers, width 768, context 1024) with a byte-level
BPE of GPT-2's vocabulary size (50,257, trained here by `tokenizers` on the bundled corpora),
written as a Hugging Face folder with minilm.hf's functions and read back with `from_hf`, as
`--init-from hf:DIR` reads it. Timed, each piece the experiment runs:

- loading: `minilm.hf.from_hf` of the folder;
- tokenizing: minilm's BPE (the encoder the grid uses) on the first --tokenize-bytes of each
  bundled corpus, scaled to the whole of the six corpora (each is tokenized once, then cached);
- a training step at the preset's batch x window (in tokens): forward, backward, AdamW;
- scoring: one evaluation batch of windows of the preset's window (a forward without gradients).

From these it prints an estimate of the whole experiment at the preset (its `matrix` prerequisite
not included): steps x the step time, plus scoring every domain before and after (eval_windows
windows each) and along the fine-tuning ((curve_points + 1) x curve_windows windows per domain).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from minilm import hf  # noqa: E402
from minilm.data import bundled_corpora, read_corpus  # noqa: E402
from minilm.gpt import GPT, GPTConfig  # noqa: E402
from minilm.metrics import evaluate  # noqa: E402
from minilm.mismatch.config import PRESETS  # noqa: E402
from minilm.mismatch.experiments.pretrained import eval_batch_size  # noqa: E402
from minilm.training import TrainConfig, make_optimizer  # noqa: E402

VOCAB = 50257
EOT = "<|endoftext|>"


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of `repeats` calls after one warm-up call, and every run."""
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def write_folder(folder: Path, text: str) -> None:
    """A random GPT-2-small-shaped model and a 50,257-token byte-level BPE, as a Hugging Face folder."""
    import tokenizers

    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator([text], vocab_size=VOCAB - 1, min_frequency=2, show_progress=False)
    trainer.add_special_tokens([EOT])
    (folder / "tokenizer.json").write_text(trainer.to_str(), encoding="utf-8")
    tokenizer = hf.load_hf_tokenizer(folder)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=1024, n_layer=12, n_head=12, n_embd=768,
                          dropout=0.1))
    (folder / "config.json").write_text(json.dumps(hf.hf_config_from_gpt_config(model.config, tokenizer)))
    from safetensors.torch import save_file

    save_file(hf.hf_state_from_minilm(model.state_dict(), model.config), str(folder / "model.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu-quick", choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tokenize-bytes", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c = PRESETS[args.preset]
    corpora = {name: read_corpus(name)[2] for name in bundled_corpora()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_folder(folder, "".join(data.decode("utf-8") for data in corpora.values()))
        print(f"built the folder (BPE trained by tokenizers, random weights, safetensors written) in "
              f"{time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        model, tokenizer = hf.from_hf(folder)
        load_seconds = time.perf_counter() - start
    print(f"GPT-2 small shape: {model.num_params() / 1e6:.1f}M parameters, vocab {tokenizer.vocab_size:,}; preset "
          f"{c.preset}: batch {c.batch_size} x {c.block_size} tokens, {c.steps} steps; {torch.get_num_threads()} "
          f"threads, {platform.machine()}, {platform.platform()}, torch {torch.__version__}")
    print(f"load (from_hf)      {load_seconds:7.2f} s")

    total_bytes = sum(len(data) for data in corpora.values())
    tokenize_seconds, tokenized_bytes, tokens = 0.0, 0, 0
    for data in corpora.values():
        piece = data[:args.tokenize_bytes].decode("utf-8", "ignore")
        start = time.perf_counter()
        tokens += len(tokenizer.encode(piece))
        tokenize_seconds += time.perf_counter() - start
        tokenized_bytes += len(piece.encode("utf-8"))
    rate = tokenized_bytes / tokenize_seconds
    print(f"tokenize            {rate / 1e3:7.1f} kB/s over {tokenized_bytes:,} bytes ({tokenized_bytes / tokens:.2f} "
          f"bytes a token); all six corpora ({total_bytes / 1e6:.1f} MB): {total_bytes / rate:.0f} s, once")

    optimizer = make_optimizer(model, TrainConfig(lr=c.lr * 0.1), torch.device("cpu"))
    batch = torch.randint(0, tokenizer.vocab_size, (c.batch_size, c.block_size + 1))

    def train_step():
        model.train()
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step, step_runs = timed(train_step, args.repeats)
    print(f"training step       {step:7.2f} s  (runs {', '.join(f'{s:.2f}' for s in step_runs)}; "
          f"{c.batch_size * c.block_size / step:.0f} tokens/s)")
    per_batch = eval_batch_size(c.block_size, tokenizer.vocab_size)
    windows = torch.randint(0, tokenizer.vocab_size, (per_batch, c.block_size + 1))
    score, score_runs = timed(lambda: evaluate(model, windows, tokenizer, per_batch, "cpu", num_bytes=1),
                              args.repeats)
    per_window = score / per_batch
    print(f"scoring             {per_window:7.3f} s a window of {c.block_size} tokens (batches of {per_batch}; runs "
          f"{', '.join(f'{s:.2f}' for s in score_runs)})")

    domains = len(corpora)
    training = c.steps * step
    scoring = (2 * domains * c.eval_windows + (c.curve_points + 1) * domains * c.curve_windows) * per_window
    tokenizing = total_bytes / rate
    total = training + scoring + tokenizing + 2 * load_seconds
    print(f"estimate for `--preset {c.preset} --experiments pretrained` (its matrix not included), six domains: "
          f"training {training / 3600:.2f} h + scoring {scoring / 3600:.2f} h + tokenizing {tokenizing / 60:.1f} min"
          f" = {total / 3600:.2f} h; per extra step {step:.1f} s")


if __name__ == "__main__":
    main()
