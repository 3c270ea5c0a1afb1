"""The domains of the grid: corpus names -> files, checked before anything is trained.

A domain is one corpus: the bundled ones (data/SOURCES.md) and any added with `--corpus NAME=PATH`.
Each is read as raw bytes, split 90/10 by `minilm.data.split_point`, and gets a fixed set of
validation windows (at most `eval_windows` windows of `block_size + 1` bytes) on which every model
of the grid is scored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from minilm.cli import UserError
from minilm.data import ByteTokenizer, bundled_corpora, load_corpus, read_corpus, split_point
from minilm.training import EvalSet, make_eval_set

from .config import MismatchConfig

DEFAULT_TRANSFER = ("shakespeare", "bible")  # close but different: both Early Modern English


@dataclass
class Domain:
    """One corpus of the grid: its name in the report, the file, and its fixed validation set."""

    name: str
    spec: str  # what minilm.data.load_corpus takes: a bundled name or a path
    path: Path
    train_bytes: int
    val_bytes: int
    eval_set: EvalSet = field(repr=False)  # fixed validation windows (bytes), (W, block_size + 1)
    corpus_name: str = ""  # the name minilm.training reports this corpus under (the file's stem)


def parse_corpus_flags(values: list[str]) -> dict[str, str]:
    """`--corpus NAME=PATH` (repeatable) -> {name: path}; each path must be an existing UTF-8 file."""
    extra = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or not path:
            raise UserError(f"--corpus: {value!r} is not NAME=PATH (NAME of letters, digits, '-', '_')")
        file = Path(path).expanduser()
        if not file.is_file():
            raise UserError(f"--corpus {name}: {path!r} is not an existing file; expected a UTF-8 text file")
        try:
            file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"--corpus {name}: {str(file)!r} is not valid UTF-8 (byte offset {error.start}); "
                            "expected a UTF-8 text file") from None
        extra[name] = str(file)
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
