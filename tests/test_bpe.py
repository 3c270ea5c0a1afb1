"""Tests of minilm.bpe: our trainers and encoder against the `tokenizers` library (the reference).

Parity means: the same merges in the same order and the same vocab ids as `tokenizers`'
BpeTrainer with the ByteLevel pre-tokenizer (no prefix space, GPT-2 regex) and the 256-byte
initial alphabet, trained with `train_from_iterator`; and, for encoding, the same ids as
`tokenizers.Tokenizer.from_str(our_json)` for any string.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies_bpe import corpora, examples, unicode_text
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from minilm import bpe
from minilm.bpe import BPETokenizer

DATA = Path(__file__).resolve().parent.parent / "data"
CORPORA = ["shakespeare", "wikitext", "bible", "stories", "poetry_zh", "legal"]
EOT = "<|endoftext|>"


# ------------------------------------------------------------------ the reference and helpers


def library_train(text, vocab_size, special_tokens=(), min_frequency=0) -> Tokenizer:
    """`tokenizers`' BPE trained the way our trainer is specified to match."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text] if isinstance(text, str) else text, trainer)
    return tok


def model_of(json_text: str) -> tuple[list, dict]:
    """(merges as [left, right] string pairs, vocab {token: id}) from a tokenizer.json."""
    model = json.loads(json_text)["model"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    return merges, model["vocab"]


def train_quietly(*args, **kwargs) -> BPETokenizer:
    """Train, ignoring the 'vocab larger than reachable' warning (tiny corpora trigger it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BPETokenizer.train(*args, **kwargs)


def assert_same_model(ours: BPETokenizer, theirs: Tokenizer) -> None:
    our_merges, our_vocab = model_of(ours.to_json())
    their_merges, their_vocab = model_of(theirs.to_str())
    first_difference = next((k for k, (a, b) in enumerate(zip(our_merges, their_merges, strict=False))
                             if a != b), min(len(our_merges), len(their_merges)))
    assert our_merges == their_merges, (
        f"merges differ from #{first_difference}: ours {our_merges[first_difference:][:3]} "
        f"theirs {their_merges[first_difference:][:3]} ({len(our_merges)} vs "
        f"{len(their_merges)} merges)")
    assert our_vocab == their_vocab


def corpus(name: str, limit: int | None = None) -> str:
    """A bundled corpus, or its first `limit` bytes (cut back to a whole character)."""
    data = (DATA / f"{name}.txt").read_bytes()
    return data[:limit].decode("utf-8", errors="ignore")


# ------------------------------------------------------------------ bytes and pre-tokenization


def test_byte_table_is_a_bijection_onto_the_library_alphabet():
    assert sorted(bpe.BYTE_TO_CHAR) == list(range(256))
    assert len(set(bpe.BYTE_TO_CHAR.values())) == 256
    assert set(bpe.BYTE_TO_CHAR.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert bpe.ALPHABET == sorted(pre_tokenizers.ByteLevel.alphabet())


def test_byte_chars_match_the_library_on_every_utf8_lead_and_continuation_byte():
    # Code points 1..0x7FF, a 3-byte and a 4-byte range: bytes 01-7F, 80-BF, C2-DF, E0-EF, F0-F4.
    text = "".join(map(chr, [*range(1, 0x800), *range(0xE000, 0xE100), *range(0x1F600, 0x1F700),
                             0x10FFFF, 0xFFFF, 0x10000]))
    whole = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    assert bpe.to_byte_chars(text) == whole.pre_tokenize_str(text)[0][0]


@examples(300)
@given(unicode_text(max_size=80))
def test_pretokenize_matches_the_library(text):
    expected = [word for word, _ in pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=True).pre_tokenize_str(text)]
    assert bpe.pretokenize(text) == expected


@examples(150)
@given(st.lists(st.sampled_from(["a", "Z", "9", " ", "  ", "\n", "\t", "\r", "\x0b", "\x0c",
                                 "\x1c", "\x1f", "\x00", "\x7f", "'s", "'ll", "'", "!", "é"]),
                max_size=40).map("".join))
def test_pretokenize_ascii_fast_path_matches_the_library(text):
    # Dense whitespace and control characters: the corner cases of the ASCII regex.
    expected = [w for w, _ in pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=True).pre_tokenize_str(text)]
    assert bpe.pretokenize(text) == expected


@pytest.mark.parametrize("name", CORPORA)
def test_pretokenize_in_pieces_matches_the_library_on_corpora(name, monkeypatch):
    # Small pieces force many cut points, which must not change the split.
    monkeypatch.setattr(bpe, "_PIECE_CHARS", 64)
    text = corpus(name, 60_000)
    assert bpe.pretokenize(text) == bpe._pretokenize_non_ascii(text)


# ------------------------------------------------------------------ trainers


@examples(60)
@given(corpora(), st.integers(1, 60), st.sampled_from([0, 0, 2, 3]),
       st.sampled_from([(), (EOT,), ("ab", "<s>")]))
def test_naive_and_incremental_trainers_give_identical_merges(text, extra, min_frequency,
                                                              special_tokens):
    vocab_size = 256 + len(special_tokens) + extra
    naive = train_quietly(text, vocab_size, min_frequency, special_tokens, trainer="naive")
    incremental = train_quietly(text, vocab_size, min_frequency, special_tokens)
    assert naive.merges == incremental.merges
    assert naive.id_to_token == incremental.id_to_token


def test_naive_and_incremental_agree_on_a_real_text():
    text = corpus("shakespeare", 20_000)
    naive = BPETokenizer.train(text, 256 + 60, trainer="naive")
    assert naive.merges == BPETokenizer.train(text, 256 + 60).merges


@examples(120)
@given(corpora(), st.integers(0, 80), st.sampled_from([0, 0, 1, 2, 4]),
       st.sampled_from([(), (EOT,), ("<pad>", EOT), ("ab",), ("[SEP]", "<s>", "<s>")]))
def test_merges_and_ids_match_the_library_on_generated_corpora(text, extra, min_frequency,
                                                               special_tokens):
    vocab_size = 256 + len(set(special_tokens)) + extra
    ours = train_quietly(text, vocab_size, min_frequency, special_tokens)
    assert_same_model(ours, library_train(text, vocab_size, special_tokens, min_frequency))


@pytest.mark.parametrize("name", CORPORA)
def test_merges_and_ids_match_the_library_on_each_corpus(name):
    # The first 300 KB of each corpus at vocab 1024 keeps this quick; the next test is whole.
    text = corpus(name, 300_000)
    specials = [EOT] if name == "stories" else []
    assert_same_model(BPETokenizer.train(text, 1024, special_tokens=specials),
                      library_train(text, 1024, specials))


def test_merges_and_ids_match_the_library_on_a_whole_corpus_with_special_token():
    text = corpus("stories")  # 2 MB, with <|endoftext|> between stories
    assert_same_model(BPETokenizer.train(text, 1024, special_tokens=[EOT]),
                      library_train(text, 1024, [EOT]))


def test_merges_match_with_min_frequency_and_a_list_of_documents():
    documents = corpus("legal", 100_000).split("\n\n")
    assert_same_model(train_quietly(documents, 2000, min_frequency=5),
                      library_train(documents, 2000, min_frequency=5))


def test_training_on_lines_matches_the_library_training_on_a_file(tmp_path):
    # `Tokenizer.train(files)` feeds the file line by line, so a whitespace run never spans a
    # line end; our equivalent is the list of lines (with their "\n") as documents.
    text = corpus("wikitext", 40_000) + "  indented\n\n   \n\tx  \n" + corpus("legal", 20_000)
    path = write(tmp_path, "mixed.txt", text.encode())
    theirs = Tokenizer(models.BPE())
    theirs.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    theirs.train([str(path)], trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    assert_same_model(BPETokenizer.train(text.splitlines(keepends=True), 700), theirs)


def test_ties_go_to_the_pair_of_smaller_ids():
    # Every pair occurs once: ties everywhere. The order is that of the ids: 'a' < 'b' < ...
    tok = BPETokenizer.train("dcba", 256 + 3)
    assert [tok.token_bytes(a) + tok.token_bytes(b) for a, b in tok.merges] == [
        b"ba", b"cba", b"dcba"]  # (b, a) is the smallest pair of ids; then (c, ba) < (d, c)
    assert_same_model(tok, library_train("dcba", 256 + 3))


def test_special_tokens_get_the_first_ids_and_text_after_them():
    tok = train_quietly("hi <|endoftext|> there", 300, special_tokens=["<pad>", EOT])
    assert tok.special_tokens == {"<pad>": 0, EOT: 1}
    assert tok.id_to_token[2] == "!"  # then the 256 byte characters in code-point order
    assert tok.vocab_size == 258 + len(tok.merges)


def test_special_token_text_in_training_data_is_counted_as_ordinary_words():
    # As in `tokenizers`: "<|endoftext|>" in the text is seen as "<|", "endoftext", "|>".
    tok = train_quietly("a<|endoftext|>b" * 20, 300, special_tokens=[EOT])
    learned = {tok.token_bytes(a) + tok.token_bytes(b) for a, b in tok.merges}
    assert b"endoftext" in learned and EOT.encode() not in learned
    assert tok.id_to_token.count(EOT) == 1


# ------------------------------------------------------------------ encoding and decoding


@pytest.fixture(scope="module")
def trained():
    """Ours and theirs on the same tokenizer.json: mixed English, Chinese, specials."""
    text = corpus("shakespeare", 60_000) + corpus("poetry_zh", 30_000) + corpus("stories",
                                                                                  40_000)
    ours = BPETokenizer.train(text, 1024, special_tokens=[EOT, "<|pad|>", "<|pad|><|pad|>"])
    return ours, Tokenizer.from_str(ours.to_json())


@examples(400)
@given(unicode_text(max_size=80))
def test_encode_matches_the_library_for_any_string(trained, text):
    ours, theirs = trained
    assert ours.encode(text) == theirs.encode(text).ids
    assert ours.decode(ours.encode(text)) == text


@examples(100)
@given(st.lists(st.one_of(unicode_text(max_size=10),
                          st.sampled_from([EOT, "<|pad|>", "<|pad|><|pad|>", "<|", "|>"])),
                max_size=8).map("".join))
def test_special_tokens_are_never_split_and_optional(trained, text):
    ours, theirs = trained
    assert ours.encode(text) == theirs.encode(text).ids
    assert ours.decode(ours.encode(text)) == text
    plain = ours.encode(text, allow_special=False)
    assert not set(plain) & set(ours.special_tokens.values())
    assert ours.decode(plain) == text
    theirs.encode_special_tokens = True
    try:
        assert plain == theirs.encode(text).ids
    finally:
        theirs.encode_special_tokens = False


def test_the_longer_of_two_overlapping_special_tokens_wins(trained):
    ours, _ = trained
    assert ours.encode("<|pad|><|pad|><|pad|>") == [
        ours.special_tokens["<|pad|><|pad|>"], ours.special_tokens["<|pad|>"]]


@pytest.mark.parametrize("name", CORPORA)
def test_encode_matches_the_library_on_each_corpus(trained, name):
    ours, theirs = trained
    text = corpus(name, 100_000)
    ids = ours.encode(text)
    assert ids == theirs.encode(text).ids
    assert ours.decode(ids) == text
    assert ours.num_bytes(ids) == len(text.encode("utf-8"))


@examples(200)
@given(st.data())
def test_decode_matches_the_library_and_never_raises(trained, data):
    ours, theirs = trained
    ordinary = st.integers(len(ours.special_tokens), ours.vocab_size - 1)
    ids = data.draw(st.lists(ordinary, max_size=12))
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=False)


def test_decode_of_a_cut_multibyte_character_gives_the_replacement_character(trained):
    ours, _ = trained
    first_byte = ours.token_to_id[bpe.BYTE_TO_CHAR[0xE4]]  # lead byte of a 3-byte character
    assert ours.decode([first_byte]) == "\ufffd"
    assert ours.decode(ours.encode("a") + [first_byte]) == "a\ufffd"
    assert ours.decode([ours.vocab_size, -1]) == "\ufffd\ufffd"  # unknown ids, no exception
    with pytest.raises(ValueError, match="out of range"):
        ours.token_bytes(ours.vocab_size)


def test_token_bytes_and_num_bytes(trained):
    ours, _ = trained
    assert ours.token_bytes(ours.special_tokens[EOT]) == EOT.encode()
    assert ours.token_bytes(ours.token_to_id["Ġ"]) == b" "
    assert ours.num_bytes(ours.encode("héllo 世界")) == len("héllo 世界".encode())


def test_a_special_token_that_is_also_a_merge_matches_the_library():
    # A special token spelled like an ordinary token ("ab") shares its id with the merge.
    text = "ab ab ab abc"
    ours = train_quietly(text, 270, special_tokens=["ab"])
    assert_same_model(ours, library_train(text, 270, ["ab"]))
    theirs = Tokenizer.from_str(ours.to_json())
    for probe in ["ab", "abc ab", "xaby"]:
        assert ours.encode(probe) == theirs.encode(probe).ids
        assert ours.decode(ours.encode(probe)) == probe


# ------------------------------------------------------------------ saving and loading


def test_save_load_round_trip_ours_and_theirs(trained, tmp_path):
    ours, _ = trained
    path = tmp_path / "tokenizer.json"
    ours.save(path)
    again = BPETokenizer.load(path)
    assert (again.id_to_token, again.merges, again.special_tokens) == (
        ours.id_to_token, ours.merges, ours.special_tokens)
    assert again.to_json() == ours.to_json()
    theirs = Tokenizer.from_file(str(path))
    sample = corpus("stories", 5000) + EOT + corpus("poetry_zh", 2000)
    assert again.encode(sample) == theirs.encode(sample).ids == ours.encode(sample)


def test_a_file_saved_by_the_library_loads_in_ours(tmp_path):
    text = corpus("wikitext", 50_000)
    theirs = library_train(text, 600, [EOT])
    path = tmp_path / "theirs.json"
    theirs.save(str(path))
    ours = BPETokenizer.load(path)
    sample = corpus("wikitext", 60_000)[50_000:] + EOT + "naïve 😀"
    assert ours.encode(sample) == theirs.encode(sample).ids
    assert ours.decode(ours.encode(sample)) == sample


def test_old_style_merges_written_as_strings_load(trained):
    ours, _ = trained
    document = json.loads(ours.to_json())
    document["model"]["merges"] = [" ".join(pair) for pair in document["model"]["merges"]]
    again = BPETokenizer.from_json(json.dumps(document))
    assert again.merges == ours.merges


# ------------------------------------------------------------------ bad input


def write(tmp_path, name, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_missing_empty_and_non_utf8_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="nope.txt: no such file"):
        bpe.read_text(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="empty.txt: file is empty"):
        bpe.read_text(write(tmp_path, "empty.txt", b""))
    latin1 = write(tmp_path, "latin1.txt", "café au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not valid UTF-8 at byte offset 3 "
                                         r"\(byte 0xe9\)"):
        bpe.read_text(latin1)
    assert bpe.read_text(latin1, errors="replace") == "caf\ufffd au lait"


def test_bad_training_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match=r"vocab_size=256 is too small.*at least 257"):
        BPETokenizer.train("hello", 256, special_tokens=[EOT])
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        BPETokenizer.train("hello", 100)
    with pytest.raises(ValueError, match="trainer='fast'"):
        BPETokenizer.train("hello", 300, trainer="fast")
    with pytest.raises(ValueError, match="special token 'é' is spelled in byte characters"):
        BPETokenizer.train("hello", 300, special_tokens=["é"])
    with pytest.raises(ValueError, match="special token 'Ã©' is spelled in byte characters"):
        BPETokenizer.train("hello", 300, special_tokens=["Ã©"])
    with pytest.raises(ValueError, match="non-empty"):
        BPETokenizer.train("hello", 300, special_tokens=[""])


def test_a_non_ascii_special_token_that_no_merge_can_spell_is_accepted():
    text = "x<é>y é é <é>"
    ours = train_quietly(text, 300, special_tokens=["<é>", "<|ü|>"])
    assert_same_model(ours, library_train(text, 300, ["<é>", "<|ü|>"]))
    theirs = Tokenizer.from_str(ours.to_json())
    for probe in [text, "<|ü|>ü<é"]:
        assert ours.encode(probe) == theirs.encode(probe).ids
        assert ours.decode(ours.encode(probe)) == probe


def test_a_vocab_larger_than_reachable_stops_early_with_a_warning():
    with pytest.warns(UserWarning, match=r"vocab_size=1000 .* only 3 merges were possible"):
        tok = BPETokenizer.train("abcd", 1000)
    assert tok.vocab_size == 256 + 3
    with pytest.warns(UserWarning, match="only 1 merges were possible.*min_frequency=3"):
        BPETokenizer.train("aa aa aa bc bc", 1000, min_frequency=3)


@pytest.mark.parametrize("document, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "no 'model'"),
    ('{"model": {"type": "WordPiece", "vocab": {}}}', "model type is 'WordPiece'"),
    ('{"model": {"type": "BPE", "vocab": {}, "merges": []}, "pre_tokenizer": '
     '{"type": "Whitespace"}}', "pre_tokenizer must be ByteLevel"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": '
     '{"type": "ByteLevel", "add_prefix_space": false}}', "lacks 255 of the 256 byte"),
    ('{"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel"}}',
     "not a byte-level BPE tokenizer.json"),
])
def test_malformed_or_foreign_tokenizer_json_is_refused(document, message):
    with pytest.raises(ValueError, match=message):
        BPETokenizer.from_json(document)


def test_inconsistent_tokenizer_json_is_refused(trained, tmp_path):
    ours, _ = trained
    document = json.loads(ours.to_json())
    document["model"]["merges"].append(["Ġ", "nothere"])
    with pytest.raises(ValueError, match="uses a token that is not in the vocab"):
        BPETokenizer.from_json(json.dumps(document))
    document = json.loads(ours.to_json())
    del document["model"]["vocab"][document["model"]["merges"][0][0] +
                                   document["model"]["merges"][0][1]]
    with pytest.raises(ValueError):
        BPETokenizer.from_json(json.dumps(document))
    with pytest.raises(ValueError, match="missing.json: no such tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.json")


# ------------------------------------------------------------------ command line


def test_cli_train_encode_stats(tmp_path, capsys):
    source = write(tmp_path, "small.txt", corpus("shakespeare", 30_000).encode())
    out = tmp_path / "tok.json"
    assert bpe.main(["train", str(source), "--vocab-size", "400", "--out", str(out),
                     "--special", EOT, "--quiet"]) == 0
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 400 and tok.special_tokens == {EOT: 0}
    assert bpe.main(["encode", "--tokenizer", str(out), "--text", "To be, or not"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert [int(i) for i in printed.split()] == tok.encode("To be, or not")
    assert bpe.main(["stats", "--tokenizer", str(out), str(source), "--show", "3"]) == 0
    report = capsys.readouterr().out
    assert "bytes/token" in report and "first 3 merges" in report and "longest 3 tokens" in report


def test_training_shows_a_progress_bar_when_asked(capsys):
    BPETokenizer.train(corpus("bible", 20_000), 300, progress=True)
    assert "merges" in capsys.readouterr().err


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = write(tmp_path, "bad.txt", b"ok\xff\xfe")
    assert bpe.main(["train", str(bad), "--vocab-size", "300", "--out",
                     str(tmp_path / "t.json"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "byte offset 2" in error and "--errors replace" in error
    assert bpe.main(["train", str(bad), "--vocab-size", "300", "--out",
                     str(tmp_path / "t.json"), "--quiet", "--errors", "replace"]) == 0
    assert "warning: vocab_size=300" in capsys.readouterr().err
    assert bpe.main(["train", str(bad), "--vocab-size", "10", "--out",
                     str(tmp_path / "t.json"), "--quiet", "--errors", "replace", "--overwrite"]) == 2
    assert "too small" in capsys.readouterr().err


def test_the_command_line_trains_and_encodes_without_importing_torch(tmp_path):
    """`python -m minilm.bpe` needs no PyTorch; `import minilm` must not pull it in (it is lazy)."""
    repo = Path(__file__).resolve().parent.parent
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat; the cat ate the rat. " * 50, encoding="utf-8")
    tokenizer = tmp_path / "tok.json"
    train = ["train", str(corpus), "--vocab-size", "280", "--out", str(tokenizer), "--quiet"]
    encode = ["encode", "--tokenizer", str(tokenizer), "--text", "the cat"]
    program = ("import runpy, sys\n"
               f"for argv in ({train!r}, {encode!r}):\n"
               "    sys.argv = ['bpe'] + argv\n"
               "    try:\n        runpy.run_module('minilm.bpe', run_name='__main__')\n"
               "    except SystemExit as exit_:\n        assert not exit_.code, exit_.code\n"
               "print('loaded torch:', 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=repo, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo)}, check=False)
    assert done.returncode == 0, done.stderr
    assert tokenizer.is_file() and done.stdout.strip().endswith("loaded torch: False"), done.stdout
