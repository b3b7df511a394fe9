"""``ddpm-ref train-classifier``: the noisy classifier p_φ(y | x_t, t) that classifier guidance needs.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref train-classifier --run-dir runs/classifier            # 1500 steps on noised digits
    ddpm-ref sample --run-dir runs/demo --classifier runs/classifier --classifier-scale 3 --sampler ddim

The classifier is trained on digits noised with the schedule and T given here; they must be the
diffusion model's (the demo's: linear, T = 1000), and ``ddpm-ref sample --classifier`` refuses a
classifier trained on another. Ctrl-C saves the run as it is.
"""

from __future__ import annotations

import argparse

HELP = "train a noise-conditional digit classifier for classifier guidance (Dhariwal & Nichol 2021)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/classifier",
                        help="where the run goes (default: runs/classifier)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (default: 1500)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--groups", type=int, default=4, help="GroupNorm groups (divides the channels)")
    parser.add_argument("--schedule", default="linear", help="the diffusion model's noise schedule (default: linear)")
    parser.add_argument("--T", type=int, default=1000, help="the diffusion model's T (default: 1000)")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ddpm_ref.train_extra import train_classifier

    _, loss, sec = train_classifier(args.run_dir, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                    seed=args.seed, base_channels=args.base_channels, groups=args.groups,
                                    schedule=args.schedule, T=args.T, checkpoint_every=args.checkpoint_every,
                                    progress=not args.no_progress)
    print(f"step {args.steps}: cross-entropy {loss:.4f} (mean of the last steps), {sec:.1f} s; run in {args.run_dir}")
    return 0
