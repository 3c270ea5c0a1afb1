"""Special tokens of the byte tokenizer: the one mechanism for extra tokens (a mask, domain tags)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minilm.data import ByteTokenizer, UserError, tokenize, tokenizer_from_json
from tests.strategies import examples

SPECIALS = ("<mask>", "<shakespeare>", "<bible>")


def test_special_ids_follow_the_bytes_in_order():
    tokenizer = ByteTokenizer(special_tokens=SPECIALS)
    assert tokenizer.vocab_size == 256 + 3
    assert [tokenizer.special_id(name) for name in SPECIALS] == [256, 257, 258]
    assert ByteTokenizer(special_tokens=("<mask>",)).vocab_size == 257
    assert ByteTokenizer().vocab_size == 256


def test_unknown_special_token_is_one_line_user_error():
    with pytest.raises(UserError, match=r"'<cls>'.*'<mask>'") as info:
        ByteTokenizer(special_tokens=("<mask>",)).special_id("<cls>")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="none"):
        ByteTokenizer().special_id("<mask>")


@pytest.mark.parametrize("bad", ["", "x", "\n", ("<a>", "<a>"), 7])
def test_empty_one_byte_repeated_or_non_text_special_tokens_are_refused(bad):
    specials = bad if isinstance(bad, tuple) else (bad,)
    with pytest.raises(UserError) as info:
        ByteTokenizer(special_tokens=specials)
    assert "\n" not in str(info.value)


def test_a_two_byte_character_is_a_valid_special_token():
    assert ByteTokenizer(special_tokens=("é",)).special_id("é") == 256  # two UTF-8 bytes


def test_encode_maps_special_text_only_when_allowed():
    tokenizer = ByteTokenizer(special_tokens=SPECIALS)
    text = "<bible>In the<mask>"
    assert tokenizer.encode(text) == list(text.encode("utf-8"))  # the default: all bytes
    assert tokenizer.encode(text, allow_special=True) == [258, *b"In the", 256]
    # the plain tokenizer ignores allow_special: it has no special tokens
    assert ByteTokenizer().encode(text, allow_special=True) == list(text.encode("utf-8"))


def test_the_longest_special_token_wins_where_two_match():
    tokenizer = ByteTokenizer(special_tokens=("<a>", "<a><b>"))
    assert tokenizer.encode("<a><b>x<a>", allow_special=True) == [257, ord("x"), 256]


def test_decode_and_token_bytes_give_the_text_but_num_bytes_counts_only_text_bytes():
    tokenizer = ByteTokenizer(special_tokens=SPECIALS)
    ids = tokenizer.encode("<shakespeare>Ay<mask>", allow_special=True)
    assert tokenizer.decode(ids) == "<shakespeare>Ay<mask>"
    assert tokenizer.token_bytes(257) == b"<shakespeare>"
    assert tokenizer.token_bytes(ord("A")) == b"A"
    assert tokenizer.num_bytes(ids) == 2  # "Ay": the tag and the mask cover no byte of the text
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.token_bytes(259)


def test_decode_never_raises_on_ids_outside_the_vocabulary():
    assert ByteTokenizer(special_tokens=("<mask>",)).decode([ord("a"), 257, -1]) == "a\ufffd\ufffd"


def test_json_round_trip_keeps_special_tokens_and_old_json_still_loads():
    tokenizer = ByteTokenizer(special_tokens=SPECIALS)
    again = tokenizer_from_json(tokenizer.to_json())
    assert isinstance(again, ByteTokenizer)
    assert again.special_tokens == tokenizer.special_tokens and again.vocab_size == 259
    assert again.to_json() == tokenizer.to_json()
    old = tokenizer_from_json(json.dumps({"type": "bytes"}))
    assert old.vocab_size == 256 and old.special_tokens == {}
    assert json.loads(ByteTokenizer().to_json()) == {"type": "bytes"}  # unchanged for plain bytes
    with pytest.raises(UserError):
        tokenizer_from_json(json.dumps({"type": "bytes", "special_tokens": "<mask>"}))


def test_the_tokenize_fast_path_equals_encode_without_special_tokens():
    tokenizer = ByteTokenizer(special_tokens=("<mask>",))
    data = "a <mask> b".encode("utf-8")
    assert tokenize(data, tokenizer).tolist() == tokenizer.encode(data.decode("utf-8"))


@examples(40)
@given(st.text(max_size=60), st.lists(st.sampled_from(SPECIALS), max_size=4))
def test_tokenizer_contract_holds_with_special_tokens(text, inserted):
    """decode(encode(t)) == t, and num_bytes counts the text's bytes, specials or not."""
    text = text.replace("<", "(")  # no special token's text inside the plain text
    tokenizer = tokenizer_from_json(ByteTokenizer(special_tokens=SPECIALS).to_json())
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.num_bytes(ids) == len(text.encode("utf-8"))
    tagged = "".join(inserted) + text
    tagged_ids = tokenizer.encode(tagged, allow_special=True)
    assert tokenizer.decode(tagged_ids) == tagged
    assert b"".join(tokenizer.token_bytes(i) for i in tagged_ids) == tagged.encode("utf-8")
    assert len(tagged_ids) == len(ids) + len(inserted)
    assert tokenizer.num_bytes(tagged_ids) == len(text.encode("utf-8"))


def test_a_checkpoint_carries_the_mask_token_and_loads_consistently(tmp_path):
    from minilm.checkpoint import CheckpointError, capture_rng_state, load_model, save_checkpoint
    from minilm.gpt import GPT, GPTConfig

    tokenizer = ByteTokenizer(special_tokens=("<mask>",))
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8))
    checkpoint = {"model_kind": "gpt", "model_config": model.config.to_dict(), "model": model.state_dict(),
                  "step": 0, "tokenizer": tokenizer.to_json(), "rng": capture_rng_state()}
    _, loaded, _ = load_model(save_checkpoint(tmp_path / "mlm.pt", checkpoint))
    assert loaded.vocab_size == 257 and loaded.special_id("<mask>") == 256
    checkpoint["tokenizer"] = ByteTokenizer().to_json()  # a 257-way model with a 256-token tokenizer
    with pytest.raises(CheckpointError, match="vocab_size 257"):
        load_model(save_checkpoint(tmp_path / "bad.pt", checkpoint))
