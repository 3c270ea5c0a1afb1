"""minilm: a small, readable, from-scratch language-model workbench.

Public names only; each lives in its own module (see docs/CONTRACTS.md for the map).
"""
from minilm.gpt import GPT, GPTConfig
from minilm.lstm import LSTMLM, LSTMConfig

# `--model` name -> (model class, config class); every entry follows the model contract.
MODELS = {"gpt": (GPT, GPTConfig), "lstm": (LSTMLM, LSTMConfig)}

__all__ = ["GPT", "GPTConfig", "LSTMLM", "LSTMConfig", "MODELS"]
