"""What every experiment of the grid shares: the config, the domains, training one model and
scoring it on every domain.

The grid's work is cut into jobs. A `Job` trains (or builds) one thing, scores it, and returns a
JSON-ready result; it may start from the model another job saved (`after`), which is the only
dependency between jobs. The jobs run one after another, or spread over processes
(`minilm.mismatch.schedule`); each result is written under OUT/parts/ as it finishes.

Training goes through `minilm.training.train` and evaluation through `minilm.metrics.evaluate`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch

from minilm.data import ByteTokenizer
from minilm.metrics import evaluate
from minilm.training import TrainConfig, build_model, train

from .config import MismatchConfig
from .domains import Domain


@dataclass
class Job:
    """One unit of the grid's work, e.g. "the specialist of bible, seed 1".

    `run(grid)` returns (result, model): a JSON-ready dict, and the trained model (or None). The
    model is kept (saved with the part) only when a later job names this one in its `after`.
    """

    key: str  # unique and file-safe: "matrix.bible.seed1"
    label: str  # what the progress bar shows
    run: Callable  # (Grid) -> (dict, torch.nn.Module | None)
    after: tuple = ()  # keys of the jobs whose model this one loads (grid.model(key))
    trains: bool = True  # False for jobs that train no model (a tokenizer, scoring a saved model)


class Grid:
    """The config, the domains, the transfer pair, and the models other jobs start from."""

    def __init__(self, config: MismatchConfig, domains: dict[str, Domain], pair: tuple[str, str], parts=None):
        self.config = config
        self.domains = domains
        self.pair = pair
        self.parts = parts  # a minilm.mismatch.parts.Parts, where jobs' saved models are read from
        self.tokenizer = ByteTokenizer()
        self.step_seconds: list[float] = []  # wall time of every training step of the job running now

    @property
    def names(self) -> list[str]:
        return list(self.domains)

    def train_config(self, domain: str, seed: int, mix: dict | None = None, eval_extra: list | None = None,
                     model: str = "gpt", model_args: dict | None = None, eval_interval: int | None = None,
                     eval_windows: int = 1) -> TrainConfig:
        """A TrainConfig with the grid's budget. By default training's own evaluation is reduced to
        one window (each model is scored afterwards, on every domain)."""
        c = self.config
        return TrainConfig(
            data=self.domains[domain].spec, mix=dict(mix or {}), eval_extra=list(eval_extra or []),
            model=model, model_args=dict(model_args if model_args is not None else c.gpt_args()),
            block_size=c.block_size, batch_size=c.batch_size, steps=c.steps, lr=c.lr, min_lr=c.min_lr,
            warmup_steps=min(c.warmup_steps, c.steps - 1), eval_interval=eval_interval or c.steps,
            eval_windows=eval_windows, seed=seed, device=c.device, threads=c.threads, progress=False, verbose=False,
            distributed=False)  # each model is trained by one process, even when the grid is spread over ranks

    def train(self, config: TrainConfig, model: torch.nn.Module | None = None):
        """Train one model (or continue `model`, left untouched: a copy is trained)."""
        if model is not None:
            model = copy.deepcopy(model)
        result = train(config, model=model, tokenizer=self.tokenizer if model is not None else None)
        self.step_seconds.extend(result.step_seconds)
        return result

    def score(self, model: torch.nn.Module, domain: str):
        """Bits per byte (and loss by position) of `model` on the fixed validation windows of `domain`."""
        eval_set = self.domains[domain].eval_set
        device = next(model.parameters()).device
        return evaluate(model, eval_set.windows, self.tokenizer, batch_size=64, device=device,
                        num_bytes=eval_set.num_bytes)

    def score_all(self, model: torch.nn.Module) -> dict[str, float]:
        return {name: self.score(model, name).bits_per_byte for name in self.domains}

    def model(self, key: str) -> torch.nn.Module:
        """The model that job `key` saved (a GPT or LSTM of the grid's sizes), on the grid's device."""
        return self.parts.load_model(key, self)

    def build(self, config: TrainConfig) -> torch.nn.Module:
        """A fresh model of the kind and sizes `config` describes (the weights are then loaded)."""
        return build_model(config, self.tokenizer.vocab_size)

