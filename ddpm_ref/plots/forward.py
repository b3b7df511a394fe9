"""A real photograph disappearing into noise along the forward process, two schedules side by side."""

from __future__ import annotations

import numpy as np
from matplotlib import cbook
from matplotlib import image as mpimg

from ddpm_ref.diffusion import q_sample
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.schedules import make_schedule

__all__ = ["load_photo", "plot_noised_photo"]

PHOTO = "grace_hopper.jpg"   # ships with matplotlib (mpl-data/sample_data): Grace Hopper, 600 x 512 RGB


def load_photo(downsample: int = 4) -> np.ndarray:
    """Matplotlib's sample photograph as a float64 (1, 3, H, W) array in [−1, 1] (NCHW).

    ``downsample`` averages blocks of that many pixels (4 gives 3 x 150 x 128).
    """
    rgb = mpimg.imread(cbook.get_sample_data(PHOTO, asfileobj=False)).astype(np.float64) / 255.0
    h, w = (rgb.shape[0] // downsample) * downsample, (rgb.shape[1] // downsample) * downsample
    rgb = rgb[:h, :w].reshape(h // downsample, downsample, w // downsample, downsample, 3).mean(axis=(1, 3))
    return (rgb.transpose(2, 0, 1)[None] * 2.0 - 1.0)


def plot_noised_photo(seed: int = 0, T: int = 1000, steps=(0, 50, 100, 200, 300, 500, 700, 1000),
                      schedules=("linear", "cosine")):
    """x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε of one photograph at the same t along each schedule.

    The same ε (drawn from ``seed``) is used in every panel, so the rows differ only by ᾱ_t.
    Shown as (x_t + 1)/2 clipped to [0, 1].
    """
    x0 = load_photo()
    eps = np.random.default_rng(seed).standard_normal(x0.shape)
    fig = new_figure(1.45 * len(steps), 1.95 * len(schedules) + 0.3)
    axes = fig.subplots(len(schedules), len(steps), squeeze=False)
    for r, name in enumerate(schedules):
        sched = make_schedule(name, T)
        for c, t in enumerate(steps):
            xt = x0 if t == 0 else q_sample(sched, x0, t, eps)
            ax = axes[r, c]
            ax.imshow(np.clip((xt[0].transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t = {t}\n" + r"$\sqrt{\bar\alpha_t}$" + f" = {np.sqrt(sched.alpha_bars[t]):.2f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(f"The forward process q(x_t | x_0), T = {T}: the same photograph and noise, two schedules")
    return fig


@register("noised_photo", "A photograph (Grace Hopper, matplotlib's sample) noised along linear and cosine at the same t",
          lessons=("01", "02"))
def _make_noised_photo(out_dir, seed):
    return [save(plot_noised_photo(seed), out_dir, "noised_photo")]
