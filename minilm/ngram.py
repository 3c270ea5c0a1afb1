"""A counting language model: interpolated Kneser-Ney n-grams over bytes (or any integer tokens).

The model predicts the next token from the N-1 tokens before it, using nothing but counts of the
training text. It is the baseline a neural language model must beat: at a megabyte of text and a
CPU budget, a good count model is hard to beat.

The definition (every implementation must give the same number)
----------------------------------------------------------------
V is the vocabulary size (256 for bytes); the orders are n = 1..N. An n-gram is n consecutive
tokens; for the n-gram hw, h is its first n-1 tokens (the context) and w its last token.

Counts. At the top order N, c(g) is the number of occurrences of the N-gram g in the training
text. At every lower order n < N, c(g) is the *continuation count* of g: the number of distinct
tokens that precede g somewhere in the training text. (An n-gram seen only at the very start of
the text has no token before it, so c = 0.)

Discounts. One absolute discount per order, D_n = n1 / (n1 + 2 n2), where n1 and n2 are the
numbers of n-grams of order n with c = 1 and with c = 2. If n1 = 0, D_n = 0.5.

Probabilities, from the bottom up. P_0(w) = 1/V, and for n = 1..N

    P_n(w | h) = max(c(hw) - D_n, 0) / c(h.)  +  D_n N1+(h.) / c(h.) * P_{n-1}(w | h')

where h is the n-1 tokens before w, h' is h without its first token, c(h.) = sum over v of c(hv)
(the counts of all n-grams that start with h), and N1+(h.) = the number of distinct v with
c(hv) > 0. Where c(h.) = 0 (a context never seen with a follower), P_n(w | h) = P_{n-1}(w | h').
A token with k < N-1 tokens before it is scored with P_{k+1}.

Where the formula comes from
----------------------------
1. Maximum likelihood, c(hw) / c(h.), gives probability 0 to every continuation not seen in
   training, and one such token in the evaluation text makes the loss infinite. Something must
   take probability from what was seen and give it to what was not.

2. Absolute discounting takes the same amount D from every seen count: max(c(hw) - D, 0) / c(h.).
   Why a constant: in held-out data, an n-gram seen c times in training reappears about c - 0.75
   times on average, for every c >= 2 (Church and Gale's observation), so a constant is the right
   shape. Ney, Essen and Kneser (1994) estimate the constant by leaving one out, and bound it from
   above with D = n1 / (n1 + 2 n2): many n-grams seen once compared with twice means much of
   what we see is rare, so more mass goes to the unseen. When n1 = 0 the bound gives D = 0 (no
   mass for the unseen at all) or 0/0, so the definition falls back to D = 0.5.

3. The freed mass goes to the lower order. Every seen follower v of h gives up D, and
   0 < D <= 1 <= c(hv), so max(c(hv) - D, 0) = c(hv) - D for each of the N1+(h.) seen followers:

       sum over w of max(c(hw) - D, 0) / c(h.) = (c(h.) - D N1+(h.)) / c(h.) = 1 - D N1+(h.) / c(h.)

   The interpolation weight D N1+(h.) / c(h.) is exactly that missing mass. It multiplies a
   distribution P_{n-1}(. | h') that sums to 1, so P_n(. | h) sums to 1 - D N1+/c + D N1+/c = 1.
   By induction from P_0 = 1/V (which sums to 1) every order sums to 1, and every token has
   probability at least (prod of the weights) / V > 0, so the loss is always finite. (If D = 0,
   the formula is maximum likelihood at that order and still sums to 1.)

4. Continuation counts at the lower orders (Kneser and Ney, 1995). The lower order is consulted
   mostly when the longer context is rare, so it should answer "how likely is w in a *new*
   context", not "how often is w". A byte string that is frequent but follows only one thing
   (in Shakespeare, "ETRUCHIO:" after "P") has a large raw count but a continuation count of 1,
   and rightly gets little probability in contexts where it was never seen. The top order has no
   lower-order role, so it keeps raw counts.

How the fast path counts (`fit`) and scores (`nats`)
----------------------------------------------------
No Python loop runs over the tokens; each order is a few whole-array NumPy operations.

- n-gram ids. An n-gram is its context's id and its last token: code = id(h) * V + w, with
  id(empty context) = 0. The distinct codes at all start positions, sorted, with the rank of each
  position's code among them (`unique_with_ranks`, i.e. `np.unique`), give the distinct n-grams
  of order n and, for every position, the id of its n-gram (its rank). Ranks stay
  below the text length, so codes never overflow, whatever V and N are.
- Top-order counts are `np.bincount` of the ids.
- Continuation counts: a distinct (n+1)-gram is exactly one distinct pair (token before, n-gram),
  so c(g) at order n < N is the number of distinct (n+1)-grams whose last n tokens are g.
- c(h.) and N1+(h.) are `np.bincount` over the context id of each distinct n-gram.
- Scoring: the evaluation text's n-gram codes are looked up among the sorted training codes with
  `np.searchsorted` (absent -> count 0), and the recursion above runs once per order over all
  positions at once.

`prob(context, token)` is the readable path: the recursion written out for one token. The tests
check that it equals the fast path, and that both equal a dictionary implementation of the
definition written independently in the tests.

Command line (no PyTorch is imported):

    python -m minilm.ngram score --train TRAIN.txt --eval EVAL.txt --order 6 [--json]
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minilm.cli import OneLineErrorParser, UserError, validate_config

MAX_CLI_ORDER = 8  # the orders the command line accepts (the class takes any order >= 1)
FALLBACK_DISCOUNT = 0.5  # D_n when no n-gram of order n has count 1


@dataclass
class KneserNeyConfig:
    """The two numbers that define the model before it sees any text."""

    order: int  # N: the longest n-gram; a token is predicted from the N-1 tokens before it
    vocab_size: int = 256  # V: token ids are 0..V-1 (256 for bytes)


CONFIG_RULES = {"order": ("int", 1), "vocab_size": ("int", 1)}


@dataclass
class OrderCounts:
    """Everything the formula needs at one order n, for the n-grams seen in training.

    The distinct n-grams are numbered 0..U_n-1 in the order of their sorted codes; their contexts
    (the (n-1)-grams) are numbered by the same scheme one order down (order 0: one empty context).
    """

    codes: np.ndarray  # (U_n,) int64, sorted: id of the context (n-1)-gram * V + last token
    counts: np.ndarray  # (U_n,) float64: c of each n-gram (raw at order N, continuation below)
    context_total: np.ndarray  # (U_{n-1},) float64: c(h.) for each context id
    context_followers: np.ndarray  # (U_{n-1},) float64: N1+(h.) for each context id
    discount: float  # D_n


def discount(counts: np.ndarray) -> float:
    """D_n = n1 / (n1 + 2 n2) over the counts of one order; 0.5 when n1 = 0."""
    n1 = int(np.count_nonzero(counts == 1))
    n2 = int(np.count_nonzero(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 > 0 else FALLBACK_DISCOUNT


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") for non-negative integer keys, by 16 bits at a time.

    NumPy sorts 16-bit keys by radix sort, in linear time; sorting stably by the lowest 16 bits,
    then by the next 16, and so on (least significant digit first) sorts by the whole key. The
    n-gram codes need two or three such passes, which is several times faster than the stable
    comparison sort NumPy uses for 64-bit keys."""
    order = np.arange(len(keys))  # (L,)
    largest = int(keys.max()) if len(keys) else 0
    for shift in range(0, max(largest.bit_length(), 1), 16):
        digit = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)  # (L,) these 16 bits, in the current order
        order = order[np.argsort(digit, kind="stable")]
    return order


def unique_with_ranks(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct codes, the rank of each code among them): what
    np.unique(codes, return_inverse=True) returns, with a faster sort (`stable_argsort`)."""
    order = stable_argsort(codes)  # (L,)
    sorted_codes = codes[order]
    is_new = np.ones(len(codes), dtype=bool)  # True where a sorted code differs from the one before
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=is_new[1:])
    ranks = np.empty(len(codes), dtype=np.int64)
    ranks[order] = np.cumsum(is_new) - 1
    return sorted_codes[is_new], ranks


def lookup(sorted_codes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query in `sorted_codes`, or -1 where it is absent."""
    index = np.searchsorted(sorted_codes, queries)  # (Q,)
    index = np.minimum(index, max(len(sorted_codes) - 1, 0))
    found = (index < len(sorted_codes)) & (sorted_codes[index] == queries) if len(sorted_codes) else \
        np.zeros(len(queries), dtype=bool)
    return np.where(found, index, -1)


def gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] where index >= 0, and 0 where index = -1 (an n-gram or context never seen)."""
    if len(values) == 0:
        return np.zeros(len(index))
    return np.where(index >= 0, values[np.maximum(index, 0)], 0.0)


class KneserNeyLM:
    """Interpolated Kneser-Ney n-gram model of order N over V token ids (see the module docstring).

    lm = KneserNeyLM(order=6).fit(train_bytes)      # np.ndarray of ids in 0..V-1
    lm.prob(context, token)                          # P(token | last N-1 tokens of context)
    lm.distribution(context)                         # (V,) probabilities of the next token
    lm.nats(eval_bytes)                              # (len,) -ln P of each token given the ones before
    """

    def __init__(self, order: int, vocab_size: int = 256):
        self.config = KneserNeyConfig(order=order, vocab_size=vocab_size)
        validate_config(self.config, CONFIG_RULES, name_of=lambda name: f"KneserNeyLM {name}")
        self.order = order
        self.vocab_size = vocab_size
        self.levels: list[OrderCounts] | None = None  # levels[n - 1] holds order n, after fit
        self.train_tokens = 0

    # ------------------------------------------------------------------------------------------
    # Counting
    # ------------------------------------------------------------------------------------------

    def _as_tokens(self, tokens, what: str) -> np.ndarray:
        """A 1-D int64 copy of `tokens`, every id checked to lie in 0..V-1."""
        array = np.asarray(tokens)
        if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
            raise UserError(f"{what}: expected a 1-D array of integer token ids, got shape {array.shape} "
                            f"of {array.dtype}")
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise UserError(f"{what}: token ids must lie in 0..{self.vocab_size - 1}, "
                            f"got {int(array.min())}..{int(array.max())}")
        return array

    def fit(self, tokens: np.ndarray) -> KneserNeyLM:
        """Count every n-gram of orders 1..N in `tokens` (the training text). Returns self."""
        text = self._as_tokens(tokens, "training tokens")
        N, V, L = self.order, self.vocab_size, len(text)

        # ids[n][i] = id of the n-gram starting at i (i = 0..L-n); codes[n] = its sorted distinct codes
        ids = [np.zeros(L + 1, dtype=np.int64)]  # order 0: the empty n-gram, id 0, at every start
        codes = [np.zeros(1, dtype=np.int64)]
        for n in range(1, N + 1):
            starts = max(L - n + 1, 0)
            all_codes = ids[n - 1][:starts] * V + text[n - 1:n - 1 + starts]  # (starts,)
            distinct, rank = unique_with_ranks(all_codes)
            codes.append(distinct)
            ids.append(rank)

        self.levels = []
        for n in range(1, N + 1):
            n_distinct = len(codes[n])
            if n == N:
                counts = np.bincount(ids[n], minlength=n_distinct)  # occurrences
            else:
                # the (n+1)-gram starting at i ends with the n-gram starting at i+1, so each distinct
                # (n+1)-gram is one distinct (token before, n-gram) pair
                longer = ids[n + 1]  # (L-n,)
                suffix_of_longer = np.empty(len(codes[n + 1]), dtype=np.int64)
                suffix_of_longer[longer] = ids[n][1:1 + len(longer)]
                counts = np.bincount(suffix_of_longer, minlength=n_distinct)  # distinct tokens before
            counts = counts.astype(np.float64)
            context = codes[n] // V  # (U_n,) id of each n-gram's context
            n_contexts = len(codes[n - 1])
            self.levels.append(OrderCounts(
                codes=codes[n],
                counts=counts,
                context_total=np.bincount(context, weights=counts, minlength=n_contexts),
                context_followers=np.bincount(context[counts > 0], minlength=n_contexts).astype(np.float64),
                discount=discount(counts),
            ))
        self.train_tokens = L
        return self

    def _fitted(self) -> list[OrderCounts]:
        if self.levels is None:
            raise RuntimeError("KneserNeyLM: call fit(tokens) before asking for probabilities")
        return self.levels

    @property
    def discounts(self) -> list[float]:
        """[D_1, ..., D_N]."""
        return [level.discount for level in self._fitted()]

    # ------------------------------------------------------------------------------------------
    # The readable path: one probability, the formula written out
    # ------------------------------------------------------------------------------------------

    def _ngram_id(self, ngram: tuple[int, ...]) -> int:
        """The id of an n-gram among those of its order seen in training, or -1 if never seen."""
        ngram_id = 0  # the empty n-gram
        for n, token in enumerate(ngram, start=1):
            found = lookup(self._fitted()[n - 1].codes, np.array([ngram_id * self.vocab_size + token]))
            ngram_id = int(found[0])
            if ngram_id < 0:
                return -1
        return ngram_id

    def count(self, ngram: tuple[int, ...]) -> float:
        """c(ngram): raw count at the top order, continuation count below; 0 if never seen."""
        ngram_id = self._ngram_id(ngram)
        return 0.0 if ngram_id < 0 else float(self._fitted()[len(ngram) - 1].counts[ngram_id])

    def _context_total_and_followers(self, context: tuple[int, ...]) -> tuple[float, float]:
        """(c(h.), N1+(h.)) for the context h, at the order len(h) + 1."""
        context_id = self._ngram_id(context)
        if context_id < 0:
            return 0.0, 0.0
        level = self._fitted()[len(context)]
        return float(level.context_total[context_id]), float(level.context_followers[context_id])

    def _prob_at_order(self, n: int, context: tuple[int, ...], token: int) -> float:
        """P_n(token | context), context being the n-1 tokens before it."""
        if n == 0:
            return 1.0 / self.vocab_size
        lower = self._prob_at_order(n - 1, context[1:], token)  # P_{n-1}(w | h')
        total, followers = self._context_total_and_followers(context)  # c(h.), N1+(h.)
        if total == 0:
            return lower
        D = self._fitted()[n - 1].discount
        return max(self.count(context + (token,)) - D, 0.0) / total + D * followers / total * lower

    def prob(self, context, token: int) -> float:
        """P(token | context): P_N given the last N-1 tokens of `context`, or P_{k+1} when the
        context holds only k < N-1 tokens."""
        context = tuple(int(t) for t in self._as_tokens(np.asarray(context, dtype=np.int64), "context"))
        token = int(self._as_tokens(np.array([token]), "token")[0])
        context = context[len(context) - min(len(context), self.order - 1):]
        return self._prob_at_order(len(context) + 1, context, token)

    # ------------------------------------------------------------------------------------------
    # The fast paths: all next tokens at once, or every position of a text at once
    # ------------------------------------------------------------------------------------------

    def distribution(self, context) -> np.ndarray:
        """(V,) probabilities of the next token after `context` (its last N-1 tokens); sums to 1."""
        levels = self._fitted()
        context = self._as_tokens(np.asarray(context, dtype=np.int64), "context")
        context = context[len(context) - min(len(context), self.order - 1):]
        V, k = self.vocab_size, len(context)
        vocab = np.arange(V, dtype=np.int64)
        p = np.full(V, 1.0 / V)  # P_0
        for n in range(1, k + 2):
            h = tuple(int(t) for t in context[k - (n - 1):])  # the n-1 tokens before w
            h_id = self._ngram_id(h)
            level = levels[n - 1]
            if h_id < 0 or level.context_total[h_id] == 0:
                continue  # P_n = P_{n-1}
            total, followers, D = level.context_total[h_id], level.context_followers[h_id], level.discount
            c = gather(level.counts, lookup(level.codes, h_id * V + vocab))  # (V,) c(hw)
            p = np.maximum(c - D, 0.0) / total + D * followers / total * p
        return p

    def nats(self, tokens: np.ndarray, start: int = 0) -> np.ndarray:
        """-ln P(tokens[i] | the up to N-1 tokens before i within `tokens`), for i = start..len-1.

        tokens[i] with i < N-1 has only i tokens before it and is scored with P_{i+1}."""
        levels = self._fitted()
        text = self._as_tokens(tokens, "tokens")
        M, V = len(text), self.vocab_size
        if not 0 <= start <= M:
            raise UserError(f"start: expected 0..{M} (the number of tokens), got {start}")
        p = np.full(M, 1.0 / V)  # p[j] = P_{n}(text[j] | ...), updated order by order from P_0
        ids = np.zeros(M + 1, dtype=np.int64)  # id of the (n-1)-gram starting at each i (order 0: empty)
        for n in range(1, self.order + 1):
            starts = max(M - n + 1, 0)  # n-grams text[i:i+n], i = 0..M-n; the one at i ends at j = i+n-1
            level = levels[n - 1]
            h_id = ids[:starts]  # (starts,) context ids, -1 where the context was never seen
            seen_h = h_id >= 0
            hw_id = np.where(seen_h, lookup(level.codes, np.maximum(h_id, 0) * V + text[n - 1:n - 1 + starts]), -1)
            total = gather(level.context_total, h_id)  # c(h.)
            followers = gather(level.context_followers, h_id)  # N1+(h.)
            c = gather(level.counts, hw_id)  # c(hw)
            lower = p[n - 1:]  # P_{n-1} at the positions j = n-1..M-1
            D = level.discount
            with np.errstate(divide="ignore", invalid="ignore"):
                interpolated = np.maximum(c - D, 0.0) / total + D * followers / total * lower
            p[n - 1:] = np.where(total > 0, interpolated, lower)
            ids = hw_id
        return -np.log(p[start:])

    def bits_per_byte(self, tokens: np.ndarray, start: int = 0) -> float:
        """Mean bits per token of tokens[start:] (bits per byte when the tokens are bytes)."""
        nats = self.nats(tokens, start)
        if len(nats) == 0:
            raise UserError("tokens: nothing to score (need at least one token at or after start)")
        return float(nats.mean() / math.log(2))


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def read_utf8_bytes(path: str, flag_name: str) -> bytes:
    """The bytes of a UTF-8 text file; one-line UserError if it is missing, unreadable, not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{flag_name}: {path!r} does not exist; expected a UTF-8 text file") from None
    except OSError as error:
        raise UserError(f"{flag_name}: cannot read {path!r} ({error.strerror}); expected a UTF-8 text file") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{flag_name}: {path!r} is not UTF-8 text (invalid byte at offset {error.start}); "
                        "expected a UTF-8 text file") from None
    if not data:
        raise UserError(f"{flag_name}: {path!r} is empty; expected at least one byte of text")
    return data


def score(train_path: str, eval_path: str, order: int) -> dict:
    """Fit on TRAIN's bytes, score EVAL's bytes as one continuous text; the numbers as a dict."""
    start = time.perf_counter()
    train = np.frombuffer(read_utf8_bytes(train_path, "--train"), dtype=np.uint8)
    evaluation = np.frombuffer(read_utf8_bytes(eval_path, "--eval"), dtype=np.uint8)
    lm = KneserNeyLM(order).fit(train)
    bits = lm.bits_per_byte(evaluation)
    return {"bits_per_byte": bits, "order": order, "train_bytes": len(train),
            "eval_bytes": len(evaluation), "discounts": lm.discounts,
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m minilm.ngram",
                                description="Byte-level interpolated Kneser-Ney n-gram language model.")
    commands = parser.add_subparsers(dest="command", required=True)
    score_parser = commands.add_parser("score", help="bits per byte of EVAL under a model counted on TRAIN")
    score_parser.add_argument("--train", required=True, help="UTF-8 text file to count n-grams in")
    score_parser.add_argument("--eval", required=True, help="UTF-8 text file to score, as one continuous text")
    score_parser.add_argument("--order", type=int, default=6, choices=range(1, MAX_CLI_ORDER + 1),
                              metavar=f"1..{MAX_CLI_ORDER}", help="N, the longest n-gram (default 6)")
    score_parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        result = score(args.train, args.eval, args.order)
    except UserError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['bits_per_byte']:.4f} bits per byte: order {args.order}, "
              f"{result['train_bytes']:,} training bytes, {result['eval_bytes']:,} bytes scored "
              f"in {result['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
