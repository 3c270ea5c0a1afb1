"""Domain mismatch, measured: train tiny byte-level models on one kind of text, score them on others.

    python -m minilm.mismatch --preset cpu-quick --out runs/mismatch

runs six experiments on the bundled corpora (data/SOURCES.md) and writes a report to --out:
`report.md` (tables and notes), `report.json` (every number, per seed, with the config and the
machine) and, when matplotlib is installed (`pip install -e .[plot]`), PNG pictures.

Every score is in bits per byte on a domain's held-out split (the last 10% of its file), over a
fixed, capped set of validation windows. Models read raw bytes (vocabulary 256), so any model can
score any domain, the Chinese poetry included, and bits per byte compare across domains.

The experiments, in the order they run (read the functions below in the same order):

1. cross-domain matrix: one GPT per domain (the "specialist"), all of the same size and token
   budget, scored on every domain: matrix[trained_on][evaluated_on]; repeated over --seeds seeds,
   with the mean, the spread, and which gaps to the in-domain specialist exceed the spread;
2. mixing: one GPT trained on all domains at once (equal and size-proportional weights), with
   the same budget, against each column's specialist;
3. transfer and forgetting: the specialist of domain A continues training on domain B, with
   0, 1, 5 and 25% of each batch replayed from A; A and B are scored along the way; and a model
   trained on B from scratch for the same steps;
4. tokenizer mismatch: one byte-level BPE per domain at one vocabulary size; bytes per token of
   every tokenizer on every domain, and the overlap (Jaccard) of their vocabularies;
5. LSTM vs Transformer at a matched parameter count and token budget: bits per byte in and off
   domain, and the loss at each position of the context;
6. (inside 1) seeds, spreads and which differences are larger than the spread.

Training goes through `minilm.training.train` and evaluation through `minilm.metrics.evaluate`;
this module only decides what to train on what, and writes the report.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from minilm.data import ByteTokenizer, UserError, bundled_corpora, load_corpus, read_corpus, split_point
from minilm.metrics import LN2, evaluate
from minilm.training import EvalSet, TrainConfig, make_eval_set, train

# ----------------------------------------------------------------------------------------------
# 1. Configuration: presets
# ----------------------------------------------------------------------------------------------

DEFAULT_TRANSFER = ("shakespeare", "bible")  # close but different: both Early Modern English (see README)
REPORT_FILES = ("report.md", "report.json", "matrix.png", "mixing.png", "forgetting.png", "tradeoff.png",
                "loss_by_position.png", "tokenizers.png")


@dataclass
class MismatchConfig:
    """The sizes and budgets of one run of the grid. Every model trained in the grid gets the same
    budget: `steps` optimizer steps of `batch_size` windows of `block_size` bytes."""

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
    curve_points: int = 10  # evaluations along each transfer run (plus one before it starts)
    position_windows: int = 2048  # loss by position: a position is one byte per window, so it needs many windows
    # the experiments
    seeds: int = 3
    replay_fractions: tuple = (0.0, 0.01, 0.05, 0.25)
    bpe_vocab_size: int = 1024
    bpe_train_bytes: int = 1_000_000  # BPE is trained on the first this-many bytes of each training split
    bpe_eval_bytes: int = 100_000  # bytes per token is measured on the first this-many validation bytes
    device: str = "auto"
    threads: int = 1  # torch CPU threads; 1 keeps tiny models fast on a busy laptop, 0 = PyTorch's choice

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "block_size", "lstm_layers", "steps", "batch_size",
                     "eval_windows", "curve_points", "position_windows", "seeds", "bpe_train_bytes", "bpe_eval_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')}: expected a positive integer, got {value!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise UserError(f"--threads: expected an integer >= 0, got {self.threads!r}")
        if self.bpe_vocab_size <= 256:
            raise UserError(f"--bpe-vocab-size: expected more than the 256 byte tokens, got {self.bpe_vocab_size}")
        if any(not 0.0 <= r < 1.0 for r in self.replay_fractions) or 0.0 not in self.replay_fractions:
            raise UserError(f"replay fractions {self.replay_fractions} must lie in [0, 1) and include 0")

    def gpt_args(self) -> dict:
        return dict(n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd, dropout=0.0)

    def tokens_per_model(self) -> int:
        return self.steps * self.batch_size * self.block_size


PRESETS: dict[str, MismatchConfig] = {
    # For the CI test: seconds. Two seeds so that spreads exist.
    "micro": MismatchConfig(preset="micro", n_layer=1, n_head=2, n_embd=32, block_size=32, steps=20,
                            batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, eval_windows=8,
                            curve_points=2, position_windows=32, seeds=2, bpe_vocab_size=300, bpe_train_bytes=20_000,
                            bpe_eval_bytes=5_000),
    # The README's run: all six domains, three seeds, ~15 minutes on a 2-core laptop CPU.
    "cpu-quick": MismatchConfig(preset="cpu-quick"),
    # The same grid, bigger: for a GPU (a few minutes per model).
    "gpu": MismatchConfig(preset="gpu", n_layer=6, n_head=6, n_embd=384, block_size=256, lstm_layers=2,
                          steps=3000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_windows=512, curve_points=15, position_windows=4096, seeds=3, bpe_vocab_size=1024,
                          bpe_train_bytes=2_000_000, bpe_eval_bytes=100_000, threads=0),
}


# ----------------------------------------------------------------------------------------------
# 2. Domains: names -> corpus files, checked before anything is trained
# ----------------------------------------------------------------------------------------------


@dataclass
class Domain:
    """One corpus of the grid: its name in the report, the file, and its fixed validation set."""

    name: str
    spec: str  # what minilm.data.load_corpus takes: a bundled name or a path
    path: Path
    train_bytes: int
    val_bytes: int
    eval_set: EvalSet = field(repr=False)  # fixed validation windows (bytes)
    corpus_name: str = ""  # the name minilm.training reports this corpus under (the file's stem)


def parse_corpus_flags(values: list[str]) -> dict[str, str]:
    """`--corpus NAME=PATH` (repeatable) -> {name: path}; each path must be an existing file."""
    extra = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or not path:
            raise UserError(f"--corpus: {value!r} is not NAME=PATH (NAME of letters, digits, '-', '_')")
        if not Path(path).expanduser().is_file():
            raise UserError(f"--corpus {name}: {path!r} is not an existing file; expected a UTF-8 text file")
        extra[name] = str(Path(path).expanduser())
    return extra


def choose_domains(domains_flag: str | None, extra: dict[str, str]) -> dict[str, str]:
    """{domain name: corpus spec}: the bundled corpora plus --corpus ones, restricted by --domains."""
    available = {name: name for name in bundled_corpora()}
    available.update(extra)
    if not domains_flag:
        chosen = list(available)
    else:
        chosen = [name.strip() for name in domains_flag.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in available]
        if unknown:
            raise UserError(f"--domains: unknown corpus {unknown[0]!r}; expected one of {', '.join(available)} "
                            "(or add a file with --corpus NAME=PATH)")
        if len(set(chosen)) != len(chosen):
            raise UserError(f"--domains: {domains_flag!r} names a corpus twice")
    if len(chosen) < 2:
        raise UserError(f"--domains: expected at least 2 corpora to compare, got {chosen}")
    return {name: available[name] for name in chosen}


def check_corpus_size(name: str, spec: str, block_size: int) -> None:
    """Refuse a corpus whose training part or held-out part cannot hold one window of context."""
    _, path, data = read_corpus(spec)
    cut = split_point(data)
    need = block_size + 1
    if cut < need or len(data) - cut < need:
        raise UserError(
            f"--corpus {name}: {str(path)!r} is too small ({len(data)} bytes: {cut} to train on, "
            f"{len(data) - cut} held out); expected at least block_size + 1 = {need} bytes in each part, "
            f"i.e. a file of about {need * 10} bytes or more")


def load_domains(specs: dict[str, str], config: MismatchConfig) -> dict[str, Domain]:
    """Check, load and tokenize (as bytes) every chosen corpus, and fix its validation windows."""
    for name, spec in specs.items():
        check_corpus_size(name, spec, config.block_size)
    tokenizer = ByteTokenizer()
    domains = {}
    for name, spec in specs.items():
        corpus = load_corpus(spec, tokenizer)
        domains[name] = Domain(name=name, spec=spec, path=corpus.path, train_bytes=corpus.train_bytes,
                               val_bytes=corpus.val_bytes, corpus_name=corpus.name,
                               eval_set=make_eval_set(corpus, tokenizer, config.block_size, config.eval_windows))
    return domains


def choose_transfer_pair(flag: str | None, domains: dict[str, Domain]) -> tuple[str, str]:
    """--transfer A,B; by default shakespeare -> bible when both are in the grid, else the first two."""
    if flag:
        pair = tuple(name.strip() for name in flag.split(","))
        if len(pair) != 2 or pair[0] == pair[1] or any(name not in domains for name in pair):
            raise UserError(f"--transfer: expected A,B with two different domains of the grid "
                            f"({', '.join(domains)}), got {flag!r}")
    elif all(name in domains for name in DEFAULT_TRANSFER):
        pair = DEFAULT_TRANSFER
    else:
        pair = tuple(list(domains)[:2])
    a, b = pair
    if domains[a].corpus_name == domains[b].corpus_name:
        raise UserError(f"--transfer: {a} and {b} are files with the same name "
                        f"({domains[a].corpus_name!r}); rename one so that their scores can be told apart")
    return a, b


def prepare_out_dir(out: str, overwrite: bool) -> Path:
    """The report folder: refuse one that already has files in it, unless --overwrite.

    With --overwrite only this report's own files are replaced; nothing else in the folder is touched.
    """
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out: {str(out_dir)!r} exists and is not a folder; expected a folder for the report")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"--out: {str(out_dir)!r} already exists and is not empty; pass --overwrite to replace "
                        "its report, or choose another folder")
    return out_dir


# ----------------------------------------------------------------------------------------------
# 3. Training and scoring one model (through minilm.training and minilm.metrics)
# ----------------------------------------------------------------------------------------------


class Grid:
    """What every experiment shares: the config, the domains, the device and the progress bar."""

    def __init__(self, config: MismatchConfig, domains: dict[str, Domain], progress):
        self.config = config
        self.domains = domains
        self.progress = progress
        self.tokenizer = ByteTokenizer()
        self.step_seconds: list[float] = []  # wall time of every training step in the grid

    def train_config(self, domain: str, seed: int, mix: dict | None = None, eval_extra: list | None = None,
                     model: str = "gpt", model_args: dict | None = None, eval_interval: int | None = None,
                     eval_windows: int = 1) -> TrainConfig:
        """A TrainConfig with the grid's budget. By default training's own evaluation is reduced to
        one window (we score each model ourselves afterwards, on every domain)."""
        c = self.config
        return TrainConfig(
            data=self.domains[domain].spec, mix=dict(mix or {}), eval_extra=list(eval_extra or []),
            model=model, model_args=dict(model_args if model_args is not None else c.gpt_args()),
            block_size=c.block_size, batch_size=c.batch_size, steps=c.steps, lr=c.lr, min_lr=c.min_lr,
            warmup_steps=min(c.warmup_steps, c.steps - 1), eval_interval=eval_interval or c.steps,
            eval_windows=eval_windows, seed=seed, device=c.device, threads=c.threads, progress=False, verbose=False)

    def run(self, label: str, config: TrainConfig, model: torch.nn.Module | None = None):
        """Train one model (or continue `model`, left untouched: a copy is trained)."""
        self.progress.set_description(label)
        if model is not None:
            model = copy.deepcopy(model)
        result = train(config, model=model, tokenizer=self.tokenizer if model is not None else None)
        self.step_seconds.extend(result.step_seconds)
        self.progress.update(1)
        return result

    def score(self, model: torch.nn.Module, domain: str):
        """Bits per byte (and loss by position) of `model` on the fixed validation windows of `domain`."""
        eval_set = self.domains[domain].eval_set
        device = next(model.parameters()).device
        return evaluate(model, eval_set.windows, self.tokenizer, batch_size=64, device=device,
                        num_bytes=eval_set.num_bytes)

    def score_all(self, model: torch.nn.Module) -> dict[str, float]:
        return {name: self.score(model, name).bits_per_byte for name in self.domains}


# ----------------------------------------------------------------------------------------------
# 4. Experiment 1 (and 6): the cross-domain matrix over seeds
# ----------------------------------------------------------------------------------------------


def cross_domain_matrix(grid: Grid) -> tuple[dict, dict]:
    """One GPT per domain and seed; each scored on every domain.

    Returns (the matrix section of the report, the seed-0 specialists by domain, kept for the
    transfer and LSTM experiments).
    """
    names = list(grid.domains)
    per_seed, specialists = [], {}
    for seed in range(grid.config.seeds):
        rows = {}
        for domain in names:
            result = grid.run(f"specialist {domain} (seed {seed})", grid.train_config(domain, seed))
            rows[domain] = grid.score_all(result.model)
            if seed == 0:
                specialists[domain] = result.model
        per_seed.append(rows)
    section = summarise_seeds(per_seed, names)
    return section, specialists


def summarise_seeds(per_seed: list[dict], names: list[str]) -> dict:
    """Mean, spread and range over seeds of each cell; the gap to the in-domain specialist; and which
    of those gaps exceed the spread (the seeds' ranges of the two cells do not overlap)."""
    values = np.array([[[rows[t][e] for e in names] for t in names] for rows in per_seed])  # (S, N, N)
    mean, low, high = values.mean(axis=0), values.min(axis=0), values.max(axis=0)
    std = values.std(axis=0, ddof=1) if len(per_seed) > 1 else np.zeros_like(mean)

    def table(array) -> dict:
        return {t: {e: float(array[i, j]) for j, e in enumerate(names)} for i, t in enumerate(names)}

    gaps = []
    for j, e in enumerate(names):  # column e: every other model against e's own specialist
        for i, t in enumerate(names):
            if i == j:
                continue
            apart = low[i, j] > high[j, j] or high[i, j] < low[j, j]
            gaps.append({"trained_on": t, "evaluated_on": e, "bpb": float(mean[i, j]),
                         "specialist_bpb": float(mean[j, j]), "gap": float(mean[i, j] - mean[j, j]),
                         "ratio": float(mean[i, j] / mean[j, j]), "beyond_spread": bool(apart)})
    in_domain_best = [e for j, e in enumerate(names) if int(np.argmin(mean[:, j])) == j]
    return {
        "matrix": table(mean), "std": table(std), "min": table(low), "max": table(high),
        "per_seed": [table(v) for v in values],
        "gap": {t: {e: float(mean[i, j] - mean[j, j]) for j, e in enumerate(names)} for i, t in enumerate(names)},
        "ratio": {t: {e: float(mean[i, j] / mean[j, j]) for j, e in enumerate(names)} for i, t in enumerate(names)},
        "gaps_vs_specialist": gaps,
        "columns_where_in_domain_is_best": in_domain_best,
        "largest_std": float(std.max()),
    }


# ----------------------------------------------------------------------------------------------
# 5. Experiment 2: mixed-domain training
# ----------------------------------------------------------------------------------------------


def mixture_weights(grid: Grid, kind: str) -> dict[str, float]:
    """Share of batch rows per domain: "equal", or "proportional" to the training split's size."""
    sizes = {name: d.train_bytes for name, d in grid.domains.items()}
    if kind == "equal":
        return {name: 1.0 / len(sizes) for name in sizes}
    total = sum(sizes.values())
    return {name: size / total for name, size in sizes.items()}


def mixing(grid: Grid, matrix: dict) -> dict:
    """One model on all domains mixed, per weighting, with the specialists' budget; against the
    specialist of each column (the price of generality) and the other specialists (the gain)."""
    names = list(grid.domains)
    first, others = names[0], names[1:]
    section = {"weights": {}, "bpb": {}, "price_vs_specialist": {}, "gain_vs_off_domain": {}, "beyond_spread": {}}
    for kind in ("equal", "proportional"):
        weights = mixture_weights(grid, kind)
        mix = {grid.domains[name].spec: weights[name] for name in others}  # the first domain gets the rest
        result = grid.run(f"mixed ({kind} weights)", grid.train_config(first, seed=0, mix=mix))
        bpb = grid.score_all(result.model)
        section["weights"][kind] = weights
        section["bpb"][kind] = bpb
        section["price_vs_specialist"][kind] = {e: bpb[e] - matrix["matrix"][e][e] for e in names}
        section["gain_vs_off_domain"][kind] = {
            e: float(np.mean([matrix["matrix"][t][e] for t in names if t != e])) - bpb[e] for e in names}
        section["beyond_spread"][kind] = {
            e: not (matrix["min"][e][e] <= bpb[e] <= matrix["max"][e][e]) for e in names}
    return section


# ----------------------------------------------------------------------------------------------
# 6. Experiment 3: transfer A -> B, forgetting of A, replay of A
# ----------------------------------------------------------------------------------------------


def transfer(grid: Grid, a: str, b: str, specialist_a: torch.nn.Module, matrix: dict) -> dict:
    """Continue A's specialist on B with a share of A replayed in every batch; score A and B along
    the way (training's own evaluation, every steps / curve_points steps); and train B from scratch
    with the same steps for comparison."""
    c = grid.config
    interval = max(1, c.steps // c.curve_points)
    spec_a = grid.domains[a].spec
    names = {a: grid.domains[a].corpus_name, b: grid.domains[b].corpus_name}

    def curve(history) -> dict:
        return {"step": [r["step"] for r in history],
                a: [r["val_bpb_by_corpus"][names[a]] for r in history],
                b: [r["val_bpb_by_corpus"][names[b]] for r in history]}

    runs = {}
    for fraction in c.replay_fractions:
        mix, extra = ({spec_a: fraction}, []) if fraction > 0 else ({}, [spec_a])
        config = grid.train_config(b, seed=0, mix=mix, eval_extra=extra, eval_interval=interval,
                                   eval_windows=c.eval_windows)
        result = grid.run(f"{a} -> {b}, replay {fraction:.0%}", config, model=specialist_a)
        runs[replay_key(fraction)] = {"replay": fraction, "curve": curve(result.history),
                                      "final": grid.score_all(result.model)}
    scratch_config = grid.train_config(b, seed=0, eval_extra=[spec_a], eval_interval=interval,
                                       eval_windows=c.eval_windows)
    scratch = grid.run(f"{b} from scratch", scratch_config)
    scratch_run = {"curve": curve(scratch.history), "final": grid.score_all(scratch.model)}

    start_a = runs[replay_key(0.0)]["curve"][a][0]  # A's specialist before it sees B
    start_b = runs[replay_key(0.0)]["curve"][b][0]
    cross_gap = matrix["matrix"][b][a] - matrix["matrix"][a][a]  # how much worse B's specialist is on A
    forgetting = runs[replay_key(0.0)]["final"][a] - start_a
    summary = []
    for key, run in runs.items():
        rise = run["final"][a] - start_a
        summary.append({
            "replay": run["replay"], "final_a": run["final"][a], "final_b": run["final"][b],
            "a_rise": rise, "a_rise_fraction_of_gap": rise / cross_gap if cross_gap > 0 else None,
            "forgetting_removed": (1.0 - rise / forgetting) if forgetting > 0 else None,
            "b_vs_scratch": run["final"][b] - scratch_run["final"][b]})
    return {"a": a, "b": b, "steps": c.steps, "eval_interval": interval, "a_before": start_a, "b_before": start_b,
            "cross_domain_gap_on_a": cross_gap, "runs": runs, "scratch": scratch_run, "summary": summary}


def replay_key(fraction: float) -> str:
    return f"replay_{fraction:g}"


# ----------------------------------------------------------------------------------------------
# 7. Experiment 4: tokenizer mismatch
# ----------------------------------------------------------------------------------------------


def utf8_prefix(data: bytes, limit: int) -> str:
    """The first `limit` bytes (or fewer, at a character boundary) of UTF-8 data, as text."""
    return data[:limit].decode("utf-8", errors="ignore")


def tokenizer_mismatch(grid: Grid, matrix: dict) -> dict:
    """A BPE per domain (trained on the start of its training split); bytes per token of each on
    every domain's held-out text; Jaccard overlap of the learned (multi-byte) vocabularies; and how
    these line up with the model matrix (rank correlations over the off-diagonal pairs)."""
    from minilm.bpe import BPETokenizer

    c = grid.config
    names = list(grid.domains)
    train_text, val_text = {}, {}
    for name, d in grid.domains.items():
        _, _, data = read_corpus(d.spec)
        cut = split_point(data)
        train_text[name] = utf8_prefix(data[:cut], c.bpe_train_bytes)
        val_text[name] = utf8_prefix(data[cut:], c.bpe_eval_bytes)
    tokenizers, vocabularies = {}, {}
    for name in names:
        grid.progress.set_description(f"BPE tokenizer for {name}")
        tokenizer = BPETokenizer.train(train_text[name], c.bpe_vocab_size)
        tokenizers[name] = tokenizer
        vocabularies[name] = {tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)}
        vocabularies[name] = {piece for piece in vocabularies[name] if len(piece) > 1}
        grid.progress.update(1)
    bytes_per_token = {
        t: {e: len(val_text[e].encode("utf-8")) / max(1, len(tokenizers[t].encode(val_text[e]))) for e in names}
        for t in names}
    jaccard = {s: {t: jaccard_index(vocabularies[s], vocabularies[t]) for t in names} for s in names}
    # tokens needed relative to the domain's own tokenizer (1 on the diagonal, > 1 = more tokens)
    token_cost = {t: {e: bytes_per_token[e][e] / bytes_per_token[t][e] for e in names} for t in names}
    pairs = [(t, e) for t in names for e in names if t != e]
    relation = {"pairs": len(pairs)}
    if len(pairs) >= 3:
        relation["spearman_token_cost_vs_model_ratio"] = spearman(
            [token_cost[t][e] for t, e in pairs], [matrix["ratio"][t][e] for t, e in pairs])
        relation["spearman_jaccard_vs_model_ratio"] = spearman(
            [jaccard[t][e] for t, e in pairs], [matrix["ratio"][t][e] for t, e in pairs])
    return {"vocab_size": c.bpe_vocab_size, "train_bytes": c.bpe_train_bytes, "eval_bytes": c.bpe_eval_bytes,
            "vocab_sizes": {name: tokenizers[name].vocab_size for name in names},
            "learned_tokens": {name: len(vocabularies[name]) for name in names},
            "bytes_per_token": bytes_per_token, "token_cost": token_cost, "jaccard": jaccard,
            "relation": relation}


def jaccard_index(a: set, b: set) -> float:
    """|a & b| / |a | b| (1 for two empty sets)."""
    return len(a & b) / len(a | b) if (a or b) else 1.0


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (Pearson correlation of the ranks; ties get their mean rank)."""
    def ranks(values):
        values = np.asarray(values, dtype=np.float64)
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=np.float64)
        for v in np.unique(values):  # average the ranks of tied values
            tied = values == v
            r[tied] = r[tied].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


# ----------------------------------------------------------------------------------------------
# 8. Experiment 5: LSTM vs Transformer at a matched parameter count
# ----------------------------------------------------------------------------------------------


def matched_lstm_args(config: MismatchConfig, target_params: int) -> dict:
    """LSTM settings (embedding = the GPT's width) whose hidden size gives the parameter count
    closest to `target_params`, found by bisection (the count grows with the hidden size)."""
    from minilm.lstm import LSTMConfig, LSTMLM

    def count(hidden: int) -> int:
        return LSTMLM(LSTMConfig(n_embd=config.n_embd, n_hidden=hidden, n_layer=config.lstm_layers)).num_params()

    low, high = 1, 8 * config.n_embd
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) <= target_params else (low, middle)
    hidden = min((low, high), key=lambda h: abs(count(h) - target_params))
    return dict(n_layer=config.lstm_layers, n_embd=config.n_embd, n_hidden=hidden, dropout=0.0)


def lstm_vs_gpt(grid: Grid, domain: str, gpt: torch.nn.Module) -> dict:
    """Train an LSTM on `domain` with the GPT's budget; score both everywhere, and by position in
    the context over many windows of `domain`'s held-out split."""
    c = grid.config
    lstm_args = matched_lstm_args(c, gpt.num_params())
    result = grid.run(f"LSTM on {domain}", grid.train_config(domain, seed=0, model="lstm", model_args=lstm_args))
    corpus = load_corpus(grid.domains[domain].spec, grid.tokenizer)
    position_set = make_eval_set(corpus, grid.tokenizer, c.block_size, c.position_windows)
    section = {"domain": domain, "lstm_args": lstm_args, "position_windows": int(position_set.windows.shape[0]),
               "position_buckets": position_buckets(c.block_size), "models": {}}
    for kind, model in (("gpt", gpt), ("lstm", result.model)):
        device = next(model.parameters()).device
        nats = evaluate(model, position_set.windows, grid.tokenizer, batch_size=64, device=device,
                        num_bytes=position_set.num_bytes).loss_by_position
        bits = [n / LN2 for n in nats]  # one byte per position: bits per byte
        by_bucket = [float(np.mean(bits[lo:hi])) for lo, hi in section["position_buckets"]]
        bpb = grid.score_all(model)
        section["models"][kind] = {
            "params": model.num_params(), "bpb": bpb, "in_domain": bpb[domain],
            "off_domain_mean": float(np.mean([v for name, v in bpb.items() if name != domain])),
            "bits_by_position": bits, "bits_by_bucket": by_bucket,
            "flattens_at": flattening_position(by_bucket, section["position_buckets"]),
            "gain_after_8": by_bucket[bucket_index(section["position_buckets"], 8)] - by_bucket[-1]
            if c.block_size > 16 else None}
    return section


def position_buckets(block_size: int) -> list[tuple[int, int]]:
    """Ranges of positions that double in length: [0,1), [1,2), [2,4), [4,8), ... up to block_size.
    Averaging over a range steadies the curve; doubling matches how fast the loss falls."""
    buckets, low = [(0, 1)], 1
    while low < block_size:
        buckets.append((low, min(2 * low, block_size)))
        low *= 2
    return buckets


def bucket_index(buckets: list[tuple[int, int]], position: int) -> int:
    return next(i for i, (lo, hi) in enumerate(buckets) if lo <= position < hi)


def flattening_position(by_bucket: list[float], buckets: list[tuple[int, int]], within: float = 0.02) -> int:
    """Where the loss stops falling: the first position of the first range of positions whose mean
    loss is within `within` (relative) of the last range's mean."""
    final = by_bucket[-1]
    for (low, _), value in zip(buckets, by_bucket):
        if abs(value - final) <= within * final:
            return low
    return buckets[-1][0]


# ----------------------------------------------------------------------------------------------
# 9. The whole grid
# ----------------------------------------------------------------------------------------------


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_grid(config: MismatchConfig, domains: dict[str, Domain], pair: tuple[str, str], command: str) -> dict:
    """Run the five experiments in order and return the report as one JSON-ready dict."""
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)  # training sets it too; our own scoring runs outside it
    try:
        return _run_grid(config, domains, pair, command)
    finally:
        torch.set_num_threads(threads_before)


def _run_grid(config: MismatchConfig, domains: dict[str, Domain], pair: tuple[str, str], command: str) -> dict:
    """The body of run_grid, with the thread count set."""
    from tqdm.auto import tqdm

    from minilm.devices import pick_device

    n = len(domains)
    jobs = config.seeds * n + 2 + len(config.replay_fractions) + 1 + 1 + n
    started, cpu_started = time.time(), time.process_time()
    seconds = {}
    report = {"command": command, "config": asdict(config), "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine_info(str(pick_device(config.device))),
              "domains": {name: {"path": str(d.path), "train_bytes": d.train_bytes, "val_bytes": d.val_bytes,
                                 "eval_windows": int(d.eval_set.windows.shape[0]), "eval_bytes": d.eval_set.num_bytes}
                          for name, d in domains.items()},
              "transfer_pair": list(pair), "tokens_per_model": config.tokens_per_model()}
    with tqdm(total=jobs, unit="job", dynamic_ncols=True) as progress:
        grid = Grid(config, domains, progress)
        clock = time.time()
        matrix, specialists = cross_domain_matrix(grid)
        seconds["matrix"], clock = time.time() - clock, time.time()
        report["gpt_params"] = specialists[pair[0]].num_params()
        report.update(matrix)
        report["mixing"] = mixing(grid, matrix)
        seconds["mixing"], clock = time.time() - clock, time.time()
        report["transfer"] = transfer(grid, pair[0], pair[1], specialists[pair[0]], matrix)
        seconds["transfer"], clock = time.time() - clock, time.time()
        report["lstm_vs_gpt"] = lstm_vs_gpt(grid, pair[0], specialists[pair[0]])
        seconds["lstm_vs_gpt"], clock = time.time() - clock, time.time()
        report["tokenizers"] = tokenizer_mismatch(grid, matrix)
        seconds["tokenizers"] = time.time() - clock
    steps = np.asarray(grid.step_seconds)
    report["timing"] = {"total_seconds": time.time() - started, "cpu_seconds": time.process_time() - cpu_started,
                        "seconds_by_experiment": seconds,
                        "models_trained": jobs - n, "training_steps": int(len(steps)),
                        "median_step_ms": float(np.median(steps) * 1000) if len(steps) else None}
    return report


# ----------------------------------------------------------------------------------------------
# 10. The report: report.json, report.md, pictures
# ----------------------------------------------------------------------------------------------


def finite_or_none(value):
    """JSON has no NaN or infinity: such values (there should be none) become null."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def matrix_table(table: dict, names: list[str], digits: int = 3, bold_min: bool = False) -> str:
    """rows = trained on, columns = evaluated on; optionally the lowest of each column in bold."""
    best = {e: min(names, key=lambda t: table[t][e]) for e in names} if bold_min else {}
    rows = []
    for t in names:
        cells = []
        for e in names:
            text = fmt(table[t][e], digits)
            cells.append(f"**{text}**" if best.get(e) == t else text)
        rows.append([t] + cells)
    return markdown_table(["trained on \\ evaluated on"] + names, rows)


def write_markdown(report: dict, figures: list[str], plot_note: str | None) -> str:
    names = list(report["domains"])
    c = report["config"]
    m = report["machine"]
    seeds = c["seeds"]
    out = []
    say = out.append

    eval_sizes = ", ".join(f"{n} {d['eval_bytes']:,} B" for n, d in report["domains"].items())
    say("# Domain mismatch: report\n")
    say(f"Command: `{report['command']}`  \n"
        f"Preset `{c['preset']}`: GPT {c['n_layer']} layers x {c['n_embd']} wide ({report['gpt_params']:,} parameters), "
        f"context {c['block_size']} bytes; every model trains {c['steps']} steps x {c['batch_size']} windows = "
        f"{report['tokens_per_model']:,} bytes seen.  \n"
        f"Scores: bits per byte on each domain's held-out last 10%, over at most {c['eval_windows']} fixed windows "
        f"({eval_sizes}).  \n"
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['torch_threads']} torch threads), device {m['device']}"
        f"{', ' + m['gpu'] if 'gpu' in m else ''}; Python {m['python']}, torch {m['torch']}.  \n"
        f"Started {report['started']}; took {report['timing']['total_seconds'] / 60:.1f} minutes "
        f"({report['timing']['models_trained']} models, median step {fmt(report['timing']['median_step_ms'], 1)} ms, "
        f"{report['timing']['cpu_seconds'] / 60:.1f} minutes of CPU time).\n")
    if plot_note:
        say(f"> {plot_note}\n")

    # 1. matrix
    say(f"## 1. Cross-domain matrix (mean over {seeds} seed{'s' if seeds > 1 else ''})\n")
    say("Rows: the domain a model was trained on; columns: the domain it is scored on. "
        "Bits per byte, lower is better; the lowest of each column in bold.\n")
    say(matrix_table(report["matrix"], names, bold_min=True) + "\n")
    if "matrix.png" in figures:
        say("![cross-domain matrix](matrix.png)\n")
    say("Off-domain cost: each cell divided by the column's in-domain specialist (1.00 on the diagonal).\n")
    say(matrix_table(report["ratio"], names, digits=2) + "\n")
    if seeds > 1:
        say(f"Spread: standard deviation over the {seeds} seeds.\n")
        say(matrix_table(report["std"], names) + "\n")
    best = report["columns_where_in_domain_is_best"]
    gaps = report["gaps_vs_specialist"]
    beyond = [g for g in gaps if g["beyond_spread"]]
    within = [g for g in gaps if not g["beyond_spread"]]
    say(f"- The in-domain specialist is the best model in {len(best)} of {len(names)} columns"
        + (f" (not in: {', '.join(n for n in names if n not in best)})" if len(best) < len(names) else "") + ".")
    worse_than_uniform = [g for g in gaps if g["bpb"] > 8.0]
    if worse_than_uniform:
        say(f"- {len(worse_than_uniform)} off-domain cells are above 8 bits per byte, i.e. worse than a uniform guess "
            "over the 256 bytes: the model is confidently wrong on text unlike its own.")
    closest = min(gaps, key=lambda g: g["ratio"])
    farthest = max(gaps, key=lambda g: g["ratio"])
    say(f"- Closest pair: {closest['trained_on']} -> {closest['evaluated_on']} costs x{closest['ratio']:.2f} "
        f"the specialist's bits; farthest: {farthest['trained_on']} -> {farthest['evaluated_on']}, "
        f"x{farthest['ratio']:.2f}.")
    if seeds > 1:
        say(f"- Of the {len(gaps)} gaps to the in-domain specialist, {len(beyond)} are larger than the spread "
            "over seeds (the two cells' ranges over seeds do not overlap)"
            + (": all but " + ", ".join(f"{g['trained_on']} -> {g['evaluated_on']} ({g['gap']:+.3f})" for g in within)
               if within else "") + f". The largest seed standard deviation is {report['largest_std']:.3f} bits per byte.")
    else:
        say("- One seed only: no spread to compare against (use --seeds 3).")
    say("")

    # 2. mixing
    mix = report["mixing"]
    say("## 2. Mixed-domain training (same budget, seed 0)\n")
    rows = [["in-domain specialist"] + [fmt(report["matrix"][e][e]) for e in names]
            + [fmt(np.mean([report["matrix"][e][e] for e in names]))]]
    for kind in ("equal", "proportional"):
        bpb = mix["bpb"][kind]
        rows.append([f"mixed, {kind} weights"] + [fmt(bpb[e]) for e in names] + [fmt(np.mean(list(bpb.values())))])
    off = {e: float(np.mean([report["matrix"][t][e] for t in names if t != e])) for e in names}
    rows.append(["other specialists (mean)"] + [fmt(off[e]) for e in names] + [fmt(np.mean(list(off.values())))])
    say(markdown_table(["model \\ evaluated on"] + names + ["mean"], rows) + "\n")
    if "mixing.png" in figures:
        say("![mixing vs specialists](mixing.png)\n")
    say("Weights (share of batch rows): " + "; ".join(
        f"{kind}: " + ", ".join(f"{n} {w:.2f}" for n, w in mix["weights"][kind].items()) for kind in mix["weights"]) + ".\n")
    for kind in ("equal", "proportional"):
        price = mix["price_vs_specialist"][kind]
        gain = mix["gain_vs_off_domain"][kind]
        outside = [e for e in names if mix["beyond_spread"][kind][e]]
        say(f"- {kind} weights: costs {np.mean(list(price.values())):+.3f} bits per byte against the specialist "
            f"on average (from {min(price.values()):+.3f} to {max(price.values()):+.3f}); gains "
            f"{np.mean(list(gain.values())):.3f} against the average other specialist. "
            + (f"Outside the specialist's seed range in {len(outside)} of {len(names)} columns." if seeds > 1 else ""))
    say("")

    # 3. transfer
    tr = report["transfer"]
    a, b = tr["a"], tr["b"]
    say(f"## 3. Transfer and forgetting: {a} -> {b} (seed 0)\n")
    say(f"{a}'s specialist continues training on {b} for {tr['steps']} steps, with a share of each batch "
        f"replayed from {a}. Before: {a} {fmt(tr['a_before'])} bits per byte. The cross-domain gap on {a} "
        f"({b}'s specialist minus {a}'s, from the matrix) is {fmt(tr['cross_domain_gap_on_a'])}.\n")
    rows = []
    for s in tr["summary"]:
        rows.append([percent(s["replay"]), fmt(s["final_a"]), fmt(s["final_b"]), f"{s['a_rise']:+.3f}",
                     percent(s["a_rise_fraction_of_gap"]), percent(s["forgetting_removed"]) if s["replay"] > 0 else "–",
                     f"{s['b_vs_scratch']:+.3f}"])
    rows.append([f"{b} from scratch", fmt(tr["scratch"]["final"][a]), fmt(tr["scratch"]["final"][b]), "", "", "", ""])
    say(markdown_table(["replay of " + a, f"{a} bpb", f"{b} bpb", f"{a} rise", "rise / gap", "forgetting removed",
                        f"{b} vs scratch"], rows) + "\n")
    for name in ("forgetting.png", "tradeoff.png"):
        if name in figures:
            say(f"![{name[:-4]}]({name})\n")
    no_replay = tr["summary"][0]
    say(f"- Without replay, {a} changes by {no_replay['a_rise']:+.3f} bits per byte "
        f"({percent(no_replay['a_rise_fraction_of_gap'])} of the cross-domain gap).")
    for s in tr["summary"][1:]:
        say(f"- {percent(s['replay'])} replay: {a} changes by {s['a_rise']:+.3f} "
            f"({percent(s['forgetting_removed'])} of the forgetting removed), {b} at {fmt(s['final_b'])}.")
    say(f"- Pre-training on {a} {'helps' if no_replay['b_vs_scratch'] < 0 else 'does not help'} {b}: "
        f"{no_replay['b_vs_scratch']:+.3f} bits per byte against {b} from scratch with the same steps.")
    say("")

    # 5. LSTM (before tokenizers: it is a model comparison like the ones above)
    lg = report["lstm_vs_gpt"]
    d = lg["domain"]
    say(f"## 4. LSTM vs Transformer, trained on {d} (seed 0, same budget)\n")
    header = ["model", "parameters", f"in-domain ({d})", "off-domain mean"] + names
    rows = []
    for kind in ("gpt", "lstm"):
        r = lg["models"][kind]
        rows.append([kind.upper(), f"{r['params']:,}", fmt(r["in_domain"]), fmt(r["off_domain_mean"])]
                    + [fmt(r["bpb"][e]) for e in names])
    say(markdown_table(header, rows) + "\n")
    buckets = lg["position_buckets"]
    rows = [[kind.upper()] + [fmt(v, 2) for v in lg["models"][kind]["bits_by_bucket"]] for kind in ("gpt", "lstm")]
    say(f"Bits per byte by position in the context ({d}, {lg['position_windows']:,} validation windows; position p "
        "has seen p bytes before the one it predicts; each column averages a range of positions):\n")
    say(markdown_table(["model \\ positions"] + [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in buckets],
                       rows) + "\n")
    gains = {kind: lg["models"][kind]["gain_after_8"] for kind in ("gpt", "lstm")}
    if gains["gpt"] is not None:
        say(f"- Context beyond 8 bytes is worth {gains['gpt']:.3f} bits per byte to the GPT and {gains['lstm']:.3f} "
            "to the LSTM (positions 8-15 minus the last range).")
    say(f"- The loss flattens (comes within 2% of the last range) at position {lg['models']['gpt']['flattens_at']} "
        f"for the GPT and {lg['models']['lstm']['flattens_at']} for the LSTM.\n")
    if "loss_by_position.png" in figures:
        say("![loss by position](loss_by_position.png)\n")
    say(f"LSTM: {lg['lstm_args']['n_layer']} layer(s), embedding {lg['lstm_args']['n_embd']}, hidden "
        f"{lg['lstm_args']['n_hidden']} (chosen to match the GPT's parameter count).\n")

    # 4. tokenizers
    tk = report["tokenizers"]
    say(f"## 5. Tokenizer mismatch: one BPE per domain, vocabulary {tk['vocab_size']}\n")
    say(f"Each BPE is trained on the first {tk['train_bytes']:,} bytes of its domain's training split; bytes per "
        f"token are measured on the first {tk['eval_bytes']:,} bytes of each held-out split (higher = fewer "
        "tokens). Rows: tokenizer trained on; columns: text.\n")
    say(matrix_table(tk["bytes_per_token"], names, digits=2) + "\n")
    say("Tokens needed relative to the text's own tokenizer (1.00 on the diagonal):\n")
    say(matrix_table(tk["token_cost"], names, digits=2) + "\n")
    say("Vocabulary overlap (Jaccard index of the learned multi-byte tokens):\n")
    say(matrix_table(tk["jaccard"], names, digits=2) + "\n")
    if "tokenizers.png" in figures:
        say("![tokenizers](tokenizers.png)\n")
    rel = tk["relation"]
    if "spearman_token_cost_vs_model_ratio" in rel:
        say(f"- Over the {rel['pairs']} off-diagonal pairs, the rank correlation between a tokenizer's extra "
            f"tokens on another domain and the model's off-domain cost (matrix ratio) is "
            f"{fmt(rel['spearman_token_cost_vs_model_ratio'], 2)}; between vocabulary overlap and the model's "
            f"cost it is {fmt(rel['spearman_jaccard_vs_model_ratio'], 2)} (negative = more overlap, smaller cost).")
    else:
        say(f"- Only {rel['pairs']} off-diagonal pairs: too few for a rank correlation with the model matrix.")
    say("")

    say("## Notes\n")
    say("- Experiments 2-5 use one seed (seed 0); compare their differences with the matrix's seed spread above.")
    say("- Timings come from whatever else the machine was doing; the step time above is the median over the run.")
    say("- Every number here is in `report.json` (per seed for the matrix).")
    return "\n".join(out) + "\n"


# --- pictures ---------------------------------------------------------------------------------


def load_pyplot():
    """matplotlib's pyplot with a file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def heatmap(ax, table: dict, rows: list[str], columns: list[str], title: str, digits: int = 2, cmap: str = "viridis"):
    values = np.array([[table[r][c] for c in columns] for r in rows])
    image = ax.imshow(values, cmap=cmap)
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    middle = (values.min() + values.max()) / 2
    for i in range(len(rows)):
        for j in range(len(columns)):
            ax.text(j, i, f"{values[i, j]:.{digits}f}", ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] < middle else "black")
    ax.set_title(title)
    return image


def write_figures(report: dict, out_dir: Path, plt) -> list[str]:
    """The PNGs of the report; returns their file names."""
    names = list(report["domains"])
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        written.append(name)

    # the matrix
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2.5, 0.9 * len(names) + 1.8))
    image = heatmap(ax, report["matrix"], names, names, "bits per byte (rows: trained on, columns: evaluated on)")
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on")
    fig.colorbar(image, ax=ax, shrink=0.8)
    save(fig, "matrix.png")

    # mixing vs specialists
    mix = report["mixing"]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.6))
    x = np.arange(len(names))
    bars = [("in-domain specialist", [report["matrix"][e][e] for e in names]),
            ("mixed, equal", [mix["bpb"]["equal"][e] for e in names]),
            ("mixed, proportional", [mix["bpb"]["proportional"][e] for e in names])]
    width = 0.8 / len(bars)
    for k, (label, values) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("bits per byte")
    ax.set_title("one model for all domains vs one per domain (same budget)")
    ax.legend(fontsize=8)
    save(fig, "mixing.png")

    # forgetting curves and the final trade-off
    tr = report["transfer"]
    a, b = tr["a"], tr["b"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for key, run in tr["runs"].items():
        label = f"{a} -> {b}, replay {percent(run['replay'])}"
        axes[0].plot(run["curve"]["step"], run["curve"][a], marker=".", label=label)
        axes[1].plot(run["curve"]["step"], run["curve"][b], marker=".", label=label)
    for ax, name in zip(axes, (a, b)):
        ax.plot(tr["scratch"]["curve"]["step"], tr["scratch"]["curve"][name], "k--", label=f"{b} from scratch")
        ax.set_title(f"bits per byte on {name}")
        ax.set_xlabel(f"steps of training on {b}")
    axes[0].legend(fontsize=7)
    save(fig, "forgetting.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    for s in tr["summary"]:
        ax.scatter(s["final_a"], s["final_b"])
        ax.annotate(f"replay {percent(s['replay'])}", (s["final_a"], s["final_b"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.scatter(tr["a_before"], tr["b_before"], marker="x", color="black")
    ax.annotate(f"{a} specialist (before)", (tr["a_before"], tr["b_before"]), fontsize=8,
                xytext=(4, -10), textcoords="offset points")
    ax.scatter(tr["scratch"]["final"][a], tr["scratch"]["final"][b], marker="s", color="grey")
    ax.annotate(f"{b} from scratch", (tr["scratch"]["final"][a], tr["scratch"]["final"][b]), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"bits per byte on {a} (old domain)")
    ax.set_ylabel(f"bits per byte on {b} (new domain)")
    ax.set_title("after continued training: the trade-off")
    save(fig, "tradeoff.png")

    # loss by position
    lg = report["lstm_vs_gpt"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for kind in ("gpt", "lstm"):
        r = lg["models"][kind]
        line, = ax.plot(r["bits_by_position"], alpha=0.35)
        middles = [(lo + hi - 1) / 2 for lo, hi in lg["position_buckets"]]
        ax.plot(middles, r["bits_by_bucket"], marker="o", color=line.get_color(),
                label=f"{kind.upper()} ({r['params']:,} parameters), range means")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("position in the context (bytes seen before)")
    ax.set_ylabel("bits per byte")
    ax.set_title(f"loss by position on {lg['domain']}")
    ax.legend()
    save(fig, "loss_by_position.png")

    # tokenizers
    tk = report["tokenizers"]
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * len(names) + 3, 0.9 * len(names) + 1.8))
    image = heatmap(axes[0], tk["bytes_per_token"], names, names, "bytes per token (rows: tokenizer)")
    fig.colorbar(image, ax=axes[0], shrink=0.8)
    image = heatmap(axes[1], tk["jaccard"], names, names, "vocabulary overlap (Jaccard)")
    fig.colorbar(image, ax=axes[1], shrink=0.8)
    save(fig, "tokenizers.png")
    return written


PLOT_NOTE = ("matplotlib is not installed, so this report has tables only. For the pictures, "
             "install the plot extra (`pip install -e .[plot]` or `pip install matplotlib`) and run again.")


def write_report(report: dict, out_dir: Path) -> list[str]:
    """Write report.json, the PNGs (when matplotlib is there) and report.md; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:  # a rerun with --overwrite leaves no stale picture behind
        (out_dir / name).unlink(missing_ok=True)
    plt = load_pyplot()
    figures = write_figures(report, out_dir, plt) if plt is not None else []
    report = dict(report, figures=figures, plot_note=None if plt is not None else PLOT_NOTE)
    (out_dir / "report.json").write_text(json.dumps(finite_or_none(report), indent=1, allow_nan=False) + "\n")
    (out_dir / "report.md").write_text(write_markdown(report, figures, report["plot_note"]))
    return ["report.md", "report.json"] + figures


# ----------------------------------------------------------------------------------------------
# 11. Command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilm.mismatch",
        description="Train tiny byte-level models on each corpus and score them on every other: the "
                    "cross-domain matrix, mixing, transfer with forgetting and replay, tokenizer mismatch, "
                    "LSTM vs GPT. Writes report.md, report.json and PNGs (with matplotlib) to --out.")
    parser.add_argument("--preset", default="cpu-quick", choices=list(PRESETS),
                        help="sizes and budgets (default cpu-quick: ~15 minutes on a 2-core laptop CPU)")
    parser.add_argument("--domains", help="comma-separated corpora to use (default: all bundled + --corpus)")
    parser.add_argument("--corpus", action="append", default=[], metavar="NAME=PATH",
                        help="add (or replace) a domain from a UTF-8 text file; repeatable")
    parser.add_argument("--transfer", metavar="A,B",
                        help="the pair for transfer/forgetting and LSTM vs GPT (default shakespeare,bible)")
    parser.add_argument("--seeds", type=int, help="seeds for the matrix (default: the preset's)")
    parser.add_argument("--steps", type=int, help="training steps per model (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's; 0 = PyTorch's choice)")
    parser.add_argument("--out", default=None, help="report folder (default runs/mismatch-PRESET)")
    parser.add_argument("--overwrite", action="store_true", help="replace the report in an existing --out folder")
    return parser


def config_from_args(args) -> MismatchConfig:
    overrides = {"device": args.device}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.threads is not None:
        overrides["threads"] = args.threads
    return replace(PRESETS[args.preset], **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        out_dir = prepare_out_dir(args.out or f"runs/mismatch-{config.preset}", args.overwrite)
        specs = choose_domains(args.domains, parse_corpus_flags(args.corpus))
        domains = load_domains(specs, config)
        pair = choose_transfer_pair(args.transfer, domains)
        command = "python -m minilm.mismatch " + " ".join(sys.argv[1:] if argv is None else argv)
        report = run_grid(config, domains, pair, command.strip())
        files = write_report(report, out_dir)
    except UserError as error:
        print(f"minilm.mismatch: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(files)} to {out_dir} in {report['timing']['total_seconds'] / 60:.1f} minutes")
    if "matrix.png" not in files:
        print(PLOT_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
