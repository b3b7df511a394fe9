"""``ddpm-ref train-classifier``: the noisy classifier p_φ(y | x_t, t) that classifier guidance needs.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref train-classifier --run-dir runs/classifier            # 1500 steps on noised digits
    ddpm-ref train-classifier --run-dir runs/classifier --resume   # continue it (after Ctrl-C, say)
    ddpm-ref sample --run-dir runs/demo --classifier runs/classifier --classifier-scale 3 --sampler ddim

The classifier is trained on digits noised with the schedule and T given here; they must be the
diffusion model's (the demo's: linear, T = 1000), and ``ddpm-ref sample --classifier`` refuses a
classifier trained on another.

Ctrl-C (or SIGTERM, SIGHUP) saves a checkpoint at the end of the current step and exits with status
130 (143, 129); ``--resume`` then continues exactly where it stopped (bit-identical to a run that was
never interrupted). A second Ctrl-C stops at once without writing. ``--resume``: flags left out keep
the saved values; ``--steps``, ``--checkpoint-every`` and ``--lr`` may change; any other flag that
differs from the saved run is refused, naming it. A directory that already holds a run is refused
without ``--resume`` or ``--overwrite``; one run directory takes one training process at a time.
"""

from __future__ import annotations

import argparse

HELP = "train a noise-conditional digit classifier for classifier guidance (Dhariwal & Nichol 2021; --resume)"

#: The flags that are options of ``train_classifier``. Their defaults are None so that --resume can
#: tell a flag that was given from one that was not; a new run takes the function's defaults (in the help).
OPTIONS = ("steps", "batch_size", "lr", "seed", "base_channels", "groups", "schedule", "T", "checkpoint_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import add_resume_flags

    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/classifier",
                        help="where the run goes (default: runs/classifier)")
    parser.add_argument("--steps", type=int, help="total optimiser steps (default: 1500; --resume: the saved run's)")
    parser.add_argument("--batch-size", type=int, help="default: 64")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, help="default: 0")
    parser.add_argument("--base-channels", type=int, help="default: 16")
    parser.add_argument("--groups", type=int, help="GroupNorm groups, dividing the channels (default: 4)")
    parser.add_argument("--schedule", help="the diffusion model's noise schedule (default: linear)")
    parser.add_argument("--T", type=int, help="the diffusion model's T (default: 1000)")
    parser.add_argument("--checkpoint-every", type=int, help="default: 500 (0: at the end)")
    add_resume_flags(parser)


def run(args) -> int:
    import inspect

    from ddpm_ref.train_extra import options_from_flags, train_classifier

    options = options_from_flags(args, OPTIONS, "noisy_classifier")
    _, loss, sec = train_classifier(args.run_dir, **options, resume=args.resume, overwrite=args.overwrite,
                                    progress=not args.no_progress)
    steps = options.get("steps", inspect.signature(train_classifier).parameters["steps"].default)
    print(f"step {steps}: cross-entropy {loss:.4f} (mean of the last steps), {sec:.1f} s; run in {args.run_dir}")
    return 0
