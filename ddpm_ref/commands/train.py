"""``ddpm-ref train``: Algorithm 1 on the digits, a 2-D toy set or your own IDX/.npz images.

    ddpm-ref train                                   # the demo's U-Net on the digits, runs/train/
    ddpm-ref train --data moons --steps 2000         # the MLP on two moons
    ddpm-ref train --data my_images.npz --uncond     # your images (N, H, W) or (N, C, H, W)
    ddpm-ref train --steps 6000 --resume             # continue runs/train to step 6000
    ddpm-ref train --device cuda                     # the U-Net's conv/attention as CUDA kernels

Ctrl-C saves a checkpoint at the end of the current step; ``--resume`` then continues exactly
where it stopped (bit-identical to a run that was never interrupted).
"""

from __future__ import annotations

import argparse

HELP = "train a diffusion model (Algorithm 1, L_simple) and save checkpoints (Ctrl-C safe, --resume)"


def _ints(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.train import TrainConfig

    d = TrainConfig()
    parser.add_argument("--data", default=d.data,
                        help="digits, moons, swissroll, gmm, or a path to an IDX / .npz file (default: digits)")
    parser.add_argument("--run-dir", "--out", dest="run_dir", default="runs/train",
                        help="checkpoint directory (default: runs/train)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"total optimiser steps (default: {d.steps})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default: {d.lr})")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="linear lr warm-up steps")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help="global-norm clip (0: off)")
    parser.add_argument("--ema-decay", type=float, default=d.ema_decay)
    parser.add_argument("--schedule", default=d.schedule, help="noise schedule (default: linear)")
    parser.add_argument("--T", type=int, default=d.T, help="diffusion steps (default: 1000)")
    cond = parser.add_mutually_exclusive_group()
    cond.add_argument("--cond", action="store_true",
                      help="class-conditional with label dropout (the default when the data has labels; "
                           "an error when it has none)")
    cond.add_argument("--uncond", action="store_true",
                      help="train without labels (default: class-conditional when the data has labels)")
    parser.add_argument("--p-uncond", type=float, default=d.p_uncond,
                        help="label dropout for classifier-free guidance (default: 0.1)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--n-points", type=int, default=d.n_points, help="points of a 2-D set")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CuPy + an NVIDIA GPU)")
    parser.add_argument("--workers", type=int, default=d.workers, help="CPU threads sharing a batch (default: 2)")
    g = parser.add_argument_group("U-Net (image data)")
    g.add_argument("--base-channels", type=int, default=32)
    g.add_argument("--channel-mults", type=_ints, default=(1, 2), help="e.g. 1,2")
    g.add_argument("--num-res-blocks", type=int, default=1)
    g.add_argument("--attention", type=_ints, default=(4,), help="resolutions with attention, e.g. 4 ('' for none)")
    g.add_argument("--groups", type=int, default=8)
    g.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = parser.add_argument_group("latent diffusion (digits only)")
    g.add_argument("--latent", action="store_true",
                   help="train on the digits' latents z = s·E(x) of --autoencoder (a copy is kept in the run)")
    g.add_argument("--autoencoder", default=None, help="an autoencoder run (ddpm-ref train-autoencoder)")


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


def config_from_args(args):
    from ddpm_ref.data import load_dataset
    from ddpm_ref.train import TrainConfig

    config = TrainConfig(data=args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         warmup=args.warmup, grad_clip=args.grad_clip, ema_decay=args.ema_decay,
                         schedule=args.schedule, T=args.T, cond=not args.uncond, p_uncond=args.p_uncond,
                         seed=args.seed, checkpoint_every=args.checkpoint_every, n_points=args.n_points,
                         device=args.device, workers=args.workers).validate()
    if args.resume:
        return config, None
    data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    if config.cond and data.num_classes is None and not args.cond:
        config.cond = False                      # unlabelled data: an unconditional model
    unet = dict(base_channels=args.base_channels, channel_mults=tuple(args.channel_mults),
                num_res_blocks=args.num_res_blocks, attention_resolutions=tuple(args.attention),
                groups=args.groups, dropout=args.dropout)
    from ddpm_ref.train import default_model_config

    return config, default_model_config(data, config.cond, config.seed, unet)


def run(args) -> int:
    from ddpm_ref.train import train

    config, model = config_from_args(args)
    data, model = _latent(args, config, model)          # data None: pixel space (config.data)
    ops, device = _cuda(args.device)
    state = train(config, args.run_dir, resume=args.resume, model_kind_config=model,
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
