"""The command line of the mismatch grid: `python -m minilm.mismatch`.

    python -m minilm.mismatch --preset cpu-quick --out runs/mismatch
    python -m minilm.mismatch --preset cpu-quick --jobs 2            # two processes on this machine
    torchrun --nproc_per_node=4 -m minilm.mismatch --preset gpu      # four ranks (GPUs or nodes)

Every flag is checked, and every corpus read, before anything is trained. With `--jobs N` this
process checks everything, then starts N worker processes with the environment torchrun would
give them (RANK, WORLD_SIZE, ...) and waits; the workers split the jobs (see schedule.py).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from minilm.cli import OneLineErrorParser, UserError

from .config import PRESETS, MismatchConfig
from .experiments import BY_NAME, EXPERIMENTS, help_text, select
from .figures import PLOT_NOTE

PROG = "python -m minilm.mismatch"
WORKER_ENV = "MINILM_MISMATCH_WORKER"  # set by --jobs in the workers it starts: the parent has checked --out


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train tiny byte-level models on each corpus and score them on every other. Writes "
                    "report.md, report.json and PNGs (with matplotlib) to --out, and each finished model's "
                    "result to --out/parts/ as it finishes.",
        epilog="experiments, in report order (all run by default, but those that need a flag):\n" + help_text())
    parser.add_argument("--preset", default="cpu-quick", choices=list(PRESETS),
                        help="sizes and budgets (default: %(default)s)")
    parser.add_argument("--experiments", metavar="NAME,...",
                        help="run only these experiments (and what they need); default: all, see below")
    parser.add_argument("--domains", help="comma-separated corpora to use (default: all bundled + --corpus)")
    parser.add_argument("--corpus", action="append", default=[], metavar="NAME=PATH",
                        help="add (or replace) a domain from a UTF-8 text file; repeatable")
    parser.add_argument("--transfer", metavar="A,B",
                        help="the pair for transfer/forgetting and LSTM vs GPT (default: shakespeare,bible)")
    parser.add_argument("--seeds", type=int, help="seeds for the matrix (default: the preset's)")
    parser.add_argument("--steps", type=int, help="training steps per model (default: the preset's)")
    parser.add_argument("--init-from", metavar="hf:NAME_OR_DIR",
                        help="a pre-trained Hugging Face GPT-2 (a local folder, or a hub name): adds it as a row of "
                             "the matrix and fine-tunes it on the --transfer target (the pretrained experiment)")
    parser.add_argument("--ngram-order", type=int, help="N of the Kneser-Ney baseline, 1..8 (default: the preset's, 6)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's; 0 = PyTorch's choice)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes to spread the models over on this machine (default: %(default)s)")
    parser.add_argument("--out", default=None, help="report folder (default: runs/mismatch-PRESET)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the report (and the parts) in an existing --out folder")
    parser.add_argument("--resume", action="store_true",
                        help="keep the parts in --out/parts made by the same flags; train only what is missing")
    return parser


def config_from_args(args) -> MismatchConfig:
    overrides = {"device": args.device}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.ngram_order is not None:
        overrides["ngram_order"] = args.ngram_order
    if args.init_from is not None:
        if not args.init_from:
            raise UserError("--init-from: empty; expected hf:NAME_OR_DIR (a Hugging Face GPT-2 folder or hub name)")
        overrides["init_from"] = args.init_from
    return replace(PRESETS[args.preset], **overrides)


def check_out_dir(out: str, overwrite: bool, resume: bool) -> Path:
    """The report folder: it must be (or be creatable as) a writable folder; one that already has
    files in it is refused unless --overwrite or --resume. Nothing is written here."""
    out_dir = Path(out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out: {str(out_dir)!r} exists and is not a folder; expected a folder for the report")
    existing = next((p for p in [out_dir, *out_dir.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--out: {str(existing)!r} is a file, so {str(out_dir)!r} cannot be a folder under it")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out: {str(existing)!r} is not writable; choose a folder you can write to")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (overwrite or resume):
        raise UserError(f"--out: {str(out_dir)!r} already exists and is not empty; pass --overwrite to replace "
                        "its report, --resume to keep its finished parts, or choose another folder")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    worker = bool(os.environ.get(WORKER_ENV))
    trusted = worker or rank != 0  # --out was checked (and parts/ cleared) by the parent, or by rank 0
    try:
        if args.jobs < 1:
            raise UserError(f"--jobs: expected a positive number of processes, got {args.jobs}")
        if args.jobs > 1 and world > 1 and not worker:
            raise UserError("--jobs: cannot be used under torchrun, which starts the processes itself")
        config = config_from_args(args)
        experiments = select(args.experiments, given=("--init-from",) if config.init_from else ())
        if config.init_from:
            from .experiments.pretrained import check_start_model

            check_start_model(config.init_from)
        out_dir = check_out_dir(args.out or f"runs/mismatch-{config.preset}", args.overwrite or trusted,
                                args.resume or trusted)
        from .domains import choose_domains, choose_transfer_pair, load_domains, parse_corpus_flags

        specs = choose_domains(args.domains, parse_corpus_flags(args.corpus))
        domains = load_domains(specs, config)
        pair = choose_transfer_pair(args.transfer, domains)
        if world > 1 and not worker:
            join_torchrun(config)
        parts = open_parts(out_dir, config, domains, pair, resume=args.resume, clear=not trusted)
        if world > 1 and not worker:
            import torch.distributed as dist

            dist.barrier()  # rank 0 has checked --out and cleared old parts
        if args.jobs > 1 and not worker:
            return launch_workers(args.jobs, sys.argv[1:] if argv is None else argv, out_dir, parts)
        command = "python -m minilm.mismatch " + " ".join(sys.argv[1:] if argv is None else argv)
        from .run import run_grid

        try:
            report = run_grid(config, domains, pair, experiments, parts, command.strip(), rank, world,
                              say=lambda line: print(line, file=sys.stderr))
        finally:
            leave_torchrun()
        if report is None:
            return 0
        from .report import write_report

        files = write_report(report, out_dir, experiments)
    except UserError as error:
        if worker:  # the parent prints the one line
            return 2
        print(f"minilm.mismatch: error: {error}", file=sys.stderr)
        return 2
    if not worker:
        print(f"wrote {', '.join(files)} to {out_dir} in {report['timing']['total_seconds'] / 60:.1f} minutes")
        if "matrix.png" not in files:
            print(PLOT_NOTE)
    return 0


def open_parts(out_dir: Path, config, domains, pair, resume: bool, clear: bool):
    """The parts folder; without --resume an old one is cleared (by the one process that may);
    with --resume every part there is checked to come from the same flags."""
    from .parts import Parts, fingerprint

    parts = Parts(out_dir / "parts", fingerprint(config, domains, pair))
    if clear:
        if not resume:
            parts.clear()
        parts.clear_failures()  # a failure of an earlier run is not this run's
        if parts.folder.exists():
            for path in parts.folder.glob("*.json"):
                parts.read(path.stem)
    return parts


def join_torchrun(config) -> None:
    """Under torchrun: join the process group (gloo: it only carries a barrier), and with GPUs train
    on the GPU of this process's local rank."""
    import torch
    import torch.distributed as dist

    if config.device in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def leave_torchrun() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch_workers(count: int, argv: list[str], out_dir: Path, parts) -> int:
    """Start `count` workers (this command again, with torchrun's environment) and wait for them.
    If one fails, stop the others and print one line naming the job that failed."""
    package_root = str(Path(__file__).resolve().parents[2])  # the workers import this same minilm
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env_common = dict(os.environ, PYTHONPATH=python_path, WORLD_SIZE=str(count), LOCAL_WORLD_SIZE=str(count),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), **{WORKER_ENV: "1"})
    workers = []
    for rank in range(count):
        env = dict(env_common, RANK=str(rank), LOCAL_RANK=str(rank))
        workers.append(subprocess.Popen([sys.executable, "-m", "minilm.mismatch", *argv], env=env,
                                        stdout=None if rank == 0 else subprocess.DEVNULL))
    failed = None
    try:
        while failed is None and any(w.poll() is None for w in workers):
            failed = next((rank for rank, w in enumerate(workers) if w.poll() not in (None, 0)), None)
            time.sleep(0.2)
        if failed is None:
            failed = next((rank for rank, w in enumerate(workers) if w.returncode != 0), None)
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for w in workers:
            w.wait()
    if failed is not None:
        failures = parts.failures()
        if failures:
            what = failures[0]["error"]
        else:
            code, job = workers[failed].returncode, parts.running(failed)
            how = f"was killed by signal {-code}" if code < 0 else f"stopped with status {code}"
            what = f"worker {failed} {how}" + (f" while running {job!r}" if job else " before its first job")
        print(f"minilm.mismatch: error: {what}; finished parts are kept in {parts.folder}", file=sys.stderr)
        return 2
    import json

    report = json.loads((out_dir / "report.json").read_text())
    files = ["report.md", "report.json"] + report["figures"]
    print(f"wrote {', '.join(files)} to {out_dir} in {report['timing']['total_seconds'] / 60:.1f} minutes "
          f"with {count} processes")
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["main", "build_parser", "EXPERIMENTS", "BY_NAME"]

if __name__ == "__main__":
    sys.exit(main())
