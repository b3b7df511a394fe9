"""``ddpm-ref sample``: draw samples from a trained run, as a PNG grid (and optionally .npz).

    ddpm-ref sample --run-dir runs/demo                          # DDPM (Algorithm 2), 100 digits
    ddpm-ref sample --run-dir runs/demo --sampler ddim --steps 50 --eta 0 --guidance 2 --label 7
    ddpm-ref sample --run-dir runs/demo --trajectory traj.png    # also one reverse chain

Samples of a class-conditional model are drawn class by class (column j of the grid is class j)
unless ``--label`` fixes one class; ``--unconditional`` uses the null label.
"""

from __future__ import annotations

import argparse
import os

HELP = "sample a trained model with DDPM (Algorithm 2) or DDIM, write a PNG grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (or a checkpoint .npz); default: runs/demo")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples_<sampler>.png)")
    parser.add_argument("-n", "--n", "--num", dest="num", type=int, default=100, help="number of samples (default: 100)")
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
    g = parser.add_argument_group("classifier guidance (Dhariwal & Nichol 2021)")
    g.add_argument("--classifier", default=None, help="a noisy-classifier run (ddpm-ref train-classifier)")
    g.add_argument("--classifier-scale", type=float, default=None, help="guidance scale s >= 0 (default: 1)")


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


def run(args) -> int:
    import numpy as np

    from ddpm_ref._checks import check_positive_int
    from ddpm_ref.sample import ModelEps, sample_ddim, sample_ddpm, save_grid_png
    from ddpm_ref.latent import decode_latents
    from ddpm_ref.runs import load_run
    from ddpm_ref.schedules import make_schedule

    n = check_positive_int("--num", args.num)
    check_positive_int("--steps", args.steps)
    model, meta = load_run(args.run_dir, args.raw)
    cfg = model.config
    sched = make_schedule(meta["train"]["schedule"], meta["train"]["T"])
    clf, latent = _issue12_setup(args, model, meta)
    y = labels_for(args, cfg.get("num_classes") or (clf.config["num_classes"] if clf else None), n)
    is_image = model.kind == "unet"
    shape = (n, cfg["in_channels"], cfg["image_size"], cfg["image_size"]) if is_image else (n, cfg["dim"])
    common = dict(rng=args.seed, y=y, guidance=args.guidance, clip_x0=args.clip_x0,
                  return_trajectory=bool(args.trajectory), progress=not args.no_progress)
    if clf is not None:
        out = _classifier_guided(args, model, clf, sched, shape, y)
    elif args.sampler == "ddpm":
        out = sample_ddpm(ModelEps(model), sched, shape, variance=args.variance, **common)
    else:
        out = sample_ddim(ModelEps(model), sched, shape, steps=args.steps, eta=args.eta, **common)
    x, traj = out if args.trajectory else (out, None)
    x = decode_latents(args.run_dir, x) if latent else x        # a latent run: x̂ = D(z / s)
    base = args.run_dir[:-4] if args.run_dir.endswith(".npz") else args.run_dir
    path = args.out or os.path.join(base if os.path.isdir(base) else os.path.dirname(base) or ".",
                                    f"samples_{args.sampler}.png")
    if is_image:
        save_grid_png(x, path, nrow=cfg.get("num_classes") or None)
    else:
        _scatter(x, path)
    print(f"wrote {n} samples to {path}")
    if args.npz:
        np.savez(args.npz, samples=x.astype(np.float32), labels=np.zeros(0) if y is None else y)
        print(f"wrote {args.npz}")
    if traj is not None:
        from ddpm_ref.plots import save
        from ddpm_ref.plots.training import plot_trajectory

        if is_image:
            d, name = os.path.split(os.path.abspath(args.trajectory))
            save(plot_trajectory(traj, 0, f"{args.sampler.upper()} reverse trajectory"), d,
                 name[:-4] if name.endswith(".png") else name)
            print(f"wrote {args.trajectory}")
    return 0


def _scatter(x, path):
    from ddpm_ref.plots import new_figure, save

    fig = new_figure(4, 4)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(x[:, 0], x[:, 1], s=3)
    ax.set_aspect("equal")
    d, name = os.path.split(os.path.abspath(path))
    save(fig, d, name[:-4] if name.endswith(".png") else name)


def _issue12_setup(args, model, meta):
    """``(noisy classifier or None, latent run info or None)``; refuses what they cannot do."""
    from ddpm_ref.latent import latent_info
    from ddpm_ref.runs import load_run

    if model.kind not in ("unet", "mlp"):
        raise ValueError(f"{args.run_dir} holds a {model.kind!r}, not a diffusion model; sample a U-Net/MLP run")
    latent = latent_info(args.run_dir)
    if latent and args.trajectory:
        raise ValueError("--trajectory is not available for a latent run (its chain is in latent space)")
    if args.classifier is None:
        if args.classifier_scale is not None:
            raise ValueError("--classifier-scale needs --classifier CLASSIFIER_RUN (ddpm-ref train-classifier)")
        return None, latent
    scale = 1.0 if args.classifier_scale is None else args.classifier_scale
    if not (scale >= 0 and scale < float("inf")):
        raise ValueError(f"--classifier-scale must be a finite number >= 0, got {args.classifier_scale}")
    for flag, given in (("--guidance", args.guidance), ("--unconditional", args.unconditional),
                        ("--trajectory", args.trajectory), ("--clip-x0", args.clip_x0)):
        if given:
            raise ValueError(f"--classifier cannot be combined with {flag}")
    if model.kind != "unet":
        raise ValueError(f"classifier guidance needs an image model; this run's model is a {model.kind!r}")
    clf, cmeta = load_run(args.classifier)
    if clf.kind != "noisy_classifier":
        raise ValueError(f"--classifier {args.classifier} is a {clf.kind!r} run, not a noisy classifier "
                         "(ddpm-ref train-classifier)")
    c, m = clf.config, model.config
    if (c["in_channels"], c["image_size"]) != (m["in_channels"], m["image_size"]):
        raise ValueError(f"the classifier takes {c['in_channels']}×{c['image_size']}×{c['image_size']} inputs, "
                         f"the model makes {m['in_channels']}×{m['image_size']}×{m['image_size']}"
                         + (" (latents: a latent run cannot be guided by a pixel classifier)" if latent else ""))
    if m.get("num_classes") is not None and m["num_classes"] != c["num_classes"]:
        raise ValueError(f"the classifier has {c['num_classes']} classes, the model {m['num_classes']}")
    ours, theirs = (meta["train"]["schedule"], meta["train"]["T"]), (cmeta["train"]["schedule"], cmeta["train"]["T"])
    if ours != theirs:
        raise ValueError(f"the classifier was trained on the {theirs[0]} schedule with T={theirs[1]}, "
                         f"the model on {ours[0]} with T={ours[1]}")
    args.classifier_scale = scale
    return clf, latent


def _classifier_guided(args, model, clf, sched, shape, y):
    """D&N's Algorithm 1 (DDPM) or 2 (DDIM); a class-conditional model's ε is conditioned on y too."""
    from ddpm_ref.guidance import sample_ddim_guided, sample_ddpm_guided
    from ddpm_ref.sample import ModelEps

    net = ModelEps(model)
    cond = model.config.get("num_classes") is not None
    eps = (lambda xt, t, _=None: net(xt, t, y)) if cond else net
    common = dict(scale=args.classifier_scale, rng=args.seed, progress=not args.no_progress)
    if args.sampler == "ddpm":
        return sample_ddpm_guided(eps, clf.grad_log_prob, sched, shape, y, variance=args.variance, **common)
    return sample_ddim_guided(eps, clf.grad_log_prob, sched, shape, y, steps=args.steps, eta=args.eta, **common)
