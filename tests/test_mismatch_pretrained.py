"""The `pretrained` experiment of the mismatch grid: `python -m minilm.mismatch --init-from hf:DIR`.

The "pre-trained" model is a tiny random minilm GPT with a small BPE tokenizer, written as a
Hugging Face GPT-2 folder with minilm.hf's own functions (config.json, pytorch_model.bin, tokenizer
files): no transformers, no download. The micro grid with it runs once for the module (seconds).
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_mismatch import run_expecting_error
from tolerances import assert_close

from minilm import hf, mismatch
from minilm.bpe import BPETokenizer
from minilm.cli import UserError
from minilm.data import load_corpus, read_corpus, validation_windows
from minilm.gpt import GPT, GPTConfig
from minilm.mismatch import experiments as registry

DOMAINS = ["shakespeare", "bible"]  # the transfer pair's default: fine-tuned on bible
MICRO = ["--preset", "micro", "--domains", ",".join(DOMAINS)]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A Hugging Face GPT-2 folder holding a tiny random minilm GPT and a BPE of 60 merges."""
    folder = tmp_path_factory.mktemp("tiny_pretrained")
    text = "".join(read_corpus(name)[2][:20_000].decode("utf-8", "ignore") for name in DOMAINS)
    tokenizer = BPETokenizer.train(text, 256 + 60)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16))
    (folder / "config.json").write_text(json.dumps(hf.hf_config_from_gpt_config(model.config, tokenizer)))
    torch.save(hf.hf_state_from_minilm(model.state_dict(), model.config), folder / "pytorch_model.bin")
    for name, content in hf.tokenizer_files(tokenizer, model.config.block_size).items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pretrained_run(tiny_gpt2, tmp_path_factory):
    """(out dir, report.json, the TrainConfig of every model trained) of the micro grid with the tiny model."""
    out_dir = tmp_path_factory.mktemp("pretrained_run") / "report"
    trained = []
    original = mismatch.Grid.train

    def recording(self, config, model=None):
        trained.append(config)
        return original(self, config, model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mismatch.Grid, "train", recording)
        code = mismatch.main(MICRO + ["--experiments", "pretrained", "--init-from", f"hf:{tiny_gpt2}",
                                      "--out", str(out_dir)])
    assert code == 0
    return out_dir, json.loads((out_dir / "report.json").read_text()), trained


def bits_per_byte_by_hand(model, tokenizer, domain: str, block_size: int, max_windows: int) -> float:
    """The definition, written out: nats over the target tokens / ln 2 / the bytes they cover."""
    corpus = load_corpus(domain, tokenizer, cache_dir=None)
    windows = validation_windows(corpus.val, block_size, max_windows)
    with torch.no_grad():
        logits, _ = model.eval()(windows[:, :-1])
    nats = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="sum")
    covered = sum(len(tokenizer.decode([t]).encode("utf-8")) for t in windows[:, 1:].reshape(-1).tolist())
    return float(nats) / math.log(2) / covered


def test_the_pretrained_row_is_bits_per_byte_over_its_own_tokens(tiny_gpt2, pretrained_run):
    _, report, _ = pretrained_run
    p = report["pretrained"]
    model, tokenizer = hf.from_hf(tiny_gpt2)
    assert p["block_size"] == 24 == min(report["config"]["block_size"], model.config.block_size)
    assert p["params"] == model.num_params() and p["vocab_size"] == tokenizer.vocab_size
    for domain in DOMAINS:
        expected = bits_per_byte_by_hand(model, tokenizer, domain, 24, report["config"]["eval_windows"])
        assert_close(p["before"][domain], expected, "forward_float32")
        assert p["bytes_per_token"][domain] > 1.2  # its tokens are not bytes: the byte count is not the token count


def test_fine_tuning_lowers_the_target_and_forgetting_is_the_mean_over_the_others(tiny_gpt2, pretrained_run):
    _, report, trained = pretrained_run
    tuned = [config for config in trained if config.init_from]
    assert len(trained) == 2 * 2 + 1 and len(tuned) == 1  # the matrix's 4 specialists, and the fine-tuning
    assert tuned[0].init_from == f"hf:{tiny_gpt2}" and tuned[0].data == "bible"
    assert tuned[0].eval_extra == ["shakespeare"] and tuned[0].block_size == 24
    p = report["pretrained"]
    assert p["target"] == "bible" and p["others"] == ["shakespeare"]
    assert p["after"]["bible"] < p["before"]["bible"]  # the same model, fine-tuned on bible: lower there
    assert p["forgetting"] == pytest.approx(p["after"]["shakespeare"] - p["before"]["shakespeare"])
    assert p["target_change"] == pytest.approx(p["after"]["bible"] - p["before"]["bible"])
    assert p["lr"] == pytest.approx(0.1 * report["config"]["lr"])
    assert p["specialist"] == {d: report["matrix"][d][d] for d in DOMAINS}
    curve = p["curve"]
    assert curve["step"][0] == 0 and curve["step"][-1] == report["config"]["steps"]
    assert curve["others_mean"] == curve["shakespeare"] and curve["bible"][-1] < curve["bible"][0]


def test_the_report_has_the_section_and_the_picture(pretrained_run):
    out_dir, report, _ = pretrained_run
    assert report["experiments"] == ["matrix", "pretrained"]
    text = (out_dir / "report.md").read_text()
    assert "## 2. A pre-trained model: `hf:" in text and "fine-tuned on bible" in text
    assert "How to read it" in text
    if report["plot_note"] is None:
        assert (out_dir / "pretrained.png").is_file() and "pretrained.png" in report["figures"]


def test_the_experiment_runs_only_with_init_from():
    assert "pretrained" not in [e.name for e in registry.select(None)]
    assert [e.name for e in registry.select(None, given=("--init-from",))][-1] == "pretrained"
    assert [e.name for e in registry.select("pretrained", given=("--init-from",))] == ["matrix", "pretrained"]
    with pytest.raises(UserError, match="pretrained runs only with --init-from"):
        registry.select("pretrained")


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started; bad input must be refused before any training")

    monkeypatch.setattr(mismatch.Grid, "train", refuse)


def test_init_from_without_the_hf_prefix_is_one_line_and_writes_nothing(tmp_path, tiny_gpt2, capsys, no_training):
    out_dir = tmp_path / "out"
    line = run_expecting_error(MICRO + ["--init-from", str(tiny_gpt2), "--out", str(out_dir)], capsys)
    assert "--init-from" in line and "expected hf:NAME_OR_DIR" in line
    assert not out_dir.exists()


def test_a_folder_that_is_not_gpt2_is_one_line_and_writes_nothing(tmp_path, tiny_gpt2, capsys, no_training):
    other = tmp_path / "bert"
    other.mkdir()
    for path in tiny_gpt2.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(config, model_type="bert")))
    out_dir = tmp_path / "out"
    line = run_expecting_error(MICRO + ["--experiments", "pretrained", "--init-from", f"hf:{other}",
                                        "--out", str(out_dir)], capsys)
    assert "--init-from" in line and "model_type='bert'" in line
    assert not out_dir.exists()
    line = run_expecting_error(MICRO + ["--experiments", "pretrained", "--out", str(out_dir)], capsys)
    assert "runs only with --init-from" in line and not out_dir.exists()
