"""A real photograph disappearing into noise along the forward process: two schedules side by side, and one pixel's marginal q(x_t) spreading into N(0, 1).

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np
from matplotlib import cbook
from matplotlib import image as mpimg

from ddpm_ref.diffusion import q_sample
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.schedules import make_schedule

__all__ = ["load_photo", "plot_noised_photo", "photo_marginal_density", "plot_forward_marginals"]

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
          lessons=("01",))
def _make_noised_photo(out_dir, seed):
    return [save(plot_noised_photo(seed), out_dir, "noised_photo")]


def photo_marginal_density(x, t_values, sched, downsample: int = 4) -> np.ndarray:
    """q(x_t) of one pixel drawn at random from the photograph, on the grid ``x``, for each t.

    The data distribution is the photograph's pixel values (all channels) binned to 256 levels v_j
    with frequencies π_j; under eq. 4 each level becomes a Gaussian N(√ᾱ_t v_j, 1 − ᾱ_t), so
    q(x_t) = Σ_j π_j N(x_t; √ᾱ_t v_j, 1 − ᾱ_t) (exact for the binned data: no sampling). At t = 0 the density is
    returned as a histogram on the same grid. Shape (len(t_values), len(x)).
    """
    values = load_photo(downsample).ravel()
    counts, edges = np.histogram(values, bins=256, range=(-1.0, 1.0))   # 256 levels, as 8-bit data
    levels, weights = (edges[:-1] + edges[1:]) / 2, counts / counts.sum()
    x = np.asarray(x, dtype=np.float64)
    dx = x[1] - x[0]
    out = np.empty((len(t_values), len(x)))
    for r, t in enumerate(t_values):
        if t == 0:
            edges = np.concatenate([x - dx / 2, [x[-1] + dx / 2]])
            out[r] = np.histogram(values, bins=edges, density=True)[0]
            continue
        a, var = sched.sqrt_alpha_bars[t], 1.0 - sched.alpha_bars[t]
        z = (x[:, None] - a * levels[None, :]) ** 2 / (2 * var)
        out[r] = (np.exp(-z) @ weights) / np.sqrt(2 * np.pi * var)
    return out


def plot_forward_marginals(T: int = 1000, steps=(0, 10, 50, 100, 200, 300, 500, 1000), schedule: str = "linear"):
    """The marginal q(x_t) of one pixel of the photograph at several t, against N(0, 1) (dashed), and
    the same densities as a heat map over (t, x_t): the data's spiky distribution of pixel values is
    shrunk by √ᾱ_t and blurred by noise of variance 1 − ᾱ_t until it is the standard normal."""
    sched = make_schedule(schedule, T)
    x = np.linspace(-4.0, 4.0, 801)
    dens = photo_marginal_density(x, steps, sched)
    normal = np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi)
    fig = new_figure(13, 3.9)
    ax_d, ax_h = fig.subplots(1, 2, width_ratios=(1.15, 1))
    colors = [f"C{i}" for i in range(len(steps))]
    for t, d, c in zip(steps, dens, colors):
        ax_d.plot(x, d, color=c, lw=1.3 if t else 0.9,
                  label=f"t = {t}" + ("" if t == 0 else f" (√ᾱ = {sched.sqrt_alpha_bars[t]:.2f})"))
    ax_d.plot(x, normal, "k--", lw=1.4, label="N(0, 1)")
    ax_d.set(xlabel="pixel value x_t", ylabel="density", ylim=(0, 1.6), xlim=(-3.5, 3.5),
             title="q(x_t) of a random pixel of the photograph (t = 0: a histogram)")
    ax_d.legend(fontsize=7.5, loc="upper right")
    ax_d.grid(alpha=0.3)
    t_all = np.arange(0, T + 1, 5)
    heat = photo_marginal_density(x, t_all[1:], sched)
    im = ax_h.imshow(heat.T, origin="lower", aspect="auto", cmap="magma", extent=(t_all[1], T, x[0], x[-1]),
                     vmin=0, vmax=1.0)
    fig.colorbar(im, ax=ax_h, shrink=0.85, label="density (clipped at 1)")
    for v in (-1.0, 1.0):
        ax_h.plot(t_all, sched.sqrt_alpha_bars[t_all] * v, color="w", lw=0.8, ls=":")
    ax_h.set(xlabel="t", ylabel="x_t", title="q(x_t) over t (dotted: ±√ᾱ_t, where x_0 = ±1 goes)")
    fig.suptitle(f"The forward process spreads the data into N(0, 1): one pixel's marginal, {schedule} schedule, "
                 f"T = {T}", fontsize=11)
    return fig


@register("forward_marginals", "The marginal q(x_t) of a photograph's pixel at several t, spreading into N(0, 1)",
          lessons=("01",))
def _make_forward_marginals(out_dir, seed):
    return [save(plot_forward_marginals(), out_dir, "forward_marginals")]
