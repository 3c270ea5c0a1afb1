"""Print text sampled from a trained minilm checkpoint.

    python sample.py --ckpt runs/shakespeare/ckpt.pt --prompt "ROMEO:" --max-new-tokens 200 \\
        --temperature 0.8 --top-k 50 --top-p 0.95 --seed 1 --num-samples 2

Text is streamed as it is generated (a character split across tokens is held back until it is
complete). The same checkpoint, prompt, settings and --seed give the same text on the same
device. Without --prompt or --prompt-file, generation starts from a newline ("\\n"), the way
nanoGPT starts; an explicitly empty prompt is an error. A prompt longer than the model's context
(a GPT's block_size) is cropped to its last block_size tokens, with a warning.
`--novelty` adds, after each sample, the share of its 8-byte n-grams found in the training text.

Mistakes in the inputs (a missing checkpoint, a bad flag value) print one line starting with
"sample.py: error:" and exit with status 2. The sampling itself lives in `minilm/sampling.py`.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

from minilm.checkpoint import load_model
from minilm.cli import OneLineErrorParser
from minilm.data import UserError, check_utf8, read_corpus, split_point
from minilm.devices import DEVICE_CHOICES, pick_device
from minilm.outputs import exit_quietly_on_broken_pipe
from minilm.sampling import NgramIndex, TextStreamer, context_limit, generate

DEFAULT_PROMPT = "\n"
SEPARATOR = "-" * 40


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="sample.py", description="Sample text from a trained minilm checkpoint.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", default="runs/shakespeare/ckpt.pt",
                   help="checkpoint written by train.py")
    p.add_argument("--hf", default=None, metavar="NAME_OR_DIR",
                   help="sample from a Hugging Face GPT-2 instead of --ckpt: a local folder (config.json, weights, "
                        "tokenizer files), or a hub name such as gpt2 where the hub is reachable")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompt", default=None,
                        help="text to continue; without --prompt/--prompt-file a newline is used")
    source.add_argument("--prompt-file", default=None,
                        help="read the prompt from this UTF-8 file instead (its bytes exactly: no newline translation)")
    p.add_argument("--max-new-tokens", type=int, default=300, help="tokens to generate per sample")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="< 1 sharper, > 1 flatter next-token distribution; 0 = greedy")
    p.add_argument("--top-k", type=int, default=None,
                   help="sample only among the k most likely tokens (None: no limit)")
    p.add_argument("--top-p", type=float, default=0.95,
                   help="nucleus sampling: the smallest set of tokens whose probability reaches p; 1 = off")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (no randomness)")
    p.add_argument("--seed", type=int, default=1337, help="random seed; the same seed gives the same text")
    p.add_argument("--num-samples", type=int, default=1, help="how many samples to print")
    p.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)} (auto: cuda > mps > cpu)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for PyTorch; 0 = PyTorch's choice. One thread is fastest for "
                        "one sample of a small model (see bench/sample.py)")
    p.add_argument("--novelty", action="store_true",
                   help="after each sample, print the share of its 8-byte n-grams found in the training text")
    p.add_argument("--novelty-n", type=int, default=8, help="n-gram length in bytes for --novelty")
    p.add_argument("--data", default=None,
                   help="training text for --novelty: a bundled corpus name or a file path; its first 90%% "
                        "(the training split) is used. None: the corpus the checkpoint was trained on")
    p.add_argument("--no-stream", action="store_true", help="print each sample when it is complete")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Range checks that argparse cannot express; raise UserError naming the flag."""
    if not args.temperature >= 0:  # `not >=` also catches nan
        raise UserError(f"--temperature: expected a number >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k: expected an integer >= 1 (leave it out for no limit), got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top-p: expected a number in (0, 1] (1 = no limit), got {args.top_p}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens: expected an integer >= 1, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise UserError(f"--num-samples: expected an integer >= 1, got {args.num_samples}")
    if not 0 <= args.seed < 2**63:
        raise UserError(f"--seed: expected an integer in [0, 2**63), got {args.seed}")
    if args.threads < 0:
        raise UserError(f"--threads: expected an integer >= 0 (0 = PyTorch's choice), got {args.threads}")
    if args.novelty_n < 1:
        raise UserError(f"--novelty-n: expected an integer >= 1, got {args.novelty_n}")


def read_prompt(args: argparse.Namespace) -> tuple[str, str]:
    """(prompt text, the flag it came from)."""
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise UserError(f"--prompt-file: no file at {str(path)!r}")
        try:
            data = path.read_bytes()  # bytes, not read_text: "\r\n" stays "\r\n", the prompt is exact
        except OSError as error:
            raise UserError(f"--prompt-file: cannot read {str(path)!r} ({error.strerror or error})") from None
        check_utf8(data, path, "--prompt-file")
        text = data.decode("utf-8")
        flag = "--prompt-file"
    elif args.prompt is not None:
        text, flag = args.prompt, "--prompt"
    else:
        return DEFAULT_PROMPT, "--prompt"
    if text == "":
        raise UserError(f"{flag}: the prompt is empty; expected at least one character "
                        f"(leave out --prompt and --prompt-file to start from a newline)")
    return text, flag


def encode_prompt(text: str, flag: str, tokenizer, model) -> list[int]:
    """Token ids of the prompt, checked against the model; long prompts are cropped with a warning."""
    try:
        ids = list(tokenizer.encode(text))
    except (UnicodeError, ValueError, TypeError) as error:  # e.g. undecodable bytes in the command line
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise UserError(f"{flag}: the checkpoint's tokenizer cannot encode this prompt ({reason})") from None
    vocab_size = model.config.vocab_size
    if not ids or min(ids) < 0 or max(ids) >= vocab_size:
        raise UserError(f"{flag}: the tokenizer gave ids outside the model's vocabulary [0, {vocab_size})")
    limit = context_limit(model)
    if limit is not None and len(ids) > limit:
        print(f"sample.py: warning: {flag} is {len(ids)} tokens, longer than the model's context of {limit}; "
              f"the model sees only its last {limit} tokens", file=sys.stderr)
    return ids


def novelty_index(args: argparse.Namespace, checkpoint: dict) -> tuple[NgramIndex, str]:
    """The n-gram index of the training text named by --data or recorded in the checkpoint."""
    spec = args.data or checkpoint.get("train_config", {}).get("data")
    if not spec:
        raise UserError("--novelty: the checkpoint does not record its training data; "
                        "name it with --data NAME_OR_PATH")
    name, _, data = read_corpus(spec, allow_binary=True, flag="--data")  # n-grams of bytes: any bytes will do
    return NgramIndex(data[: split_point(data)], args.novelty_n), name


def run(args: argparse.Namespace) -> None:
    check_args(args)
    prompt, flag = read_prompt(args)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.hf:
        from minilm.hf import load_for_sampling

        (model, tokenizer), checkpoint = load_for_sampling(args.hf, device), {}
    else:
        model, tokenizer, checkpoint = load_model(args.ckpt, device)
    ids = encode_prompt(prompt, flag, tokenizer, model)
    if checkpoint.get("task"):  # train.py --task: a fine-tuned classifier, not a language model
        raise UserError(f"--ckpt: {args.ckpt!r} is a {checkpoint['task']} classifier (train.py --task); "
                        "sample from the language model it was fine-tuned from")
    if (checkpoint.get("train_config") or {}).get("objective") == "mlm":
        raise UserError(f"--ckpt: {args.ckpt!r} was trained with --objective mlm (BERT's masked LM): it fills in "
                        "masked bytes and cannot continue a text; sample from a clm or both checkpoint")
    index, corpus_name = novelty_index(args, checkpoint) if args.novelty else (None, "")

    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = sys.stdout
    for sample in range(args.num_samples):
        if sample > 0:
            out.write(SEPARATOR + "\n")
        streamer = None
        if not args.no_stream:
            out.write(prompt)
            streamer = TextStreamer(tokenizer, lambda text: (out.write(text), out.flush()))
        try:
            tokens = generate(model, ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, greedy=args.greedy, generator=generator, on_token=streamer)
        except ValueError as error:  # the arguments were checked above: this is the model's output
            raise UserError(f"{'--hf ' + args.hf if args.hf else '--ckpt ' + args.ckpt}: {error}") from None
        new_ids = tokens[0, len(ids):].tolist()
        if streamer is not None:
            streamer.finish()
        else:
            out.write(prompt + tokenizer.decode(new_ids))
        out.write("\n")
        if index is not None:
            generated = b"".join(tokenizer.token_bytes(i) for i in new_ids)
            if len(generated) < index.n:
                out.write(f"[novelty] the sample has fewer than {index.n} bytes; nothing to compare\n")
            else:
                share = index.share(generated)
                out.write(f"[novelty] {share:.1%} of this sample's {index.n}-byte n-grams occur in the "
                          f"training text of {corpus_name} ({1 - share:.1%} are new)\n")
        out.flush()


@exit_quietly_on_broken_pipe  # the reader went away (e.g. `python sample.py | head -3`): stop quietly
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # warnings as one line each, like errors (restored on return)
            warnings.showwarning = lambda message, *_, **__: print(f"sample.py: warning: {message}", file=sys.stderr)
            run(args)
    except UserError as error:
        sys.stdout.flush()
        print(f"sample.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
