"""``ddpm-ref figures``: regenerate the lessons' figures (deterministic: same seed, same pixels).

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref figures                       # every figure into figures/
    ddpm-ref figures --only schedules      # one (repeat --only for several)
    ddpm-ref figures --list                # names, descriptions, lessons
    ddpm-ref figures --out /tmp/figs --seed 0 --run-dir runs/demo

Figures are registered in ``ddpm_ref.plots`` (see its docstring to add one). Figures that need
the trained demo model read ``<run-dir>/checkpoint.npz``; without it they are skipped with a
message that says how to make it (exit status 1 if one was asked for by ``--only``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "regenerate the lessons' figures (PNG) into figures/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="figures", metavar="DIR", help="output folder (default: figures/)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="make only this figure (repeatable); see --list for the names")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--run-dir", default=None, metavar="DIR",
                        help="the demo run whose checkpoint.npz the model figures use (default: runs/demo)")


def _list(figures) -> None:
    width = max(len(n) for n in figures)
    for spec in figures.values():
        lessons = ", ".join(spec.lessons)
        needs = "  [needs the demo checkpoint]" if spec.needs == "demo" else ""
        print(f"{spec.name:<{width}}  lessons {lessons:<8}  {spec.description}{needs}")


def _check_demo_run(run_dir: str) -> None:
    """If the run directory holds a checkpoint, it must be the demo's kind of run (read before work)."""
    import os

    from ddpm_ref.checkpoint import load_checkpoint
    from ddpm_ref.runs import CHECKPOINT_NAME, check_description, check_digits_run

    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.isfile(path):
        _, meta = load_checkpoint(path)
        check_description(meta, path)
        check_digits_run(meta, path, "the model figures (--run-dir)")


def run(args) -> int:
    from tqdm import tqdm

    from ddpm_ref import plots
    from ddpm_ref.preflight import check_output_dir, check_seed

    figures = plots.available()
    if args.list:
        _list(figures)
        return 0
    check_seed(args.seed)
    selected = list(dict.fromkeys(args.only or figures))
    unknown = [n for n in selected if n not in figures]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(map(repr, unknown))}; valid names: {', '.join(figures)}")
    out = Path(check_output_dir(args.out, "--out"))
    run_dir = args.run_dir or plots.DEMO_RUN_DIR
    if any(figures[n].needs == "demo" for n in selected):
        _check_demo_run(run_dir)
    written, skipped = [], []
    start = time.perf_counter()
    for name in (bar := tqdm(selected, desc="figures", unit="fig")):
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        try:
            paths = plots.make(name, out, seed=args.seed, run_dir=run_dir)
        except plots.FigureUnavailable as why:
            skipped.append((name, str(why)))
            continue
        written += [(p, time.perf_counter() - t0) for p in paths]
    for path, seconds in written:
        print(f"{path}  ({seconds:.1f} s)")
    for name, why in skipped:
        print(f"skipped {name}: {why}")
    print(f"{len(written)} file(s) in {out}/ in {time.perf_counter() - start:.1f} s"
          + (f", {len(skipped)} figure(s) skipped" if skipped else ""))
    return 1 if skipped and args.only else 0
