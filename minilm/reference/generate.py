"""The NumPy twin runs GPT-2: greedy generation with a key/value cache, in float64, no PyTorch.

    python -m minilm.reference.generate --hf DIR --prompt "Alan Turing theorized" --max-new-tokens 20

DIR is a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer files; see
docs/hf.md). Its weights are read as NumPy arrays by `minilm.hf.read_hf_params` (renamed to
minilm's names, Conv1D matrices transposed) and run by the twin's `gpt_step`, the same code the
tests check against `GPT.step`. Greedy decoding, the picoGPT loop:

    logits, kv = gpt_step(prompt, p, config)            # (1, T, V), one (K, V) per layer
    repeat:  next = argmax(logits[0, -1])               # the most likely token
             logits, kv = gpt_step([[next]], p, config, kv)

The twin has no re-fill policy past the context (see minilm/reference/kv_cache.py), so prompt
and new tokens together must fit in n_positions (1024 for GPT-2).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from minilm.reference.kv_cache import gpt_step


def greedy_generate(prompt_ids: list[int], p: dict, config, max_new_tokens: int) -> list[int]:
    """prompt_ids followed by max_new_tokens greedily chosen ids (ties: the smallest id)."""
    ids = list(prompt_ids)
    logits, kv = gpt_step(np.asarray([ids]), p, config)  # (1, T, V)
    for i in range(max_new_tokens):
        next_id = int(np.argmax(logits[0, -1]))
        ids.append(next_id)
        if i + 1 < max_new_tokens:  # the logits after the last token would go unused
            logits, kv = gpt_step(np.asarray([[next_id]]), p, config, kv)  # (1, 1, V)
    return ids


def main(argv: list[str] | None = None) -> int:
    from minilm.cli import OneLineErrorParser, UserError
    from minilm.hf import load_hf_tokenizer, read_hf_params, resolve_hf_folder

    parser = OneLineErrorParser(prog="python -m minilm.reference.generate",
                                description="Greedy generation from a Hugging Face GPT-2 folder, NumPy twin.")
    parser.add_argument("--hf", required=True, help="a Hugging Face GPT-2 folder (or a hub name, when reachable)")
    parser.add_argument("--prompt", required=True, help="the text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="how many tokens to add")
    args = parser.parse_args(argv)
    try:
        if args.max_new_tokens < 0:
            raise UserError(f"--max-new-tokens: expected an integer >= 0, got {args.max_new_tokens}")
        folder = resolve_hf_folder(args.hf)
        config, params = read_hf_params(Path(folder))
        tokenizer = load_hf_tokenizer(Path(folder))
        prompt_ids = tokenizer.encode(args.prompt)
        if not prompt_ids:
            raise UserError("--prompt: expected some text, got an empty prompt")
        if len(prompt_ids) + args.max_new_tokens > config["block_size"]:
            raise UserError(f"--max-new-tokens: {len(prompt_ids)} prompt tokens + {args.max_new_tokens} new ones "
                            f"exceed the model's context of {config['block_size']}")
    except UserError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    ids = greedy_generate(prompt_ids, params, config, args.max_new_tokens)
    print(tokenizer.decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
