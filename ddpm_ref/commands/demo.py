"""``ddpm-ref demo``: train a class-conditional U-Net on the 8×8 digits, sample, draw the figures.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref demo                       # ~10 minutes on 2 cores; everything goes to runs/demo/
    ddpm-ref demo --quick               # a tiny model in well under a minute (a smoke test)
    ddpm-ref demo --fresh               # retrain even if runs/demo holds a finished run

What it writes into the run directory:

* ``checkpoint.npz`` + ``config.json`` — the run (weights, EMA, Adam, RNG; ``--resume``-able);
* ``loss.png`` — L_simple of every step and its moving average;
* ``samples_ddpm.png`` — Algorithm 2 (1000 steps, σ_t² = β̃_t), one column per class 0..9;
* ``samples_ddim.png`` — DDIM, 50 steps, η = 0, classifier-free guidance w = 1;
* ``trajectory.png`` — one DDPM reverse chain: x_t and the x̂_0 predicted at 10 timesteps.

A finished run in the directory is reused (only the sampling and figures are redone); an
unfinished one (Ctrl-C during training saves a checkpoint) is continued.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

HELP = "train on the digits (~10 min on 2 cores), sample with DDPM and DDIM, write figures to runs/demo/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count

    parser.add_argument("--run-dir", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="a tiny model and 300 steps (smoke test)")
    parser.add_argument("--steps", type=count, default=None, help="training steps (default: 2500; --quick: 300)")
    parser.add_argument("--fresh", action="store_true", help="retrain even if the run directory has a finished run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training run and the samples")
    parser.add_argument("--ddim-steps", type=int, default=50, help="DDIM steps (default: 50)")
    parser.add_argument("--guidance", type=float, default=1.0, help="guidance w for the DDIM grid (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args):
    """The demo's training configuration, and every option checked before any work."""
    from ddpm_ref._checks import check_positive_int
    from ddpm_ref.preflight import check_number, check_seed
    from ddpm_ref.runlock import check_run_dir
    from ddpm_ref.train import DEMO_CONFIG, DEMO_MODEL, QUICK_CONFIG, QUICK_MODEL

    if args.steps is not None:
        check_positive_int("--steps", args.steps)
    check_seed(args.seed)
    check_positive_int("--ddim-steps", args.ddim_steps)
    check_number("--guidance", args.guidance)
    base, unet = (QUICK_CONFIG, QUICK_MODEL) if args.quick else (DEMO_CONFIG, DEMO_MODEL)
    if args.ddim_steps > base.T:
        raise ValueError(f"--ddim-steps {args.ddim_steps} is more than the demo's T={base.T}; "
                         "DDIM uses a subsequence of 1..T")
    check_run_dir(args.run_dir, files=("checkpoint.npz", "config.json", "loss.png", "samples_ddpm.png",
                                       "samples_ddim.png", "trajectory.png"))
    return dataclasses.replace(base, seed=args.seed, steps=args.steps or base.steps).validate(), unet


def _train_or_reuse(args, config, unet, progress: bool):
    from ddpm_ref.data import load_dataset
    from ddpm_ref.runs import CHECKPOINT_NAME, check_digits_run, load_model
    from ddpm_ref.train import default_model_config, train

    run_dir = args.run_dir
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.isfile(path) and not args.fresh:
        _, meta = load_model(run_dir)
        check_digits_run(meta, path, "the demo (use another --run-dir, or --fresh to replace it)")
        if args.ddim_steps > meta["train"]["T"]:
            raise ValueError(f"--ddim-steps {args.ddim_steps} is more than the run's T={meta['train']['T']}")
        if meta["step"] >= config.steps:
            print(f"reusing the finished run in {run_dir} (step {meta['step']}); --fresh retrains")
            return
        print(f"continuing the run in {run_dir} from step {meta['step']}")
        train(config, run_dir, resume=True, progress=progress)
        return
    data = load_dataset(config.data, seed=config.seed)
    train(config, run_dir, overwrite=args.fresh, progress=progress,
          model_kind_config=default_model_config(data, config.cond, config.seed, unet))


def run(args) -> int:
    from ddpm_ref.plots import save
    from ddpm_ref.plots.training import demo_samples, plot_loss_curve, plot_trajectory
    from ddpm_ref.runs import load_run
    from ddpm_ref.sample import save_grid_png

    config, unet = _config(args)
    progress = not args.no_progress
    run_dir = args.run_dir
    t0 = time.perf_counter()
    _train_or_reuse(args, config, unet, progress)
    t_train = time.perf_counter() - t0

    model, meta = load_run(run_dir)                         # the EMA weights, SAMPLING_WORKERS threads
    losses = meta["losses"]
    written = [save(plot_loss_curve(losses), run_dir, "loss")]

    t1 = time.perf_counter()
    x, traj = demo_samples(model, meta, n_per_class=10, sampler="ddpm", seed=args.seed,
                           return_trajectory=True, progress=progress)
    written.append(save_grid_png(x, os.path.join(run_dir, "samples_ddpm.png"), nrow=10))
    label = int(min(3, len(x) - 1))
    written.append(save(plot_trajectory(traj, index=label, title=f"DDPM reverse trajectory (label {label})"),
                        run_dir, "trajectory"))
    x = demo_samples(model, meta, n_per_class=10, sampler="ddim", steps=args.ddim_steps,
                     guidance=args.guidance if model.config.get("num_classes") else 0.0,
                     seed=args.seed, progress=progress)
    written.append(save_grid_png(x, os.path.join(run_dir, "samples_ddim.png"), nrow=10))
    t_sample = time.perf_counter() - t1

    tail = losses[-100:]
    print(f"trained {meta['step']} steps; final loss (mean of the last {len(tail)} steps): "
          f"{float(tail.mean()) if len(tail) else float('nan'):.4f}")
    print(f"time: training {t_train:.0f} s, sampling {t_sample:.0f} s")
    print("columns of the sample grids are the classes 0..9; figures written:")
    for p in written:
        print(f"  {p}")
    return 0
