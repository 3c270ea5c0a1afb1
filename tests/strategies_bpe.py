"""Hypothesis strategies for the BPE tests: text that stresses a byte-level tokenizer.

`unicode_text()` mixes ASCII letters, digits, punctuation and contractions with whitespace runs
(spaces, newlines, tabs, the odd Unicode spaces), CJK, emoji (4-byte UTF-8, with ZWJ), combining
marks, and any other code point, so pre-tokenization, multi-byte characters and the GPT-2 regex
corner cases all get exercised. `corpora()` builds training texts that repeat a few such words,
so that BPE has real pairs to merge and real ties to break.
"""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ASCII_BITS = list("abcdeghilnorstuTHE0123456789.,;:!?'\"-_()[]<>|")
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
SPACES = [" ", "  ", "\n", "\n\n", "\t", " \n", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0",
          "\u2003", "\u3000"]
CJK = list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年床前明月光疑是地上霜")
EMOJI = ["😀", "👍", "🎉", "👩\u200d💻", "🇫🇷", "❤️"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "\u0301", "\u0327", "o\u0302\u0323"]

characters = st.one_of(
    st.sampled_from(ASCII_BITS),
    st.sampled_from(SPACES),
    st.sampled_from(CJK),
    st.sampled_from(EMOJI),
    st.sampled_from(COMBINING),
    st.characters(codec="utf-8"),  # any code point except surrogates
)


def unicode_text(max_size: int = 60):
    """Any text, biased towards what matters to a byte-level BPE (may be empty)."""
    pieces = st.one_of(characters, st.sampled_from(CONTRACTIONS))
    return st.lists(pieces, max_size=max_size).map("".join)


@st.composite
def corpora(draw, max_words: int = 80):
    """A small training text: a few 'words' (from `unicode_text`) repeated with separators."""
    vocabulary = draw(st.lists(unicode_text(max_size=8).filter(bool), min_size=1, max_size=8))
    separators = st.sampled_from([" ", " ", " ", "\n", "", "  ", "\n\n", ". "])
    parts = draw(st.lists(st.tuples(st.sampled_from(vocabulary), separators), min_size=1,
                          max_size=max_words))
    return "".join(word + separator for word, separator in parts)


def examples(n: int):
    """n examples, deterministic (derandomized), no deadline: the project's settings."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
