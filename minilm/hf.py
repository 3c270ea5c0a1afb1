"""GPT-2 from Hugging Face into minilm, and minilm models out to Hugging Face.

minilm's GPT is, layer for layer, GPT-2: the same pre-norm blocks, the same parameter names, a
head tied to the token table. So importing a Hugging Face GPT-2 is a matter of renaming and
transposing, and exporting is the same map run backwards:

    Hugging Face folder                       minilm
    config.json                       ->      GPTConfig (sizes, activation, eps, tying)
    model.safetensors (or .bin)       ->      GPT.state_dict()  (Conv1D matrices transposed)
    tokenizer.json / vocab.json +     ->      minilm.bpe.BPETokenizer (same ids as `tokenizers`)
      merges.txt

Why the transpose: GPT-2's `Conv1D` computes y = x W + b with W stored (in, out); minilm's
`nn.Linear` computes y = x W^T + b with W stored (out, in). So for the four projections of a block
(attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), W_minilm = W_gpt2^T. Every other tensor is
copied as is. The buffers `attn.bias` (the causal mask) and `attn.masked_bias` that older files
carry are not parameters and are skipped; every other tensor must be used, and every shape must fit.

Read top to bottom:
1. Finding the folder (a local path, or a hub name when the hub is reachable).
2. config.json <-> GPTConfig, refusing what minilm cannot express exactly.
3. Tensors: reading the weights and mapping names and layouts.
4. The tokenizer.
5. `from_hf`: the model and its tokenizer; `load_for_sampling` for sample.py.
6. Export: `python -m minilm.hf export --ckpt runs/x/ckpt.pt --out DIR`.

Reading a folder into NumPy arrays (`read_hf_params`) needs neither torch nor transformers, so
the NumPy twin can run GPT-2 on its own (`python -m minilm.reference.generate`). Safetensors
files are read with the `safetensors` package (`pip install "minilm[hf]"`).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from minilm.cli import OneLineErrorParser, UserError

# The files a GPT-2 folder may hold, and all that is downloaded from the hub: the safetensors
# weights (one file, or shards and their index), or pytorch_model.bin only where there are none.
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json")

# ----------------------------------------------------------------------------------------------
# 1. Finding the folder
# ----------------------------------------------------------------------------------------------


def resolve_hf_folder(name_or_dir: str | os.PathLike, what: str = "--hf") -> Path:
    """A local folder holding config.json, or a hub name such as "gpt2" (downloaded once into the
    Hugging Face cache, ~/.cache/huggingface/hub, when `huggingface_hub` can reach the hub)."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{what}: folder {str(path)!r} has no config.json; expected a Hugging Face GPT-2 "
                            "folder (config.json, model.safetensors, tokenizer files)")
        return path
    name = str(name_or_dir)
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    how = ("pass a local folder holding config.json, model.safetensors and the tokenizer files "
           "(e.g. one written by save_pretrained)")
    if looks_like_path or path.exists():
        raise UserError(f"{what}: {name!r} is not a folder; {how}")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("", "0", "false", "no"):
        raise UserError(f"{what}: {name!r} is not a local folder and the hub is offline (HF_HUB_OFFLINE is set); {how}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{what}: {name!r} is not a local folder, and huggingface_hub (to fetch it from the hub) "
                        f"is not installed; {how}") from None
    try:
        folder = Path(snapshot_download(name, allow_patterns=["config.json", *SAFETENSORS_FILES, *TOKENIZER_FILES]))
        if not any(folder.glob("*.safetensors")):
            folder = Path(snapshot_download(name, allow_patterns=["pytorch_model.bin"]))
    except Exception as error:  # network, unknown repo, permissions: all one line
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise UserError(f"{what}: could not fetch {name!r} from the Hugging Face hub ({reason}); {how}") from None
    return folder


# ----------------------------------------------------------------------------------------------
# 2. config.json <-> GPTConfig
# ----------------------------------------------------------------------------------------------

# Hugging Face activation name -> minilm's. "gelu_new" and "gelu_pytorch_tanh" are both the tanh
# form of GPT-2; "gelu_fast" rounds sqrt(2/pi) and is therefore not the same function.
ACTIVATION_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
ACTIVATION_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}

# Settings of GPT2Config that change the computation, and the only value minilm can compute.
FIXED_HF_SETTINGS = {
    "scale_attn_weights": True,  # scores divided by sqrt(head size)
    "scale_attn_by_inverse_layer_idx": False,  # and by the layer number
    "reorder_and_upcast_attn": False,  # another order of the float32 upcast
    "add_cross_attention": False,  # an encoder-decoder block
}


def gpt_config_fields_from_hf(hf: dict, where: str = "config.json") -> dict:
    """GPTConfig fields (a dict) for a Hugging Face GPT2Config dict; UserError naming the field
    that minilm cannot express exactly."""
    if hf.get("model_type") != "gpt2":
        raise UserError(f"{where}: model_type={hf.get('model_type')!r}; minilm imports GPT-2 ('gpt2') only")
    for key, value in FIXED_HF_SETTINGS.items():
        if hf.get(key, value) != value:
            raise UserError(f"{where}: {key}={hf[key]!r} is not something minilm's GPT computes (needs {value!r})")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATION_FROM_HF:
        raise UserError(f"{where}: activation_function={activation!r}; minilm has {sorted(ACTIVATION_FROM_HF)}")
    n_embd = hf.get("n_embd", 768)
    n_inner = hf.get("n_inner")
    if n_inner is not None and (not isinstance(n_inner, int) or n_inner % n_embd != 0):
        raise UserError(f"{where}: n_inner={n_inner!r} is not a multiple of n_embd={n_embd}; "
                        "minilm's MLP is mlp_ratio * n_embd wide")
    dropout = hf.get("resid_pdrop", 0.1)
    for key in ("embd_pdrop", "attn_pdrop"):
        if hf.get(key, 0.1) != dropout:
            raise UserError(f"{where}: {key}={hf[key]!r} differs from resid_pdrop={dropout!r}; "
                            "minilm has one dropout rate")
    return dict(vocab_size=hf.get("vocab_size", 50257), block_size=hf.get("n_positions", 1024),
                n_layer=hf.get("n_layer", 12), n_head=hf.get("n_head", 12), n_embd=n_embd,
                mlp_ratio=4 if n_inner is None else n_inner // n_embd, dropout=dropout, bias=True,
                pos_emb="learned", activation=ACTIVATION_FROM_HF[activation],
                tie_weights=bool(hf.get("tie_word_embeddings", True)),
                layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5))


def hf_config_from_gpt_config(config, tokenizer) -> dict:
    """The config.json of a minilm GPTConfig; UserError naming a field GPT-2 cannot express."""
    if config.pos_emb != "learned":
        raise UserError(f"--ckpt: GPTConfig.pos_emb={config.pos_emb!r}; GPT-2 has only learned positions "
                        "(pos_emb='learned'), so this model cannot be exported")
    eos = getattr(tokenizer, "special_tokens", {}).get("<|endoftext|>")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_embd": config.n_embd,
        "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": config.mlp_ratio * config.n_embd,
        "activation_function": ACTIVATION_TO_HF[config.activation], "layer_norm_epsilon": config.layer_norm_eps,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "tie_word_embeddings": config.tie_weights, "bos_token_id": eos, "eos_token_id": eos,
        **FIXED_HF_SETTINGS, "torch_dtype": "float32",
    }


def read_hf_config(folder: Path) -> dict:
    """config.json of a folder, as GPTConfig fields."""
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"--hf: {str(path)!r} is not readable JSON ({error})") from None
    if not isinstance(hf, dict):
        raise UserError(f"--hf: {str(path)!r} is not a JSON object")
    return gpt_config_fields_from_hf(hf, str(path))


# ----------------------------------------------------------------------------------------------
# 3. Tensors
# ----------------------------------------------------------------------------------------------

# Conv1D weights, stored (in, out) by GPT-2 and (out, in) by nn.Linear.
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Buffers older GPT-2 files store beside the weights: the causal mask and the value that fills it.
SKIPPED_BUFFERS = ("attn.bias", "attn.masked_bias")


def expected_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """minilm's state_dict names and shapes for GPTConfig fields c (learned positions, biases)."""
    C, hidden = c["n_embd"], c["mlp_ratio"] * c["n_embd"]
    shapes = {"wte.weight": (c["vocab_size"], C), "wpe.weight": (c["block_size"], C)}
    for i in range(c["n_layer"]):
        for name, shape in {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (3 * C, C),
                            "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
                            "ln_2.weight": (C,), "ln_2.bias": (C,), "mlp.c_fc.weight": (hidden, C),
                            "mlp.c_fc.bias": (hidden,), "mlp.c_proj.weight": (C, hidden),
                            "mlp.c_proj.bias": (C,)}.items():
            shapes[f"h.{i}.{name}"] = shape
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,), "lm_head.weight": (c["vocab_size"], C)})
    return shapes


def is_conv1d_weight(name: str) -> bool:
    return name.startswith("h.") and name.split(".", 2)[2] in CONV1D_WEIGHTS


def read_hf_tensors(folder: Path, framework: str = "numpy") -> dict:
    """Every tensor of the folder's weights file(s), by its Hugging Face name.

    framework "numpy" gives float arrays (no torch needed for safetensors), "pt" torch tensors.
    A pytorch_model.bin is read with torch.load(weights_only=True): tensors only, no code.
    """
    safetensors_index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file() or safetensors_index.is_file():
        try:
            from safetensors import safe_open
        except ImportError:
            raise UserError("--hf: reading model.safetensors needs the safetensors package "
                            "(pip install 'minilm[hf]')") from None
        if safetensors_index.is_file():
            shards = sorted(set(json.loads(safetensors_index.read_text(encoding="utf-8"))["weight_map"].values()))
        else:
            shards = ["model.safetensors"]
        tensors = {}
        for shard in shards:
            try:
                with safe_open(str(folder / shard), framework=framework) as handle:
                    for key in handle.keys():
                        tensors[key] = handle.get_tensor(key)
            except Exception as error:  # truncated or foreign files raise several kinds
                raise UserError(f"--hf: {str(folder / shard)!r} is not a readable safetensors file ({error})") from None
        return tensors
    if (folder / "pytorch_model.bin").is_file():
        import torch
        try:
            tensors = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as error:
            reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
            raise UserError(f"--hf: {str(folder / 'pytorch_model.bin')!r} is not readable ({reason})") from None
        if framework == "numpy":
            tensors = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in tensors.items()}
        return tensors
    raise UserError(f"--hf: folder {str(folder)!r} has no model.safetensors or pytorch_model.bin")


def minilm_state_from_hf(tensors: dict, c: dict, where: str = "weights") -> dict:
    """Hugging Face tensors -> minilm state_dict entries (same tensor type, Conv1D transposed).

    Both layouts are read: keys with the `transformer.` prefix (saved from GPT2LMHeadModel) or
    without (GPT2Model). A tied head gets the token table under both names, as GPT.state_dict()
    has it; a file that also stores lm_head.weight must then store the same matrix.
    """
    found = {}
    for key, tensor in tensors.items():
        name = key.removeprefix("transformer.")
        if name.startswith("h.") and name.split(".", 2)[2] in SKIPPED_BUFFERS:
            continue
        if name in found:
            raise UserError(f"--hf: {where}: {name!r} is stored twice (with and without 'transformer.')")
        found[name] = tensor
    shapes = expected_shapes(c)
    if c["tie_weights"]:
        head = found.pop("lm_head.weight", None)
        table = found.get("wte.weight")
        if head is not None and table is not None and not np.array_equal(np.asarray(head), np.asarray(table)):
            raise UserError(f"--hf: {where}: lm_head.weight differs from wte.weight, but config.json ties them "
                            "(tie_word_embeddings=true)")
    state = {}
    for name, shape in shapes.items():
        if name == "lm_head.weight" and c["tie_weights"]:
            continue
        if name not in found:
            raise UserError(f"--hf: {where} has no tensor {name!r} (nor 'transformer.{name}'), which config.json needs")
        tensor = found.pop(name)
        if is_conv1d_weight(name):
            tensor = tensor.T  # Conv1D (in, out) -> Linear (out, in)
        if tuple(tensor.shape) != shape:
            raise UserError(f"--hf: {where}: {name!r} has shape {tuple(tensor.shape)} after the Conv1D transpose, "
                            f"config.json says {shape}" if is_conv1d_weight(name) else
                            f"--hf: {where}: {name!r} has shape {tuple(tensor.shape)}, config.json says {shape}")
        state[name] = tensor
    if found:
        unused = sorted(found)
        raise UserError(f"--hf: {where} holds {len(unused)} tensor(s) that a GPT-2 of this config does not use, "
                        f"e.g. {unused[:3]}")
    if c["tie_weights"]:
        state["lm_head.weight"] = state["wte.weight"]
    return state


def hf_state_from_minilm(state: dict, config) -> dict:
    """minilm state_dict -> the tensors of a GPT2LMHeadModel file (float32, contiguous).

    Missing biases (bias=False) are written as zeros, which computes the same thing; a tied head
    is stored once, as transformer.wte.weight.
    """
    import torch
    c = config.to_dict()
    tensors = {}
    for name, shape in expected_shapes(c).items():
        if name == "lm_head.weight":
            if not config.tie_weights:
                tensors["lm_head.weight"] = state[name].detach().float().contiguous()
            continue
        tensor = state.get(name)
        tensor = torch.zeros(shape) if tensor is None else tensor.detach().float()
        if is_conv1d_weight(name):
            tensor = tensor.T  # Linear (out, in) -> Conv1D (in, out)
        tensors["transformer." + name] = tensor.contiguous().clone()
    return tensors


def read_hf_params(folder: Path) -> tuple[dict, dict]:
    """(GPTConfig fields, float64 NumPy params keyed like GPT.state_dict()): what the NumPy twin
    needs, read without torch from a safetensors folder."""
    c = read_hf_config(folder)
    tensors = read_hf_tensors(folder, framework="numpy")
    params = minilm_state_from_hf(tensors, c, str(folder))
    return c, {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}


# ----------------------------------------------------------------------------------------------
# 4. The tokenizer
# ----------------------------------------------------------------------------------------------


def _special_tokens_from_configs(folder: Path, vocab: dict) -> dict[str, int]:
    """Which tokens are special, {text: id}: those tokenizer_config.json lists with their ids
    (`added_tokens_decoder`, which may lie past vocab.json), and the vocab entries it or
    special_tokens_map.json names (eos_token, ...); without either file, GPT-2's one special
    token "<|endoftext|>" when the vocab has it."""
    special = {}
    config_path, map_path = folder / "tokenizer_config.json", folder / "special_tokens_map.json"
    for path in (config_path, map_path):
        if not path.is_file():
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        for i, added in (document.get("added_tokens_decoder") or {}).items():
            special[added["content"]] = int(i)
        for key in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
            value = document.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and value in vocab:
                special.setdefault(value, vocab[value])
    if not config_path.is_file() and not map_path.is_file() and "<|endoftext|>" in vocab:
        special["<|endoftext|>"] = vocab["<|endoftext|>"]
    return special


def load_hf_tokenizer(folder: Path):
    """The folder's tokenizer as a minilm tokenizer: tokenizer.json if present, else vocab.json +
    merges.txt. A byte-level BPE with no merges whose ids are the byte values (what `export`
    writes for a bytes model) comes back as minilm's ByteTokenizer."""
    from minilm.bpe import BYTE_TO_CHAR, BPETokenizer

    try:
        if (folder / "tokenizer.json").is_file():
            tokenizer = BPETokenizer.from_json((folder / "tokenizer.json").read_text(encoding="utf-8"),
                                               str(folder / "tokenizer.json"))
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            vocab_json = (folder / "vocab.json").read_text(encoding="utf-8")
            vocab = {**json.loads(vocab_json), **_special_tokens_from_configs(folder, json.loads(vocab_json))}
            special = _special_tokens_from_configs(folder, vocab)
            merges_txt = (folder / "merges.txt").read_text(encoding="utf-8")
            tokenizer = BPETokenizer.from_gpt2_files(json.dumps(vocab), merges_txt, special,
                                                     f"{folder}/vocab.json + merges.txt")
        else:
            raise UserError(f"--hf: folder {str(folder)!r} has no tokenizer "
                            "(tokenizer.json, or vocab.json + merges.txt)")
    except (ValueError, json.JSONDecodeError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"--hf: {error}") from None
    is_bytes = (tokenizer.vocab_size == 256 and not tokenizer.merges and not tokenizer.special_tokens
                and all(tokenizer.token_to_id[BYTE_TO_CHAR[b]] == b for b in range(256)))
    if not is_bytes:
        return tokenizer
    from minilm.data import ByteTokenizer  # imported here: minilm.data imports torch
    return ByteTokenizer()


def bytes_as_bpe():
    """minilm's ByteTokenizer written as a byte-level BPE: no merges, and each byte's character
    (see minilm.bpe.bytes_to_unicode) has the byte's value as id, so the ids stay the bytes."""
    from minilm.bpe import BYTE_TO_CHAR, BPETokenizer
    return BPETokenizer([BYTE_TO_CHAR[b] for b in range(256)], [])


# ----------------------------------------------------------------------------------------------
# 5. from_hf
# ----------------------------------------------------------------------------------------------


def load_hf_model(folder: Path):
    """A minilm GPT (float32, eval mode) with the weights of a Hugging Face GPT-2 folder."""
    import torch

    from minilm.gpt import GPT, GPTConfig

    c = read_hf_config(folder)
    tensors = read_hf_tensors(folder, framework="pt")
    state = minilm_state_from_hf({k: v.float() for k, v in tensors.items()}, c, str(folder))
    try:
        config = GPTConfig(**c)
    except ValueError as error:
        raise UserError(f"--hf: {folder / 'config.json'}: {error}") from None
    model = GPT(config)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model.eval()


def from_hf(name_or_dir: str | os.PathLike):
    """(GPT, tokenizer) from a Hugging Face GPT-2: a local folder, or a hub name such as "gpt2".

    The model is float32 in eval mode; the tokenizer a minilm BPETokenizer (or ByteTokenizer)
    giving the same ids as the folder's own tokenizer.
    """
    folder = resolve_hf_folder(name_or_dir)
    model = load_hf_model(folder)
    tokenizer = load_hf_tokenizer(folder)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise UserError(f"--hf: {str(folder)!r}: the tokenizer has {tokenizer.vocab_size} tokens but config.json "
                        f"says vocab_size={model.config.vocab_size}")
    return model, tokenizer


def load_for_sampling(name_or_dir: str | os.PathLike, device="cpu"):
    """What `sample.py --hf NAME_OR_DIR` needs: (model in eval mode on device, tokenizer)."""
    model, tokenizer = from_hf(name_or_dir)
    return model.to(device).eval(), tokenizer


# ----------------------------------------------------------------------------------------------
# 6. Export
# ----------------------------------------------------------------------------------------------


def tokenizer_files(tokenizer, block_size: int) -> dict[str, str]:
    """The tokenizer files of an exported folder: vocab.json, merges.txt, tokenizer.json and a
    tokenizer_config.json that names the special tokens (none beyond those the tokenizer has)."""
    from minilm.bpe import BPETokenizer
    bpe = tokenizer if isinstance(tokenizer, BPETokenizer) else bytes_as_bpe()
    vocab, merges = bpe.to_gpt2_files()
    eos = "<|endoftext|>" if "<|endoftext|>" in bpe.special_tokens else None
    added = {str(i): {"content": text, "special": True, "normalized": False, "lstrip": False, "rstrip": False,
                      "single_word": False} for text, i in bpe.special_tokens.items()}
    config = {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "add_bos_token": False,
              "model_max_length": block_size, "bos_token": eos, "eos_token": eos, "unk_token": eos,
              "pad_token": None, "added_tokens_decoder": added, "clean_up_tokenization_spaces": False}
    return {"vocab.json": vocab, "merges.txt": merges, "tokenizer.json": bpe.to_json(),
            "tokenizer_config.json": json.dumps(config, indent=1, ensure_ascii=False)}


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a minilm GPT checkpoint as a Hugging Face GPT-2 folder: config.json,
    model.safetensors, tokenizer files. Written in a temporary folder beside `out`, then renamed
    into place, so a failure leaves no half-written folder; an existing `out` is replaced only
    with overwrite=True."""
    from safetensors.torch import save_file

    from minilm.checkpoint import load_model

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"--out: {str(out)!r} already exists; pass --overwrite to replace it")
    model, tokenizer, checkpoint = load_model(ckpt)
    if checkpoint["model_kind"] != "gpt":
        raise UserError(f"--ckpt: {str(ckpt)!r} holds a {checkpoint['model_kind']!r} model; only GPT models "
                        "export to GPT-2")
    hf_config = hf_config_from_gpt_config(model.config, tokenizer)
    tensors = hf_state_from_minilm(model.state_dict(), model.config)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        (staging / "config.json").write_text(json.dumps(hf_config, indent=1), encoding="utf-8")
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        for name, text in tokenizer_files(tokenizer, model.config.block_size).items():
            (staging / name).write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the user's folder should not be
        for path in staging.iterdir():
            os.chmod(path, 0o666 & ~umask)
        if out.exists():  # overwrite: move the old folder aside first, delete it only once the new one is in place
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m minilm.hf",
                                description="Export a minilm GPT checkpoint as a Hugging Face GPT-2 folder.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    export = commands.add_parser("export", help="checkpoint -> config.json, model.safetensors, tokenizer files")
    export.add_argument("--ckpt", required=True, help="a checkpoint written by train.py (a GPT with learned positions)")
    export.add_argument("--out", required=True, help="the folder to write; must not exist unless --overwrite")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.ckpt, args.out, args.overwrite)
    except UserError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}/ (config.json, model.safetensors, tokenizer.json, vocab.json, merges.txt); "
          f"load it with transformers.GPT2LMHeadModel.from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
