"""``ddpm-ref sample``: draw samples from a trained run, as a PNG grid (and optionally .npz).

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref sample --run-dir runs/demo                          # DDPM (Algorithm 2), 100 digits
    ddpm-ref sample --run-dir runs/demo --sampler ddim --steps 50 --eta 0 --guidance 2 --label 7
    ddpm-ref sample --run-dir runs/demo --trajectory traj.png    # also one reverse chain
    ddpm-ref sample --run-dir runs/prompts --prompt "thick seven" --prompt "thin seven" --guidance 1

Samples of a class-conditional model are drawn class by class (column j of the grid is class j)
unless ``--label`` fixes one class; ``--unconditional`` uses the null label. A model trained with
``--prompts`` takes one or more ``--prompt`` (column j of the grid is prompt j); without one it
samples with the null (empty) prompt.

Every option, every output path (``--out``, ``--npz``, ``--trajectory``) and the memory that
``-n`` samples need are checked before sampling starts. The same ``--seed`` gives the same bits on
any machine with the same BLAS thread count: the U-Net's batch is split over a fixed
``ddpm_ref.runs.SAMPLING_WORKERS`` threads, never over "as many as there are CPUs".

Why just over 400 lines: every sampler, classifier guidance, prompts and latent runs meet here, and
each flag combination that cannot work is refused in one line before the run is loaded; the
sampling itself lives in ``ddpm_ref.sample``, ``guidance``, ``score`` and ``prompts``.
"""

from __future__ import annotations

import argparse
import os

HELP = ("sample a trained model with DDPM (Algorithm 2), DDIM, Langevin, the reverse SDE or the "
        "probability-flow ODE, write a PNG grid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count

    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (or a checkpoint .npz); default: runs/demo")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/samples_<sampler>.png)")
    parser.add_argument("-n", "--n", "--num", dest="num", type=count, default=100,
                        help="number of samples (default: 100)")
    parser.add_argument("--sampler", "--method", dest="sampler", choices=SAMPLERS, default="ddpm",
                        help="ddpm (Algorithm 2), ddim, or a score sampler: langevin, sde, ode-euler, ode-heun")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"steps of ddim and the score samplers (default: {DEFAULT_STEPS}; ddpm visits all T)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM η (0: deterministic, 1: DDPM-like)")
    parser.add_argument("--variance", choices=("fixed_small", "fixed_large"), default="fixed_small",
                        help="DDPM σ_t²: β̃_t (fixed_small) or β_t (fixed_large)")
    parser.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w (default: 0)")
    parser.add_argument("--label", type=int, default=None, help="one class for all samples")
    parser.add_argument("--unconditional", action="store_true", help="use the null label (no class)")
    parser.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                        help="a prompt for a model trained with --prompts, e.g. \"thick seven\" (repeat for "
                             "several: the samples are split between them)")
    parser.add_argument("--clip-x0", action="store_true", help="clip the predicted x_0 to [-1, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--npz", default=None, help="also save the samples (float32) to this .npz")
    parser.add_argument("--trajectory", default=None, help="also draw the reverse chain of sample 0 to this PNG")
    _add_sampler_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")
    g = parser.add_argument_group("classifier guidance (Dhariwal & Nichol 2021)")
    g.add_argument("--classifier", default=None, help="a noisy-classifier run (ddpm-ref train-classifier)")
    g.add_argument("--classifier-scale", type=float, default=None, help="guidance scale s >= 0 (default: 1)")


def labels_for(args, num_classes, n):
    """The label array for the samples (None: unconditional) from --label / --unconditional
    (or --prompt: label j means prompt j, and ``num_classes`` is the number of prompts)."""
    import numpy as np

    if args.prompt:
        return np.arange(n, dtype=np.int64) % len(args.prompt)
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


#: --sampler's choices: Algorithm 2, DDIM, and the score-based samplers of ``ddpm_ref.score``.
SAMPLERS = ("ddpm", "ddim", "langevin", "sde", "ode-euler", "ode-heun")
SCORE_SAMPLERS = ("langevin", "sde", "ode-euler", "ode-heun")
DEFAULT_STEPS = 50


def _add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """Issue 11's flags: which timesteps a sampler visits, and how x̂_0 is kept in range."""
    from ddpm_ref.preflight import count

    g = parser.add_argument_group("timesteps and x̂_0 (the run's --prediction, --learn-sigma and "
                                  "--zero-terminal-snr are read from its saved config)")
    g.add_argument("--spacing", choices=("linspace", "leading", "trailing"), default=None,
                   help="which --steps timesteps ddim and the score samplers visit (diffusers' timestep_spacing; "
                        "default: ddim round(linspace(1, T, steps)), langevin geometric noise levels, sde/ode "
                        "linspace)")
    g.add_argument("--steps-offset", type=count, default=None,
                   help="shift of ddim's --spacing leading, as diffusers' steps_offset (default: 0)")
    g.add_argument("--threshold", choices=("dynamic",), default=None,
                   help="dynamic thresholding of x̂_0 (Saharia et al. 2022) instead of clipping; ddpm and ddim")
    g.add_argument("--threshold-percentile", type=float, default=None,
                   help="the percentile p of |x̂_0| that --threshold dynamic scales to 1 (default: 0.995)")
    g.add_argument("--clip-range", type=float, default=None,
                   help="clip x̂_0 to [-r, r] (implies --clip-x0, which uses r = 1); ddpm and ddim")


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


def _check_sampler_flags(args) -> None:
    """Flag combinations that cannot work, refused before the run is loaded. Then --steps gets its
    default and --clip-range turns clipping on (``args`` is updated)."""
    from ddpm_ref.preflight import check_number

    s, spacing = args.sampler, args.spacing
    for flag, value in (("--steps", args.steps), ("--spacing", spacing)):
        if s == "ddpm" and value is not None:
            raise ValueError(f"{flag} is for ddim and the score samplers: --sampler ddpm (Algorithm 2) visits "
                             "every t = T, ..., 1")
    if args.steps_offset is not None and (spacing != "leading" or s in SCORE_SAMPLERS):
        raise ValueError("--steps-offset shifts --spacing leading of --sampler ddim only (diffusers ignores it for "
                         f"the other spacings); got --sampler {s} --spacing {spacing or '(default)'}")
    if args.threshold_percentile is not None:
        if args.threshold is None:
            raise ValueError("--threshold-percentile needs --threshold dynamic")
        if check_number("--threshold-percentile", args.threshold_percentile, 0.0, 1.0) == 0:
            raise ValueError("--threshold-percentile must be in (0, 1] (e.g. 0.995), got 0")
    if args.threshold and (args.clip_x0 or args.clip_range is not None):
        raise ValueError("--threshold dynamic and --clip-x0/--clip-range both keep x̂_0 in range: choose one")
    if args.clip_range is not None and check_number("--clip-range", args.clip_range, 0.0) == 0:
        raise ValueError("--clip-range must be > 0 (x̂_0 is clipped to [-r, r]), got 0")
    if s in SCORE_SAMPLERS:
        for flag, value in (("--clip-x0", args.clip_x0), ("--clip-range", args.clip_range is not None),
                            ("--threshold", args.threshold), ("--trajectory", args.trajectory)):
            if value:
                raise ValueError(f"{flag} is for ddpm and ddim: --sampler {s} follows the score and forms x̂_0 "
                                 "only at its last step (and keeps no trajectory)")
    args.steps = DEFAULT_STEPS if args.steps is None else args.steps
    args.clip_x0 = bool(args.clip_x0 or args.clip_range is not None)


def _run_schedule(args, meta) -> tuple:
    """The run's ``TrainConfig`` and the schedule it was trained on (``TrainConfig.make_schedule``:
    rescaled when it has zero terminal SNR), after the checks that need the run."""
    import dataclasses

    from ddpm_ref.timesteps import sampling_timesteps
    from ddpm_ref.train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in meta["train"].items() if k in known})
    s = args.sampler
    if config.zero_terminal_snr and config.prediction == "eps":
        raise ValueError("this run pairs --prediction eps with --zero-terminal-snr: an eps-prediction cannot "
                         "recover x_0 at t = T (alpha_bar_T = 0); retrain with --prediction v or x0")
    if config.zero_terminal_snr and s in ("sde", "ode-euler", "ode-heun"):
        raise ValueError(f"--sampler {s} steps in log alpha_bar, which is infinite at this run's zero terminal "
                         "SNR (trained with --zero-terminal-snr); use ddpm, ddim or langevin")
    if config.learn_sigma and s == "ddim" and args.eta == 0:
        raise ValueError("this run learned its variances (--learn-sigma), and the learned sigma is unused by "
                         "deterministic DDIM (--eta 0), which adds no noise; use --sampler ddpm to sample with "
                         "it (ddim with --eta > 0 runs, with sigma from eta)")
    if s in SCORE_SAMPLERS and args.steps > config.T:
        raise ValueError(f"--steps {args.steps} is more than the run's T={config.T}; --sampler {s} visits "
                         "a subsequence of 1..T")
    if args.spacing is not None:
        try:
            sampling_timesteps(config.T, args.steps, args.spacing, args.steps_offset or 0)
        except ValueError as err:
            raise ValueError(f"--spacing {args.spacing} --steps {args.steps} --steps-offset "
                             f"{args.steps_offset or 0}: {err}") from None
    return config, config.make_schedule()


def _check_prompts(args, model) -> None:
    """--prompt needs a model that reads prompts, and every word in its vocabulary (checked before sampling)."""
    from ddpm_ref.prompts import has_prompts, tokenize

    if not has_prompts(model.config):
        if args.prompt:
            raise ValueError(f"--prompt needs a model trained with --prompts (cross-attention); {args.run_dir} "
                             "reads no prompts" + (" (it is class-conditional: use --label)"
                                                   if model.config.get("num_classes") is not None else ""))
        return
    for flag, given in (("--label", args.label is not None), ("--unconditional", args.unconditional),
                        ("--classifier", args.classifier)):
        if given:
            raise ValueError(f"{args.run_dir} reads prompts, not labels: use --prompt TEXT instead of {flag}"
                             if flag != "--classifier" else "--classifier guides by class labels; this run "
                             "reads prompts (use --prompt with --guidance)")
    if args.guidance and not args.prompt:
        raise ValueError("--guidance needs --prompt: classifier-free guidance mixes the prompt's prediction "
                         "with the null prompt's")
    cfg = model.config
    for p in args.prompt or ():
        try:
            tokenize(p, cfg["prompt_vocab"], cfg["prompt_length"])
        except ValueError as err:
            raise ValueError(f"--prompt: {err}") from None


def _draw(args, model, config, sched, shape, common):
    """Run the chosen sampler with the run's prediction target; its result (and trajectory)."""
    from ddpm_ref.prompts import PromptEps
    from ddpm_ref.sample import ModelEps, sample_ddim, sample_ddpm

    net = PromptEps(model, args.prompt) if args.prompt else ModelEps(model)
    if args.sampler in SCORE_SAMPLERS:
        return _draw_score(args, _ScoreEps(net, sched, config.prediction, args.guidance), sched, shape,
                           common["y"])
    keep = dict(prediction=config.prediction, threshold=args.threshold,
                clip_range=1.0 if args.clip_range is None else args.clip_range,
                percentile=0.995 if args.threshold_percentile is None else args.threshold_percentile)
    if args.sampler == "ddpm":
        return sample_ddpm(net, sched, shape, variance=args.variance, **common, **keep)
    return sample_ddim(net, sched, shape, steps=args.steps, eta=args.eta, spacing=args.spacing,
                       steps_offset=args.steps_offset or 0, **common, **keep)


def _draw_score(args, eps_model, sched, shape, y):
    """Langevin, the reverse SDE or the probability-flow ODE (``ddpm_ref.score``), --steps steps."""
    from ddpm_ref.score import sample_langevin, sample_probability_flow, sample_reverse_sde

    kw = dict(steps=args.steps, rng=args.seed, y=y)
    if args.spacing is not None:          # else each sampler's own: geometric for Langevin, linspace
        kw["spacing"] = args.spacing
    if args.sampler == "langevin":
        return sample_langevin(eps_model, sched, shape, **kw)
    if args.sampler == "sde":
        return sample_reverse_sde(eps_model, sched, shape, **kw)
    return sample_probability_flow(eps_model, sched, shape, solver=args.sampler[len("ode-"):], **kw)


class _ScoreEps:
    """The run's network as the ε-model the score samplers take: guidance mixed in (``guided_eps``),
    a learned v_σ dropped (the score needs ε only), an x_0- or v-prediction turned into ε
    (``eps_from_prediction``)."""

    def __init__(self, net, sched, prediction: str, guidance: float):
        self.net, self.sched, self.prediction, self.guidance = net, sched, prediction, guidance
        self.dtype, self.num_classes = net.dtype, net.num_classes

    def __call__(self, xt, t, y=None):
        import numpy as np

        from ddpm_ref.prediction import eps_from_prediction
        from ddpm_ref.sample import guided_eps

        out = np.asarray(guided_eps(self.net, xt, t, y, self.guidance))[:, :xt.shape[1]]
        return out if self.prediction == "eps" else eps_from_prediction(self.sched, xt, t, out, self.prediction)


def run(args) -> int:
    import numpy as np

    from ddpm_ref.checkpoint import save_npz_atomic
    from ddpm_ref.latent import decode_latents
    from ddpm_ref.runs import load_run
    from ddpm_ref.sample import save_grid_png

    _check_sampler_flags(args)
    _check_values(args)
    n, out = args.num, _outputs(args)
    model, meta = load_run(args.run_dir, args.raw)
    _check_prompts(args, model)
    clf, latent = _issue12_setup(args, model, meta)              # classifier guidance, a latent run
    shape, is_image = _check_run(args, model, meta, n)
    config, sched = _run_schedule(args, meta)
    y = labels_for(args, model.config.get("num_classes") or (clf.config["num_classes"] if clf else None), n)
    common = dict(rng=args.seed, y=y, guidance=args.guidance, clip_x0=args.clip_x0,
                  return_trajectory=bool(args.trajectory), progress=not args.no_progress)
    if clf is not None:
        result = _classifier_guided(args, model, clf, sched, shape, y)
    else:
        result = _draw(args, model, config, sched, shape, common)
    x, traj = result if args.trajectory else (result, None)
    x = decode_latents(args.run_dir, x) if latent else x         # a latent run: x̂ = D(z / s)
    if is_image:
        save_grid_png(x, out["png"], nrow=len(args.prompt) if args.prompt else model.config.get("num_classes") or None)
    else:
        _scatter(x, out["png"])
    print(f"wrote {n} samples to {out['png']}")
    if "npz" in out:
        extra = {"prompts": np.array(args.prompt)} if args.prompt else {}   # labels[i]: the index of i's prompt
        save_npz_atomic(out["npz"], samples=x.astype(np.float32),
                        labels=np.zeros(0, dtype=np.int64) if y is None else y, **extra)
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
    if meta["train"].get("prediction", "eps") != "eps" or meta["train"].get("learn_sigma"):
        raise ValueError("--classifier guides an eps-prediction model with fixed variances; this run predicts "
                         f"{meta['train'].get('prediction')!r}" + (" with learned variances" if meta["train"].get("learn_sigma") else ""))
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
