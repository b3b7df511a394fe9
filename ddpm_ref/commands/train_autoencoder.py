"""``ddpm-ref train-autoencoder``: the autoencoder of latent diffusion, and its fitted scale factor.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref train-autoencoder --run-dir runs/autoencoder            # 8×8 digits → 2×4×4 latents
    ddpm-ref train --latent --autoencoder runs/autoencoder --run-dir runs/latent
    ddpm-ref sample --run-dir runs/latent                             # decoded before writing

KL-regularised with a small weight (Rombach et al.'s "KL-reg"; ``--kl-weight 0`` gives the plain
autoencoder). After training, the scale factor s = 1/std(latents of the training digits) is fitted
and stored in the run; latent diffusion trains on s·μ(x). Ctrl-C saves the run as it is.
"""

from __future__ import annotations

import argparse

HELP = "train the small autoencoder for latent diffusion (digits → c×4×4 latents) and fit its scale factor"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/autoencoder",
                        help="where the run goes (default: runs/autoencoder)")
    parser.add_argument("--steps", type=int, default=1500, help="optimiser steps (default: 1500)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-channels", type=int, default=32)
    parser.add_argument("--latent-channels", type=int, default=2)
    parser.add_argument("--kl-weight", type=float, default=1e-4, help="w of the KL term (0: plain autoencoder)")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ddpm_ref.train_extra import train_autoencoder

    ae, scale, mse, sec = train_autoencoder(
        args.run_dir, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        hidden_channels=args.hidden_channels, latent_channels=args.latent_channels, kl_weight=args.kl_weight,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    c = ae.config["latent_channels"]
    print(f"step {args.steps}: test MSE {mse:.4f}, latents {c}×h/2×w/2, scale factor {scale:.4f}, {sec:.1f} s; "
          f"run in {args.run_dir}")
    return 0
