"""The reverse process before any training: Algorithm 2 and DDIM with the exact optimal denoiser
of a 2-D Gaussian mixture (``ddpm_ref.data.default_gmm``), so every picture shows the sampler
itself, not a network's errors.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.data import GaussianMixture, default_gmm
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.sample import sample_ddim, sample_ddpm
from ddpm_ref.schedules import make_schedule

__all__ = ["gmm_log_density", "plot_reverse_gmm", "plot_ddpm_vs_ddim"]

LIM = (-1.6, 1.6)                       # both axes of every panel
DATA_COLOR, SAMPLE_COLOR = "0.6", "#1f77b4"


def gmm_log_density(gmm: GaussianMixture, x) -> np.ndarray:
    """log p(x) under the mixture, per point (N,): log Σ_k π_k N(x; μ_k, s_k² I), with a log-sum-exp."""
    x = np.asarray(x, dtype=np.float64)
    var = gmm.stds**2                                                        # (K,)
    sq = ((x[:, None, :] - gmm.means[None]) ** 2).sum(-1)                    # (N, K)
    logp = np.log(gmm.weights) - 0.5 * sq / var - 0.5 * gmm.dim * np.log(2 * np.pi * var)
    top = logp.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(logp - top).sum(axis=1, keepdims=True)))[:, 0]


def _scatter(ax, x, color=SAMPLE_COLOR, title=None, size=1.5):
    ax.scatter(x[:, 0], x[:, 1], s=size, color=color, alpha=0.6, linewidths=0, rasterized=True)
    ax.set(xlim=LIM, ylim=LIM, aspect="equal", xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)


def plot_reverse_gmm(seed: int = 0, n: int = 2000, T: int = 1000, schedule: str = "linear",
                     show=(1000, 600, 400, 250, 150, 80, 30, 0)):
    """Algorithm 2 (σ_t² = β̃_t) from x_T ~ N(0, I) to x_0, with ε_θ the exact E[ε | x_t] of the mixture.

    Top row: the samples x_t at the timesteps ``show`` (t = 0: the result). Bottom row: what the
    optimal denoiser predicts at that step, x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t — for large t all
    of it lies near the data's mean, then it splits into the components; grey: data samples.
    """
    gmm = default_gmm()
    sched = make_schedule(schedule, T)
    _, traj = sample_ddpm(gmm.eps_model(sched), sched, (n, 2), rng=seed, return_trajectory=True,
                          num_frames=T, progress=False)
    data, _ = gmm.sample(n, rng=seed + 1)
    index = {int(t): i for i, t in enumerate(traj["t"])}
    fig = new_figure(1.75 * len(show), 3.9)
    axes = fig.subplots(2, len(show), squeeze=False)
    for c, t in enumerate(show):
        i = index[t]
        _scatter(axes[0, c], traj["x"][i], title=f"t = {t}" + (" (result)" if t == 0 else ""))
        _scatter(axes[1, c], data, color=DATA_COLOR, size=1.0)
        _scatter(axes[1, c], traj["x0_pred"][i], color="#d62728")
    axes[0, 0].set_ylabel(r"$x_t$", fontsize=11)
    axes[1, 0].set_ylabel(r"$\hat x_0(x_t)$ (red), data (grey)", fontsize=9)
    fig.suptitle(f"Algorithm 2 with the optimal denoiser of a 3-component mixture ({schedule}, T = {T}, "
                 f"{n} samples, σ² = β̃)", fontsize=11)
    return fig


def _paths(ax, traj, color, label, count=8, **style):
    """The first coordinate of x_t against t for the first ``count`` samples (x_T at the left)."""
    for j in range(count):
        ax.plot(traj["t"], traj["x"][:, j, 0], color=color, label=label if j == 0 else None, **style)


def plot_ddpm_vs_ddim(seed: int = 0, n: int = 2000, T: int = 1000, schedule: str = "linear"):
    """The same x_T through Algorithm 2 (σ² = β̃ and σ² = β) and through DDIM (η = 0, 50 and 10
    steps), all with the mixture's optimal denoiser; each panel's title gives the mean log-density
    of its samples under the true mixture (the data's own value in the first panel; a higher value
    is not better, it means samples too concentrated near the means). The last panel draws a few
    sample paths, the first coordinate of x_t against t: DDPM's are jagged (fresh noise at every
    step), DDIM's smooth (deterministic); from the same x_T they need not end in the same component."""
    gmm = default_gmm()
    sched = make_schedule(schedule, T)
    eps = gmm.eps_model(sched)
    data, _ = gmm.sample(n, rng=seed + 1)
    runs = [
        ("DDPM, σ² = β̃, 1000 steps", sample_ddpm(eps, sched, (n, 2), rng=seed, return_trajectory=True,
                                                   num_frames=T, progress=False)),
        ("DDPM, σ² = β, 1000 steps", sample_ddpm(eps, sched, (n, 2), rng=seed, variance="fixed_large",
                                                  return_trajectory=True, num_frames=T, progress=False)),
        ("DDIM η = 0, 50 steps", sample_ddim(eps, sched, (n, 2), steps=50, rng=seed, return_trajectory=True,
                                             num_frames=50, progress=False)),
        ("DDIM η = 0, 10 steps", sample_ddim(eps, sched, (n, 2), steps=10, rng=seed, return_trajectory=True,
                                             num_frames=10, progress=False)),
    ]
    fig = new_figure(2.2 * (len(runs) + 1) + 3.6, 2.75)
    axes = fig.subplots(1, len(runs) + 2, width_ratios=[1] * (len(runs) + 1) + [1.7])
    _scatter(axes[0], data, color="0.35", title=f"data\nmean log p = {gmm_log_density(gmm, data).mean():.2f}")
    for ax, (label, (x0, _)) in zip(axes[1:], runs):
        _scatter(ax, x0, title=f"{label}\nmean log p = {gmm_log_density(gmm, x0).mean():.2f}")
    ax = axes[-1]
    _paths(ax, runs[0][1][1], "#d62728", "DDPM (β̃)", lw=0.5, alpha=0.8)
    _paths(ax, runs[2][1][1], "#1f77b4", "DDIM 50", lw=1.2, marker=".", ms=3)
    ax.set(xlim=(T, 0), xlabel="t", title="paths: first coordinate of x_t (same x_T)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"DDPM vs DDIM with the mixture's optimal denoiser ({schedule}, T = {T}, {n} samples, seed {seed})",
                 fontsize=11)
    return fig


@register("reverse_gmm", "Algorithm 2 on a 2-D Gaussian mixture with its exact optimal denoiser: x_t and the "
          "predicted x̂_0 at several t", lessons=("03",))
def _make_reverse_gmm(out_dir, seed):
    return [save(plot_reverse_gmm(seed), out_dir, "reverse_gmm")]


@register("ddpm_vs_ddim", "The same x_T through DDPM (σ² = β̃, β) and DDIM (50, 10 steps) with the mixture's "
          "optimal denoiser; sample paths", lessons=("03", "09"))
def _make_ddpm_vs_ddim(out_dir, seed):
    return [save(plot_ddpm_vs_ddim(seed), out_dir, "ddpm_vs_ddim")]
