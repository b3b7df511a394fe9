"""``ddpm-ref inpaint``: fill in a masked region of your images with a trained model (replacement or RePaint).

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref inpaint --run-dir runs/demo --input digits.npz --mask right               # replacement
    ddpm-ref inpaint --run-dir runs/demo --input seven.png --mask center --method repaint --resample 5 --jump 10
    ddpm-ref inpaint --run-dir runs/demo --input digits.npz --mask my_mask.png --out filled.png

``--mask``: left | right | top | bottom | center (the region *filled in*), or a file: a .npz with a
``mask`` array (H, W) or a .png, 1 / white = keep, 0 / black = fill in. ``--input``: a .npz
(keys ``x``/``images``/``x_train``/``X``) or a .png, of the model's size (images are not resized).
The PNG grid has one column per image and four rows: input, mask, what the model is given (the
filled-in region grey), completion. The model is run unconditionally (a class-conditional model
with its null label). Replacement is RePaint with one pass; RePaint goes back ``--jump`` steps
``--resample − 1`` times at every jump point (Lugmayr et al. 2022), so it costs about
``--resample`` times as many network calls.
"""

from __future__ import annotations

import argparse
import os

HELP = "fill in a masked region of images (.npz/.png) with a trained model: replacement or RePaint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (default: runs/demo)")
    parser.add_argument("--input", required=True, help="images to complete: .npz or .png")
    parser.add_argument("--mask", required=True, help="left|right|top|bottom|center (filled in) or a .npz/.png mask")
    parser.add_argument("--method", default="replace", help="replace (default) or repaint")
    parser.add_argument("--resample", type=int, default=None, help="RePaint's r (default 5; replace: 1)")
    parser.add_argument("--jump", type=int, default=10, help="RePaint's jump length j (default: 10)")
    parser.add_argument("--num", type=int, default=None, help="complete only the first NUM images")
    parser.add_argument("--variance", choices=("fixed_small", "fixed_large"), default="fixed_small")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/inpaint_<method>.png)")
    parser.add_argument("--npz", default=None, help="also save the completions (float32) to this .npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    parser.add_argument("--no-progress", action="store_true")


def _check(args):
    """(method, resamples) after checking the flags that need no model."""
    from ddpm_ref._checks import check_positive_int

    if args.method not in ("replace", "repaint"):
        raise ValueError(f"--method must be replace or repaint, got {args.method!r}")
    check_positive_int("--jump", args.jump)
    if args.num is not None:
        check_positive_int("--num", args.num)
    if args.method == "replace":
        if args.resample not in (None, 1):
            raise ValueError(f"--resample {args.resample} needs --method repaint (replacement is one pass)")
        return 1
    return check_positive_int("--resample", 5 if args.resample is None else args.resample)


def _image_model(args):
    from ddpm_ref.latent import latent_info
    from ddpm_ref.runs import load_run

    model, meta = load_run(args.run_dir, args.raw)
    if model.kind != "unet":
        raise ValueError(f"inpainting needs an image model (a U-Net run); {args.run_dir} holds a {model.kind!r}")
    if latent_info(args.run_dir):
        raise ValueError(f"{args.run_dir} is a latent run; inpainting works on a pixel-space run")
    return model, meta


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ddpm_ref.data.user_images import read_mask, read_user_images
    from ddpm_ref.inpaint import MASKS, make_mask, repaint_schedule, sample_repaint
    from ddpm_ref.sample import ModelEps, save_grid_png
    from ddpm_ref.schedules import make_schedule

    resamples = _check(args)
    model, meta = _image_model(args)
    c, size = model.config["in_channels"], model.config["image_size"]
    x = read_user_images(args.input, c, size)[: args.num]
    mask = make_mask(args.mask, size, size) if args.mask in MASKS else read_mask(args.mask, size, size)
    sched = make_schedule(meta["train"]["schedule"], meta["train"]["T"])
    levels = repaint_schedule(sched.T, args.jump, resamples)
    net = ModelEps(model)
    bar = tqdm(total=sum(b < a for a, b in zip(levels, levels[1:])), desc=f"inpainting ({args.method})",
               unit="step", disable=args.no_progress, leave=False)

    def eps(xt, t, y=None):                                  # the model, one bar tick per reverse step
        bar.update(1)
        return net(xt, t, y)

    out = sample_repaint(eps, sched, x, mask, resamples=resamples, jump_length=args.jump, rng=args.seed,
                         variance=args.variance)
    bar.close()
    m = np.broadcast_to(mask, x.shape)
    path = args.out or os.path.join(args.run_dir if os.path.isdir(args.run_dir) else os.path.dirname(args.run_dir) or ".",
                                    f"inpaint_{args.method}.png")
    rows = np.concatenate([x, m * 2 - 1, x * m, out])       # input, mask, given (fill region grey), completion
    save_grid_png(rows, path, nrow=len(x))
    print(f"wrote {len(x)} completions ({args.method}, {resamples} pass(es)) to {path}")
    if args.npz:
        np.savez(args.npz, completions=out.astype(np.float32), mask=mask.astype(np.float32))
        print(f"wrote {args.npz}")
    return 0
