"""Figures of sampling from the trained demo model (need ``runs/demo``: ``ddpm-ref demo``).

Layer: tooling beside the stack (imports anything below the command line).

* ``plot_ddim_steps_quality``: DDIM with η = 0 and η = 1 at several step counts: the Fréchet digit
  distance (FDD, ``ddpm_ref.evaluation``) against the number of network calls and against the
  seconds it took on the machine that drew the figure, with the held-out digits' FDD at the same
  sample size as a reference line.
* ``plot_guidance_grid``: classifier-free guidance at several w: the same starting noise for
  each class in every row, with each row's label accuracy and FDD.
"""

from __future__ import annotations

import time

import numpy as np

from ddpm_ref.plots import new_figure, register, save

__all__ = ["ddim_sweep", "plot_ddim_steps_quality", "guidance_sweep", "plot_guidance_grid", "DDIM_STEPS",
           "DDIM_ETAS", "N_DIGITS", "GUIDANCE_WS", "GUIDANCE_STEPS"]

# The settings of the registered figures (the lessons' captions quote them; tests/test_lessons_text_b.py checks)
DDIM_STEPS = (5, 10, 20, 50, 100)
DDIM_ETAS = (0.0, 1.0)
N_DIGITS = 100                       # digits per point of each curve
GUIDANCE_WS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
GUIDANCE_STEPS = 20


def _setup(run_dir):
    from ddpm_ref.plots.training import _demo_model
    from ddpm_ref.sample import ModelEps
    from ddpm_ref.schedules import make_schedule

    model, meta = _demo_model(run_dir)
    return ModelEps(model), make_schedule(meta["train"]["schedule"], meta["train"]["T"])


def ddim_sweep(eps_model, sched, steps=DDIM_STEPS, etas=DDIM_ETAS, n=N_DIGITS, seed=0):
    """[(eta, steps, seconds, fdd, images)] for every pair; n digits, the ten classes equally."""
    from ddpm_ref.evaluation import fdd
    from ddpm_ref.sample import sample_ddim

    y = np.arange(n) % 10
    rows = []
    for eta in etas:
        for s in steps:
            start = time.perf_counter()
            imgs = sample_ddim(eps_model, sched, (n, 1, 8, 8), steps=s, eta=eta, rng=seed, y=y, progress=False)
            rows.append((eta, s, time.perf_counter() - start, fdd(imgs), imgs))
    return rows


def plot_ddim_steps_quality(rows, baseline_fdd: float, n: int):
    from ddpm_ref.sample import image_grid

    fig = new_figure(12, 6.2)
    gs = fig.add_gridspec(2, 2, height_ratios=[1.3, 1.0])
    ax0, ax1 = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    for eta, style in [(0.0, "o-"), (1.0, "s--")]:
        r = [row for row in rows if row[0] == eta]
        if not r:
            continue
        ax0.plot([x[1] for x in r], [x[3] for x in r], style, label=f"DDIM η = {eta:g}")
        ax1.plot([x[2] for x in r], [x[3] for x in r], style, label=f"DDIM η = {eta:g}")
        for x in r:
            ax1.annotate(str(x[1]), (x[2], x[3]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for ax in (ax0, ax1):
        ax.axhline(baseline_fdd, color="g", ls=":", label=f"held-out real digits ({baseline_fdd:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("FDD (lower is better)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax0.set(xlabel="sampling steps = network calls", title=f"quality vs steps ({n} digits per point)")
    ax1.set(xlabel=f"seconds for {n} digits (this machine, 2 CPU threads; labels: steps)", title="quality vs time")
    ax = fig.add_subplot(gs[1, :])
    picks = [row for row in rows if row[0] == 0.0]
    picks = [picks[0], picks[len(picks) // 2], picks[-1]] if len(picks) >= 3 else picks
    strip = np.concatenate([p[4][:10] for p in picks])
    ax.imshow(image_grid(strip, nrow=10, scale=1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("η = 0, the same x_T in each column, rows: " + ", ".join(f"{p[1]} steps" for p in picks), fontsize=9)
    return fig


def guidance_sweep(eps_model, sched, ws=GUIDANCE_WS, n=N_DIGITS, steps=GUIDANCE_STEPS, seed=0):
    """[(w, label accuracy, fdd, images)], n digits per w, the same x_T for every w."""
    from ddpm_ref.evaluation import fdd, label_accuracy
    from ddpm_ref.sample import sample_ddim

    y = np.arange(n) % 10
    out = []
    for w in ws:
        imgs = sample_ddim(eps_model, sched, (n, 1, 8, 8), steps=steps, y=y, guidance=w, rng=seed, progress=False)
        out.append((w, label_accuracy(imgs, y), fdd(imgs), imgs))
    return out


def plot_guidance_grid(results, baseline: dict, n: int, steps: int, per_class: int = 2):
    from ddpm_ref.sample import image_grid

    fig = new_figure(12, 0.75 * per_class * len(results) + 1.2)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.5, 1.0])
    ax = fig.add_subplot(gs[0, 0])
    rows = [r[3][: 10 * per_class] for r in results]             # labels 0..9, 0..9, ...
    ax.imshow(image_grid(np.concatenate(rows), nrow=10, scale=1), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    h = 9 * per_class                                            # 8 pixels + 1 of padding per digit row
    ax.set_yticks([h * (i + 0.5) for i in range(len(results))])
    ax.set_yticklabels([f"w = {r[0]:g}" for r in results], fontsize=8)
    ax.set_xticks([9 * c + 4.5 for c in range(10)])
    ax.set_xticklabels([str(c) for c in range(10)], fontsize=8)
    ax.set_title(f"requested class (columns), guidance w (rows); DDIM {steps} steps, η = 0,\n"
                 "the same x_T in each column of every row", fontsize=9)
    ax2 = fig.add_subplot(gs[0, 1])
    ws = [r[0] for r in results]
    ax2.plot(ws, [r[1] for r in results], "o-", color="C0", label="label accuracy")
    ax2.axhline(baseline["accuracy_test_digits"], color="C0", ls=":", lw=1, label="accuracy, held-out digits")
    ax2.set(xlabel="guidance scale w", ylabel="label accuracy", ylim=(0, 1.05))
    ax3 = ax2.twinx()
    ax3.plot(ws, [r[2] for r in results], "s--", color="C3", label="FDD")
    ax3.axhline(baseline["fdd_test_digits"], color="C3", ls=":", lw=1, label="FDD, held-out digits")
    ax3.set_ylabel("FDD (lower is better)", color="C3")
    ax2.set_title(f"{n} digits per w: fidelity vs diversity", fontsize=9)
    fig.legend(loc="lower right", fontsize=7)
    return fig


@register("ddim_steps_quality", "DDIM (η = 0 and 1) on the demo model: FDD against steps and against "
          "measured seconds, with samples at few and many steps (needs runs/demo)", lessons=("09",), needs="demo")
def _make_ddim_steps(out_dir, seed, run_dir):
    from ddpm_ref.evaluation import baselines

    eps_model, sched = _setup(run_dir)
    n = N_DIGITS
    rows = ddim_sweep(eps_model, sched, n=n, seed=seed)
    return [save(plot_ddim_steps_quality(rows, baselines(n=n)["fdd_test_digits"], n), out_dir, "ddim_steps_quality")]


@register("guidance_grid", "classifier-free guidance on the demo model: the same x_T per class at w = 0 "
          "... 8, and label accuracy and FDD against w (needs runs/demo)", lessons=("10",), needs="demo")
def _make_guidance_grid(out_dir, seed, run_dir):
    from ddpm_ref.evaluation import baselines

    eps_model, sched = _setup(run_dir)
    n, steps = N_DIGITS, GUIDANCE_STEPS
    results = guidance_sweep(eps_model, sched, n=n, steps=steps, seed=seed)
    return [save(plot_guidance_grid(results, baselines(n=n), n, steps), out_dir, "guidance_grid")]
