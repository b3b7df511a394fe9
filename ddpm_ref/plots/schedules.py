"""Figures of the noise schedules: β_t, ᾱ_t and logSNR per family; Chen's γ(t); β̃_t/β_t.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.schedules import SCHEDULE_NAMES, gamma_cosine, gamma_linear, gamma_sigmoid, logsnr, make_schedule

__all__ = ["plot_schedules", "plot_chen_gamma", "plot_posterior_variance_ratio"]

# Chen 2023, Fig. 3's settings: (start, end, τ).
CHEN_COSINE = ((0.0, 1.0, 1.0), (0.2, 1.0, 1.0), (0.2, 1.0, 2.0), (0.2, 1.0, 3.0))
CHEN_SIGMOID = ((-3.0, 3.0, 1.0), (0.0, 3.0, 0.3), (0.0, 3.0, 0.5), (0.0, 3.0, 0.9), (-3.0, 3.0, 1.1))


def plot_schedules(T: int = 1000, names=SCHEDULE_NAMES):
    """Three panels over t = 1..T, one curve per family: β_t (log scale), ᾱ_t and log(ᾱ_t/(1 − ᾱ_t))."""
    fig = new_figure(13, 3.8)
    ax_b, ax_a, ax_s = fig.subplots(1, 3)
    t = np.arange(1, T + 1)
    for name in names:
        s = make_schedule(name, T)
        ax_b.plot(t, s.betas[1:], label=name, lw=1.4)
        ax_a.plot(t, s.alpha_bars[1:], label=name, lw=1.4)
        ax_s.plot(t, s.logsnr[1:], label=name, lw=1.4)
    ax_b.set(yscale="log", title=r"$\beta_t$", xlabel="t")
    ax_a.set(title=r"$\bar\alpha_t = \prod_{s\leq t}(1-\beta_s)$", xlabel="t")
    ax_s.set(title=r"logSNR $= \log\,\bar\alpha_t/(1-\bar\alpha_t)$", xlabel="t")
    ax_s.axhline(0.0, color="0.6", lw=0.8)
    for ax in (ax_b, ax_a, ax_s):
        ax.grid(alpha=0.3)
    ax_a.legend(fontsize=8)
    fig.suptitle(f"Noise schedules, T = {T} (t = 1..T; default parameters of make_schedule)")
    return fig


def plot_chen_gamma(b_values=(1.0, 0.5, 0.25)):
    """Chen 2023's γ(t) and logSNR(t) for several (start, end, τ), and the shift 2·log b of the input scale."""
    fig = new_figure(13, 3.8)
    ax_g, ax_s, ax_b = fig.subplots(1, 3)
    t = np.linspace(0.0, 1.0, 501)
    curves = [("linear", gamma_linear(t), dict(color="k", ls=":"))]
    cos_colors = ["#1f77b4", "#4a98c9", "#7fb7da", "#b0d2e8"]
    sig_colors = ["#d62728", "#e3694a", "#ee9a73", "#f4c19f", "#8c564b"]
    for (st, en, tau), c in zip(CHEN_COSINE, cos_colors):
        curves.append((f"cosine ({st:g}, {en:g}, {tau:g})", gamma_cosine(t, st, en, tau), dict(color=c)))
    for (st, en, tau), c in zip(CHEN_SIGMOID, sig_colors):
        curves.append((f"sigmoid ({st:g}, {en:g}, {tau:g})", gamma_sigmoid(t, st, en, tau), dict(color=c, ls="--")))
    for label, g, style in curves:
        ax_g.plot(t, g, label=label, lw=1.3, **style)
        ax_s.plot(t, logsnr(g), lw=1.3, **style)
    ax_g.set(title=r"$\gamma(t)$ (plays $\bar\alpha$)", xlabel="t (continuous, t/T)")
    ax_s.set(title=r"logSNR $= \log\,\gamma/(1-\gamma)$", xlabel="t", ylim=(-21, 15))
    ax_g.legend(fontsize=6.5, loc="upper right", title="family (start, end, τ)", title_fontsize=7)
    g = gamma_cosine(t)
    for b, c in zip(b_values, ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"]):
        ax_b.plot(t, logsnr(g) + 2 * np.log(b), color=c, lw=1.4, label=f"b = {b:g}")
    ax_b.set(title=r"input scale $b$: $x_t=\sqrt{\gamma}\,b\,x_0+\sqrt{1-\gamma}\,\epsilon$",
             xlabel="t", ylabel=r"logSNR $+\,2\log b$", ylim=(-21, 15))
    ax_b.legend(fontsize=8)
    for ax in (ax_g, ax_s, ax_b):
        ax.grid(alpha=0.3)
    fig.suptitle("Chen 2023: continuous-time schedules γ(t), clipped to [1e-9, 1]")
    return fig


def plot_posterior_variance_ratio(settings=(("linear", 1000), ("cosine", 1000), ("sigmoid", 1000), ("linear", 50))):
    """β̃_t/β_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) against t: 0 at t = 1, close to 1 after the first steps."""
    fig = new_figure(8, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for name, T in settings:
        s = make_schedule(name, T)
        t = np.arange(1, T + 1)
        ax.plot(t / T, s.posterior_variance[1:] / s.betas[1:], lw=1.4, label=f"{name}, T = {T}")
    ax.set(xscale="log", xlabel="t / T (log scale)", ylabel=r"$\tilde\beta_t / \beta_t$",
           title=r"Fixed-small vs fixed-large variance: $\tilde\beta_t/\beta_t = (1-\bar\alpha_{t-1})/(1-\bar\alpha_t)$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


@register("schedules", "β_t, ᾱ_t and logSNR of every schedule family (T = 1000)", lessons=("02",))
def _make_schedules(out_dir, seed):
    return [save(plot_schedules(), out_dir, "schedules")]


@register("chen_gamma", "Chen 2023's γ(t) and logSNR(t) for several start/end/τ, and the input scale b", lessons=("02",))
def _make_chen_gamma(out_dir, seed):
    return [save(plot_chen_gamma(), out_dir, "chen_gamma")]


@register("posterior_variance_ratio", "β̃_t/β_t: the two fixed reverse variances differ only in the first steps",
          lessons=("03",))
def _make_posterior_variance_ratio(out_dir, seed):
    return [save(plot_posterior_variance_ratio(), out_dir, "posterior_variance_ratio")]
