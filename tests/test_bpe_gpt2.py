"""The naive BPE encoder (minbpe's loop) and the heap encoder give the same ids, and the module's
worked example (ids in the `tokenizers` order, not byte values) holds as written."""
from __future__ import annotations

import doctest
import json
import warnings

import pytest
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


def _gpt2_style_document(tok: BPETokenizer) -> dict:
    """What GPT-2's own tokenizer.json adds to ours: a ByteLevel post-processor and empty affixes."""
    document = json.loads(tok.to_json())
    document["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                  "use_regex": True}
    document["model"].update(continuing_subword_prefix="", end_of_word_suffix="", ignore_merges=False)
    return document


def test_gpt2_style_tokenizer_json_loads_and_foreign_parts_are_refused():
    tok = BPETokenizer.train("low lower lowest newest widest", 256 + 12)
    again = BPETokenizer.from_json(json.dumps(_gpt2_style_document(tok)))
    assert again.merges == tok.merges and again.encode("lowest widest") == tok.encode("lowest widest")
    for part, value, message in [
        ("post_processor", {"type": "TemplateProcessing"}, "post_processor of type 'TemplateProcessing'"),
        ("decoder", {"type": "WordPiece"}, "decoder of type 'WordPiece'"),
    ]:
        document = _gpt2_style_document(tok)
        document[part] = value
        with pytest.raises(ValueError, match=message):
            BPETokenizer.from_json(json.dumps(document))
    document = _gpt2_style_document(tok)
    document["model"]["ignore_merges"] = True
    with pytest.raises(ValueError, match="ignore_merges"):
        BPETokenizer.from_json(json.dumps(document))


def test_added_tokens_past_the_model_vocab_and_gpt2_files_round_trip():
    tok = BPETokenizer.train("low lower lowest newest widest", 256 + 12)
    document = json.loads(tok.to_json())
    eot_id = len(document["model"]["vocab"])
    document["added_tokens"] = [{"id": eot_id, "content": "<|endoftext|>", "special": True}]
    with_eot = BPETokenizer.from_json(json.dumps(document))
    assert with_eot.special_tokens == {"<|endoftext|>": eot_id}
    assert with_eot.encode("lowest<|endoftext|>") == tok.encode("lowest") + [eot_id]
    vocab, merges = with_eot.to_gpt2_files()
    assert merges.startswith("#version: 0.2\n")
    again = BPETokenizer.from_gpt2_files(vocab, merges, ["<|endoftext|>"])
    assert again.to_json() == with_eot.to_json()
    with pytest.raises(ValueError, match="merges line 1 is 'l o w', not 'left right'"):
        BPETokenizer.from_gpt2_files(vocab, "l o w\n")
