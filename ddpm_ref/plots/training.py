"""Figures of a trained run: the loss curve, sample grids, one reverse trajectory.

Layer: tooling beside the stack (imports anything below the command line).

``ddpm-ref demo`` writes these into ``runs/demo/``; ``ddpm-ref figures`` regenerates them from
``runs/demo/checkpoint.npz`` when that exists (run ``ddpm-ref demo`` first: the figures of a
trained model need a trained model, and training is not something ``figures`` does silently).

Every plotting function *returns* a figure (``ddpm_ref.plots.new_figure``), so a lesson can show
it inline; the ``_make_*`` makers write PNGs for the registry.
"""

from __future__ import annotations


import numpy as np

from ddpm_ref.plots import new_figure, register, save

__all__ = ["plot_loss_curve", "plot_samples", "plot_trajectory", "demo_samples"]


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start)."""
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_loss_curve(losses, title: str = "training loss (L_simple)"):
    """L_simple of every step (faint) and its moving average over 50 steps, log-scaled y."""
    losses = np.asarray(losses, dtype=np.float64)
    fig = new_figure(7, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.75", lw=0.6, label="per step")
    if len(losses):
        sm = _smooth(losses, 50)
        ax.plot(steps, sm, color="C0", lw=1.6, label=f"mean of 50 steps (last: {sm[-1]:.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(r"$\|\epsilon - \epsilon_\theta(x_t, t)\|^2$ per dim")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right")
    return fig


def plot_samples(images, title: str = "samples", nrow: int | None = None):
    """A grid of images (N, 1, H, W) in [−1, 1] (black −1, white +1)."""
    from ddpm_ref.sample import image_grid

    grid = image_grid(images, nrow=nrow, scale=1)
    h, w = grid.shape[:2]
    fig = new_figure(max(3.0, 6.0 * w / max(h, w)), max(3.0, 6.0 * h / max(h, w)) + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def plot_trajectory(traj: dict, index: int = 0, title: str = "one reverse trajectory"):
    """Row 1: x_t along the reverse chain for sample ``index``; row 2: the x̂_0 predicted there.

    ``traj``: the dict ``sample_ddpm(..., return_trajectory=True)`` returns.
    """
    ts, xs, x0s = traj["t"], traj["x"][:, index], traj["x0_pred"][:, index]
    k = len(ts)
    fig = new_figure(1.2 * k, 3.0)
    axes = fig.subplots(2, k, squeeze=False)
    for j in range(k):
        for row, imgs, label in ((0, xs, "$x_t$"), (1, x0s, r"$\hat x_0$")):
            ax = axes[row, j]
            ax.imshow(np.clip(imgs[j, 0], -1, 1), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
        axes[0, j].set_title(f"t={int(ts[j])}", fontsize=9)
    fig.suptitle(title)
    return fig


def _demo_model(run_dir):
    """The demo run's EMA model and meta (the registry has checked that the checkpoint exists), with
    the U-Net on ``SAMPLING_WORKERS`` threads whatever the CPU count (the same pixels everywhere)."""
    from ddpm_ref.runs import load_run

    return load_run(str(run_dir))


def demo_samples(model, meta, *, n_per_class: int = 10, sampler: str = "ddpm", steps: int = 50,
                 guidance: float = 0.0, seed: int = 0, return_trajectory: bool = False,
                 progress: bool = False):
    """Samples of a trained digits model: ``n_per_class`` of each class (one column per class)."""
    from ddpm_ref.sample import ModelEps, sample_ddim, sample_ddpm
    from ddpm_ref.schedules import make_schedule

    cfg = model.config
    sched = make_schedule(meta["train"]["schedule"], meta["train"]["T"])
    k = cfg.get("num_classes")
    n = n_per_class * (k or 10)
    y = None if k is None else np.tile(np.arange(k), n_per_class)
    shape = (n, cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    eps = ModelEps(model)
    if sampler == "ddpm":
        return sample_ddpm(eps, sched, shape, rng=seed, y=y, guidance=guidance,
                           return_trajectory=return_trajectory, progress=progress)
    return sample_ddim(eps, sched, shape, steps=steps, rng=seed, y=y, guidance=guidance,
                       return_trajectory=return_trajectory, progress=progress)


@register("demo_loss", "L_simple of every step of the demo run and its moving average (needs runs/demo: "
          "ddpm-ref demo)", lessons=("08",), needs="demo")
def _make_loss(out_dir, seed, run_dir):
    _, meta = _demo_model(run_dir)
    return [save(plot_loss_curve(meta["losses"]), out_dir, "demo_loss")]


@register("demo_samples_ddim", "50-step DDIM digits of the demo model with guidance w = 1, one column per "
          "class (needs runs/demo)", lessons=("09",), needs="demo")
def _make_ddim(out_dir, seed, run_dir):
    model, meta = _demo_model(run_dir)
    x = demo_samples(model, meta, n_per_class=4, sampler="ddim", steps=50, guidance=1.0, seed=seed)
    return [save(plot_samples(x, "DDIM, 50 steps, guidance w=1", nrow=10), out_dir, "demo_samples_ddim")]


@register("demo_trajectory", "one 50-step DDIM reverse trajectory of the demo model: x_t and the "
          "predicted x_0 (needs runs/demo)", lessons=("09",), needs="demo")
def _make_trajectory(out_dir, seed, run_dir):
    model, meta = _demo_model(run_dir)
    _, traj = demo_samples(model, meta, n_per_class=1, sampler="ddim", steps=50, guidance=1.0,
                           seed=seed, return_trajectory=True)
    return [save(plot_trajectory(traj, index=3, title="DDIM reverse trajectory (label 3)"),
                 out_dir, "demo_trajectory")]
