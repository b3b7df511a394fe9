"""``ddpm-ref sample``: draw samples from a trained run, as a PNG grid (and optionally .npz).

    ddpm-ref sample --run-dir runs/demo                          # DDPM (Algorithm 2), 100 digits
    ddpm-ref sample --run-dir runs/demo --sampler ddim --steps 50 --eta 0 --guidance 2 --label 7
    ddpm-ref sample --run-dir runs/demo --trajectory traj.png    # also one reverse chain

Samples of a class-conditional model are drawn class by class (column j of the grid is class j)
unless ``--label`` fixes one class; ``--unconditional`` uses the null label.

Every option, every output path (``--out``, ``--npz``, ``--trajectory``) and the memory that
``-n`` samples need are checked before sampling starts. The same ``--seed`` gives the same bits on
any machine with the same BLAS thread count: the U-Net's batch is split over a fixed
``ddpm_ref.runs.SAMPLING_WORKERS`` threads, never over "as many as there are CPUs".
"""

from __future__ import annotations

import argparse
import os

HELP = "sample a trained model with DDPM (Algorithm 2) or DDIM, write a PNG grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count

    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (or a checkpoint .npz); default: runs/demo")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples_<sampler>.png)")
    parser.add_argument("-n", "--n", "--num", dest="num", type=count, default=100,
                        help="number of samples (default: 100)")
    parser.add_argument("--sampler", "--method", dest="sampler", choices=("ddpm", "ddim"), default="ddpm")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM η (0: deterministic, 1: DDPM-like)")
    parser.add_argument("--variance", choices=("fixed_small", "fixed_large"), default="fixed_small",
                        help="DDPM σ_t²: β̃_t (fixed_small) or β_t (fixed_large)")
    parser.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w (default: 0)")
    parser.add_argument("--label", type=int, default=None, help="one class for all samples")
    parser.add_argument("--unconditional", action="store_true", help="use the null label (no class)")
    parser.add_argument("--clip-x0", action="store_true", help="clip the predicted x_0 to [-1, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--npz", default=None, help="also save the samples (float32) to this .npz")
    parser.add_argument("--trajectory", default=None, help="also draw the reverse chain of sample 0 to this PNG")
    parser.add_argument("--no-progress", action="store_true")


def labels_for(args, num_classes, n):
    """The label array for the samples (None: unconditional) from --label / --unconditional."""
    import numpy as np

    if num_classes is None:
        if args.label is not None:
            raise ValueError("--label needs a class-conditional model; this one has no classes")
        if args.guidance:
            raise ValueError("--guidance needs a class-conditional model (trained with labels); this one has none")
        return None
    if args.unconditional:
        if args.label is not None or args.guidance:
            raise ValueError("--unconditional cannot be combined with --label or --guidance")
        return None
    if args.label is not None:
        if not 0 <= args.label < num_classes:
            raise ValueError(f"--label must be in 0..{num_classes - 1}, got {args.label}")
        return np.full(n, args.label, dtype=np.int64)
    return np.arange(n, dtype=np.int64) % num_classes


def _check_values(args) -> None:
    """Every option finite and in range, before the run is even loaded."""
    from ddpm_ref._checks import check_positive_int
    from ddpm_ref.preflight import check_number, check_seed

    check_positive_int("--num", args.num)
    check_positive_int("--steps", args.steps)
    check_seed(args.seed)
    check_number("--eta", args.eta, 0.0, 1.0)
    check_number("--guidance", args.guidance)


def _outputs(args) -> dict:
    """The files to write, each checked writable before any work: {"png", "npz", "trajectory"}."""
    from ddpm_ref.preflight import check_output_file

    base = args.run_dir[:-4] if args.run_dir.endswith(".npz") else args.run_dir
    png = args.out or os.path.join(base if os.path.isdir(base) else os.path.dirname(base) or ".",
                                   f"samples_{args.sampler}.png")
    out = {"png": check_output_file(png, "--out")}
    for key in ("npz", "trajectory"):
        if getattr(args, key):
            out[key] = check_output_file(getattr(args, key), f"--{key}")
    return out


def _check_run(args, model, meta, n: int) -> tuple:
    """Checks that need the run: the sampler's steps, --trajectory, and the memory of n samples."""
    from ddpm_ref.memory import check_fits, sampling_bytes

    cfg, T = model.config, meta["train"]["T"]
    is_image = model.kind == "unet"
    if args.sampler == "ddim" and args.steps > T:
        raise ValueError(f"--steps {args.steps} is more than the run's T={T}; DDIM uses a subsequence of 1..T")
    if args.trajectory and not is_image:
        raise ValueError("--trajectory draws images of the reverse chain; this run's model is an MLP on points")
    shape = (cfg["in_channels"], cfg["image_size"], cfg["image_size"]) if is_image else (cfg["dim"],)
    frames = 11 if args.trajectory else 0
    check_fits(f"-n {n}", sampling_bytes(n, shape, trajectory_frames=frames))
    return (n, *shape), is_image


def run(args) -> int:
    import numpy as np

    from ddpm_ref.checkpoint import save_npz_atomic
    from ddpm_ref.runs import load_run
    from ddpm_ref.sample import ModelEps, sample_ddim, sample_ddpm, save_grid_png
    from ddpm_ref.schedules import make_schedule

    _check_values(args)
    n, out = args.num, _outputs(args)
    model, meta = load_run(args.run_dir, args.raw)
    shape, is_image = _check_run(args, model, meta, n)
    sched = make_schedule(meta["train"]["schedule"], meta["train"]["T"])
    y = labels_for(args, model.config.get("num_classes"), n)
    common = dict(rng=args.seed, y=y, guidance=args.guidance, clip_x0=args.clip_x0,
                  return_trajectory=bool(args.trajectory), progress=not args.no_progress)
    if args.sampler == "ddpm":
        result = sample_ddpm(ModelEps(model), sched, shape, variance=args.variance, **common)
    else:
        result = sample_ddim(ModelEps(model), sched, shape, steps=args.steps, eta=args.eta, **common)
    x, traj = result if args.trajectory else (result, None)
    if is_image:
        save_grid_png(x, out["png"], nrow=model.config.get("num_classes") or None)
    else:
        _scatter(x, out["png"])
    print(f"wrote {n} samples to {out['png']}")
    if "npz" in out:
        save_npz_atomic(out["npz"], samples=x.astype(np.float32),
                        labels=np.zeros(0, dtype=np.int64) if y is None else y)
        print(f"wrote {out['npz']}")
    if traj is not None:
        from ddpm_ref.plots import save
        from ddpm_ref.plots.training import plot_trajectory

        d, name = os.path.split(os.path.abspath(out["trajectory"]))
        save(plot_trajectory(traj, 0, f"{args.sampler.upper()} reverse trajectory"), d,
             name[:-4] if name.endswith(".png") else name)
        print(f"wrote {out['trajectory']}")
    return 0


def _scatter(x, path):
    from ddpm_ref.plots import new_figure, save

    fig = new_figure(4, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x[:, 0], x[:, 1], s=3)
    ax.set_aspect("equal")
    d, name = os.path.split(os.path.abspath(path))
    save(fig, d, name[:-4] if name.endswith(".png") else name)
