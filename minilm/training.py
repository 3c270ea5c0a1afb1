"""The training loop: AdamW, warmup + cosine schedule, evaluation, checkpoints, resume, DDP.

Call it from Python (`train(TrainConfig(...))`, e.g. many small runs in one process) or from
the command line (`train.py`, a thin argparse front-end). Read top to bottom:

1. TrainConfig and the named presets;
2. the learning-rate schedule;
3. the pieces a run is built from (devices and DDP, corpora, model, optimizer);
4. `train()` itself: the loop, evaluation, checkpoints, Ctrl-C, resume;
5. `evaluate_checkpoint()` for `--eval-only`.

Determinism: on the CPU, the same config gives bit-identical runs, and a run that is stopped
and resumed from its checkpoint continues exactly as if it had not stopped, because the
checkpoint holds the weights, the AdamW moments, the step, the batch sampler's generator and
every RNG state. Under DDP, every rank draws the whole global batch from the same generator
and keeps its slice, so N processes see the same rows as one process with N times the batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from minilm.checkpoint import (CheckpointError, capture_rng_state, check_compatible, config_from_checkpoint,
                               load_weights, model_registry, read_checkpoint, restore_rng_state,
                               save_checkpoint, unwrap_model)
from minilm.data import (DEFAULT_CACHE_DIR, BatchSampler, UserError, load_corpus, load_tokenizer,
                         validation_windows)
from minilm.devices import pick_device
from minilm.metrics import EvalResult, count_target_bytes, evaluate

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
    # the model
    model: str = "gpt"  # "gpt" | "lstm"
    model_args: dict = field(default_factory=dict)  # GPTConfig / LSTMConfig fields (n_layer, ...)
    block_size: int = 64  # T: context length of the training windows
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
    out_dir: str = ""  # where ckpt.pt, best.pt and log.jsonl go; "" = write nothing
    resume: bool = False  # continue from out_dir/ckpt.pt
    overwrite: bool = False  # allow a fresh run to replace an existing out_dir/ckpt.pt
    cache_dir: str = "auto"  # token-array cache folder; "auto" = <repo>/.cache/tokens, "" = in memory
    log_interval: int = 0  # read the loss (waiting for a GPU) every this many steps; 0 = 1 on CPU, 10 on a GPU
    progress: bool = True  # tqdm progress bar
    verbose: bool = True  # print one line per evaluation
    stop_at_step: int = 0  # stop early (saving a checkpoint, as Ctrl-C does) at this step; 0 = never

    def __post_init__(self):
        positive_ints = ("block_size", "batch_size", "grad_accum", "steps", "eval_interval", "eval_windows",
                         "eval_batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{flag(name)}: expected a positive integer, got {value!r}")
        for name in ("warmup_steps", "lr_decay_steps", "threads", "stop_at_step", "log_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{flag(name)}: expected an integer >= 0, got {value!r}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"{flag(name)}: expected a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise UserError(f"--lr: expected a learning rate > 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise UserError(f"{flag(name)}: expected a number in [0, 1), got {value!r}")
        if self.model not in ("gpt", "lstm"):
            raise UserError(f"--model: unknown model {self.model!r}; expected gpt or lstm")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise UserError(f"--dtype: unknown dtype {self.dtype!r}; expected auto, float32 or bfloat16")
        for name, weight in self.mix.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0.0 < weight < 1.0:
                raise UserError(f"--mix: the share of {name!r} must be a number in (0, 1), got {weight!r}")
        if sum(self.mix.values()) >= 1.0:
            raise UserError(f"--mix: shares {dict(self.mix)} add up to >= 1; the main --data corpus needs some")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"TrainConfig: unknown field(s) {unknown}")
        return cls(**d)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "TrainConfig":
        """A preset's settings, then `overrides` (model_args are merged, not replaced)."""
        if preset not in PRESETS:
            raise UserError(f"--preset: unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        settings = {k: v for k, v in PRESETS[preset].items() if k != "model_args"}
        model = overrides.get("model", settings.get("model", "gpt"))
        model_args = dict(PRESETS[preset].get("model_args", {}).get(model, {}))
        model_args.update(overrides.pop("model_args", {}))
        settings.update(overrides)
        return cls(**settings, model_args=model_args)


def flag(field_name: str) -> str:
    """The command-line flag of a TrainConfig field: batch_size -> --batch-size."""
    return "--" + field_name.replace("_", "-")


# Named sizes. `model_args` has one entry per model kind; explicit flags override everything.
PRESETS: dict[str, dict] = {
    # The default: a 0.8M-parameter GPT that learns Shakespeare's look in ~2.5 minutes on 2 CPU cores
    # (2 min 39 s in `make demo` on the project's VM).
    # lr 3e-3 and exact GELU: see nanogpt-cpu below.
    "cpu-tiny": dict(block_size=64, batch_size=12, steps=2000, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                     eval_interval=250, eval_windows=256,
                     model_args={"gpt": dict(n_layer=4, n_head=4, n_embd=128, dropout=0.0, activation="gelu"),
                                 "lstm": dict(n_layer=2, n_embd=128, n_hidden=256, dropout=0.0)}),
    # nanoGPT's README CPU run, shape for shape (config/train_shakespeare_char.py with
    # --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
    # --lr_decay_iters=2000 --dropout=0.0 --eval_iters=20): for the speed and loss comparison.
    # Same shapes, no biases and exact (erf) GELU as nanoGPT's model.py (on this CPU the tanh form
    # of GPT-2 costs ~2x as much forward + backward, bench/micro.py), but a learning rate of 3e-3
    # instead of nanoGPT's 1e-3 (tuned for its bigger GPU model): with tanh GELU, val loss at step 2000 was
    # 1.898 / 1.836 / 1.797 at lr 1e-3 / 2e-3 / 3e-3 (seed 1; seed 2: 1.900 at 1e-3, 1.835 at
    # 2e-3), `train.py --preset nanogpt-cpu --lr LR --min-lr LR/10` on the project's 2-core VM.
    "nanogpt-cpu": dict(block_size=64, batch_size=12, steps=2000, lr=3e-3, min_lr=3e-4, warmup_steps=100,
                        lr_decay_steps=2000, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0,
                        eval_interval=250, eval_windows=240,
                        model_args={"gpt": dict(n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False,
                                                activation="gelu"),
                                    "lstm": dict(n_layer=2, n_embd=128, n_hidden=256, dropout=0.0)}),
    # nanoGPT's Shakespeare-char GPU model: ~10.7M parameters, block 256, batch 64.
    "gpu-small": dict(block_size=256, batch_size=64, steps=5000, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                      eval_interval=250, eval_windows=512, eval_batch_size=64,
                      model_args={"gpt": dict(n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False, activation="gelu"),
                                  "lstm": dict(n_layer=3, n_embd=384, n_hidden=768, dropout=0.2)}),
    # Seconds, not minutes: for tests and CI.
    "ci-tiny": dict(block_size=64, batch_size=16, steps=500, lr=4e-3, min_lr=4e-4, warmup_steps=20,
                    eval_interval=100, eval_windows=64,
                    model_args={"gpt": dict(n_layer=2, n_head=4, n_embd=64, dropout=0.0),
                                "lstm": dict(n_layer=1, n_embd=32, n_hidden=64, dropout=0.0)}),
}


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


def setup_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group that torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK.

    gloo on the CPU, nccl on CUDA; each process uses the GPU of its local rank.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
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
        raise UserError(f"{flag(unknown[0])}: the {config.model} model has no such setting; it takes "
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
    """Ctrl-C during training sets a flag; the loop saves a checkpoint at the end of the step and
    stops. A second Ctrl-C interrupts at once (the handler restores the default on first use)."""

    def __init__(self):
        self.raised = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame):
        self.raised = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


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
    interrupted: bool
    step_seconds: list  # wall time of each training step of this process
    checkpoint_path: Path | None

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


# ----------------------------------------------------------------------------------------------
# 4. The loop
# ----------------------------------------------------------------------------------------------


def train(config: TrainConfig, model: torch.nn.Module | None = None, tokenizer=None) -> TrainResult:
    """Train per `config`; returns a TrainResult. Pass `model` (and its `tokenizer`) to continue
    training an existing model, e.g. one from `minilm.checkpoint.load_model`, with a fresh optimizer.
    """
    device = pick_device(config.device)
    ddp_info, device = setup_distributed(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    elif ddp_info.world_size > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", ddp_info.world_size))))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        return _train(config, model, tokenizer, device, ddp_info)
    finally:
        if ddp_info.started_here:
            dist.destroy_process_group()


def _train(config, model, tokenizer, device, ddp_info: Distributed) -> TrainResult:
    is_main = ddp_info.is_main
    out_dir = Path(config.out_dir) if config.out_dir else None
    checkpoint_path = out_dir / "ckpt.pt" if out_dir else None
    if config.resume and (checkpoint_path is None or not checkpoint_path.is_file()):
        where = str(checkpoint_path) if checkpoint_path else "(no --out given)"
        raise CheckpointError(f"--resume: no checkpoint to resume at {where}; run once without --resume first")
    if checkpoint_path is not None and checkpoint_path.exists() and not (config.resume or config.overwrite):
        raise UserError(f"--out: {str(out_dir)!r} already holds a checkpoint; pass --resume to continue it "
                        "or --overwrite to start over")

    # --- data ---------------------------------------------------------------------------------
    if tokenizer is None:
        tokenizer = load_tokenizer(config.tokenizer)
    cache_dir = resolve_cache_dir(config.cache_dir)
    main_corpus = load_corpus(config.data, tokenizer, cache_dir)
    mixed = [load_corpus(spec, tokenizer, cache_dir) for spec in config.mix]
    weights = [1.0 - sum(config.mix.values())] + list(config.mix.values())
    sampler = BatchSampler([main_corpus.train] + [c.train for c in mixed], weights, config.block_size,
                           config.batch_size, config.seed, names=[main_corpus.name] + [c.name for c in mixed],
                           rank=ddp_info.rank, world_size=ddp_info.world_size)
    extra = [load_corpus(spec, tokenizer, cache_dir) for spec in config.eval_extra]
    eval_sets = [make_eval_set(c, tokenizer, config.block_size, config.eval_windows)
                 for c in [main_corpus] + mixed + extra]

    # --- model and optimizer ------------------------------------------------------------------
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    if model is None:
        model = build_model(config, tokenizer.vocab_size)
    elif getattr(model.config, "vocab_size", tokenizer.vocab_size) != tokenizer.vocab_size:
        raise UserError(f"--tokenizer: vocabulary of {tokenizer.vocab_size} does not match the model's "
                        f"{model.config.vocab_size}")
    model_block_size = getattr(model.config, "block_size", None)
    if model_block_size is not None and config.block_size > model_block_size:
        raise UserError(f"--block-size: {config.block_size} is longer than the model's context {model_block_size}")
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, config, device)
    torch.manual_seed(config.seed + ddp_info.rank)  # dropout masks differ between ranks

    start_step, best_val_loss, history = 0, math.inf, []
    if config.resume:
        checkpoint = read_checkpoint(checkpoint_path)
        check_compatible(checkpoint, config.model, model.config.to_dict(), tokenizer.to_json(), str(checkpoint_path))
        load_weights(model, checkpoint["model"], str(checkpoint_path))
        optimizer.load_state_dict(checkpoint["optimizer"])
        sampler.load_state_dict(checkpoint["data_state"])
        restore_rng_state(checkpoint["rng"])
        if ddp_info.rank:
            torch.manual_seed(config.seed + 1000 * checkpoint["step"] + ddp_info.rank)
        start_step = int(checkpoint["step"])
        best_val_loss = float(checkpoint.get("best_val_loss", math.inf))
        history = list(checkpoint.get("history", []))
        del checkpoint

    raw_model = model
    if config.compile:
        model = torch.compile(model)
    if ddp_info.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    amp_dtype = autocast_dtype(config, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    tokens_per_step = config.batch_size * config.block_size * config.grad_accum * ddp_info.world_size
    # Reading the loss makes the CPU wait for the device; on a GPU every 10 steps lets it queue ahead.
    log_interval = config.log_interval or (1 if device.type == "cpu" else 10)

    def make_checkpoint(step: int) -> dict:
        return {
            "model_kind": config.model, "model_config": raw_model.config.to_dict(),
            "model": unwrap_model(raw_model).state_dict(), "optimizer": optimizer.state_dict(),
            "step": step, "data_state": sampler.state_dict(), "rng": capture_rng_state(),
            "tokenizer": tokenizer.to_json(), "train_config": config.to_dict(),
            "best_val_loss": best_val_loss, "history": history,
        }

    def run_evaluation(step: int, train_loss: float | None, tokens_per_sec: float | None) -> dict:
        results: list[EvalResult] = [
            evaluate(raw_model, s.windows, tokenizer, config.eval_batch_size, device, amp_dtype, s.num_bytes)
            for s in eval_sets
        ]
        record = {"step": step, "train_loss": train_loss, "val_loss": results[0].loss,
                  "val_bpb": results[0].bits_per_byte, "lr": learning_rate(min(step, config.steps - 1), config),
                  "tokens_per_sec": tokens_per_sec, "tokens_seen": step * tokens_per_step,
                  "time": round(time.time(), 3)}
        if len(eval_sets) > 1:
            record["val_bpb_by_corpus"] = {s.name: r.bits_per_byte for s, r in zip(eval_sets, results)}
            record["val_loss_by_corpus"] = {s.name: r.loss for s, r in zip(eval_sets, results)}
        return record

    # --- the loop -----------------------------------------------------------------------------
    if out_dir is not None and is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            (out_dir / "log.jsonl").unlink(missing_ok=True)  # a fresh run (--overwrite) starts a fresh log
    progress = None
    if config.progress and is_main:
        from tqdm.auto import tqdm

        progress = tqdm(total=config.steps, initial=start_step, unit="step", dynamic_ncols=True)
    say = (progress.write if progress is not None else print) if (config.verbose and is_main) else (lambda s: None)

    train_losses, step_seconds = [], []
    loss_sum_since_eval = torch.zeros((), device=device)  # summed step losses since the last eval
    steps_since_eval, tokens_per_sec, interrupted = 0, None, False
    last_val_bpb = history[-1]["val_bpb"] if history else float("nan")
    step = start_step
    with InterruptFlag() as interrupt:
        while True:
            # evaluate (and checkpoint) every eval_interval steps and at the end
            already_evaluated = bool(history) and history[-1]["step"] == step
            if (step % config.eval_interval == 0 or step == config.steps) and not already_evaluated:
                train_loss = None
                if steps_since_eval:
                    if ddp_info.world_size > 1:
                        dist.all_reduce(loss_sum_since_eval)
                        loss_sum_since_eval /= ddp_info.world_size
                    train_loss = float(loss_sum_since_eval) / steps_since_eval
                record = run_evaluation(step, train_loss, tokens_per_sec)
                history.append(record)
                last_val_bpb = record["val_bpb"]
                loss_sum_since_eval.zero_()
                steps_since_eval = 0
                improved = record["val_loss"] < best_val_loss
                best_val_loss = min(best_val_loss, record["val_loss"])
                say(f"step {step:6d} | train loss {_fmt(train_loss)} | val loss {record['val_loss']:.4f} "
                    f"| val bits/byte {record['val_bpb']:.4f}" + (" | best" if improved else ""))
                if out_dir is not None and is_main:
                    with open(out_dir / "log.jsonl", "a") as log:
                        log.write(json.dumps(record) + "\n")
                    if step > start_step or improved:
                        checkpoint = make_checkpoint(step)
                        save_checkpoint(checkpoint_path, checkpoint)
                        if improved:
                            save_checkpoint(out_dir / "best.pt", checkpoint)
            if step >= config.steps:
                break
            stop_requested = interrupt.raised
            if ddp_info.world_size > 1:  # every rank must stop at the same step, or collectives hang
                flag_tensor = torch.tensor([float(stop_requested)], device=device)
                dist.all_reduce(flag_tensor, op=dist.ReduceOp.MAX)
                stop_requested = bool(flag_tensor.item())
            if stop_requested or (config.stop_at_step and step >= config.stop_at_step):
                interrupted = True
                if out_dir is not None and is_main:
                    save_checkpoint(checkpoint_path, make_checkpoint(step))
                    say(f"stopped at step {step}; checkpoint saved to {checkpoint_path} (continue with --resume)")
                break

            # one optimizer step
            started = time.perf_counter()
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss = torch.zeros((), device=device)
            for micro, (x, y) in enumerate(sampler.next_step(config.grad_accum)):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # (B, T) each
                last_micro = micro == config.grad_accum - 1
                sync = contextlib.nullcontext() if (ddp_info.world_size == 1 or last_micro) else model.no_sync()
                with sync:
                    with autocast():
                        _, loss = model(x, y)
                    (loss / config.grad_accum).backward()
                step_loss += loss.detach() / config.grad_accum
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum_since_eval += step_loss
            steps_since_eval += 1
            step += 1
            if step % log_interval == 0 or step == config.steps:
                loss_value = float(step_loss)  # syncs with the GPU only every log_interval steps
                train_losses.append((step - 1, loss_value))
                step_seconds.append(time.perf_counter() - started)
                window = step_seconds[-20:]
                tokens_per_sec = tokens_per_step * len(window) / max(sum(window), 1e-9)
                if progress is not None:
                    progress.set_postfix_str(f"loss {loss_value:.4f} | val bpb {last_val_bpb:.3f} "
                                             f"| {tokens_per_sec:,.0f} tok/s", refresh=False)
            else:
                step_seconds.append(time.perf_counter() - started)
            if progress is not None:
                progress.update(1)
    if progress is not None:
        progress.close()
    return TrainResult(model=raw_model, tokenizer=tokenizer, config=config, history=history,
                       train_losses=train_losses, best_val_loss=best_val_loss, step=step,
                       interrupted=interrupted, step_seconds=step_seconds,
                       checkpoint_path=checkpoint_path if out_dir is not None else None)


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


def evaluate_checkpoint(ckpt_path: str | os.PathLike, data: str, device: str = "auto", split: str = "val",
                        max_windows: int | None = None, batch_size: int = 32,
                        cache_dir: str | None = "auto") -> tuple[EvalResult, dict]:
    """Score a checkpoint on a corpus: bits per byte over fixed windows of the chosen split.

    split "val" is the held-out last 10% (the same text training evaluated on), "train" the
    rest, "all" the whole file. Returns (EvalResult, info about what was scored).
    """
    from minilm.checkpoint import load_model

    if split not in ("val", "train", "all"):
        raise UserError(f"--split: unknown split {split!r}; expected val, train or all")
    torch_device = pick_device(device)
    model, tokenizer, checkpoint = load_model(ckpt_path, torch_device)
    corpus = load_corpus(data, tokenizer, resolve_cache_dir(cache_dir))
    tokens = {"val": corpus.val, "train": corpus.train}.get(split)
    if tokens is None:
        import numpy as np

        tokens = np.concatenate([np.asarray(corpus.train), np.asarray(corpus.val)])
    block_size = getattr(model.config, "block_size", None) or checkpoint.get("train_config", {}).get("block_size", 256)
    windows = validation_windows(tokens, block_size, max_windows, what=f"{split} part of {corpus.name}")
    result = evaluate(model, windows, tokenizer, batch_size, torch_device,
                      torch.bfloat16 if torch_device.type == "cuda" else None)
    info = {"ckpt": str(ckpt_path), "data": corpus.name, "split": split, "windows": int(windows.shape[0]),
            "block_size": int(windows.shape[1] - 1), "model_kind": checkpoint["model_kind"],
            "step": int(checkpoint.get("step", 0))}
    return result, info
