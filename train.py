"""Train a small language model, or score a checkpoint.

    python train.py                                   # small GPT on Shakespeare, a few CPU minutes
    python train.py --data shakespeare --model gpt --preset cpu-tiny --steps 2000 --out runs/shakespeare
    python train.py --out runs/shakespeare --resume   # continue an interrupted run
    python train.py --init-from runs/shakespeare/ckpt.pt --data bible --out runs/bible   # fine-tune
    python train.py --eval-only --ckpt runs/shakespeare/ckpt.pt --data bible
    torchrun --nproc_per_node=2 train.py ...          # data-parallel (gloo on CPU, nccl on CUDA)

A preset sets the sizes; any flag given explicitly overrides it. With --resume the run's saved
settings are used; flags that only steer the rest of the run (e.g. a larger --steps) may change,
flags that define it (data, tokenizer, sizes, seed, batch) may not. User errors print one line
and exit with status 2; docs/README_train.md lists what each failure says.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading

from minilm.cli import OneLineErrorParser, UserError
from minilm.outputs import exit_quietly_on_broken_pipe
from minilm.presets import DEFAULT_PRESET, FINETUNE_PRESETS, MODEL_FLAGS, PRESETS, model_arg_flag

TASKS = ("domain-id",)

# Fields that are set from Python only (train.py has no flag for them).
NO_FLAG = ("verbose", "stop_at_step", "distributed")
# Help text of every field with a flag, by section. A test checks that every field is here or in NO_FLAG.
HELP: dict[str, dict[str, str]] = {
    "what to train": {
        "preset": "named sizes: " + ", ".join(PRESETS),
        "data": "bundled corpus name (shakespeare, wikitext, bible, stories, poetry_zh, legal) or a text file",
        "mix": "also train on another corpus for a share of the batch rows, NAME_OR_PATH=SHARE (repeatable), "
               "e.g. --mix bible=0.1",
        "eval_extra": "also report validation bits/byte on this corpus (repeatable)",
        "mix_domains": "train on --data and these corpora, NAME,NAME,... each drawn with probability "
                       "proportional to its training size ** --mix-alpha (instead of --mix shares)",
        "mix_alpha": "with --mix-domains: 0 = every domain equally often, 1 = in proportion to size",
        "domain_tags": "start each window of a mixed run with its domain's tag token <domain:NAME>",
        "augment": "transform windows on the fly, NAME=P (repeatable): each named transform (case, layout, "
                   "speakers, typos) runs with probability P, e.g. --augment case=0.5",
        "tokenizer": "'bytes' (vocab 256) or a path to a BPE tokenizer.json",
        "allow_binary": "accept corpora that are not UTF-8 text (with the bytes tokenizer only)",
        "model": "model family",
        "model_args": "any other model config field, KEY=VALUE (repeatable), e.g. --model-arg bias=false",
        "init_from": "start from these weights (fresh optimizer): a minilm checkpoint, or hf:NAME_OR_DIR for a "
                     "Hugging Face model; the model and tokenizer come from it",
    },
    "optimisation": {
        "block_size": "context length T in tokens", "batch_size": "rows per micro-batch per process",
        "grad_accum": "micro-batches per optimizer step", "steps": "optimizer steps",
        "lr": "peak learning rate", "min_lr": "final learning rate (at most --lr)",
        "warmup_steps": "linear warmup steps", "lr_decay_steps": "cosine ends here (0 = at --steps)",
        "weight_decay": "AdamW weight decay (matrices only)", "beta1": "AdamW beta1", "beta2": "AdamW beta2",
        "grad_clip": "max gradient norm (0 = off)",
        "eval_interval": "evaluate and checkpoint every N steps",
        "eval_windows": "max number of fixed validation windows",
        "eval_batch_size": "windows per evaluation batch", "seed": "random seed",
    },
    "the run": {
        "out_dir": "output folder for ckpt.pt, best.pt, log.jsonl ('' = write nothing)",
        "resume": "continue the run in --out from its ckpt.pt",
        "overwrite": "allow replacing files in --out that another run made",
        "device": "auto picks cuda, then mps, then cpu", "dtype": "auto = bf16 autocast on CUDA, float32 elsewhere",
        "compile": "torch.compile the model", "threads": "CPU threads for PyTorch (0 = one per core)",
        "cache_dir": "folder for cached token arrays ('auto' = .cache/tokens in the repository, '' = none)",
        "log_interval": "read the loss for the progress bar every N steps (0 = 1 on CPU, 10 on a GPU)",
        "progress": "no tqdm progress bar",
    },
    "objective": {
        "objective": "clm = GPT's causal LM, mlm = BERT's masked LM (bidirectional attention, adds the <mask> "
                     "token: vocab 257), both = causal + --mlm-weight x masked on each batch",
        "mlm_weight": "weight of the masked loss under --objective both",
    },
}
CHOICES = {"model": ("gpt", "lstm"), "dtype": ("auto", "float32", "bfloat16")}
CHOICES["objective"] = ("clm", "mlm", "both")
METAVARS = {"mix": "NAME=SHARE", "augment": "NAME=P", "mix_domains": "NAME,...", "mix_alpha": "A",
            "model_args": "KEY=VALUE", "eval_extra": "CORPUS", "init_from": "SPEC",
            "out_dir": "DIR", "data": "CORPUS", "tokenizer": "SPEC", "cache_dir": "DIR"}
CLI_DEFAULTS = {"out_dir": "runs/default", "preset": DEFAULT_PRESET}  # where train.py's default differs


def number(kind):
    """An argparse type with a one-line message: --lr fast -> 'expected a number, got 'fast''."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def model_setting_type(name: str):
    """int, float or str: the type of a model setting's default in the config class that has it."""
    from minilm.checkpoint import model_registry

    for _, config_class in model_registry().values():
        for f in dataclasses.fields(config_class):
            if f.name == name and f.default is not dataclasses.MISSING:
                return type(f.default)
    return str


def build_parser() -> argparse.ArgumentParser:
    """The parser. Every default is SUPPRESSed, so the namespace holds only the flags actually given;
    each help text states its default once."""
    from minilm.training import TrainConfig, config_flag  # imports torch: after the signal handlers are set

    defaults = TrainConfig()
    preset_fields = {key for settings in PRESETS.values() for key in settings}
    parser = OneLineErrorParser(prog="train.py", description=__doc__.split("\n\n")[0],
                                argument_default=argparse.SUPPRESS)
    for section, helps in HELP.items():
        group = parser.add_argument_group(section)
        for name, text in helps.items():
            default = CLI_DEFAULTS.get(name, getattr(defaults, name))
            kwargs = {} if isinstance(default, bool) or name == "progress" or name in CHOICES else {
                "metavar": METAVARS.get(name, name.upper())}
            if name == "progress" or isinstance(default, bool):
                kwargs["action"] = "store_true"
            elif name in ("mix", "eval_extra", "model_args", "augment"):
                kwargs["action"] = "append"
            else:
                kwargs["type"] = number(type(default)) if type(default) in (int, float) else str
                kwargs["choices"] = CHOICES.get(name)
                shown = "from --preset" if name in preset_fields else repr(default) if default != "" else "none"
                text += f" (default: {shown})"
            group.add_argument(config_flag(name), dest=name, help=text, **kwargs)
        if section == "what to train":
            for name, text in MODEL_FLAGS.items():
                kind = model_setting_type(name)
                group.add_argument(model_arg_flag(name), dest="model_flag_" + name, metavar=name.upper(),
                                   type=number(kind) if kind in (int, float) else str,
                                   help=text + " (default: from --preset)")
    task = parser.add_argument_group("fine-tuning a classifier (steps, lr, batch size from --preset)")
    task.add_argument("--task", choices=TASKS, help="fine-tune --init-from to classify which of --domains a "
                      "window comes from; prints the held-out accuracy, saves the classifier in --out (default: none: "
                      "train a language model)")
    task.add_argument("--domains", metavar="NAME,NAME,...", help="the classes: two or more corpora (default: none)")
    task.add_argument("--labels-per-class", type=number(int), metavar="N",
                      help="labelled training windows per domain (default: 16)")
    score = parser.add_argument_group("scoring a model")
    score.add_argument("--eval-only", action="store_true", help="print the bits per byte of --ckpt (or --hf) "
                       "on --data, then exit")
    score.add_argument("--ckpt", metavar="PATH", help="checkpoint to score with --eval-only")
    score.add_argument("--hf", metavar="NAME_OR_DIR",
                       help="Hugging Face model name or folder to score with --eval-only")
    score.add_argument("--split", choices=["val", "train", "all"],
                       help="which part of --data to score: val (last 10%%), train, or all (default: 'val')")
    return parser


def parse_key_values(items: list[str], flag_name: str, value_type) -> dict:
    """["a=1", "b=x"] -> {"a": value_type("1"), ...}, with a one-line error on a malformed item."""
    parsed = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        if not sep or not key:
            raise UserError(f"{flag_name}: expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = value_type(value)
        except ValueError:
            raise UserError(f"{flag_name}: the value in {item!r} is not valid") from None
    return parsed


BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_model_args(items: list[str]) -> dict:
    """--model-arg KEY=VALUE items, each parsed as the type of KEY's default: booleans accept only
    true/false/1/0/yes/no, numbers must be finite."""
    parsed = {}
    for key, text in parse_key_values(items, "--model-arg", str).items():
        kind = model_setting_type(key)
        name = f"--model-arg {key}"  # the flag the user gave, even for a setting that has its own
        if kind is bool:
            if text.strip().lower() not in BOOLEAN_WORDS:
                raise UserError(f"{name}: expected true/false/1/0/yes/no, got {text!r}")
            parsed[key] = BOOLEAN_WORDS[text.strip().lower()]
        elif kind in (int, float):
            try:
                parsed[key] = number(kind)(text)
            except argparse.ArgumentTypeError as error:
                raise UserError(f"{name}: {error}") from None
        else:
            parsed[key] = text
    return parsed


def config_from_args(given: dict):
    """The TrainConfig the flags describe: preset (or the resumed run's settings) + explicit flags."""
    from minilm.training import TrainConfig

    overrides = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in given and f.name not in ("mix", "model_args", "progress", "mix_domains"):
            overrides[f.name] = given[f.name]
    if "mix_domains" in given:
        overrides["mix_domains"] = [name.strip() for name in given["mix_domains"].split(",") if name.strip()]
        if not overrides["mix_domains"]:
            raise UserError(f"--mix-domains: expected corpus names separated by commas, got {given['mix_domains']!r}")
    if "mix" in given:
        overrides["mix"] = parse_key_values(given["mix"], "--mix", float)
    if "progress" in given:
        overrides["progress"] = False  # the flag is --no-progress
    model_args = {name: given["model_flag_" + name] for name in MODEL_FLAGS if "model_flag_" + name in given}
    model_args.update(parse_model_args(given.get("model_args", [])))
    overrides.setdefault("out_dir", CLI_DEFAULTS["out_dir"])

    if given.get("resume"):
        from pathlib import Path

        from minilm.checkpoint import read_checkpoint

        if not overrides["out_dir"]:
            raise UserError("--resume: needs --out, the folder of the run to continue")
        path = Path(overrides["out_dir"]) / "ckpt.pt"
        if not path.is_file():
            raise UserError(f"--resume: no checkpoint to resume at {str(path)!r}; run once without --resume first")
        saved = dict(read_checkpoint(path).get("train_config") or {})
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        saved = {k: v for k, v in saved.items() if k in known}  # fields of an older minilm are dropped
        saved.update(overrides)
        saved["model_args"] = {**saved.get("model_args", {}), **model_args}
        saved.update(resume=True, overwrite=overrides.get("overwrite", False))
        return TrainConfig.from_dict(saved)
    return TrainConfig.from_preset(overrides.pop("preset", DEFAULT_PRESET), **overrides, model_args=model_args)


def eval_only(given: dict) -> int:
    from minilm.training import evaluate_checkpoint, evaluate_hf

    if bool(given.get("ckpt")) == bool(given.get("hf")):
        raise UserError("--eval-only: needs --ckpt PATH (a minilm checkpoint) or --hf NAME_OR_DIR, one of them")
    if given.get("threads"):
        import torch

        torch.set_num_threads(given["threads"])
    score = evaluate_checkpoint if given.get("ckpt") else evaluate_hf
    result, info = score(given.get("ckpt") or given["hf"], given.get("data", "shakespeare"),
                         device=given.get("device", "auto"), split=given.get("split", "val"),
                         max_windows=given.get("eval_windows"), batch_size=given.get("eval_batch_size", 32))
    if info.get("objective", "clm") != "clm":  # a checkpoint trained with the masked objective: each score
        for name, score in info["scores"].items():
            what = ("causal (over the 256 byte ids)" if name == "causal"
                    else f"masked ({score.num_bytes:,} hidden bytes)")
            print(f"{info['data']} ({info['split']}, {info['windows']} windows of {info['block_size']} tokens) "
                  f"{what}: loss {score.loss:.4f} nats/token, {score.bits_per_byte:.4f} {name} bits per byte")
        return 0
    print(f"{info['data']} ({info['split']}, {info['windows']} windows of {info['block_size']} tokens, "
          f"{result.num_bytes:,} bytes): loss {result.loss:.4f} nats/token, {result.bits_per_byte:.4f} bits per byte")
    return 0


def domain_task(given: dict) -> int:
    """`--task domain-id`: fine-tune a classifier on --init-from and print its held-out accuracy."""
    from minilm.classifier import FineTuneConfig
    from minilm.domain_task import parse_domains, run_domain_task

    if given.get("task") != "domain-id":
        raise UserError("--domains / --labels-per-class: only with --task domain-id")
    domains = parse_domains(given.get("domains", ""))
    preset = given.get("preset", DEFAULT_PRESET)
    if preset not in FINETUNE_PRESETS:
        raise UserError(f"--preset: unknown preset {preset!r}; expected one of {', '.join(FINETUNE_PRESETS)}")
    settings = dict(FINETUNE_PRESETS[preset])
    settings.update({name: given[name] for name in ("steps", "lr", "batch_size", "seed", "labels_per_class")
                     if name in given})
    config = FineTuneConfig(**settings)
    if given.get("threads"):
        import torch

        torch.set_num_threads(given["threads"])
    out_dir = given.get("out_dir", "runs/domain-id")
    result = run_domain_task(given.get("init_from", ""), domains, config, out_dir,
                             overwrite=given.get("overwrite", False), device=given.get("device", "auto"),
                             cache_dir=given.get("cache_dir", "auto"), progress="progress" not in given)
    where = f"; classifier saved to {out_dir}/ckpt.pt" if out_dir else ""
    print(f"domain-id over {', '.join(result.domains)}: held-out accuracy {result.accuracy:.4f} "
          f"({result.num_held_out} windows, chance {1 / len(result.domains):.4f}), "
          f"{config.labels_per_class} labelled windows per domain{where}")
    return 0


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143, "signal": 130, "stop_at_step": 130, "stdout closed": 0}


@exit_quietly_on_broken_pipe
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt) if in_main_thread else None
    try:  # SIGTERM before the training loop (and a second one during a save) acts as Ctrl-C does
        return run(argv)
    except KeyboardInterrupt:
        print("train.py: interrupted; the files in --out are as the last finished save left them "
              "(never half-written)", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run(argv: list[str]) -> int:
    given = vars(build_parser().parse_args(argv))
    try:
        if given.get("eval_only"):
            return eval_only(given)
        if given.get("task") or "domains" in given or "labels_per_class" in given:
            return domain_task(given)
        from minilm.training import train

        config = config_from_args(given)
        result = train(config)
    except UserError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    if result.interrupted:
        return EXIT_STATUS.get(result.stop_reason, 130)
    final = result.final
    if final and config.verbose:
        where = f"; checkpoint in {config.out_dir}/ckpt.pt" if config.out_dir else ""
        print(f"done: {result.step} steps, val loss {final['val_loss']:.4f} nats/token, "
              f"{final['val_bpb']:.4f} bits per byte (best val loss {result.best_val_loss:.4f}){where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
