"""``ddpm-ref edit``: SDEdit (Meng et al. 2022) on your images: noise them to t0, denoise them back.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref edit --run-dir runs/demo --input sketch.png --strength 0.5
    ddpm-ref edit --run-dir runs/demo --input digits.npz --strength 0.3 --out edits.png

``--strength f`` in (0, 1] sets t0 = round(f · T): small f keeps the input (a light touch-up),
f = 1 forgets it (a fresh sample). ``--input``: a .npz (keys ``x``/``images``/``x_train``/``X``) or
a .png of the model's size (images are not resized). The PNG grid has one column per image and
two rows: input, edit. The model is run unconditionally (a class-conditional model with its
null label).
"""

from __future__ import annotations

import argparse
import os

HELP = "SDEdit: noise images (.npz/.png) to t0 = strength·T and denoise them with a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (default: runs/demo)")
    parser.add_argument("--input", required=True, help="images to edit: .npz or .png")
    parser.add_argument("--strength", type=float, required=True, help="f in (0, 1]: t0 = round(f·T)")
    parser.add_argument("--num", type=int, default=None, help="edit only the first NUM images")
    parser.add_argument("--variance", choices=("fixed_small", "fixed_large"), default="fixed_small")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/edit.png)")
    parser.add_argument("--npz", default=None, help="also save the edits (float32) to this .npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ddpm_ref._checks import check_positive_int
    from ddpm_ref.data.user_images import read_user_images
    from ddpm_ref.inpaint import sdedit
    from ddpm_ref.latent import latent_info
    from ddpm_ref.runs import load_run
    from ddpm_ref.sample import ModelEps, save_grid_png
    from ddpm_ref.schedules import make_schedule

    f = args.strength
    if not (0 < f <= 1):
        raise ValueError(f"--strength must lie in (0, 1] (t0 = round(strength·T)), got {f}")
    if args.num is not None:
        check_positive_int("--num", args.num)
    model, meta = load_run(args.run_dir, args.raw)
    if model.kind != "unet":
        raise ValueError(f"editing needs an image model (a U-Net run); {args.run_dir} holds a {model.kind!r}")
    if latent_info(args.run_dir):
        raise ValueError(f"{args.run_dir} is a latent run; editing works on a pixel-space run")
    sched = make_schedule(meta["train"]["schedule"], meta["train"]["T"])
    t0 = int(round(f * sched.T))
    if t0 < 1:
        raise ValueError(f"--strength {f} gives t0 = round({f}·{sched.T}) = 0; use at least {0.5 / sched.T:.2g}")
    x = read_user_images(args.input, model.config["in_channels"], model.config["image_size"])[: args.num]
    net = ModelEps(model)
    bar = tqdm(total=t0, desc=f"SDEdit from t0={t0}", unit="step", disable=args.no_progress, leave=False)

    def eps(xt, t, y=None):                                  # the model, one bar tick per reverse step
        bar.update(1)
        return net(xt, t, y)

    out = sdedit(eps, sched, x, t0, rng=args.seed, variance=args.variance)
    bar.close()
    path = args.out or os.path.join(args.run_dir if os.path.isdir(args.run_dir) else os.path.dirname(args.run_dir) or ".",
                                    "edit.png")
    save_grid_png(np.concatenate([x, out]), path, nrow=len(x))
    print(f"wrote {len(x)} edits (t0 = {t0} of T = {sched.T}) to {path}")
    if args.npz:
        np.savez(args.npz, edits=out.astype(np.float32))
        print(f"wrote {args.npz}")
    return 0
