"""Train a small language model, or score a checkpoint.

    python train.py                                   # small GPT on Shakespeare, a few CPU minutes
    python train.py --data shakespeare --model gpt --preset cpu-tiny --steps 2000 --out runs/shakespeare
    python train.py --out runs/shakespeare --resume   # continue an interrupted run
    python train.py --eval-only --ckpt runs/shakespeare/ckpt.pt --data bible
    torchrun --nproc_per_node=2 train.py ...          # data-parallel (gloo on CPU, nccl on CUDA)

A preset sets the sizes; any flag given explicitly overrides it. With --resume the run's saved
settings are used and explicit flags (e.g. a larger --steps) override them. User errors print
one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from minilm.data import UserError
from minilm.training import PRESETS, TrainConfig

# Model settings that get their own flag; any other config field goes through --model-arg.
MODEL_FLAGS = {
    "n_layer": (int, "number of layers (GPT blocks or stacked LSTM layers)"),
    "n_head": (int, "GPT attention heads"),
    "n_embd": (int, "embedding width"),
    "n_hidden": (int, "LSTM hidden size"),
    "dropout": (float, "dropout probability"),
    "pos_emb": (str, "GPT position scheme: learned | sinusoidal | rope | none"),
    "cell": (str, "LSTM cell: lstm | rnn"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag prints one line (not the whole usage) and exits with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The parser. With suppress_defaults, the namespace holds only the flags actually given."""
    defaults = TrainConfig()
    parser = OneLineErrorParser(
        prog="train.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS if suppress_defaults else None)

    def add(name, help, **kwargs):
        if suppress_defaults:
            kwargs.pop("default", None)
        parser.add_argument(name, help=help, **kwargs)

    def number(kind):
        def parse(text):
            try:
                return kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                                 f"got {text!r}") from None
        parse.__name__ = kind.__name__
        return parse

    what = parser.add_argument_group("what to train")
    add("--preset", "named sizes: " + ", ".join(PRESETS), default="cpu-tiny")
    add("--data", "bundled corpus name (shakespeare, wikitext, bible, stories, poetry_zh, legal) or a text file",
        default=defaults.data)
    add("--mix", "also train on another corpus for a share of the batch rows, NAME_OR_PATH=SHARE "
        "(repeatable), e.g. --mix bible=0.1", action="append", default=[])
    add("--eval-extra", "also report validation bits/byte on this corpus (repeatable)", action="append",
        default=[])
    add("--tokenizer", "'bytes' (vocab 256) or a path to a BPE tokenizer.json", default=defaults.tokenizer)
    add("--model", "model family", choices=["gpt", "lstm"], default=defaults.model)
    for name, (kind, text) in MODEL_FLAGS.items():
        add("--" + name.replace("_", "-"), text + " (default: from --preset)",
            type=number(kind) if kind is not str else str, default=None)
    add("--model-arg", "any other model config field, KEY=VALUE (repeatable), e.g. --model-arg bias=false",
        action="append", default=[])

    optim = parser.add_argument_group("optimisation (defaults: from --preset, else these)")
    for name, text in [("block_size", "context length T in tokens"), ("batch_size", "rows per micro-batch per process"),
                       ("grad_accum", "micro-batches per optimizer step"), ("steps", "optimizer steps"),
                       ("warmup_steps", "linear warmup steps"), ("lr_decay_steps", "cosine ends here (0 = at --steps)"),
                       ("eval_interval", "evaluate and checkpoint every N steps"),
                       ("eval_windows", "max number of fixed validation windows"),
                       ("eval_batch_size", "windows per evaluation batch"), ("seed", "random seed"),
                       ("threads", "CPU threads for PyTorch (0 = one per core)"),
                       ("log_interval", "read the loss for the progress bar every N steps (0 = 1 on CPU, 10 on a GPU)")]:
        add(flag_of(name), text, type=number(int), default=getattr(defaults, name))
    for name, text in [("lr", "peak learning rate"), ("min_lr", "final learning rate"),
                       ("weight_decay", "AdamW weight decay (matrices only)"), ("beta1", "AdamW beta1"),
                       ("beta2", "AdamW beta2"), ("grad_clip", "max gradient norm (0 = off)")]:
        add(flag_of(name), text, type=number(float), default=getattr(defaults, name))

    run = parser.add_argument_group("the run")
    add("--out", "output folder for ckpt.pt, best.pt, log.jsonl ('' = write nothing)", default="runs/default")
    add("--resume", "continue from OUT/ckpt.pt", action="store_true", default=False)
    add("--overwrite", "start afresh even if OUT already holds a checkpoint", action="store_true", default=False)
    add("--device", "auto picks cuda, then mps, then cpu", default=defaults.device)
    add("--dtype", "auto = bf16 autocast on CUDA, float32 elsewhere", choices=["auto", "float32", "bfloat16"],
        default=defaults.dtype)
    add("--compile", "torch.compile the model", action="store_true", default=False)
    add("--no-progress", "no tqdm progress bar", action="store_true", default=False)

    score = parser.add_argument_group("scoring a checkpoint")
    add("--eval-only", "print the bits per byte of --ckpt on --data, then exit", action="store_true", default=False)
    add("--ckpt", "checkpoint to score with --eval-only", default=None)
    add("--split", "which part of --data to score: val (last 10%%), train, or all", choices=["val", "train", "all"],
        default="val")
    return parser


def flag_of(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def parse_key_values(items: list[str], flag: str, value_type) -> dict:
    """["a=1", "b=x"] -> {"a": value_type("1"), ...}, with a one-line error on a malformed item."""
    parsed = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key:
            raise UserError(f"{flag}: expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = value_type(value)
        except ValueError:
            raise UserError(f"{flag}: the value in {item!r} is not valid") from None
    return parsed


def json_or_text(value: str):
    """--model-arg values: JSON when they parse (3, 0.1, true), else the text itself."""
    try:
        return json.loads(value.lower() if value.lower() in ("true", "false") else value)
    except json.JSONDecodeError:
        return value


def config_from_args(args: argparse.Namespace, given: set[str]) -> TrainConfig:
    """The TrainConfig the flags describe: preset (or the resumed run's settings) + explicit flags."""
    overrides = {}
    simple = ["data", "tokenizer", "model", "block_size", "batch_size", "grad_accum", "steps", "warmup_steps",
              "lr_decay_steps", "eval_interval", "eval_windows", "eval_batch_size", "seed", "threads",
              "log_interval", "lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip", "device", "dtype"]
    for name in simple:
        if name in given:
            overrides[name] = getattr(args, name)
    if "mix" in given:
        overrides["mix"] = parse_key_values(args.mix, "--mix", float)
    if "eval_extra" in given:
        overrides["eval_extra"] = list(args.eval_extra)
    model_args = {name: getattr(args, name) for name in MODEL_FLAGS if name in given}
    model_args.update(parse_key_values(args.model_arg, "--model-arg", json_or_text))
    run = dict(out_dir=args.out, resume=args.resume, overwrite=args.overwrite, compile=args.compile,
               progress=not args.no_progress)

    if args.resume:
        from minilm.checkpoint import read_checkpoint

        if not args.out:
            raise UserError("--resume: needs --out, the folder of the run to continue")
        from pathlib import Path

        path = Path(args.out) / "ckpt.pt"
        if not path.is_file():
            raise UserError(f"--resume: no checkpoint to resume at {str(path)!r}; run once without --resume first")
        saved = dict(read_checkpoint(path).get("train_config") or {})
        saved.update(overrides)
        saved["model_args"] = {**saved.get("model_args", {}), **model_args}
        saved.update(run)
        return TrainConfig.from_dict(saved)
    return TrainConfig.from_preset(args.preset, **overrides, model_args=model_args, **run)


def eval_only(args: argparse.Namespace, given: set[str]) -> int:
    from minilm.training import evaluate_checkpoint

    if not args.ckpt:
        raise UserError("--eval-only: needs --ckpt PATH, the checkpoint to score")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result, info = evaluate_checkpoint(args.ckpt, args.data, device=args.device, split=args.split,
                                       max_windows=args.eval_windows if "eval_windows" in given else None,
                                       batch_size=args.eval_batch_size)
    print(f"{info['data']} ({info['split']}, {info['windows']} windows of {info['block_size']} tokens, "
          f"{result.num_bytes:,} bytes): loss {result.loss:.4f} nats/token, {result.bits_per_byte:.4f} bits per byte")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    given = set(vars(build_parser(suppress_defaults=True).parse_args(argv)))
    try:
        if args.eval_only:
            return eval_only(args, given)
        from minilm.training import train

        config = config_from_args(args, given)
        result = train(config)
    except UserError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    if result.interrupted:
        return 130
    final = result.final
    if final and config.verbose:
        where = f"; checkpoint in {config.out_dir}/ckpt.pt" if config.out_dir else ""
        print(f"done: {result.step} steps, val loss {final['val_loss']:.4f} nats/token, "
              f"{final['val_bpb']:.4f} bits per byte (best val loss {result.best_val_loss:.4f}){where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
