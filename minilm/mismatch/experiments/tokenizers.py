"""Experiment: tokenizer mismatch.

One byte-level BPE per domain at one vocabulary size, trained on the start of the domain's
training split; bytes per token of every tokenizer on every domain's held-out text; the overlap
(Jaccard index) of their learned multi-byte vocabularies; and how these line up with the model
matrix (rank correlations over the off-diagonal pairs). Jobs: one tokenizer per domain (no model).
"""
from __future__ import annotations

from pathlib import Path

from minilm.data import read_corpus, split_point

from ..figures import heatmap, save
from ..grid import Grid, Job
from ..report import fmt, matrix_table
from ..stats import jaccard_index, spearman


def utf8_prefix(data: bytes, limit: int) -> str:
    """The first `limit` bytes (or fewer, at a character boundary) of UTF-8 data, as text."""
    return data[:limit].decode("utf-8", errors="ignore")


def texts(grid: Grid, name: str) -> tuple[str, str]:
    """(the start of `name`'s training split, the start of its held-out split), as text."""
    _, _, data = read_corpus(grid.domains[name].spec)
    cut = split_point(data)
    return utf8_prefix(data[:cut], grid.config.bpe_train_bytes), utf8_prefix(data[cut:], grid.config.bpe_eval_bytes)


def jobs(grid: Grid) -> list[Job]:
    def tokenizer(name: str) -> Job:
        def run(grid: Grid):
            from minilm.bpe import BPETokenizer

            trained = BPETokenizer.train(texts(grid, name)[0], grid.config.bpe_vocab_size)
            pieces = {trained.token_bytes(i) for i in range(trained.vocab_size)}
            learned = sorted(piece.hex() for piece in pieces if len(piece) > 1)
            bytes_per_token = {}
            for e in grid.names:
                val_text = texts(grid, e)[1]
                bytes_per_token[e] = len(val_text.encode("utf-8")) / max(1, len(trained.encode(val_text)))
            return {"vocab_size": trained.vocab_size, "learned": learned, "bytes_per_token": bytes_per_token}, None

        return Job(f"tokenizers.{name}", f"BPE tokenizer for {name}", run, trains=False)

    return [tokenizer(name) for name in grid.names]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    c = grid.config
    names = grid.names
    results = {name: parts[f"tokenizers.{name}"]["result"] for name in names}
    vocabularies = {name: set(results[name]["learned"]) for name in names}
    bytes_per_token = {t: results[t]["bytes_per_token"] for t in names}
    jaccard = {s: {t: jaccard_index(vocabularies[s], vocabularies[t]) for t in names} for s in names}
    # tokens needed relative to the domain's own tokenizer (1 on the diagonal, > 1 = more tokens)
    token_cost = {t: {e: bytes_per_token[e][e] / bytes_per_token[t][e] for e in names} for t in names}
    pairs = [(t, e) for t in names for e in names if t != e]
    relation = {"pairs": len(pairs)}
    if len(pairs) >= 3:
        relation["spearman_token_cost_vs_model_ratio"] = spearman(
            [token_cost[t][e] for t, e in pairs], [report["ratio"][t][e] for t, e in pairs])
        relation["spearman_jaccard_vs_model_ratio"] = spearman(
            [jaccard[t][e] for t, e in pairs], [report["ratio"][t][e] for t, e in pairs])
    return {"tokenizers": {
        "vocab_size": c.bpe_vocab_size, "train_bytes": c.bpe_train_bytes, "eval_bytes": c.bpe_eval_bytes,
        "vocab_sizes": {name: results[name]["vocab_size"] for name in names},
        "learned_tokens": {name: len(vocabularies[name]) for name in names},
        "bytes_per_token": bytes_per_token, "token_cost": token_cost, "jaccard": jaccard, "relation": relation}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    names = list(report["domains"])
    tk = report["tokenizers"]
    out = []
    say = out.append
    say(f"## {number}. Tokenizer mismatch: one BPE per domain, vocabulary {tk['vocab_size']}\n")
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
    return "\n".join(out)


FIGURES = ("tokenizers.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    names = list(report["domains"])
    tk = report["tokenizers"]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * len(names) + 3, 0.9 * len(names) + 1.8))
    image = heatmap(axes[0], tk["bytes_per_token"], names, names, "bytes per token (rows: tokenizer)")
    fig.colorbar(image, ax=axes[0], shrink=0.8)
    image = heatmap(axes[1], tk["jaccard"], names, names, "vocabulary overlap (Jaccard)")
    fig.colorbar(image, ax=axes[1], shrink=0.8)
    save(fig, plt, out_dir, "tokenizers.png", written)
    return written
