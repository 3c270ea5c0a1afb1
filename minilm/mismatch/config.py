"""The sizes and budgets of one run of the mismatch grid, and the named presets.

Every model trained in the grid gets the same budget: `steps` optimizer steps of `batch_size`
windows of `block_size` bytes, i.e. `steps * batch_size * block_size` bytes seen.
"""
from __future__ import annotations

from dataclasses import dataclass

from minilm.cli import UserError, flag, validate_config


@dataclass
class MismatchConfig:
    """The sizes and budgets of one run of the grid (see the module docstring)."""

    preset: str = "cpu-quick"
    # the GPT (byte-level, vocabulary 256)
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    # the LSTM: embedding width = n_embd; its hidden size is chosen to match the GPT's parameter count
    lstm_layers: int = 1
    # training (one budget for every model)
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 30
    # evaluation: at most this many fixed windows of block_size bytes per domain
    eval_windows: int = 256
    curve_points: int = 10  # evaluations along each transfer run and each specialist (plus one before it starts)
    curve_windows: int = 32  # windows per domain at each evaluation along a specialist's training
    position_windows: int = 2048  # loss by position: a position is one byte per window, so it needs many windows
    # the experiments
    seeds: int = 3
    replay_fractions: tuple = (0.0, 0.01, 0.05, 0.25)
    bpe_vocab_size: int = 1024
    bpe_train_bytes: int = 1_000_000  # BPE is trained on the first this-many bytes of each training split
    bpe_eval_bytes: int = 100_000  # bytes per token is measured on the first this-many validation bytes
    ngram_order: int = 6  # the Kneser-Ney counting baseline: N of the n-gram
    ngram_train_bytes: int = 0  # the n-gram counts the first this-many bytes of each training split; 0 = all
    device: str = "auto"
    init_from: str = ""  # hf:NAME_OR_DIR: a pre-trained GPT-2 for the `pretrained` experiment; "" = none
    threads: int = 1  # torch CPU threads; 1 keeps tiny models fast on a busy laptop, 0 = PyTorch's choice

    def __post_init__(self):
        positive = ("n_layer", "n_head", "n_embd", "block_size", "lstm_layers", "steps", "batch_size",
                    "eval_windows", "curve_points", "curve_windows", "position_windows", "seeds", "bpe_train_bytes",
                    "bpe_eval_bytes")
        rules = {name: ("int", 1) for name in positive}
        rules.update(warmup_steps=("int", 0), threads=("int", 0), bpe_vocab_size=("int", 257),
                     ngram_order=("choice", tuple(range(1, 9))), ngram_train_bytes=("int", 0),
                     lr=("open_number", 0.0, None), min_lr=("number", 0.0, None), device=("str",), preset=("str",),
                     init_from=("str",))
        validate_config(self, rules, name_of=flag)
        if self.init_from and (not self.init_from.startswith("hf:") or self.init_from == "hf:"):
            raise UserError(f"--init-from: expected hf:NAME_OR_DIR (a Hugging Face GPT-2 folder or hub name), got "
                            f"{self.init_from!r}; the grid starts only pre-trained Hugging Face models")
        if any(not 0.0 <= r < 1.0 for r in self.replay_fractions) or 0.0 not in self.replay_fractions:
            raise UserError(f"replay fractions {self.replay_fractions} must lie in [0, 1) and include 0")

    def gpt_args(self) -> dict:
        return dict(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, dropout=0.0)

    def tokens_per_model(self) -> int:
        return self.steps * self.batch_size * self.block_size


PRESETS: dict[str, MismatchConfig] = {
    # For the CI test: seconds. Two seeds so that spreads exist.
    "micro": MismatchConfig(preset="micro", n_layer=1, n_head=2, n_embd=32, block_size=32, steps=20,
                            batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_windows=8, curve_windows=4,
                            curve_points=2, position_windows=32, seeds=2, bpe_vocab_size=300, bpe_train_bytes=20_000,
                            bpe_eval_bytes=5_000, ngram_train_bytes=50_000),
    # The README's first look: all six domains, three seeds, minutes on a 2-core laptop CPU.
    "cpu-quick": MismatchConfig(preset="cpu-quick"),
    # A credible CPU run, sized for about an hour on 2 cores with --jobs 2 (docs/experiments.md says how):
    # the size of `make demo`'s model, a context long enough for the loss to keep falling past 8 bytes.
    "cpu": MismatchConfig(preset="cpu", n_layer=4, n_head=4, n_embd=128, block_size=128, steps=700, batch_size=16,
                          lr=2e-3, min_lr=2e-4, warmup_steps=50, eval_windows=256, curve_points=8, curve_windows=32,
                          position_windows=2048, seeds=3),
    # The same grid, bigger: for a GPU (a few minutes per model).
    "gpu": MismatchConfig(preset="gpu", n_layer=6, n_head=6, n_embd=384, block_size=256, lstm_layers=2,
                          steps=3000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_windows=512, curve_points=15, curve_windows=128, position_windows=4096, seeds=3,
                          bpe_vocab_size=1024,
                          bpe_train_bytes=2_000_000, bpe_eval_bytes=100_000, threads=0),
}
