"""``ddpm-ref train``: Algorithm 1 on the digits, a 2-D toy set or your own IDX/.npz images.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref train                                   # the demo's U-Net on the digits, runs/train/
    ddpm-ref train --data moons --steps 2000         # the MLP on two moons
    ddpm-ref train --data my_images.npz --uncond     # your images (N, H, W) or (N, C, H, W)
    ddpm-ref train --resume                          # continue runs/train to its saved --steps
    ddpm-ref train --resume --steps 6000             # ... or to step 6000
    ddpm-ref train --device cuda                     # the U-Net's conv/attention as CUDA kernels
    ddpm-ref train --prompts --run-dir runs/prompts  # reads prompts ("thick seven") by cross-attention

Ctrl-C (or SIGTERM, SIGHUP) saves a checkpoint at the end of the current step and exits with
status 130 (143, 129); ``--resume`` then continues exactly where it stopped (bit-identical to a
run that was never interrupted). A second Ctrl-C stops at once without writing. One run directory
takes one training process at a time (``<run-dir>/.lock``).

``--resume`` continues the saved run: flags left out take the saved values; ``--steps``,
``--checkpoint-every``, ``--lr``, ``--device`` and ``--workers`` may change (each change is
printed); any other flag that differs from the saved run is refused, naming it. A directory that
already holds a run is refused without ``--resume`` or ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os

HELP = "train a diffusion model (Algorithm 1, L_simple) and save checkpoints (Ctrl-C safe, --resume)"


def _ints(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count
    from ddpm_ref.train import DEMO_MODEL, TrainConfig

    d = TrainConfig()
    # Defaults are None so that --resume can tell a flag that was given from one that was not;
    # a new run fills them in from TrainConfig / DEMO_MODEL (the values shown in the help).
    parser.add_argument("--data", help="digits, moons, swissroll, gmm, or a path to an IDX / .npz file (default: digits)")
    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/train",
                        help="checkpoint directory (default: runs/train)")
    parser.add_argument("--steps", type=count, help=f"total optimiser steps (default: {d.steps}; "
                                                    "--resume: the saved run's)")
    parser.add_argument("--batch-size", type=count, help=f"default: {d.batch_size}")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d.lr})")
    parser.add_argument("--warmup", type=count, help=f"linear lr warm-up steps (default: {d.warmup})")
    parser.add_argument("--grad-clip", type=float, help=f"global-norm clip, 0: off (default: {d.grad_clip})")
    parser.add_argument("--ema-decay", type=float, help=f"default: {d.ema_decay}")
    parser.add_argument("--schedule", help=f"noise schedule (default: {d.schedule})")
    parser.add_argument("--T", type=count, help=f"diffusion steps (default: {d.T})")
    cond = parser.add_mutually_exclusive_group()
    cond.add_argument("--cond", action="store_true", default=None,
                      help="class-conditional with label dropout (the default when the data has labels; "
                           "an error when it has none)")
    cond.add_argument("--uncond", action="store_true", default=None,
                      help="train without labels (default: class-conditional when the data has labels)")
    parser.add_argument("--p-uncond", type=float, help=f"label dropout for guidance (default: {d.p_uncond})")
    parser.add_argument("--seed", type=count, help=f"default: {d.seed}")
    parser.add_argument("--checkpoint-every", type=count, help=f"default: {d.checkpoint_every} (0: at the end)")
    parser.add_argument("--n-points", type=count, help=f"points of a 2-D set (default: {d.n_points})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir: flags left out keep the saved values; only "
                             "--steps, --checkpoint-every, --lr, --device and --workers may change")
    parser.add_argument("--overwrite", action="store_true", help="start a new run in a --run-dir that holds one")
    parser.add_argument("--device", help="cpu or cuda (CuPy + an NVIDIA GPU); default: cpu")
    parser.add_argument("--workers", type=count, help=f"CPU threads sharing a batch (default: {d.workers})")
    g = parser.add_argument_group("U-Net (image data)")
    m = DEMO_MODEL
    g.add_argument("--base-channels", type=count, help=f"default: {m['base_channels']}")
    g.add_argument("--channel-mults", type=_ints, help="e.g. 1,2 (default: 1,2)")
    g.add_argument("--num-res-blocks", type=count, help=f"default: {m['num_res_blocks']}")
    g.add_argument("--attention", type=_ints, help="resolutions with attention, e.g. 4 ('' for none; default: 4)")
    g.add_argument("--groups", type=count, help=f"default: {m['groups']}")
    g.add_argument("--dropout", type=float, help=f"default: {m['dropout']}")
    _add_target_arguments(parser, d)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = parser.add_argument_group("latent diffusion (digits only)")
    g.add_argument("--latent", action="store_true",
                   help="train on the digits' latents z = s·E(x) of --autoencoder (a copy is kept in the run)")
    g.add_argument("--autoencoder", default=None, help="an autoencoder run (ddpm-ref train-autoencoder)")
    g = parser.add_argument_group("prompts (digits only; defines the run)")
    g.add_argument("--prompts", action="store_true", default=None,
                   help="condition on prompts made from the labels and strokes (\"thick seven\", \"digit\", ...) "
                        "through cross-attention, instead of the label embedding; --p-uncond drops whole prompts")


def _add_target_arguments(parser: argparse.ArgumentParser, d) -> None:
    """Issue 11's flags: what the network predicts, learned variances, zero terminal SNR (all define the run)."""
    from ddpm_ref.diffusion import PREDICTIONS

    g = parser.add_argument_group("prediction target and variance (define the run: --resume keeps them)")
    g.add_argument("--prediction", choices=PREDICTIONS,
                   help=f"what the network learns: eps (Ho et al.), x0 or v (Salimans & Ho) (default: {d.prediction})")
    g.add_argument("--learn-sigma", action="store_true", default=None,
                   help="learn the variances too (Nichol & Dhariwal): loss L_simple + λ·L_vlb; image data only")
    g.add_argument("--hybrid-lambda", type=float,
                   help=f"λ of L_hybrid, with --learn-sigma (default: {d.hybrid_lambda})")
    g.add_argument("--zero-terminal-snr", action="store_true", default=None,
                   help="rescale the --schedule to alpha_bar_T = 0 (Lin et al. 2024); needs --prediction v or x0")


#: Flags of the U-Net group → the model's config keys.
UNET_FLAGS = {"base_channels": "base_channels", "channel_mults": "channel_mults",
              "num_res_blocks": "num_res_blocks", "attention": "attention_resolutions",
              "groups": "groups", "dropout": "dropout"}


def _cuda(device: str):
    """``(ops, (to_device, to_host))`` for --device cuda; a one-line error without CuPy / a GPU."""
    if device == "cpu":
        return None, None
    if device != "cuda":
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    import kernels

    ok, why = kernels.cuda_available()
    if not ok:
        raise ValueError(f"--device cuda needs CuPy and an NVIDIA GPU, and none is usable here ({why}); "
                         "use --device cpu")
    import cupy

    return kernels.get_ops("cuda"), (cupy.asarray, lambda a: a.get() if hasattr(a, "get") else a)


def _given(args) -> dict:
    """The TrainConfig fields set on the command line."""
    import dataclasses

    from ddpm_ref.train import TrainConfig

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name != "cond" and getattr(args, f.name, None) is not None}
    if args.cond or args.uncond:
        given["cond"] = bool(args.cond)
    if args.prompts and "cond" not in given and not args.resume:
        given["cond"] = False                    # prompts replace the label embedding
    return given


def _unet_options(args) -> dict:
    """The U-Net flags that were given, as model config entries."""
    from ddpm_ref.preflight import check_number

    if args.dropout is not None:
        check_number("--dropout", args.dropout, 0.0, 1.0)
    return {key: tuple(getattr(args, a)) if isinstance(getattr(args, a), tuple) else getattr(args, a)
            for a, key in UNET_FLAGS.items() if getattr(args, a) is not None}


def _resume_config(args, given: dict, unet: dict):
    """The saved run's configuration with the given flags applied (``train`` refuses what may not change)."""
    import dataclasses

    from ddpm_ref.checkpoint import load_checkpoint
    from ddpm_ref.runs import checkpoint_path, check_description
    from ddpm_ref.train import TrainConfig

    path = checkpoint_path(args.run_dir)
    if not os.path.isfile(path):
        return TrainConfig(**given)                  # train() says there is nothing to resume
    _, meta = load_checkpoint(path)
    check_description(meta, path)
    saved_model = meta["model"]["config"]
    for a, key in UNET_FLAGS.items():
        value = unet.get(key)
        saved = saved_model.get(key)
        if value is not None and (list(value) if isinstance(value, tuple) else value) != saved:
            raise ValueError(f"--resume: --{a.replace('_', '-')} {value!r} differs from the saved model's "
                             f"{saved!r}; a resumed run keeps its model (start another --run-dir)")
    if given.get("prompts") and not meta["train"].get("prompts", False):
        raise ValueError("--resume: --prompts differs from the saved run, which reads class labels; a resumed run "
                         "keeps its model (start another --run-dir)")
    return dataclasses.replace(TrainConfig(**meta["train"]), **given)


def config_from_args(args):
    """``(config, (kind, model_config) or None)`` from the flags; for --resume the saved run's."""
    from ddpm_ref.data import load_dataset
    from ddpm_ref.run_checks import check_sizes
    from ddpm_ref.runlock import check_run_dir
    from ddpm_ref.train import DEMO_MODEL, TrainConfig, default_model_config

    check_run_dir(args.run_dir)                  # a folder, creatable, writable; not x.npz
    given, unet = _given(args), _unet_options(args)
    if args.resume:
        return _learned_variance(args, _resume_config(args, given, unet).validate(), None)
    config = TrainConfig(**given).validate()
    check_sizes(config)
    data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    if config.cond and data.num_classes is None and not args.cond:
        config.cond = False                      # unlabelled data: an unconditional model
    return _learned_variance(args, config, default_model_config(data, config.cond, config.seed, {**DEMO_MODEL, **unet},
                                                                prompts=config.prompts))


def _learned_variance(args, config, model) -> tuple:
    """``(config, model)`` with the model's output widened to [prediction | v_σ] for --learn-sigma,
    after the checks that need the data: learned variances on images only, --hybrid-lambda with them."""
    if args.hybrid_lambda is not None and not config.learn_sigma:
        raise ValueError("--hybrid-lambda weighs the L_vlb term that only a --learn-sigma run trains; "
                         "add --learn-sigma or leave --hybrid-lambda out")
    if model is None or not config.learn_sigma:          # --resume: the saved model already has it
        return config, model
    kind, cfg = model
    if kind != "unet":
        raise ValueError(f"--learn-sigma needs image data: L_vlb's term at t = 1 is the likelihood of 8-bit "
                         f"pixels, which the points of --data {config.data} are not")
    return config, (kind, {**cfg, "learn_sigma": True})


def run(args) -> int:
    from ddpm_ref.train import train

    config, model = config_from_args(args)
    ops, device = _cuda(config.device)
    data, model = _latent(args, config, model)          # data None: pixel space (config.data)
    state = train(config, args.run_dir, resume=args.resume, overwrite=args.overwrite, model_kind_config=model,
                  progress=not args.no_progress, device_ops=ops, device=device, data=data)
    tail = state.losses[-100:]
    print(f"step {state.step}: loss {sum(tail) / max(len(tail), 1):.4f} (mean of the last {len(tail)} steps), "
          f"{state.seconds:.1f} s; checkpoint in {args.run_dir}")
    return 0


def _latent(args, config, model):
    """``(latent Dataset or None, model (kind, config))`` for --latent / --autoencoder / --resume."""
    from ddpm_ref.latent import attach_autoencoder, latent_info, latent_run_data

    if args.resume:
        if args.latent or args.autoencoder:
            raise ValueError("--resume continues a run as it was trained; drop --latent/--autoencoder")
        return (latent_run_data(args.run_dir) if latent_info(args.run_dir) else None), model
    if not args.latent and not args.autoencoder:
        return None, model
    if not (args.latent and args.autoencoder):
        raise ValueError("latent diffusion needs both --latent and --autoencoder AE_RUN")
    if config.data != "digits":
        raise ValueError(f"--latent trains on the digits' latents (the autoencoder's data); got --data {config.data}")
    attach_autoencoder(args.run_dir, args.autoencoder, seed=config.seed)
    data = latent_run_data(args.run_dir)
    kind, cfg = model
    cfg = dict(cfg, in_channels=int(data.x.shape[1]), image_size=int(data.x.shape[2]))
    return data, (kind, cfg)
