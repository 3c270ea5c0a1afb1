"""The naive BPE encoder (minbpe's loop) and the heap encoder give the same ids, and the module's
worked example (ids in the `tokenizers` order, not byte values) holds as written."""
from __future__ import annotations

import doctest
import warnings

from hypothesis import given
from strategies_bpe import corpora, examples, unicode_text

import minilm.bpe
from minilm.bpe import BPETokenizer, pretokenize


@examples(60)
@given(corpus=corpora(), text=unicode_text(80))
def test_naive_and_heap_encoders_give_the_same_ids(corpus, text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a small corpus may run out of pairs before 80 merges
        tok = BPETokenizer.train(corpus + " " + corpus[::-1], 256 + 80)
    for word in pretokenize(corpus + text):
        assert tok.encode_word_naive(word) == tok.encode_word(word)


def test_the_module_docstring_examples_hold():
    result = doctest.testmod(minilm.bpe, raise_on_error=False, verbose=False)
    assert result.attempted >= 10 and result.failed == 0
