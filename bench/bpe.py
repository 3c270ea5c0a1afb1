"""Benchmark minilm.bpe against the `tokenizers` library on every bundled corpus.

    python bench/bpe.py                      # vocab 4096, all six corpora (a few minutes)
    python bench/bpe.py --vocab-size 1024 --corpora shakespeare stories

For each corpus, in the same run and on the same text:
- training wall time, ours (incremental trainer) vs `tokenizers` (BpeTrainer, ByteLevel), the
  ratio, and whether the merges and ids are identical;
- encode throughput of the whole file in MB/s, ours (a fresh tokenizer, so the word cache starts
  empty; the time includes loading it from JSON) vs `tokenizers` loading our tokenizer.json,
  one thread each (`encode` of one string); our CPU-time figure is shown too, being less
  disturbed by other processes on a busy machine;
- bytes per token: the tokenizer trained on the row corpus, measured on the column corpus
  (in-domain on the diagonal; higher = better compression).

Timings depend on the machine and on what else runs on it; the header prints the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402  (bench/machine.py, beside this script)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from minilm.bpe import BPETokenizer  # noqa: E402

CORPORA = ["shakespeare", "wikitext", "bible", "stories", "poetry_zh", "legal"]
SPECIAL_TOKENS = ["<|endoftext|>"]


def library_train(text: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([text], trainer)
    return tok


REPEAT = 1


def seconds(function, *args, **kwargs):
    """(best wall time of REPEAT calls, the result): the minimum is the least noisy figure."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def same_model(ours: BPETokenizer, theirs: Tokenizer) -> bool:
    mine, reference = json.loads(ours.to_json())["model"], json.loads(theirs.to_str())["model"]
    return mine["merges"] == reference["merges"] and mine["vocab"] == reference["vocab"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--corpora", nargs="+", default=CORPORA, choices=CORPORA)
    parser.add_argument("--limit-bytes", type=int, default=None,
                        help="use only the first N bytes of each corpus (quick runs)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each step this many times and keep the fastest")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat

    texts = {}
    for name in args.corpora:
        data = (ROOT / "data" / f"{name}.txt").read_bytes()[:args.limit_bytes]
        texts[name] = data.decode("utf-8", errors="ignore")
    print(f"minilm.bpe vs tokenizers, vocab {args.vocab_size} "
          f"(+ special token {SPECIAL_TOKENS[0]}), {machine()}")
    print()
    header = (f"{'corpus':<12} {'MB':>5} | {'train ours s':>12} {'tokenizers s':>12} "
              f"{'ratio':>6} {'same merges+ids':>15} | {'encode ours MB/s':>16} "
              f"{'(cpu time)':>10} {'tokenizers MB/s':>15}")
    print(header)
    print("-" * len(header))
    ours_by_corpus = {}
    for name, text in texts.items():
        megabytes = len(text.encode("utf-8")) / 1e6
        our_time, ours = seconds(BPETokenizer.train, text, args.vocab_size,
                                 special_tokens=SPECIAL_TOKENS)
        their_time, theirs = seconds(library_train, text, args.vocab_size)
        parity = same_model(ours, theirs)
        def encode_from_cold(text=text, ours=ours):  # a fresh tokenizer: empty word cache
            return BPETokenizer.from_json(ours.to_json()).encode(text)
        cpu_start = time.process_time()
        our_encode, our_ids = seconds(encode_from_cold)
        our_encode_cpu = (time.process_time() - cpu_start) / REPEAT
        reference = Tokenizer.from_str(ours.to_json())
        their_encode, their_encoding = seconds(reference.encode, text)
        assert our_ids == their_encoding.ids, f"{name}: encodings differ"
        ours_by_corpus[name] = ours
        print(f"{name:<12} {megabytes:5.2f} | {our_time:12.2f} {their_time:12.2f} "
              f"{our_time / their_time:5.1f}x {'yes' if parity else 'NO':>15} | "
              f"{megabytes / our_encode:16.2f} {megabytes / our_encode_cpu:10.2f} "
              f"{megabytes / their_encode:15.2f}", flush=True)

    print()
    print("bytes per token: tokenizer trained on the row corpus, measured on the column corpus")
    names = list(texts)
    print(f"{'trained on':<12} " + " ".join(f"{name:>11}" for name in names))
    for row in names:
        cells = []
        for column in names:
            ids = ours_by_corpus[row].encode(texts[column])
            cells.append(f"{len(texts[column].encode('utf-8')) / len(ids):11.2f}")
        print(f"{row:<12} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
