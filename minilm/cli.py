"""What every command line of minilm shares: the user-error type, the flag names, a parser whose
errors are one line, and the one helper that validates a config dataclass.

This module imports only the standard library, so tools that need no PyTorch (the BPE and n-gram
command lines) start in a fraction of a second.

The rule every command follows: a mistake in what the user asked for (a flag, a file) is a
`UserError`; the script prints its message as one line, `PROG: error: MESSAGE`, and exits with
status 2, never with a traceback. The message names the input and says what was expected.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import fields


class UserError(ValueError):
    """A problem with what the user asked for (a flag, a file), not a bug in minilm.

    The scripts print its message as one line and exit with status 2, without a traceback.
    The message names the input and says what was expected.
    """


def flag(field_name: str) -> str:
    """The command-line flag of a config field: batch_size -> --batch-size."""
    return "--" + field_name.replace("_", "-")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one error line (not the whole usage) and status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ----------------------------------------------------------------------------------------------
# Config validation: one helper for every config dataclass
# ----------------------------------------------------------------------------------------------
#
# A rule is a tuple:
#   ("int", minimum)                   an int (not a bool) >= minimum
#   ("number", low, high)              a finite int or float (not a bool) with low <= x <= high;
#                                      None for no bound
#   ("open_number", low, high)         the same with low < x < high (bounds excluded)
#   ("bool",)                          True or False, nothing else (not 0/1, not "no")
#   ("choice", options)                one of the options
#   ("str",)                           any string


def _explain(rule: tuple) -> str:
    kind = rule[0]
    if kind == "int":
        return "a positive integer" if rule[1] == 1 else f"an integer >= {rule[1]}"
    if kind in ("number", "open_number"):
        low, high = rule[1], rule[2]
        if low is None and high is None:
            return "a finite number"
        if high is None:
            return f"a finite number {'>=' if kind == 'number' else '>'} {low:g}"
        if low is None:
            return f"a finite number {'<=' if kind == 'number' else '<'} {high:g}"
        brackets = "[]" if kind == "number" else "()"
        return f"a number in {brackets[0]}{low:g}, {high:g}{brackets[1]}"
    if kind == "bool":
        return "true or false"
    if kind == "choice":
        return "one of " + ", ".join(repr(o) for o in rule[1])
    if kind == "str":
        return "a string"
    raise AssertionError(f"unknown rule {rule!r}")


def _obeys(value, rule: tuple) -> bool:
    kind = rule[0]
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= rule[1]
    if kind in ("number", "open_number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        low, high = rule[1], rule[2]
        if kind == "number":
            return (low is None or value >= low) and (high is None or value <= high)
        return (low is None or value > low) and (high is None or value < high)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return any(value == option and type(value) is type(option) for option in rule[1])
    if kind == "str":
        return isinstance(value, str)
    raise AssertionError(f"unknown rule {rule!r}")


def validate_config(config, rules: dict[str, tuple], name_of=None) -> None:
    """Check the fields of a config dataclass against `rules` (see above); raise UserError naming
    the first field that breaks its rule, the value given and what was expected.

    `name_of(field)` says how the message names a field: the command-line flag for configs that
    are filled from flags (TrainConfig: `--batch-size`), or `GPTConfig.n_layer` by default.
    """
    known = {f.name for f in fields(config)}
    missing = sorted(set(rules) - known)
    if missing:
        raise AssertionError(f"{type(config).__name__} has no field(s) {missing} to validate")
    if name_of is None:
        def name_of(field_name):
            return f"{type(config).__name__}.{field_name}"
    for field_name, rule in rules.items():
        value = getattr(config, field_name)
        if not _obeys(value, rule):
            raise UserError(f"{name_of(field_name)}: expected {_explain(rule)}, got {value!r}")


def config_from_dict(cls, d: dict):
    """`cls(**d)` for a config dataclass, refusing unknown keys with one line that lists the known ones."""
    if not isinstance(d, dict):
        raise UserError(f"{cls.__name__}: expected a dict of settings, got {type(d).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise UserError(f"{cls.__name__}: unknown field(s) {unknown}; known fields are {known}")
    return cls(**d)
