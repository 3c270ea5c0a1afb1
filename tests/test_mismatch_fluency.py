"""The mismatch report's `fluency_novelty` experiment: the transfer source's seed-0 specialist sampled
under temperature x top-p, scored for novelty and by the domain's Kneser-Ney n-gram. It runs in the
shared micro grid; this checks that the section is there and that its numbers are those of the sweep
in minilm/fluency_novelty.py run on that very specialist (its saved weights), not on another model."""
from __future__ import annotations

import torch
from test_mismatch import MICRO_DOMAINS, run_micro_once

from minilm import fluency_novelty
from minilm.data import read_corpus, split_point
from minilm.mismatch.config import PRESETS
from minilm.mismatch.domains import choose_domains, load_domains
from minilm.mismatch.experiments.fluency_novelty import sweep_config
from minilm.mismatch.grid import Grid


def test_the_section_is_the_sweep_of_the_saved_specialist(tmp_path_factory):
    out_dir, report, code = run_micro_once(tmp_path_factory)
    assert code == 0
    result = report["fluency_novelty"]
    domain = report["transfer_pair"][0]
    assert result["domain"] == domain
    assert len(result["points"]) == len(fluency_novelty.DEFAULT_SETTINGS)
    title = f"Quality against diversity in generation: {domain}'s specialist (seed 0)"
    assert title in (out_dir / "report.md").read_text()

    config = PRESETS["micro"]
    domains = load_domains(choose_domains(",".join(MICRO_DOMAINS), {}), config)
    grid = Grid(config, domains, tuple(report["transfer_pair"]))
    model = grid.build(grid.train_config(domain, seed=0))
    model.load_state_dict(torch.load(out_dir / "parts" / f"matrix.{domain}.seed0.pt", weights_only=True))
    _, _, data = read_corpus(grid.domains[domain].spec)
    cut = split_point(data)
    again = fluency_novelty.sweep(model.eval(), grid.tokenizer, data[:cut], data[cut:], sweep_config(grid),
                                  progress=False)
    for ours, theirs in zip(result["points"], again["points"], strict=True):
        assert ours["novelty"]["per_seed"] == theirs["novelty"]["per_seed"]
        assert ours["ngram_bpb"]["per_seed"] == theirs["ngram_bpb"]["per_seed"]
