"""Domain tags: one extra token per domain, put at the start of every training window.

A model trained on a mixture of domains must guess, from the bytes alone, which domain it is
reading. A tag tells it: the window of domain d starts with the token `<domain:d>`, a special
token of the byte tokenizer (id 256 + k for the k-th domain), so the tags are recorded in the
checkpoint's tokenizer JSON like any special token.

Scoring on identical bytes. For a validation window of bytes w_0 .. w_{T-1} the three
conditions predict the same targets w_1 .. w_{T-1} from the same preceding bytes; they differ
only in what comes before w_0:

    right tag:  <domain:d>  w_0 .. w_{T-2}   (the tag's own prediction, of w_0, is not counted)
    no tag:                 w_0 .. w_{T-2}
    wrong tag:  <domain:e>  w_0 .. w_{T-2}   for every other domain e, then the mean over e

    bits per byte = sum_t -log2 p(w_t | context) / (N (T - 1))

with the special tokens' logits dropped before the softmax, so the scores are over the 256 bytes
and compare with any byte model's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minilm.cli import UserError
from minilm.data import ByteTokenizer

NUM_BYTE_IDS = 256
TAG_PREFIX = "<domain:"


def tag_name(domain: str) -> str:
    """The special token of a domain: "bible" -> "<domain:bible>"."""
    return f"{TAG_PREFIX}{domain}>"


def tagged_tokenizer(domains) -> ByteTokenizer:
    """The byte tokenizer with one tag per domain, in the order given (ids 256, 257, ...)."""
    return ByteTokenizer(special_tokens=[tag_name(d) for d in domains])


def tag_domains(tokenizer) -> list[str]:
    """The domains a tokenizer has tags for, in id order ([] for a tokenizer without tags)."""
    specials = getattr(tokenizer, "special_tokens", {}) or {}
    return [text[len(TAG_PREFIX):-1] for text in sorted(specials, key=specials.get)
            if text.startswith(TAG_PREFIX) and text.endswith(">")]


def tag_id(tokenizer, domain: str) -> int:
    """The id of `domain`'s tag; an unknown domain is a one-line error naming the known ones."""
    known = tag_domains(tokenizer)
    if domain not in known:
        raise UserError(f"domain tag {domain!r}: this model has tags for {', '.join(known) or 'no domain'}")
    return tokenizer.special_id(tag_name(domain))


def tagged_windows(windows: torch.Tensor, tag: int) -> torch.Tensor:
    """Windows (N, T+1) -> (N, T+1) that start with the tag: [tag, w_0 .. w_{T-1}] (the last byte
    drops out), the shape of a tagged training row."""
    column = torch.full((windows.shape[0], 1), tag, dtype=windows.dtype)  # (N, 1)
    return torch.cat([column, windows[:, :-1]], dim=1)  # (N, T+1)


@torch.no_grad()
def bits_per_byte_with_tag(model, windows: torch.Tensor, tag: int | None, batch_size: int = 64,
                           device: torch.device | str = "cpu") -> float:
    """Bits per byte of the targets w_1 .. w_{T-1} of byte windows (N, T+1), after `tag` (None = no tag)."""
    if windows.shape[1] < 3:
        raise ValueError("scoring with tags needs windows of at least 3 bytes")
    device = torch.device(device)
    text = windows[:, :-1]  # (N, T): w_0 .. w_{T-1}
    was_training = model.training
    model.eval()
    total_nats = 0.0
    try:
        for first in range(0, text.shape[0], batch_size):
            rows = text[first:first + batch_size].to(device)  # (B, T)
            x, targets = rows[:, :-1], rows[:, 1:]  # (B, T-1) each
            if tag is not None:
                column = torch.full((rows.shape[0], 1), tag, dtype=rows.dtype, device=device)  # (B, 1)
                x = torch.cat([column, x], dim=1)  # (B, T)
                logits = model(x)[0][:, 1:, :NUM_BYTE_IDS]  # (B, T-1, 256): the tag's own prediction dropped
            else:
                logits = model(x)[0][..., :NUM_BYTE_IDS]  # (B, T-1, 256)
            nats = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="sum")
            total_nats += float(nats.double().cpu())
    finally:
        model.train(was_training)
    return total_nats / math.log(2) / (text.shape[0] * (text.shape[1] - 1))


def tag_scores(model, tokenizer, windows: torch.Tensor, domain: str, batch_size: int = 64,
               device: torch.device | str = "cpu") -> dict:
    """Bits per byte of `domain`'s windows with its right tag, with no tag, and with each wrong tag.

    Returns {"right": bpb, "none": bpb, "wrong": mean over the other tags, "wrong_by_tag": {e: bpb}}.
    """
    right = tag_id(tokenizer, domain)
    others = [e for e in tag_domains(tokenizer) if e != domain]
    wrong = {e: bits_per_byte_with_tag(model, windows, tag_id(tokenizer, e), batch_size, device) for e in others}
    return {"right": bits_per_byte_with_tag(model, windows, right, batch_size, device),
            "none": bits_per_byte_with_tag(model, windows, None, batch_size, device),
            "wrong": sum(wrong.values()) / len(wrong) if wrong else float("nan"), "wrong_by_tag": wrong}
