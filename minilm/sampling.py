"""Turning a language model's logits into text: temperature, top-k, top-p, generation, streaming.

Read top to bottom:

1. The three knobs that reshape the next-token distribution, applied in this order
   (the same order as Hugging Face `transformers`):
       logits (B, V) --temperature--> --top-k--> --top-p--> softmax --> sample one id per row
   `greedy=True` (or temperature 0) skips all of it and takes the argmax.
2. `generate`: the loop with the model's incremental state. It calls `step(idx, state)`, the
   incremental-decoding contract of every minilm model (docs/CONTRACTS.md): a GPT carries a KV
   cache, an LSTM its (h, c). Each new token costs one small forward pass over that single token.
   Which `step` runs is the explicit argument `decoder` (see `generation_path`):
       decoder="step"  `model.step` itself: for a GPT, `GPT.step`, the path to read;
       decoder="fast"  `model.decoder().step` where the model offers one: for a GPT,
                       `minilm.gpt_decoder.GPTDecoder`, the same computation laid out for speed
                       (tested equal to `GPT.step`; docs/README_sample.md has its measurement).
3. `generate_without_cache`: the slow reference. Each step runs the full forward over the whole
   (cropped) context, as nanoGPT does. Tests check the two give the same logits and tokens;
   `bench/sample.py` times both.
4. Streaming: tokens are not characters. A byte-level model emits the 3 bytes of "€" as three
   tokens, and a BPE token can end in the middle of a character. `Utf8Stream` holds back an
   incomplete UTF-8 sequence until its last byte arrives, so streamed text never shows garbage.
5. `novelty`: how much of a sample is copied from the training text (shared byte n-grams).

Shape letters: B batch (number of samples), T time (tokens), V vocabulary size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# 1. Reshaping the next-token distribution
# ----------------------------------------------------------------------------------------------


def check_sampling_args(temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None) -> None:
    """Raise ValueError naming the argument when a sampling setting is out of range.

    temperature >= 0 (0 means greedy), top_k >= 1 or None (no limit), 0 < top_p <= 1 or None.
    """
    if not (isinstance(temperature, (int, float)) and temperature >= 0):  # also rejects NaN
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k must be an integer >= 1 (or None for no limit), got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] (or None for no limit), got {top_p!r}")


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis, computed in float32 at least (float64 stays float64)."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.softmax(logits, dim=-1, dtype=dtype)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by the temperature: softmax(logits / t).

    t < 1 sharpens the distribution (more likely tokens get even more likely), t > 1 flattens it,
    t = 1 leaves it alone. t -> 0 tends to the argmax; `sample_next` treats t = 0 as greedy.
    logits: (B, V) -> (B, V).
    """
    if temperature == 1.0:
        return logits
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the k largest logits of each row and set the rest to -inf (probability 0).

    Exactly k survive, even when several logits tie at the k-th value (ties are broken by
    `torch.topk`). k >= V (or None) keeps everything. logits: (B, V) -> (B, V).
    """
    V = logits.shape[-1]
    if k is None or k >= V:
        return logits
    values, indices = torch.topk(logits, k, dim=-1)  # (B, k) each
    filtered = torch.full_like(logits, float("-inf"))  # (B, V)
    return filtered.scatter(-1, indices, values)  # (B, V): the k kept logits back in place


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches p.

    Sort the probabilities in decreasing order and keep token i when the probability of the
    tokens before it is still below p:  keep_i = (cumsum_i - prob_i) < p. The most likely token
    always has nothing before it, so it is always kept. p = 1 (or None) keeps everything.
    logits: (B, V) -> (B, V), the dropped ones set to -inf.
    """
    if p is None or p >= 1.0:
        return logits
    probs = probabilities(logits)  # (B, V)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)  # (B, V) each
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (B, V)
    drop_sorted = mass_before >= p  # (B, V), in sorted order; column 0 is always False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # (B, V), vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from the categorical distribution in each row: probs (B, V) -> (B, 1).

    `torch.multinomial` with one sample; `generator` (a seeded torch.Generator on the probs'
    device) makes the draw repeatable. A token with probability 0 is never drawn.
    """
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick the next token of each row: logits (B, V) -> token ids (B, 1) int64.

    greedy=True or temperature=0: the argmax (no randomness, `generator` unused).
    Otherwise: temperature, then top-k, then top-p, then one draw (`draw`) from the softmax using
    `generator` (a seeded torch.Generator on the logits' device makes the draw repeatable).
    The arguments are not checked here (this runs once per token); `generate` checks them once.
    """
    if greedy or temperature == 0:
        return torch.argmax(logits, dim=-1, keepdim=True)  # (B, 1)
    logits = apply_temperature(logits, temperature)  # (B, V)
    logits = top_k_filter(logits, top_k)  # (B, V)
    logits = top_p_filter(logits, top_p)  # (B, V)
    probs = probabilities(logits)  # (B, V), filtered tokens have probability 0
    return draw(probs, generator)  # (B, 1)


# ----------------------------------------------------------------------------------------------
# 2. Generation with the model's incremental state (KV cache / carried LSTM state)
# ----------------------------------------------------------------------------------------------


def _as_batch(prompt_ids, device: torch.device) -> torch.Tensor:
    """A list of ids, a (T,) tensor or a (B, T) tensor -> a (B, T) int64 tensor on `device`."""
    idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if idx.dim() == 1:
        idx = idx[None, :]  # (1, T)
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(f"prompt_ids must be a non-empty sequence of token ids, or (B, T) with T >= 1; "
                         f"got shape {tuple(idx.shape)}")
    return idx


def require_finite(logits: torch.Tensor, new_tokens: int = 0) -> None:
    """Refuse logits with nan or inf: nothing meaningful can be drawn from them. new_tokens: how
    many tokens were generated before these logits (0: the prompt's)."""
    if bool(torch.isfinite(logits).all()):
        return
    if new_tokens == 0:
        raise ValueError("the model's logits for the prompt are not finite (nan or inf): its weights "
                         "have probably diverged, so no token can be drawn from them")
    raise ValueError(f"the model's logits turned non-finite (nan or inf) during generation (after a finite "
                     f"prompt and {new_tokens} new tokens): tokens drawn from them would be meaningless")


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def context_limit(model: torch.nn.Module) -> int | None:
    """The longest context the model reads (a GPT's block_size), or None when unlimited (LSTM)."""
    return getattr(model.config, "block_size", None)


DECODERS = ("fast", "step")


def stepper(model: torch.nn.Module, decoder: str = "fast"):
    """The object whose `step` generation calls: the model itself (decoder="step"), or the fast
    decoder the model offers (decoder="fast": `model.decoder()`, a GPT's `GPTDecoder`; a model
    without one, the LSTM, uses its own `step`)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "fast" and hasattr(model, "decoder"):
        return model.decoder()
    return model


def generation_path(model: torch.nn.Module, decoder: str = "fast") -> str:
    """The name of the `step` that `generate(model, ..., decoder=decoder)` calls, e.g. "GPT.step"
    or "GPTDecoder.step"."""
    return f"{type(stepper(model, decoder)).__name__}.step"


@torch.inference_mode()
def generate(model: torch.nn.Module, prompt_ids, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             generator: torch.Generator | None = None,
             on_token: Callable[[torch.Tensor], None] | None = None, decoder: str = "fast") -> torch.Tensor:
    """Continue `prompt_ids` by `max_new_tokens` sampled tokens, using the model's `step`.

    prompt_ids: list of ids, (T,) or (B, T) tensor. Returns (B, T + max_new_tokens): the whole
    prompt followed by the new tokens. `on_token(tokens)` is called with each new column (B,)
    as soon as it is chosen (see `TextStreamer` for printing text as it comes).

    decoder names the path (`generation_path(model, decoder)` says which `step` it is):
        "step"  `model.step`: for a GPT, `GPT.step` in minilm/gpt.py, the path to read;
        "fast"  (default) `model.decoder().step`: for a GPT, `GPTDecoder.step` in
                minilm/gpt_decoder.py, the same logits computed faster, one token at a time
                (it hands the prompt and the re-fill to `GPT.step`). A model without a
                decoder (the LSTM) uses its own step either way.

    The loop (docs/CONTRACTS.md): feed the prompt once, then one token at a time:
        logits, state = step(prompt)                 # (B, T, V)
        repeat: tok = sample_next(logits[:, -1])     # (B, 1)
                logits, state = step(tok, state)
    A prompt longer than the model's context (GPT block_size) is cropped to its last block_size
    tokens before it is fed (sample.py warns). Beyond block_size the GPT's own policy applies
    (GPT.step: drop the cache and re-fill it from the last block_size // 2 tokens).
    Every step's logits are checked finite before a token is drawn from them.
    """
    check_sampling_args(temperature, top_k, top_p)
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    idx = _as_batch(prompt_ids, _model_device(model))  # (B, T)
    step = stepper(model, decoder).step
    limit = context_limit(model)
    was_training = model.training
    model.eval()  # no dropout while sampling
    try:
        context = idx if limit is None else idx[:, -limit:]  # (B, <= block_size)
        logits, state = step(context, None)  # (B, T, V)
        new_tokens = []
        for i in range(max_new_tokens):
            require_finite(logits[:, -1, :], i)
            tok = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)  # (B, 1)
            new_tokens.append(tok)
            if on_token is not None:
                on_token(tok[:, 0])
            if i + 1 < max_new_tokens:  # the logits after the last token would go unused
                logits, state = step(tok, state)  # (B, 1, V)
    finally:
        model.train(was_training)
    return torch.cat([idx] + new_tokens, dim=1)  # (B, T + max_new_tokens)


# ----------------------------------------------------------------------------------------------
# 3. The reference: a full forward over the context at every step (no cache)
# ----------------------------------------------------------------------------------------------

CONTEXT_POLICIES = ("slide", "refill")


def next_context_length(current: int, block_size: int, policy: str) -> int:
    """How many of the latest tokens the model reads after one more token is appended.

    "slide" (nanoGPT): always the last block_size tokens, so the window moves one token a step.
    "refill" (GPT.step's KV-cache policy): grow to block_size; when the next token does not fit,
    drop to the last block_size // 2 tokens (at least 1) and grow again. A cache cannot slide
    cheaply with learned absolute positions (every cached key was computed at its old position),
    so the cached path re-fills; the two policies see different contexts beyond block_size.
    """
    if policy == "slide":
        return min(current + 1, block_size)
    if current + 1 > block_size:
        return max(block_size // 2, 1)
    return current + 1


@torch.inference_mode()
def generate_without_cache(model: torch.nn.Module, prompt_ids, max_new_tokens: int,
                           temperature: float = 1.0, top_k: int | None = None,
                           top_p: float | None = None, greedy: bool = False,
                           generator: torch.Generator | None = None, policy: str = "slide",
                           on_logits: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Like `generate`, but every step runs `model(context)` over the whole cropped context.

    This is how nanoGPT samples: simple, and O(T) work per token instead of O(1) layers of one
    token. policy="slide" crops to the last block_size tokens; policy="refill" follows the same
    context as `GPT.step` (see `next_context_length`), which is what the equality tests use.
    `on_logits(logits)` sees each step's next-token logits (B, V) (tests compare them).
    Models without a block_size (LSTM) read the whole sequence every step.
    """
    check_sampling_args(temperature, top_k, top_p)
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if policy not in CONTEXT_POLICIES:
        raise ValueError(f"policy must be one of {CONTEXT_POLICIES}, got {policy!r}")
    idx = _as_batch(prompt_ids, _model_device(model))  # (B, T)
    limit = context_limit(model)
    was_training = model.training
    model.eval()
    try:
        n = idx.shape[1] if limit is None else min(idx.shape[1], limit)  # tokens the model reads
        for i in range(max_new_tokens):
            logits, _ = model(idx[:, -n:])  # (B, n, V)
            require_finite(logits[:, -1, :], i)
            if on_logits is not None:
                on_logits(logits[:, -1, :])
            tok = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)  # (B, 1)
            idx = torch.cat([idx, tok], dim=1)  # (B, T + i + 1)
            n = idx.shape[1] if limit is None else next_context_length(n, limit, policy)
    finally:
        model.train(was_training)
    return idx


# ----------------------------------------------------------------------------------------------
# 4. Streaming text: never print half a character
# ----------------------------------------------------------------------------------------------


def incomplete_utf8_tail(data: bytes) -> int:
    """How many bytes at the end of `data` start a UTF-8 character that is not finished yet.

    UTF-8 writes a character as 1 to 4 bytes; the first byte says how many:
        0xxxxxxx  1 byte (ASCII)        110xxxxx  2 bytes     1110xxxx  3 bytes
        11110xxx  4 bytes               10xxxxxx  a continuation byte (never first)
    Look back over the last 3 bytes for a lead byte; if the bytes from it to the end are fewer
    than it announces, they are an unfinished character (0 otherwise). Holding back only ever
    starts at a lead byte, so decoding the held-back bytes later together with what follows gives
    exactly the text that decoding everything at once would.
    """
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte & 0b1100_0000 == 0b1000_0000:  # continuation byte: keep looking for the lead
            continue
        if byte >= 0b1111_0000:
            needed = 4
        elif byte >= 0b1110_0000:
            needed = 3
        elif byte >= 0b1100_0000:
            needed = 2
        else:
            needed = 1  # ASCII: nothing unfinished
        return back if back < needed else 0
    return 0  # only continuation bytes: stray bytes, decoded as U+FFFD, nothing to wait for


class Utf8Stream:
    """Bytes in, text out, holding back an unfinished UTF-8 character until it completes.

        s = Utf8Stream(); s.push(b"caf\\xc3") -> "caf";  s.push(b"\\xa9") -> "é";  s.flush() -> ""
    Invalid bytes become U+FFFD, the same as `bytes.decode("utf-8", errors="replace")` of the whole.
    """

    def __init__(self):
        self.pending = b""

    def push(self, data: bytes) -> str:
        data = self.pending + data
        keep = incomplete_utf8_tail(data)
        ready, self.pending = data[: len(data) - keep], data[len(data) - keep:]
        return ready.decode("utf-8", errors="replace")

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character at the very end becomes U+FFFD)."""
        text, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return text


class TextStreamer:
    """An `on_token` callback for `generate` that writes text as soon as it is valid UTF-8.

    tokenizer: anything with `token_bytes(id) -> bytes` (minilm tokenizers). write: where the text
    goes (e.g. `lambda s: print(s, end="", flush=True)`). Streams row `row` of the batch.
    Call `finish()` after generation to write anything still held back.
    """

    def __init__(self, tokenizer, write: Callable[[str], None], row: int = 0):
        self.tokenizer, self.write, self.row = tokenizer, write, row
        self.stream = Utf8Stream()

    def __call__(self, tokens: torch.Tensor) -> None:
        text = self.stream.push(self.tokenizer.token_bytes(int(tokens[self.row])))
        if text:
            self.write(text)

    def finish(self) -> None:
        text = self.stream.flush()
        if text:
            self.write(text)


# ----------------------------------------------------------------------------------------------
# 5. Novelty: how much of a sample is copied from the training text
# ----------------------------------------------------------------------------------------------


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def byte_ngram_keys(data: bytes, n: int) -> np.ndarray:
    """One uint64 key per byte n-gram of `data` (len(data) - n + 1 of them, in order).

    For n <= 8 the key is the n bytes packed into one integer, so equal keys mean equal n-grams.
    For n > 8 the key is a polynomial hash (mod 2^64) of the bytes: different n-grams could in
    principle share a key, with a chance around (number of n-grams)^2 / 2^64, negligible here.
    Built in n vectorised passes over the array instead of a Python loop over positions.
    """
    a = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)  # (L,)
    count = len(a) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    keys = np.zeros(count, dtype=np.uint64)
    multiplier = np.uint64(256) if n <= 8 else np.uint64(1_099_511_628_211)  # 64-bit FNV prime
    for i in range(n):
        keys = keys * multiplier + a[i: i + count]  # wraps around mod 2^64 for n > 8
    return keys


class NgramIndex:
    """The set of byte n-grams of a training text, to test many samples against it quickly.

    Build once (a 1 MB corpus takes a fraction of a second), then `share(text)` per sample.
    """

    def __init__(self, training_text: str | bytes, n: int = 8):
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self.n = n
        keys = np.sort(byte_ngram_keys(_as_bytes(training_text), n))  # (L - n + 1,), sorted
        distinct = np.ones(len(keys), dtype=bool)
        distinct[1:] = keys[1:] != keys[:-1]  # drop repeats (np.unique does this too, but slower)
        self.keys = keys[distinct]  # sorted, distinct: ready for binary search

    def share(self, generated_text: str | bytes) -> float:
        """Fraction of the n-grams of `generated_text` (counted at every position) found in the
        training text. Raises ValueError when the text has fewer than n bytes."""
        data = _as_bytes(generated_text)
        keys = byte_ngram_keys(data, self.n)  # (L - n + 1,)
        if len(keys) == 0:
            raise ValueError(f"the generated text has {len(data)} bytes; "
                             f"at least n={self.n} are needed to form one {self.n}-gram")
        if len(self.keys) == 0:
            return 0.0
        where = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)  # binary search
        return float(np.mean(self.keys[where] == keys))


def novelty(generated_text: str | bytes, training_text: str | bytes, n: int = 8) -> float:
    """The share of the generated text's byte n-grams that also occur in the training text.

    1.0: every n-byte window of the sample appears somewhere in the training text (the model may be
    reciting it); near 0: the sample is new at the scale of n bytes. 8 bytes is roughly one or two
    English words: a model that learnt spelling but not the text scores well below 1.
    Texts are compared as UTF-8 bytes. Use `NgramIndex` to score many samples against one text.
    """
    return NgramIndex(training_text, n).share(generated_text)
