"""Checkpoints: one versioned file per run state, written atomically, checked before use.

A checkpoint is a dict (see docs/CONTRACTS.md) holding only tensors and plain Python values,
so it loads with `torch.load(weights_only=True)` and never unpickles arbitrary objects:

    format          int, FORMAT_VERSION
    model_kind      "gpt" | "lstm"
    model_config    dict (Config.to_dict())
    model           state_dict of the bare model (unwrapped from torch.compile and DDP)
    optimizer       optimizer.state_dict()
    step            int, the number of optimizer steps done
    data_state      the batch sampler's generator state
    rng             python / numpy / torch / cuda RNG states
    tokenizer       the tokenizer's JSON text
    train_config    dict (TrainConfig.to_dict())
    best_val_loss   float, history (list of eval records)  [training bookkeeping]

Loading checks the format, the type of every field, the model kind and the config (types and
ranges, by the config's own validation) before any weight is touched; then it estimates the
memory the model's parameters need, from the config alone (the model is built on PyTorch's
"meta" device, which records shapes and allocates nothing), and refuses a model that could not
fit in the machine's memory (or the GPU's). Every failure (missing, truncated, corrupt, crafted
or mismatched file) is a one-line CheckpointError.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from minilm.data import UserError, tokenizer_from_json
from minilm.devices import mps_available
from minilm.outputs import atomic_write

FORMAT_VERSION = 1
# field -> the type it must have, checked before anything in the file is used
REQUIRED_KEYS = {"format": int, "model_kind": str, "model_config": dict, "model": dict, "tokenizer": str}
# fields a training checkpoint adds, checked when present
OPTIONAL_KEYS = {"step": int, "optimizer": dict, "data_state": dict, "rng": dict, "train_config": dict,
                 "best_val_loss": (int, float), "history": list}


class CheckpointError(UserError):
    """A checkpoint file that cannot be used: missing, damaged, or for another model/tokenizer."""


def model_registry() -> dict:
    """`--model` name -> (ModelClass, ConfigClass), from `minilm.MODELS` (docs/CONTRACTS.md)."""
    from minilm import MODELS  # imported here: minilm/__init__ imports the models, not checkpoint

    return dict(MODELS)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ----------------------------------------------------------------------------------------------
# RNG states
# ----------------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """The states of every random generator a run touches, as tensors and plain values."""
    python_state = random.getstate()  # (version, tuple of 625 ints, gauss_next)
    numpy_state = np.random.get_state()  # ("MT19937", keys, pos, has_gauss, cached_gaussian)
    state = {
        "python": [python_state[0], list(python_state[1]), python_state[2]],
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "mps": torch.mps.get_rng_state() if mps_available() else None,  # dropout masks on Apple GPUs
    }
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("mps") is not None and mps_available():
        torch.mps.set_rng_state(state["mps"])


# ----------------------------------------------------------------------------------------------
# Save and read
# ----------------------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> Path:
    """Write `checkpoint` to `path` atomically (`minilm.outputs.atomic_write`: a temp file in the
    same folder, flushed to disk, then os.replace).

    A crash or Ctrl-C mid-write leaves the previous file untouched (at worst a stray .tmp file,
    removed at the next start); a full disk is one DiskFullError line naming the file, and the
    previous checkpoint stays loadable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"format": FORMAT_VERSION, **checkpoint}
    return atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def read_checkpoint(path: str | os.PathLike, flag: str = "--ckpt") -> dict:
    """Load a checkpoint dict (on the CPU) and check its format and the types of its fields; raise
    CheckpointError if unusable. `flag` is the command-line flag that named the file, for messages."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{flag}: no checkpoint file at {str(path)!r}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for damaged zip/pickle data
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{flag}: {str(path)!r} is not a readable minilm checkpoint (truncated or corrupt? {reason})"
        ) from None
    if not isinstance(checkpoint, dict) or "format" not in checkpoint:
        raise CheckpointError(f"{flag}: {str(path)!r} is not a minilm checkpoint (no 'format' field)")
    if checkpoint["format"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{flag}: {str(path)!r} has checkpoint format {checkpoint['format']!r}; "
            f"this minilm reads format {FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{flag}: {str(path)!r} lacks the field(s) {', '.join(missing)}")
    for key, expected_type in {**REQUIRED_KEYS, **OPTIONAL_KEYS}.items():
        value = checkpoint.get(key)
        if key in checkpoint and (not isinstance(value, expected_type) or isinstance(value, bool)):
            expected = " or ".join(t.__name__ for t in expected_type) if isinstance(expected_type, tuple) \
                else expected_type.__name__
            raise CheckpointError(f"{flag}: {str(path)!r}: field {key!r} should be of type {expected}, "
                                  f"not {type(value).__name__} (a damaged or foreign file?)")
    if checkpoint.get("step", 0) < 0:
        raise CheckpointError(f"{flag}: {str(path)!r}: field 'step' is {checkpoint['step']}; expected >= 0")
    return checkpoint


def config_from_checkpoint(checkpoint: dict, path: str = "checkpoint", flag: str = "--ckpt"):
    """(ModelClass, config) described by a checkpoint, validated before any weight is read."""
    registry = model_registry()
    kind = checkpoint["model_kind"]
    if not isinstance(kind, str) or kind not in registry:
        raise CheckpointError(f"{flag}: {path!r} holds a model of kind {kind!r}; expected one of {sorted(registry)}")
    model_class, config_class = registry[kind]
    if not isinstance(checkpoint["model_config"], dict):
        raise CheckpointError(f"{flag}: {path!r}: model_config should be a dict, "
                              f"not {type(checkpoint['model_config']).__name__}")
    try:
        config = config_class.from_dict(checkpoint["model_config"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{flag}: {path!r} has an invalid {kind} config ({error})") from None
    return model_class, config


# ----------------------------------------------------------------------------------------------
# Will the model fit? An estimate from the config alone
# ----------------------------------------------------------------------------------------------


def parameter_bytes(model_class, config) -> int:
    """Bytes of the parameters and buffers of `model_class(config)`, found without allocating them.

    On the "meta" device a tensor has a shape and a dtype but no storage, so building the model
    there costs microseconds even for a config of terabytes. Tied tensors count once
    (`parameters()` yields a shared tensor once).
    """
    with torch.device("meta"):
        model = model_class(config)
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (RAM) in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # Linux, macOS
    except (AttributeError, ValueError, OSError):
        pass
    if sys.platform == "win32":
        import ctypes

        class MemoryStatus(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = MemoryStatus(dwLength=ctypes.sizeof(MemoryStatus))
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.ullTotalPhys)
    return None


def device_memory_bytes(device: str | torch.device) -> int | None:
    """Memory of an accelerator (a CUDA GPU's total memory); None for the CPU or when unknown."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device).total_memory)
    return None


def _gigabytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_model_fits(model_class, config, device: str | torch.device = "cpu", what: str = "--ckpt") -> int:
    """Refuse (CheckpointError naming `what`) a model whose parameters alone exceed the machine's
    physical memory or, on a GPU, the GPU's memory. Returns the estimated bytes.

    The model is built on the CPU and then moved, so it must fit in RAM in any case. Training
    needs several times more (gradients, optimizer state, activations): this check only stops
    what can never work, such as a corrupt size field, before it is tried.
    """
    needed = parameter_bytes(model_class, config)
    limits = [("this machine's memory", physical_memory_bytes()), ("the GPU's memory", device_memory_bytes(device))]
    for where, available in limits:
        if available is not None and needed > available:
            raise CheckpointError(
                f"{what}: the model it describes needs {_gigabytes(needed)} for its parameters alone, more than "
                f"{where} ({_gigabytes(available)}); the file is damaged or was made for a far bigger machine"
            )
    return needed


def check_compatible(checkpoint: dict, model_kind: str, model_config: dict, tokenizer_json: str,
                     path: str = "checkpoint") -> None:
    """Refuse to resume from a checkpoint of another model kind, shape or tokenizer."""
    if checkpoint["model_kind"] != model_kind:
        raise CheckpointError(
            f"--resume: {path!r} holds a {checkpoint['model_kind']!r} model; this run asks for --model {model_kind}"
        )
    saved = config_from_checkpoint(checkpoint, path)[1].to_dict()  # older field names mapped to today's
    differing = sorted(k for k in set(saved) | set(model_config) if saved.get(k) != model_config.get(k))
    if differing:
        details = ", ".join(f"{k}={saved.get(k)!r} vs {model_config.get(k)!r}" for k in differing[:4])
        raise CheckpointError(f"--resume: {path!r} has a different model config ({details})")
    if checkpoint["tokenizer"] != tokenizer_json:
        raise CheckpointError(f"--resume: {path!r} was trained with a different tokenizer than --tokenizer gives")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", flag: str = "--ckpt"):
    """Load a checkpoint for use: returns (model in eval mode on `device`, tokenizer, checkpoint).
    `flag` is the command-line flag that named the file, for error messages."""
    checkpoint = read_checkpoint(path, flag)
    model_class, config = config_from_checkpoint(checkpoint, str(path), flag)
    try:
        tokenizer = tokenizer_from_json(checkpoint["tokenizer"])
    except Exception as error:
        raise CheckpointError(f"{flag}: {str(path)!r} carries an unreadable tokenizer ({error})") from None
    vocab_size = getattr(config, "vocab_size", tokenizer.vocab_size)
    if vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{flag}: {str(path)!r}: model vocab_size {vocab_size} does not match its tokenizer's "
            f"{tokenizer.vocab_size}"
        )
    check_model_fits(model_class, config, device, f"{flag}: {str(path)!r}")
    model = model_class(config)
    load_weights(model, checkpoint["model"], str(path), flag)
    model.to(device)
    model.eval()
    return model, tokenizer, checkpoint


def load_weights(model: torch.nn.Module, state_dict: dict, path: str = "checkpoint", flag: str = "--ckpt") -> None:
    """load_state_dict(strict=True), with a one-line error when names or shapes do not match."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()
        reason = " ".join(line.strip() for line in first[:3])[:200]
        raise CheckpointError(f"{flag}: {path!r}: weights do not fit the model ({reason})") from None
