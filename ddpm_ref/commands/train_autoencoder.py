"""``ddpm-ref train-autoencoder``: the autoencoder of latent diffusion, and its fitted scale factor.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref train-autoencoder --run-dir runs/autoencoder            # 8×8 digits → 2×4×4 latents
    ddpm-ref train-autoencoder --run-dir runs/autoencoder --resume   # continue it (after Ctrl-C, say)
    ddpm-ref train --latent --autoencoder runs/autoencoder --run-dir runs/latent
    ddpm-ref sample --run-dir runs/latent                             # decoded before writing

KL-regularised with a small weight (Rombach et al.'s "KL-reg"; ``--kl-weight 0`` gives the plain
autoencoder). When training reaches ``--steps`` (also in a resumed run), the scale factor
s = 1/std(latents of the training digits) is fitted and stored in the run; latent diffusion trains
on s·μ(x). An interrupted run has no scale factor until it is resumed to the end.

Ctrl-C (or SIGTERM, SIGHUP) saves a checkpoint at the end of the current step and exits with status
130 (143, 129); ``--resume`` then continues exactly where it stopped (bit-identical to a run that was
never interrupted). A second Ctrl-C stops at once without writing. ``--resume``: flags left out keep
the saved values; ``--steps``, ``--checkpoint-every`` and ``--lr`` may change; any other flag that
differs from the saved run is refused, naming it. A directory that already holds a run is refused
without ``--resume`` or ``--overwrite``; one run directory takes one training process at a time.
"""

from __future__ import annotations

import argparse

HELP = ("train the small autoencoder for latent diffusion (digits → c×4×4 latents) and fit its scale factor "
        "(--resume)")

#: The flags that are options of ``train_autoencoder``. Their defaults are None so that --resume can
#: tell a flag that was given from one that was not; a new run takes the function's defaults (in the help).
OPTIONS = ("steps", "batch_size", "lr", "seed", "hidden_channels", "latent_channels", "kl_weight", "checkpoint_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import add_resume_flags

    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/autoencoder",
                        help="where the run goes (default: runs/autoencoder)")
    parser.add_argument("--steps", type=int, help="total optimiser steps (default: 1500; --resume: the saved run's)")
    parser.add_argument("--batch-size", type=int, help="default: 64")
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, help="default: 0")
    parser.add_argument("--hidden-channels", type=int, help="default: 32")
    parser.add_argument("--latent-channels", type=int, help="default: 2")
    parser.add_argument("--kl-weight", type=float, help="w of the KL term (0: plain autoencoder; default: 1e-4)")
    parser.add_argument("--checkpoint-every", type=int, help="default: 500 (0: at the end)")
    add_resume_flags(parser)


def run(args) -> int:
    import inspect

    from ddpm_ref.train_extra import options_from_flags, train_autoencoder

    options = options_from_flags(args, OPTIONS, "autoencoder")
    ae, scale, mse, sec = train_autoencoder(args.run_dir, **options, resume=args.resume, overwrite=args.overwrite,
                                            progress=not args.no_progress)
    steps = options.get("steps", inspect.signature(train_autoencoder).parameters["steps"].default)
    c = ae.config["latent_channels"]
    print(f"step {steps}: test MSE {mse:.4f}, latents {c}×h/2×w/2, scale factor {scale:.4f}, {sec:.1f} s; "
          f"run in {args.run_dir}")
    return 0
