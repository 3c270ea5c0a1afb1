"""Experiment: transfer A -> B, forgetting of A, replay of A.

A's seed-0 specialist continues training on B, with a share of each batch replayed from A (0, 1,
5 and 25% by default); A and B are scored along the way (training's own evaluation, every
steps / curve_points steps, plus once before training starts); and a model trained on B from
scratch for the same steps shows what pre-training on A was worth. Jobs: one continued run per
replay fraction (each starts from A's specialist), and B from scratch.
"""
from __future__ import annotations

from pathlib import Path

from ..figures import save
from ..grid import Grid, Job
from ..report import fmt, markdown_table, percent
from .matrix import specialist_key


def replay_key(fraction: float) -> str:
    return f"replay_{fraction:g}"


def jobs(grid: Grid) -> list[Job]:
    c = grid.config
    a, b = grid.pair
    interval = max(1, c.steps // c.curve_points)
    spec_a = grid.domains[a].spec
    corpus_names = {a: grid.domains[a].corpus_name, b: grid.domains[b].corpus_name}

    def curve(history) -> dict:
        return {"step": [r["step"] for r in history],
                a: [r["val_bpb_by_corpus"][corpus_names[a]] for r in history],
                b: [r["val_bpb_by_corpus"][corpus_names[b]] for r in history]}

    def continued(fraction: float) -> Job:
        def run(grid: Grid):
            mix, extra = ({spec_a: fraction}, []) if fraction > 0 else ({}, [spec_a])
            config = grid.train_config(b, seed=0, mix=mix, eval_extra=extra, eval_interval=interval,
                                       eval_windows=c.eval_windows)
            trained = grid.train(config, model=grid.model(specialist_key(a)))
            result = {"replay": fraction, "curve": curve(trained.history), "final": grid.score_all(trained.model)}
            return result, trained

        return Job(f"transfer.{replay_key(fraction)}", f"{a} -> {b}, replay {fraction:.0%}", run,
                   after=(specialist_key(a),))

    def scratch(grid: Grid):
        config = grid.train_config(b, seed=0, eval_extra=[spec_a], eval_interval=interval, eval_windows=c.eval_windows)
        trained = grid.train(config)
        return {"curve": curve(trained.history), "final": grid.score_all(trained.model)}, trained

    return [continued(fraction) for fraction in c.replay_fractions] + [Job("transfer.scratch", f"{b} from scratch",
                                                                            scratch)]


def summarise(grid: Grid, parts: dict, report: dict) -> dict:
    c = grid.config
    a, b = grid.pair
    runs = {replay_key(f): parts[f"transfer.{replay_key(f)}"]["result"] for f in c.replay_fractions}
    scratch_run = parts["transfer.scratch"]["result"]
    start_a = runs[replay_key(0.0)]["curve"][a][0]  # A's specialist before it sees B
    start_b = runs[replay_key(0.0)]["curve"][b][0]
    cross_gap = report["matrix"][b][a] - report["matrix"][a][a]  # how much worse B's specialist is on A
    forgetting = runs[replay_key(0.0)]["final"][a] - start_a
    summary = []
    for run in runs.values():
        rise = run["final"][a] - start_a
        summary.append({
            "replay": run["replay"], "final_a": run["final"][a], "final_b": run["final"][b],
            "a_rise": rise, "a_rise_fraction_of_gap": rise / cross_gap if cross_gap > 0 else None,
            "forgetting_removed": (1.0 - rise / forgetting) if forgetting > 0 else None,
            "b_vs_scratch": run["final"][b] - scratch_run["final"][b]})
    return {"transfer": {"a": a, "b": b, "steps": c.steps, "eval_interval": max(1, c.steps // c.curve_points),
                         "a_before": start_a, "b_before": start_b, "cross_domain_gap_on_a": cross_gap, "runs": runs,
                         "scratch": scratch_run, "summary": summary}}


def write_section(report: dict, number: int, figures: list[str]) -> str:
    tr = report["transfer"]
    a, b = tr["a"], tr["b"]
    out = []
    say = out.append
    say(f"## {number}. Transfer and forgetting: {a} -> {b} (seed 0)\n")
    say(f"{a}'s specialist continues training on {b} for {tr['steps']} steps, with a share of each batch "
        f"replayed from {a}. Before: {a} {fmt(tr['a_before'])} bits per byte. The cross-domain gap on {a} "
        f"({b}'s specialist minus {a}'s, from the matrix) is {fmt(tr['cross_domain_gap_on_a'])}.\n")
    rows = []
    for s in tr["summary"]:
        rows.append([percent(s["replay"]), fmt(s["final_a"]), fmt(s["final_b"]), f"{s['a_rise']:+.3f}",
                     percent(s["a_rise_fraction_of_gap"]), percent(s["forgetting_removed"]) if s["replay"] > 0 else "–",
                     f"{s['b_vs_scratch']:+.3f}"])
    rows.append([f"{b} from scratch", fmt(tr["scratch"]["final"][a]), fmt(tr["scratch"]["final"][b]), "", "", "", ""])
    if "ngram" in report:
        counted = report["ngram"]["specialist"]
        rows.append([f"KN {report['ngram']['order']}-gram specialists", fmt(counted[a]), fmt(counted[b]),
                     "", "", "", ""])
    say(markdown_table(["replay of " + a, f"{a} bpb", f"{b} bpb", f"{a} rise", "rise / gap", "forgetting removed",
                        f"{b} vs scratch"], rows) + "\n")
    for name in FIGURES:
        if name in figures:
            say(f"![{name[:-4]}]({name})\n")
    no_replay = tr["summary"][0]
    say(f"- Without replay, {a} changes by {no_replay['a_rise']:+.3f} bits per byte "
        f"({percent(no_replay['a_rise_fraction_of_gap'])} of the cross-domain gap).")
    for s in tr["summary"][1:]:
        say(f"- {percent(s['replay'])} replay: {a} changes by {s['a_rise']:+.3f} "
            f"({percent(s['forgetting_removed'])} of the forgetting removed), {b} at {fmt(s['final_b'])}.")
    say(f"- Pre-training on {a} {'helps' if no_replay['b_vs_scratch'] < 0 else 'does not help'} {b}: "
        f"{no_replay['b_vs_scratch']:+.3f} bits per byte against {b} from scratch with the same steps.")
    say("")
    return "\n".join(out)


FIGURES = ("forgetting.png", "tradeoff.png")


def figures(report: dict, out_dir: Path, plt) -> list[str]:
    tr = report["transfer"]
    a, b = tr["a"], tr["b"]
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for run in tr["runs"].values():
        label = f"{a} -> {b}, replay {percent(run['replay'])}"
        axes[0].plot(run["curve"]["step"], run["curve"][a], marker=".", label=label)
        axes[1].plot(run["curve"]["step"], run["curve"][b], marker=".", label=label)
    for ax, name in zip(axes, (a, b), strict=True):
        ax.plot(tr["scratch"]["curve"]["step"], tr["scratch"]["curve"][name], "k--", label=f"{b} from scratch")
        ax.set_title(f"bits per byte on {name}")
        ax.set_xlabel(f"steps of training on {b}")
    axes[0].legend(fontsize=7)
    save(fig, plt, out_dir, "forgetting.png", written)

    fig, ax = plt.subplots(figsize=(5, 4))
    for s in tr["summary"]:
        ax.scatter(s["final_a"], s["final_b"])
        ax.annotate(f"replay {percent(s['replay'])}", (s["final_a"], s["final_b"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.scatter(tr["a_before"], tr["b_before"], marker="x", color="black")
    ax.annotate(f"{a} specialist (before)", (tr["a_before"], tr["b_before"]), fontsize=8,
                xytext=(4, -10), textcoords="offset points")
    ax.scatter(tr["scratch"]["final"][a], tr["scratch"]["final"][b], marker="s", color="grey")
    ax.annotate(f"{b} from scratch", (tr["scratch"]["final"][a], tr["scratch"]["final"][b]), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"bits per byte on {a} (old domain)")
    ax.set_ylabel(f"bits per byte on {b} (new domain)")
    ax.set_title("after continued training: the trade-off")
    save(fig, plt, out_dir, "tradeoff.png", written)
    return written
