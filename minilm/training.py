"""The training loop: AdamW, warmup + cosine schedule, evaluation, checkpoints, resume, DDP.

Call it from Python (`train(TrainConfig(...))`, e.g. many small runs in one process) or from
the command line (`train.py`, a thin argparse front-end). Read top to bottom:

1. TrainConfig (its presets are in minilm/presets.py);
2. the learning-rate schedule;
3. the pieces a run is built from (devices and DDP, model, optimizer, eval sets, signals);
4. `train()` and its named steps: `prepare` (the output folder, the data), `build` (model,
   optimizer, resume), then the loop of `evaluate_and_checkpoint`, `should_stop` and
   `optimizer_step`;
5. `evaluate_checkpoint()` for `--eval-only`.

Determinism: on the CPU, the same config gives bit-identical runs, and a run that is stopped
and resumed from its checkpoint continues exactly as if it had not stopped, because the
checkpoint holds the weights, the AdamW moments, the step, the batch sampler's generator and
every RNG state. Under DDP, every rank draws the whole global batch from the same generator
and keeps its slice, so N processes see the same rows as one process with N times the batch.

What is written (`--out`) is kept safe by minilm/run_folder.py: one run per folder, nothing the
run did not make is replaced, every write atomic.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from minilm.augment import Augmenter, parse_augment
from minilm.checkpoint import (
    capture_rng_state,
    check_compatible,
    config_from_checkpoint,
    load_weights,
    model_registry,
    restore_rng_state,
    unwrap_model,
)
from minilm.cli import UserError, flag, validate_config
from minilm.data import (
    DEFAULT_CACHE_DIR,
    BatchSampler,
    ByteTokenizer,
    load_corpus,
    load_tokenizer,
    resolve_corpus,
    tokenizer_from_json,
    validation_windows,
)
from minilm.devices import pick_device
from minilm.metrics import EvalResult, count_target_bytes, evaluate
from minilm.mixing import tempered_weights
from minilm.objectives import (
    MASK_TOKEN,
    OBJECTIVES,
    ByteLogitsOnly,
    ObjectiveConfig,
    masked_bits_per_byte,
    objective_loss,
)
from minilm.outputs import new_run_id
from minilm.presets import PRESETS, model_arg_flag
from minilm.run_folder import BEST_NAME, CHECKPOINT_NAME, RunFolder
from minilm.tags import tag_id, tagged_tokenizer, tagged_windows

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "train", "evaluate_checkpoint", "learning_rate"]

# ----------------------------------------------------------------------------------------------
# 1. Configuration
# ----------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a training run needs. Every field has a default; `train.py` maps each to a flag
    (field `batch_size` <-> `--batch-size`)."""

    # what to learn from
    data: str = "shakespeare"  # bundled corpus name or path; its held-out part is the val set
    mix: dict = field(default_factory=dict)  # other corpora -> share of batch rows, e.g. {"bible": 0.1}
    eval_extra: list = field(default_factory=list)  # more corpora to score at every eval (not trained on)
    tokenizer: str = "bytes"  # "bytes" or a path to a BPE tokenizer.json
    allow_binary: bool = False  # accept corpora that are not UTF-8 text (the bytes tokenizer only)
    # remedies for mismatch: augmented windows, tempered mixing, domain tags
    augment: list = field(default_factory=list)  # on-the-fly transforms "NAME=P" (minilm/augment.py)
    mix_domains: list = field(default_factory=list)  # other corpora drawn with --data, p ~ size^mix_alpha
    mix_alpha: float = 0.0  # with mix_domains: 0 = every domain equally often, 1 = in proportion to size
    domain_tags: bool = False  # start each window of a mixed run with its domain's tag token <domain:NAME>
    # the model
    model: str = "gpt"  # "gpt" | "lstm"
    model_args: dict = field(default_factory=dict)  # GPTConfig / LSTMConfig fields (n_layer, ...)
    block_size: int = 64  # T: context length of the training windows
    init_from: str = ""  # start from these weights: a minilm checkpoint, or hf:NAME_OR_DIR; "" = fresh
    preset: str = ""  # the preset the sizes came from ("" = none); a resumed run keeps it
    objective: str = "clm"  # "clm" (GPT's causal LM) | "mlm" (BERT's masked LM) | "both" (their sum)
    mlm_weight: float = 1.0  # `both`: loss = causal + mlm_weight * masked
    # optimisation
    batch_size: int = 12  # B: rows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    steps: int = 2000  # optimizer steps
    lr: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_steps: int = 100  # linear warmup from ~0 to lr
    lr_decay_steps: int = 0  # cosine reaches min_lr here; 0 = at `steps`
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 = no clipping
    # evaluation
    eval_interval: int = 250  # evaluate (and checkpoint) every this many steps, and at the end
    eval_windows: int = 256  # cap on the number of fixed validation windows
    eval_batch_size: int = 32
    # the run
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto = bf16 autocast on CUDA, float32 elsewhere; or "float32" / "bfloat16"
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch CPU threads; 0 = leave PyTorch's choice (one per core)
    distributed: bool = True  # join the torchrun process group when WORLD_SIZE > 1
    out_dir: str = ""  # where ckpt.pt, best.pt and log.jsonl go; "" = write nothing
    resume: bool = False  # continue from out_dir/ckpt.pt
    overwrite: bool = False  # allow a fresh run to replace the files of another run in out_dir
    cache_dir: str = "auto"  # token-array cache folder; "auto" = <repo>/.cache/tokens, "" = in memory
    log_interval: int = 0  # read the loss (waiting for a GPU) every this many steps; 0 = 1 on CPU, 10 on a GPU
    progress: bool = True  # tqdm progress bar
    verbose: bool = True  # print one line per evaluation
    stop_at_step: int = 0  # stop early (saving a checkpoint, as Ctrl-C does) at this step; 0 = never

    def __post_init__(self):
        validate_config(self, CONFIG_RULES, name_of=config_flag)
        for name in ("beta1", "beta2"):
            if getattr(self, name) < 0:
                raise UserError(f"{flag(name)}: expected a number in [0, 1), got {getattr(self, name)!r}")
        if self.min_lr > self.lr:
            raise UserError(f"--min-lr: {self.min_lr!r} is above --lr {self.lr!r}; the schedule decays from "
                            "--lr down to --min-lr")
        if not isinstance(self.model_args, dict) or not isinstance(self.eval_extra, list):
            raise UserError("--model-arg / --eval-extra: expected a dict of model settings and a list of corpora")
        if not isinstance(self.mix, dict):
            raise UserError(f"--mix: expected corpus -> share, got {self.mix!r}")
        for name, weight in self.mix.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or not 0.0 < weight < 1.0:
                raise UserError(f"--mix: the share of {name!r} must be a number in (0, 1), got {weight!r}")
        if sum(self.mix.values()) >= 1.0:
            raise UserError(f"--mix: shares {dict(self.mix)} add up to >= 1; the main --data corpus needs some")
        self._check_remedies()
        if not self.init_from:  # with --init-from the model's kind is the loaded one's, checked in prepare
            self.objective_config.check_model(self.model)

    def _check_remedies(self):
        """--augment, --mix-domains / --mix-alpha and --domain-tags (their plain rules are in CONFIG_RULES)."""
        if not isinstance(self.augment, list) or not all(isinstance(item, str) for item in self.augment):
            raise UserError(f"--augment: expected a list of NAME=P items, got {self.augment!r}")
        parse_augment(self.augment)
        if self.augment and self.tokenizer != "bytes":
            raise UserError("--augment: transforms bytes, so it needs the bytes tokenizer (drop --tokenizer)")
        if not isinstance(self.mix_domains, list) or not all(isinstance(d, str) and d for d in self.mix_domains):
            raise UserError(f"--mix-domains: expected corpus names, got {self.mix_domains!r}")
        if len({self.data, *self.mix_domains}) != 1 + len(self.mix_domains):
            raise UserError(f"--mix-domains: {self.mix_domains!r} names a corpus twice (or --data {self.data!r})")
        if self.mix_domains and self.mix:
            raise UserError("--mix-domains: give either --mix NAME=SHARE (shares) or --mix-domains with "
                            "--mix-alpha (shares from sizes), not both")
        if self.domain_tags and not (self.mix or self.mix_domains):
            raise UserError("--domain-tags: needs a mixture of domains (--mix or --mix-domains)")
        if self.domain_tags and (self.tokenizer != "bytes" or self.init_from):
            raise UserError("--domain-tags: works with a fresh model on the bytes tokenizer (no --tokenizer, "
                            "no --init-from): the tags are extra tokens of that tokenizer")

    @property
    def objective_config(self) -> ObjectiveConfig:
        return ObjectiveConfig(self.objective, self.mlm_weight)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        from minilm.cli import config_from_dict

        return config_from_dict(cls, d)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> TrainConfig:
        """A preset's settings, then `overrides` (model_args are merged, not replaced)."""
        if preset not in PRESETS:
            raise UserError(f"--preset: unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        settings = {k: v for k, v in PRESETS[preset].items() if k != "model_args"}
        model = overrides.get("model", settings.get("model", "gpt"))
        model_args = dict(PRESETS[preset].get("model_args", {}).get(model, {}))
        model_args.update(overrides.pop("model_args", {}))
        settings.update(overrides)
        return cls(**{"preset": preset, **settings}, model_args=model_args)


def config_flag(field_name: str) -> str:
    """The train.py flag of a TrainConfig field: flag(name) (batch_size -> --batch-size), but for these."""
    return {"out_dir": "--out", "progress": "--no-progress", "model_args": "--model-arg"}.get(field_name,
                                                                                           flag(field_name))


# The rules of minilm.cli.validate_config for each plain field.
CONFIG_RULES: dict[str, tuple] = {
    "data": ("str",), "tokenizer": ("str",), "allow_binary": ("bool",), "model": ("choice", ("gpt", "lstm")),
    "block_size": ("int", 1),
    "init_from": ("str",), "preset": ("choice", ("", *PRESETS)),
    "batch_size": ("int", 1), "grad_accum": ("int", 1), "steps": ("int", 1),
    "lr": ("open_number", 0.0, None), "min_lr": ("number", 0.0, None), "warmup_steps": ("int", 0),
    "lr_decay_steps": ("int", 0), "weight_decay": ("number", 0.0, None), "beta1": ("open_number", None, 1.0),
    "beta2": ("open_number", None, 1.0), "grad_clip": ("number", 0.0, None),
    "eval_interval": ("int", 1), "eval_windows": ("int", 1), "eval_batch_size": ("int", 1),
    "seed": ("int", 0), "device": ("str",), "dtype": ("choice", ("auto", "float32", "bfloat16")),
    "compile": ("bool",), "threads": ("int", 0), "distributed": ("bool",), "out_dir": ("str",),
    "resume": ("bool",), "overwrite": ("bool",), "cache_dir": ("str",), "log_interval": ("int", 0),
    "progress": ("bool",), "verbose": ("bool",), "stop_at_step": ("int", 0),
    "mix_alpha": ("number", 0.0, 1.0), "domain_tags": ("bool",),
}
CONFIG_RULES.update(objective=("choice", OBJECTIVES), mlm_weight=("number", 0.0, None))

# Settings that define a run: a resumed run must keep them (the rest only steer it, and may change).
RUN_DEFINING = ("data", "mix", "tokenizer", "preset", "seed", "model", "block_size", "batch_size", "grad_accum",
                "augment", "mix_domains", "mix_alpha", "domain_tags")
RUN_DEFINING += ("objective",)  # the masked objective adds the mask token to the vocabulary


# ----------------------------------------------------------------------------------------------
# 2. Learning-rate schedule
# ----------------------------------------------------------------------------------------------


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup for `warmup_steps`, then a cosine from lr down to min_lr at lr_decay_steps."""
    decay_steps = config.lr_decay_steps or config.steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    if step >= decay_steps:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, decay_steps - config.warmup_steps)  # 0 -> 1
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


# ----------------------------------------------------------------------------------------------
# 3. The pieces of a run
# ----------------------------------------------------------------------------------------------


@dataclass
class Distributed:
    """Where this process sits in a torchrun launch (rank 0 of 1 when run plainly)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    started_here: bool = False  # this module called init_process_group (and so destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: str | None = None) -> int:
    text = os.environ.get(name, default)
    if text is None:
        raise UserError(f"environment: WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but {name} is not; "
                        "a leftover of a torchrun launch? unset WORLD_SIZE, or launch with torchrun")
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment: {name}={text!r} is not an integer; a leftover torchrun variable? "
                        f"unset {name}, or launch with torchrun") from None


def setup_distributed(device: torch.device, join: bool = True) -> tuple[Distributed, torch.device]:
    """Join the process group that torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK.

    gloo on the CPU, nccl on CUDA; each process uses the GPU of its local rank. With join=False
    (TrainConfig.distributed) the variables are ignored and the run is a single process.
    """
    if not join:
        return Distributed(), device
    world_size = _env_int("WORLD_SIZE", "1")
    if world_size <= 1:
        return Distributed(), device
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", "0")
    if not 0 <= rank < world_size:
        raise UserError(f"environment: RANK={rank} is outside 0..WORLD_SIZE-1 = {world_size - 1}; "
                        "launch with torchrun")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ and not dist.is_initialized():
            raise UserError(f"environment: WORLD_SIZE={world_size} is set but {name} is not; a leftover of a "
                            "torchrun launch? unset WORLD_SIZE, or launch with torchrun")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    started_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        started_here = True
    return Distributed(rank, local_rank, world_size, started_here), device


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; float32 (no autocast) elsewhere."""
    if config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_model(config: TrainConfig, vocab_size: int) -> torch.nn.Module:
    """A fresh model of kind `config.model` with `config.model_args`, sized for the tokenizer."""
    registry = model_registry()
    if config.model not in registry:
        raise UserError(f"--model: {config.model!r} is not available; expected one of {sorted(registry)}")
    model_class, config_class = registry[config.model]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(config.model_args) - known)
    if unknown:
        raise UserError(f"{model_arg_flag(unknown[0])}: the {config.model} model has no such setting; it takes "
                        f"{', '.join(sorted(known - {'vocab_size', 'block_size'}))}")
    args = dict(config.model_args)
    args["vocab_size"] = vocab_size
    if "block_size" in known:
        args["block_size"] = config.block_size
    try:
        model_config = config_class(**args)
    except (ValueError, TypeError) as error:
        raise UserError(f"--model {config.model}: {error}") from None
    return model_class(model_config)


def load_hf(name_or_dir: str, flag_name: str):
    """(GPT model, tokenizer) of a Hugging Face model, through minilm.hf (imported only when asked for)."""
    try:
        from minilm.hf import from_hf
    except ModuleNotFoundError as error:
        if error.name == "minilm.hf":
            raise UserError(f"{flag_name}: the Hugging Face interop module minilm.hf is not available in this "
                            "minilm") from None
        raise UserError(f"{flag_name}: Hugging Face models need the {error.name!r} package, which is not "
                        "installed") from None
    return from_hf(name_or_dir)


def load_start_model(init_from: str):
    """`--init-from`: (model, tokenizer) from a minilm checkpoint or, for hf:NAME_OR_DIR, Hugging Face."""
    if init_from.startswith("hf:"):
        return load_hf(init_from[len("hf:"):], "--init-from")
    from minilm.checkpoint import load_model

    model, tokenizer, _ = load_model(init_from, "cpu")
    return model, tokenizer


def model_kind_of(model: torch.nn.Module, default: str) -> str:
    """The `--model` name of a model object ("gpt", "lstm"), from minilm.MODELS."""
    for kind, (model_class, _) in model_registry().items():
        if isinstance(model, model_class):
            return kind
    return default


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the model's parameter groups; the fused kernel where the backend has one."""
    groups = model.param_groups(config.weight_decay)
    kwargs = dict(lr=config.lr, betas=(config.beta1, config.beta2))
    if device.type in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass  # an older PyTorch without fused AdamW on this backend
    return torch.optim.AdamW(groups, **kwargs)


@dataclass
class EvalSet:
    """Fixed validation windows of one corpus and the UTF-8 bytes behind their targets."""

    name: str
    windows: torch.Tensor  # (N, T+1)
    num_bytes: int


def make_eval_set(corpus, tokenizer, block_size: int, max_windows: int) -> EvalSet:
    windows = validation_windows(corpus.val, block_size, max_windows, what=f"held-out part of {corpus.name}")
    return EvalSet(corpus.name, windows, count_target_bytes(windows, tokenizer))


class InterruptFlag:
    """Ctrl-C (SIGINT) or SIGTERM during training sets a flag; the loop saves a checkpoint at the
    end of the step and stops. A second signal raises KeyboardInterrupt at once: an atomic write in
    progress is abandoned (the previous file stays) and train.py says so in one line."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.raised = ""  # the name of the signal received ("SIGINT", "SIGTERM"), "" before one
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What a run produced. `model` is the bare trained model (on the run's device)."""

    model: torch.nn.Module
    tokenizer: object
    config: TrainConfig
    history: list  # one dict per evaluation (the lines of log.jsonl)
    train_losses: list  # (step, mean training loss of that step) every log_interval steps
    best_val_loss: float
    step: int  # optimizer steps done
    interrupted: bool  # stopped early (Ctrl-C, SIGTERM, stop_at_step, stdout closed), checkpoint saved
    step_seconds: list  # wall time of every optimizer step in this process
    checkpoint_path: os.PathLike | None
    run_id: str | None = ""  # None for a resumed run saved before run ids existed
    stop_reason: str = ""  # why it stopped early: "SIGINT", "SIGTERM", "signal" (another rank's),
    #                        "stop_at_step" or "stdout closed"

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


# ----------------------------------------------------------------------------------------------
# 4. The run: prepare, build, then the loop of evaluate-and-checkpoint, should-stop, one step
# ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the steps of a run share: the parts built by `prepare` and `build`, and the state that
    the loop advances (all of it saved in a checkpoint, except the timing)."""

    config: TrainConfig
    device: torch.device
    ddp: Distributed
    folder: RunFolder | None
    run_id: str | None
    tokenizer: object
    sampler: BatchSampler
    eval_sets: list
    raw_model: torch.nn.Module = None  # the bare model: what is evaluated and saved
    model: torch.nn.Module = None  # what the forward pass runs through (compiled, DDP-wrapped)
    optimizer: torch.optim.Optimizer = None
    amp_dtype: torch.dtype | None = None
    start_step: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    history: list = field(default_factory=list)
    resumed_with: dict = field(default_factory=dict)  # steering settings changed on resume: [old, new]
    loss_sum_since_eval: torch.Tensor | None = None  # () summed step losses since the last eval
    steps_since_eval: int = 0
    last_finite_loss: tuple | None = None  # (step, loss)
    saved_step: int | None = None  # the step of the last checkpoint written
    train_losses: list = field(default_factory=list)
    step_seconds: list = field(default_factory=list)
    tokens_per_sec: float | None = None
    progress: object = None  # the tqdm bar, or None
    stdout_closed: bool = False
    on_step: object = None  # observe(step, model), called before every step and at the end; must not train
    mask_id: int | None = None  # the <mask> token's id, for the masked objective
    mask_generator: torch.Generator | None = None  # draws the masks (its state is saved in checkpoints)
    on_eval: object = None  # (model, step) -> dict of more numbers for the log record, or None

    @property
    def tokens_per_step(self) -> int:
        c = self.config
        return c.batch_size * c.block_size * c.grad_accum * self.ddp.world_size

    def say(self, line: str) -> None:
        """Print a line (above the progress bar) from the main process; a closed stdout stops the run."""
        if not (self.config.verbose and self.ddp.is_main) or self.stdout_closed:
            return
        try:
            (self.progress.write if self.progress is not None else print)(line)
        except BrokenPipeError:  # `train.py | head`: the reader left; save and stop at the next check
            self.stdout_closed = True
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def train(config: TrainConfig, model: torch.nn.Module | None = None, tokenizer=None, on_step=None,
          on_eval=None) -> TrainResult:
    """Train per `config`; returns a TrainResult. Pass `model` (and its `tokenizer`) to continue
    training an existing model, e.g. one from `minilm.checkpoint.load_model`, with a fresh optimizer
    (or set `config.init_from`). `on_step(step, model)`, if given, watches the run: it is called with
    the bare model before every optimizer step and after the last (e.g. to measure gradients), and
    must leave the model and every RNG as it found them. `on_eval(model, step)`, if given, is called
    at every evaluation and the dict it returns is added to that step's log record (it must not
    change the model).
    """
    device = pick_device(config.device)
    ddp, device = setup_distributed(device, join=config.distributed)
    if config.threads:
        torch.set_num_threads(config.threads)
    elif ddp.world_size > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // _env_int("LOCAL_WORLD_SIZE", str(ddp.world_size))))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run = None
    try:
        run, model, checkpoint = prepare(config, model, tokenizer, device, ddp)
        run.on_eval = on_eval
        build(run, model, checkpoint)
        run.on_step = on_step
        del checkpoint
        return loop(run)
    finally:
        if run is not None and run.folder is not None:
            run.folder.close()
        if ddp.started_here:
            dist.destroy_process_group()


def prepare(config: TrainConfig, model, tokenizer, device, ddp: Distributed):
    """Checks and data: the output folder (checked and locked before anything is loaded), the
    checkpoint to resume, the starting model and tokenizer, the batch sampler and the eval sets.
    Returns (Run, starting model or None, checkpoint or None)."""
    folder, checkpoint = None, None
    if config.out_dir:
        folder, checkpoint = RunFolder.open(config.out_dir, config.resume, config.overwrite, ddp.is_main)
    elif config.resume:
        raise UserError("--resume: needs --out, the folder of the run to continue")
    try:
        resumed_with = {}
        if checkpoint is not None:
            if config.init_from:  # the model came from --init-from: its kind and settings are the checkpoint's
                config = dataclasses.replace(config, model=checkpoint["model_kind"], model_args={})
            resumed_with = check_resume_matches(config, checkpoint, str(folder.checkpoint_path))
            if tokenizer is None:  # the run's own tokenizer: a moved tokenizer file does not matter
                tokenizer = tokenizer_from_json(checkpoint["tokenizer"])
        elif model is None and config.init_from:
            model, tokenizer = load_start_model(config.init_from)
            # the run is of the loaded model's kind, with its settings (kept in every checkpoint)
            config = dataclasses.replace(config, model=model_kind_of(model, config.model), model_args={})
        if tokenizer is None and config.domain_tags:
            tokenizer = tagged_tokenizer([resolve_corpus(spec).stem for spec in [config.data, *config.mix,
                                                                                  *config.mix_domains]])
        if tokenizer is None:
            tokenizer = load_tokenizer(config.tokenizer)
        config.objective_config.check_model(config.model)  # the kind may have come from --init-from
        tokenizer = with_mask_token(tokenizer, config, loaded_model=model is not None)

        cache_dir = resolve_cache_dir(config.cache_dir)
        binary = config.allow_binary
        main_corpus = load_corpus(config.data, tokenizer, cache_dir, allow_binary=binary, flag="--data")
        mixed = [load_corpus(spec, tokenizer, cache_dir, allow_binary=binary, flag="--mix") for spec in config.mix]
        mixed += [load_corpus(spec, tokenizer, cache_dir, allow_binary=binary, flag="--mix-domains")
                  for spec in config.mix_domains]
        if config.mix_domains:
            sizes = {str(k): c.train_bytes for k, c in enumerate([main_corpus] + mixed)}  # two files may share a name
            weights = list(tempered_weights(sizes, config.mix_alpha).values())
        else:
            weights = [1.0 - sum(config.mix.values())] + list(config.mix.values())
        tags = [tag_id(tokenizer, c.name) for c in [main_corpus] + mixed] if config.domain_tags else None
        sampler = BatchSampler([main_corpus.train] + [c.train for c in mixed], weights, config.block_size,
                               config.batch_size, config.seed, names=[main_corpus.name] + [c.name for c in mixed],
                               rank=ddp.rank, world_size=ddp.world_size,
                               augmenter=Augmenter.from_flags(config.augment), tags=tags)
        extra = [load_corpus(spec, tokenizer, cache_dir, allow_binary=binary, flag="--eval-extra")
                 for spec in config.eval_extra]
        eval_sets = [make_eval_set(c, tokenizer, config.block_size, config.eval_windows)
                     for c in [main_corpus] + mixed + extra]
        for eval_set, tag in zip(eval_sets, tags or [], strict=False):  # tagged rows, as in training
            eval_set.windows = tagged_windows(eval_set.windows, tag)
    except BaseException:
        if folder is not None:
            folder.close()
        raise
    run = Run(config, device, ddp, folder, folder.run_id if folder else new_run_id(), tokenizer, sampler,
              eval_sets, resumed_with=resumed_with)
    return run, model, checkpoint


def with_mask_token(tokenizer, config: TrainConfig, loaded_model: bool = False):
    """The tokenizer, with the <mask> special token added when the objective needs it (bytes: id 256)."""
    if not config.objective_config.needs_mask_token or MASK_TOKEN in getattr(tokenizer, "special_tokens", {}):
        return tokenizer
    what = f"--objective {config.objective}"
    if loaded_model:
        raise UserError(f"{what}: the starting model's tokenizer has no {MASK_TOKEN} token; train the masked "
                        "objective from scratch, or start from a model trained with --objective mlm or both")
    if not isinstance(tokenizer, ByteTokenizer):
        raise UserError(f"{what}: needs --tokenizer bytes (the {MASK_TOKEN} token is added to the bytes "
                        "tokenizer only)")
    return ByteTokenizer(special_tokens=(*tokenizer.special_tokens, MASK_TOKEN))


def check_resume_matches(config: TrainConfig, checkpoint: dict, path: str) -> dict:
    """Refuse a resume whose run-defining settings differ from the checkpoint's (one line naming the
    flag and both values); return the steering settings that changed, {name: [old, new]}."""
    saved = checkpoint.get("train_config") or {}

    def refuse(name: str, theirs, ours, what: str = "different from the run being resumed"):
        raise UserError(f"--resume: {name}: {what} ({theirs!r} in {path}, {ours!r} now); "
                        "flags that define a run cannot change when it resumes")

    if checkpoint["model_kind"] != config.model:
        refuse("--model", checkpoint["model_kind"], config.model)
    for name in RUN_DEFINING:
        ours, theirs = getattr(config, name), saved.get(name, getattr(config, name))
        if ours == theirs or (name == "preset" and not ours):
            continue
        if name == "tokenizer" and load_tokenizer(ours).to_json() == checkpoint["tokenizer"]:
            continue  # the same tokenizer, from another path
        refuse(flag(name), theirs, ours)
    model_config = checkpoint["model_config"]
    for key, value in config.model_args.items():
        if key not in model_config:
            raise UserError(f"{model_arg_flag(key)}: the {config.model} model has no such setting")
        if model_config[key] != value:
            refuse(model_arg_flag(key), model_config[key], value, "different model config")
    unchanged = set(RUN_DEFINING) | {"model_args", "resume", "overwrite", "init_from"}
    return {f.name: [saved[f.name], getattr(config, f.name)] for f in dataclasses.fields(config)
            if f.name not in unchanged and f.name in saved and saved[f.name] != getattr(config, f.name)}


def build(run: Run, model: torch.nn.Module | None, checkpoint: dict | None) -> None:
    """Model, optimizer and, on resume, every state the checkpoint holds."""
    config, ddp, tokenizer = run.config, run.ddp, run.tokenizer
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    if model is None and checkpoint is not None:
        model_class, model_config = config_from_checkpoint(checkpoint, str(run.folder.checkpoint_path))
        model = model_class(model_config)
    elif model is None:
        model = build_model(config, tokenizer.vocab_size)
    elif getattr(model.config, "vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
        raise UserError(f"--tokenizer: vocabulary of {tokenizer.vocab_size} does not match the model's "
                        f"{model.config.vocab_size}")
    model_block_size = getattr(model.config, "block_size", None)
    if model_block_size is not None and config.block_size > model_block_size:
        raise UserError(f"--block-size: {config.block_size} is longer than the model's context {model_block_size}")
    model.to(run.device)
    model.train()
    optimizer = make_optimizer(model, config, run.device)
    torch.manual_seed(config.seed + ddp.rank)  # dropout masks differ between ranks
    if config.objective_config.needs_mask_token:  # each rank masks its own rows: seeded from (seed, rank)
        run.mask_id = tokenizer.special_id(MASK_TOKEN)
        run.mask_generator = torch.Generator().manual_seed(config.seed * 1000 + ddp.rank)

    if checkpoint is not None:
        path = str(run.folder.checkpoint_path)
        check_compatible(checkpoint, config.model, model.config.to_dict(), tokenizer.to_json(), path)
        load_weights(model, checkpoint["model"], path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        run.sampler.load_state_dict(checkpoint["data_state"])
        restore_rng_state(checkpoint["rng"])
        if run.mask_generator is not None and "mask_rng" in checkpoint:
            run.mask_generator.set_state(checkpoint["mask_rng"])
        if ddp.rank:
            torch.manual_seed(config.seed + 1000 * checkpoint["step"] + ddp.rank)
        run.start_step = run.step = run.saved_step = int(checkpoint["step"])
        run.best_val_loss = float(checkpoint.get("best_val_loss", math.inf))
        run.history = list(checkpoint.get("history", []))
        run.folder.write_log(run.history)  # drop records logged after this checkpoint was saved

    run.raw_model, run.optimizer = model, optimizer
    if config.compile:
        model = torch.compile(model)
    if ddp.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    run.model = model
    run.amp_dtype = autocast_dtype(config, run.device)
    run.loss_sum_since_eval = torch.zeros((), device=run.device)


def loop(run: Run) -> TrainResult:
    """Evaluate (and checkpoint) when due, stop when asked, else take one optimizer step."""
    config = run.config
    if config.progress and run.ddp.is_main:
        from tqdm.auto import tqdm

        run.progress = tqdm(total=config.steps, initial=run.start_step, unit="step", dynamic_ncols=True)
    stop_reason = ""
    try:
        with InterruptFlag() as interrupt:
            while True:
                already_evaluated = bool(run.history) and run.history[-1]["step"] == run.step
                if (run.step % config.eval_interval == 0 or run.step == config.steps) and not already_evaluated:
                    evaluate_and_checkpoint(run)
                if run.on_step is not None:
                    run.on_step(run.step, run.raw_model)
                if run.step >= config.steps:
                    break
                stop_reason = should_stop(run, interrupt)
                if stop_reason:
                    save_at_stop(run)
                    break
                optimizer_step(run)
    finally:
        if run.progress is not None:
            run.progress.close()
    return TrainResult(model=run.raw_model, tokenizer=run.tokenizer, config=config, history=run.history,
                       train_losses=run.train_losses, best_val_loss=run.best_val_loss, step=run.step,
                       interrupted=bool(stop_reason), step_seconds=run.step_seconds,
                       checkpoint_path=run.folder.checkpoint_path if run.folder else None, run_id=run.run_id,
                       stop_reason=stop_reason)


def make_checkpoint(run: Run) -> dict:
    checkpoint = {
        "model_kind": run.config.model, "model_config": run.raw_model.config.to_dict(),
        "model": unwrap_model(run.raw_model).state_dict(), "optimizer": run.optimizer.state_dict(),
        "step": run.step, "data_state": run.sampler.state_dict(), "rng": capture_rng_state(),
        "tokenizer": run.tokenizer.to_json(), "train_config": run.config.to_dict(),
        "best_val_loss": run.best_val_loss, "history": run.history, "run_id": run.run_id,
    }
    if run.mask_generator is not None:
        checkpoint["mask_rng"] = run.mask_generator.get_state()
    return checkpoint


def eval_scores(run: Run, eval_set: EvalSet) -> dict[str, EvalResult]:
    """The scores of one eval set, the run's main one first: causal bits per byte ("causal"), and
    with the mask token the causal score over the 256 byte ids (for `both`) and the masked one."""
    config = run.config
    if config.objective == "clm":
        return {"causal": evaluate(run.raw_model, eval_set.windows, run.tokenizer, config.eval_batch_size,
                                   run.device, run.amp_dtype, eval_set.num_bytes)}
    scores = {}
    if config.objective == "both":
        scores["causal"] = evaluate(ByteLogitsOnly(run.raw_model), eval_set.windows, run.tokenizer,
                                    config.eval_batch_size, run.device, run.amp_dtype, eval_set.num_bytes)
    scores["masked"] = masked_bits_per_byte(run.raw_model, eval_set.windows, run.mask_id, 0,
                                            config.eval_batch_size, run.device)
    return scores


def evaluate_and_checkpoint(run: Run) -> None:
    """Score every eval set, log the record, and save ckpt.pt (and best.pt when it improved)."""
    config, step = run.config, run.step
    train_loss = None
    if run.steps_since_eval:
        if run.ddp.world_size > 1:
            dist.all_reduce(run.loss_sum_since_eval)
            run.loss_sum_since_eval /= run.ddp.world_size
        train_loss = float(run.loss_sum_since_eval) / run.steps_since_eval
    scores = [eval_scores(run, s) for s in run.eval_sets]
    results: list[EvalResult] = [next(iter(s.values())) for s in scores]  # the main score of each set
    if not all(math.isfinite(x) for x in (train_loss or 0.0, results[0].loss)):
        raise diverged(run, train_loss if train_loss is not None else results[0].loss)
    record = {"step": step, "train_loss": train_loss, "val_loss": results[0].loss,
              "val_bpb": results[0].bits_per_byte, "lr": learning_rate(min(step, config.steps - 1), config),
              "tokens_per_sec": run.tokens_per_sec, "tokens_seen": step * run.tokens_per_step,
              "time": round(time.time(), 3), "run_id": run.run_id}
    if len(run.eval_sets) > 1:
        record["val_bpb_by_corpus"] = {s.name: r.bits_per_byte for s, r in zip(run.eval_sets, results, strict=True)}
        record["val_loss_by_corpus"] = {s.name: r.loss for s, r in zip(run.eval_sets, results, strict=True)}
    if run.on_eval is not None:
        record.update(run.on_eval(run.raw_model, step))
    if config.objective != "clm":
        record.update({f"val_{name}_bpb": result.bits_per_byte for name, result in scores[0].items()})
    if run.resumed_with:
        record["resumed_with"], run.resumed_with = run.resumed_with, {}
    run.history.append(record)
    run.loss_sum_since_eval.zero_()
    run.steps_since_eval = 0
    improved = record["val_loss"] < run.best_val_loss
    run.best_val_loss = min(run.best_val_loss, record["val_loss"])
    if run.folder is not None:
        run.folder.write_log(run.history)
        if step > run.start_step or improved:
            checkpoint = make_checkpoint(run)
            run.folder.save(CHECKPOINT_NAME, checkpoint)
            run.saved_step = step
            if improved:
                run.folder.save(BEST_NAME, checkpoint)
    if run.progress is not None:
        run.progress.set_postfix_str(f"val bpb {record['val_bpb']:.3f}", refresh=False)
    run.say(f"step {step:6d} | train loss {_fmt(train_loss)} | val loss {record['val_loss']:.4f} "
            f"| val bits/byte {record['val_bpb']:.4f}" + (" | best" if improved else ""))


def should_stop(run: Run, interrupt: InterruptFlag) -> str:
    """Why to stop before the next step ("" = go on): a signal, a closed stdout, or stop_at_step.
    Under DDP every rank must stop at the same step, or the collectives hang: the ranks vote."""
    reason = interrupt.raised or ("stdout closed" if run.stdout_closed else "")
    if run.ddp.world_size > 1:
        vote = torch.tensor([float(bool(reason))], device=run.device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        reason = reason or ("signal" if vote.item() else "")
    if not reason and run.config.stop_at_step and run.step >= run.config.stop_at_step:
        reason = "stop_at_step"
    return reason


def save_at_stop(run: Run) -> None:
    """Save a checkpoint of the current step (unless the loss has gone non-finite since the last one)."""
    if run.folder is None:
        return
    if not bool(torch.isfinite(run.loss_sum_since_eval)):
        raise diverged(run, float(run.loss_sum_since_eval))
    run.folder.save(CHECKPOINT_NAME, make_checkpoint(run))
    run.saved_step = run.step
    run.say(f"stopped at step {run.step}; checkpoint saved to {run.folder.checkpoint_path} (continue with --resume)")


def optimizer_step(run: Run) -> None:
    """One optimizer step over grad_accum micro-batches; reads the loss every log_interval steps."""
    config, device = run.config, run.device
    started = time.perf_counter()
    lr = learning_rate(run.step, config)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    autocast = (lambda: torch.autocast(device.type, dtype=run.amp_dtype)) if run.amp_dtype else contextlib.nullcontext
    step_loss = torch.zeros((), device=device)
    for micro, (x, y) in enumerate(run.sampler.next_step(config.grad_accum)):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # (B, T) each
        last_micro = micro == config.grad_accum - 1
        sync = contextlib.nullcontext() if (run.ddp.world_size == 1 or last_micro) else run.model.no_sync()
        with sync:
            with autocast():
                loss = objective_loss(config.objective_config, run.model, x, y, run.mask_id, run.mask_generator)
            (loss / config.grad_accum).backward()
        step_loss += loss.detach() / config.grad_accum
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.loss_sum_since_eval += step_loss
    run.steps_since_eval += 1
    run.step += 1
    # Reading the loss makes the CPU wait for the device; on a GPU every 10 steps lets it queue ahead.
    log_interval = config.log_interval or (1 if device.type == "cpu" else 10)
    if run.step % log_interval == 0 or run.step == config.steps:
        loss_value = float(step_loss)
        if not (math.isfinite(loss_value) and math.isfinite(float(run.loss_sum_since_eval))):
            raise diverged(run, loss_value)
        run.last_finite_loss = (run.step - 1, loss_value)
        run.train_losses.append((run.step - 1, loss_value))
        run.step_seconds.append(time.perf_counter() - started)
        window = run.step_seconds[-20:]
        run.tokens_per_sec = run.tokens_per_step * len(window) / max(sum(window), 1e-9)
        if run.progress is not None:
            last_val_bpb = run.history[-1]["val_bpb"] if run.history else float("nan")
            run.progress.set_postfix_str(f"loss {loss_value:.4f} | val bpb {last_val_bpb:.3f} "
                                         f"| {run.tokens_per_sec:,.0f} tok/s", refresh=False)
    else:
        run.step_seconds.append(time.perf_counter() - started)
    if run.progress is not None:
        run.progress.update(1)


def diverged(run: Run, loss: float) -> TrainingDiverged:
    """The one line for a loss that became NaN or infinite: where, the last finite loss, what is kept."""
    if run.last_finite_loss is None and run.history:  # no step loss read yet: the last evaluation's
        record = run.history[-1]
        run.last_finite_loss = (record["step"], record["train_loss"] or record["val_loss"])
    last = (f"last finite loss {run.last_finite_loss[1]:.4f} at step {run.last_finite_loss[0]}"
            if run.last_finite_loss else "no finite loss before")
    kept = (f"{run.folder.checkpoint_path} keeps the last finite checkpoint (step {run.saved_step})"
            if run.folder is not None and run.saved_step is not None else "no checkpoint was saved")
    return TrainingDiverged(f"training diverged: the loss became {loss} by step {run.step} ({last}); {kept}; "
                            f"try a lower --lr (now {run.config.lr:g})")


def resolve_cache_dir(cache_dir: str | None):
    """TrainConfig.cache_dir -> a folder, or None for in-memory token arrays."""
    if cache_dir == "auto":
        return DEFAULT_CACHE_DIR
    return cache_dir or None


def _fmt(value: float | None) -> str:
    return "   -   " if value is None else f"{value:.4f}"


# ----------------------------------------------------------------------------------------------
# 5. Scoring a checkpoint
# ----------------------------------------------------------------------------------------------


def check_finite_weights(model: torch.nn.Module, what: str) -> None:
    """Refuse a model with NaN or infinite weights: its scores would only be nan."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{what} holds non-finite weights (nan or inf in {name}); the run diverged before "
                            "this was saved: train again with a lower --lr")


def evaluate_checkpoint(ckpt_path: str | os.PathLike, data: str, device: str = "auto", split: str = "val",
                        max_windows: int | None = None, batch_size: int = 32,
                        cache_dir: str | None = "auto") -> tuple[EvalResult, dict]:
    """Score a checkpoint on a corpus: bits per byte over fixed windows of the chosen split.

    split "val" is the held-out last 10% (the same text training evaluated on), "train" the
    rest, "all" the whole file. Returns (EvalResult, info about what was scored).
    """
    from minilm.checkpoint import load_model

    _check_split(split)
    torch_device = pick_device(device)
    model, tokenizer, checkpoint = load_model(ckpt_path, torch_device)
    check_finite_weights(model, f"--ckpt: {str(ckpt_path)!r}")
    block_size = getattr(model.config, "block_size", None) or checkpoint.get("train_config", {}).get("block_size", 256)
    objective = (checkpoint.get("train_config") or {}).get("objective", "clm")
    result, info = score_model(model, tokenizer, data, torch_device, split, block_size, max_windows, batch_size,
                               cache_dir, objective)
    info.update(ckpt=str(ckpt_path), model_kind=checkpoint["model_kind"], step=int(checkpoint.get("step", 0)))
    return result, info


def evaluate_hf(name_or_dir: str, data: str, device: str = "auto", split: str = "val",
                max_windows: int | None = None, batch_size: int = 32,
                cache_dir: str | None = "auto") -> tuple[EvalResult, dict]:
    """Score a Hugging Face model (`--eval-only --hf NAME_OR_DIR`), converted by minilm.hf."""
    _check_split(split)
    torch_device = pick_device(device)
    model, tokenizer = load_hf(name_or_dir, "--hf")
    model.to(torch_device)
    check_finite_weights(model, f"--hf: {name_or_dir!r}")
    block_size = getattr(model.config, "block_size", 256)
    result, info = score_model(model, tokenizer, data, torch_device, split, block_size, max_windows, batch_size,
                               cache_dir)
    info.update(ckpt=f"hf:{name_or_dir}", model_kind="gpt", step=0)
    return result, info


def _check_split(split: str) -> None:
    if split not in ("val", "train", "all"):
        raise UserError(f"--split: unknown split {split!r}; expected val, train or all")


def score_model(model, tokenizer, data: str, device: torch.device, split: str, block_size: int,
                max_windows: int | None, batch_size: int, cache_dir, objective: str = "clm") -> tuple[EvalResult, dict]:
    """Causal bits per byte of a model on a corpus split; for a model trained with the masked objective
    also (`both`) or only (`mlm`) masked-byte bits per byte, in info["scores"] (the main one returned)."""
    corpus = load_corpus(data, tokenizer, resolve_cache_dir(cache_dir))
    tokens = {"val": corpus.val, "train": corpus.train}.get(split)
    if tokens is None:
        import numpy as np

        tokens = np.concatenate([np.asarray(corpus.train), np.asarray(corpus.val)])
    windows = validation_windows(tokens, block_size, max_windows, what=f"{split} part of {corpus.name}")
    amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    scores = {}
    if objective == "clm":
        scores["causal"] = evaluate(model, windows, tokenizer, batch_size, device, amp_dtype)
    if objective == "both":  # over the 256 byte ids: the mask's logit is dropped
        scores["causal"] = evaluate(ByteLogitsOnly(model), windows, tokenizer, batch_size, device, amp_dtype)
    if objective in ("mlm", "both"):
        scores["masked"] = masked_bits_per_byte(model, windows, tokenizer.special_id(MASK_TOKEN), 0, batch_size,
                                                device)
    info = {"data": corpus.name, "split": split, "windows": int(windows.shape[0]),
            "block_size": int(windows.shape[1] - 1), "objective": objective, "scores": scores}
    return next(iter(scores.values())), info
