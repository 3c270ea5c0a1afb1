"""Experiment: a truly pre-trained model as a row of the matrix, then fine-tuned on one domain.

`--init-from hf:NAME_OR_DIR` names a Hugging Face GPT-2 (a local folder, or a hub name), loaded by
`minilm.hf` with its own tokenizer. Its row of the matrix: on every domain's held-out split, at
most `eval_windows` windows of T = min(block_size, the model's context) of ITS tokens, and

    bits per byte = (sum of nats over the target tokens) / ln 2 / (UTF-8 bytes those tokens cover)

so the number compares with the byte models' rows although its tokens are not bytes (a window of T
BPE tokens covers several times T bytes: more context than the byte models get; the report says
how many bytes a token covers on each domain).

Then the model is fine-tuned on the transfer target B (the second domain of `--transfer`) with the
preset's steps, batch and window (in its tokens), at a tenth of the preset's learning rate (the
preset's rates are for models trained from scratch; a pre-trained model needs smaller steps), and
scored again. Forgetting is the mean over the other domains D (every domain but B) of

    forgetting = mean over d in D of (bpb_after(d) - bpb_before(d))

There is no replay: the corpus the model was pre-trained on is not here. Along the fine-tuning,
training's own evaluation scores B and every other domain (`curve_windows` windows each, every
steps / curve_points steps, plus once before the first step).

Jobs: `pretrained.score` (no training) and `pretrained.finetune` (one model); neither needs the
other's model, so they may run on different ranks.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from minilm.cli import UserError

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table

FINETUNE_LR_SCALE = 0.1  # fine-tuning rate = this x the preset's rate (and the same for its floor)
LOGITS_PER_BATCH = 2**25  # evaluation batches hold at most this many logits (B x T x V floats, 128 MB)


def hf_name(init_from: str) -> str:
    return init_from.removeprefix("hf:")


def check_start_model(init_from: str) -> None:
    """Load the model and its tokenizer once, so that a wrong folder (no config.json, not a GPT-2,
    missing tensors, a tokenizer of another size) is refused in one line before anything trains."""
    from minilm.training import load_hf

    try:
        load_hf(hf_name(init_from), "--init-from")
    except UserError as error:
        message = str(error).removeprefix("--hf: ").removeprefix("--init-from: ")
        raise UserError(f"--init-from {init_from}: {message}") from None


def window_and_vocab(grid: Grid) -> tuple[int, int]:
    """(T, V): the preset's window in the model's tokens, cut to the model's own context; and the
    model's vocabulary size (both from its config.json)."""
    from minilm.hf import read_hf_config, resolve_hf_folder

    fields = read_hf_config(resolve_hf_folder(hf_name(grid.config.init_from), "--init-from"))
    return min(grid.config.block_size, fields["block_size"]), fields["vocab_size"]


def eval_batch_size(block_size: int, vocab_size: int) -> int:
    """Windows per evaluation batch: few enough that the float32 logits stay small (GPT-2's 50,257
    logits per position, at the byte models' batch of 64 windows of 64, would take 0.8 GB before
    the cross-entropy's own copies), many enough that the matrix products stay efficient."""
    return max(1, min(64, LOGITS_PER_BATCH // (block_size * vocab_size)))


def eval_sets(grid: Grid, tokenizer, block_size: int, max_windows: int) -> dict:
    """{domain: EvalSet}: each domain's held-out split in the model's tokens, as fixed windows."""
    from minilm.data import load_corpus
    from minilm.training import make_eval_set

    return {name: make_eval_set(load_corpus(d.spec, tokenizer), tokenizer, block_size, max_windows)
            for name, d in grid.domains.items()}


def jobs(grid: Grid) -> list[Job]:
    c = grid.config
    target = grid.pair[1]
    corpus_names = {name: d.corpus_name for name, d in grid.domains.items()}
    distinct = len(set(corpus_names.values())) == len(corpus_names)  # training reports scores by file stem

    def score_all(model, tokenizer, block_size: int) -> dict:
        from minilm.devices import pick_device
        from minilm.metrics import evaluate

        device = pick_device(c.device)
        model.to(device)
        batch = eval_batch_size(block_size, tokenizer.vocab_size)
        scores = {}
        for name, s in eval_sets(grid, tokenizer, block_size, c.eval_windows).items():
            result = evaluate(model, s.windows, tokenizer, batch, device, num_bytes=s.num_bytes)
            scores[name] = {"bpb": result.bits_per_byte, "bytes_per_token": s.num_bytes / result.num_tokens,
                            "windows": int(s.windows.shape[0])}
        return scores

    def score(grid: Grid):
        from minilm.training import load_hf

        model, tokenizer = load_hf(hf_name(c.init_from), "--init-from")
        block_size, _ = window_and_vocab(grid)
        scores = score_all(model, tokenizer, block_size)
        return {"bpb": {name: s["bpb"] for name, s in scores.items()},
                "bytes_per_token": {name: s["bytes_per_token"] for name, s in scores.items()},
                "windows": {name: s["windows"] for name, s in scores.items()},
                "block_size": block_size, "params": model.num_params(), "vocab_size": tokenizer.vocab_size}, None

    def finetune(grid: Grid):
        block_size, vocab_size = window_and_vocab(grid)
        others = [d.spec for name, d in grid.domains.items() if name != target] if distinct else []
        config = grid.train_config(target, seed=0, eval_extra=others, eval_windows=c.curve_windows,
                                   eval_interval=max(1, c.steps // c.curve_points))
        config = replace(config, init_from=c.init_from, block_size=block_size, lr=c.lr * FINETUNE_LR_SCALE,
                         min_lr=c.min_lr * FINETUNE_LR_SCALE, eval_batch_size=eval_batch_size(block_size, vocab_size))
        trained = grid.train(config)  # loads the model and its tokenizer from config.init_from
        curve = None
        if distinct:
            curve = {"step": [r["step"] for r in trained.history]}
            curve.update({name: [r["val_bpb_by_corpus"][corpus_names[name]] for r in trained.history]
                          for name in grid.names})
        scores = score_all(trained.model, trained.tokenizer, block_size)
        return {"final": {name: s["bpb"] for name, s in scores.items()}, "curve": curve,
                "lr": config.lr, "min_lr": config.min_lr}, None

    return [Job("pretrained.score", f"pre-trained {hf_name(c.init_from)}: scoring", score, trains=False),
            Job("pretrained.finetune", f"pre-trained {hf_name(c.init_from)}: fine-tuning on {target}", finetune)]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    c = grid.config
    names, target = grid.names, grid.pair[1]
    others = [name for name in names if name != target]
    scored = parts["pretrained.score"]["result"]
    tuned = parts["pretrained.finetune"]["result"]
    before, after = scored["bpb"], tuned["final"]
    specialist = {name: report["matrix"][name][name] for name in names}
    curve = tuned["curve"]
    if curve is not None:
        curve = dict(curve, others_mean=[mean(curve[name][i] for name in others) for i in range(len(curve["step"]))])
    return {"pretrained": {
        "init_from": c.init_from, "target": target, "others": others, "steps": c.steps,
        "lr": tuned["lr"], "min_lr": tuned["min_lr"], "block_size": scored["block_size"],
        "params": scored["params"], "vocab_size": scored["vocab_size"],
        "bytes_per_token": scored["bytes_per_token"], "windows": scored["windows"],
        "before": before, "after": after, "change": {name: after[name] - before[name] for name in names},
        "specialist": specialist,
        "beats_specialist": [name for name in names if before[name] < specialist[name]],
        "target_change": after[target] - before[target],
        "others_before": mean(before[name] for name in others), "others_after": mean(after[name] for name in others),
        "forgetting": mean(after[name] - before[name] for name in others),
        "curve": curve}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    p = report["pretrained"]
    names, target, others = list(report["domains"]), p["target"], p["others"]
    out = []
    say = out.append
    say(f"## {number}. A pre-trained model: `{p['init_from']}`, fine-tuned on {target}\n")
    bytes_per_token = mean(p["bytes_per_token"].values())
    say(f"A GPT-2 of {p['params']:,} parameters with its own tokenizer ({p['vocab_size']:,} tokens), scored on "
        f"windows of {p['block_size']} of its tokens (on average {bytes_per_token:.2f} bytes a token, so about "
        f"{p['block_size'] * bytes_per_token:.0f} bytes of context against the byte models' "
        f"{report['config']['block_size']}), in bits per UTF-8 byte those tokens cover. Then fine-tuned on "
        f"{target} for {p['steps']} steps at learning rate {p['lr']:g} (a tenth of the preset's), and scored "
        "again.\n")
    mean_header = f"mean without {target}"
    rows = [["in-domain specialist (the matrix's diagonal)"] + [fmt(p["specialist"][n]) for n in names]
            + [fmt(mean(p["specialist"][n] for n in others))],
            ["pre-trained"] + [fmt(p["before"][n]) for n in names] + [fmt(p["others_before"])],
            [f"pre-trained, fine-tuned on {target}"] + [fmt(p["after"][n]) for n in names] + [fmt(p["others_after"])],
            ["change"] + [f"{p['change'][n]:+.3f}" for n in names] + [f"{p['forgetting']:+.3f}"],
            ["bytes per token"] + [f"{p['bytes_per_token'][n]:.2f}" for n in names] + [""]]
    say(markdown_table(["bits per byte \\ evaluated on"] + names + [mean_header], rows) + "\n")
    for name in FIGURES:
        if name in figures:
            say(f"![{name[:-4]}]({name})\n")
    beats = p["beats_specialist"]
    say(f"- Before fine-tuning, the pre-trained model beats the in-domain specialist on {len(beats)} of "
        f"{len(names)} domains" + (f" ({', '.join(beats)})" if beats else "") + ".")
    say(f"- Fine-tuning on {target} changes {target} by {p['target_change']:+.3f} bits per byte (to "
        f"{fmt(p['after'][target])}; {target}'s own specialist: {fmt(p['specialist'][target])}).")
    worst = max(others, key=lambda n: p["change"][n])
    say(f"- Forgetting: the other {len(others)} domains change by {p['forgetting']:+.3f} bits per byte on average "
        f"({fmt(p['others_before'])} -> {fmt(p['others_after'])}); the largest change is on {worst} "
        f"({p['change'][worst]:+.3f}). There is no replay: the pre-training corpus is not here.")
    if "transfer" in report:
        tr = report["transfer"]
        say(f"- For comparison, the {tr['a']} byte specialist trained on {tr['b']} without replay changed on "
            f"{tr['a']} by {tr['summary'][0]['a_rise']:+.3f} (section Transfer and forgetting).")
    say("")
    say("How to read it: the pre-trained row shows what broad pre-training brings compared with a small model "
        "trained on one domain only (with the caveat that its windows hold more bytes of context); the change row "
        f"shows what adapting it to {target} costs on everything else: the model moves towards {target}'s "
        "distribution and away from what it had learned elsewhere (catastrophic forgetting).\n")
    return "\n".join(out)


FIGURES = ("pretrained.png",)


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    p = report["pretrained"]
    names, target = list(report["domains"]), p["target"]
    written = []
    panels = 2 if p["curve"] is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    ax = axes[0][0]
    x = range(len(names))
    for offset, (label, values) in zip((-0.27, 0.0, 0.27), (("in-domain specialist", p["specialist"]),
                                                              ("pre-trained", p["before"]),
                                                              (f"fine-tuned on {target}", p["after"])), strict=True):
        ax.bar([i + offset for i in x], [values[n] for n in names], width=0.27, label=label)
    ax.set_xticks(list(x), names, rotation=40, ha="right")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("each domain: specialist, pre-trained, fine-tuned")
    ax.legend(fontsize=7)
    if p["curve"] is not None:
        ax = axes[0][1]
        curve = p["curve"]
        ax.plot(curve["step"], curve[target], marker=".", label=f"{target} (fine-tuned on)")
        ax.plot(curve["step"], curve["others_mean"], marker=".", label=f"mean of the other {len(p['others'])}")
        ax.set_xlabel(f"steps of fine-tuning on {target}")
        ax.set_ylabel("bits per byte")
        ax.set_title("along fine-tuning (training's own evaluation)")
        ax.legend(fontsize=7)
    save(fig, plt, out_dir, "pretrained.png", written)
    return written
