"""minilm: a small, readable, from-scratch language-model workbench.

Public names only; each lives in its own module (see docs/CONTRACTS.md for the map). They are
imported lazily, on first use, so that the tools that need no PyTorch (`python -m minilm.bpe`,
`python -m minilm.ngram`) do not pay the seconds that `import torch` takes.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_PUBLIC = {"GPT": "minilm.gpt", "GPTConfig": "minilm.gpt", "LSTMLM": "minilm.lstm", "LSTMConfig": "minilm.lstm"}

__all__ = ["GPT", "GPTConfig", "LSTMLM", "LSTMConfig", "MODELS"]


def __getattr__(name: str):
    if name == "MODELS":
        # `--model` name -> (model class, config class); every entry follows the model contract.
        return {"gpt": (__getattr__("GPT"), __getattr__("GPTConfig")),
                "lstm": (__getattr__("LSTMLM"), __getattr__("LSTMConfig"))}
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'minilm' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
