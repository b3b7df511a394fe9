"""Where the bound comes from: L = L_T + Σ_{t≥2} L_{t−1} + L_0 term by term, in bits/dim, for the
exact optimal denoiser of a 2-D Gaussian mixture (so the terms are those of the best possible
ε-model, not of a half-trained network).

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.data import default_gmm
from ddpm_ref.elbo import vlb_terms
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.schedules import make_schedule

__all__ = ["quantize", "plot_elbo_terms", "bound_weights", "plot_elbo_weights"]

COLORS = {"linear": "#1f77b4", "cosine": "#ff7f0e", "sigmoid": "#d62728", "quadratic": "#2ca02c"}


def quantize(x) -> np.ndarray:
    """Round x to the 256-level grid of [−1, 1] that the decoder L_0 assumes (levels 2/255 apart)."""
    return np.clip(np.round((np.asarray(x, dtype=np.float64) + 1.0) * 127.5) / 127.5 - 1.0, -1.0, 1.0)


def plot_elbo_terms(seed: int = 0, n: int = 500, T: int = 1000, schedules=("linear", "cosine")):
    """Three panels per schedule, from ``vlb_terms`` on n mixture samples rounded to the 8-bit grid:

    * L_{t−1} against t (mean over the samples; t = 1 is the decoder term L_0);
    * the running total L_T + Σ_{s≤t} L_{s−1}, which ends at the bound;
    * the ε error E‖ε_θ − ε‖²/D per t, L_simple's integrand: L_{t−1} is this times a weight
      that is huge at small t, which L_simple drops.
    """
    gmm = default_gmm()
    x0 = quantize(gmm.sample(n, rng=seed)[0])
    fig = new_figure(13, 3.9)
    ax_t, ax_c, ax_m = fig.subplots(1, 3)
    t = np.arange(1, T + 1)
    for name in schedules:
        sched = make_schedule(name, T)
        res = vlb_terms(sched, gmm.eps_model(sched), x0, np.random.default_rng(seed + 1))
        vb = res["vb_bpd"].mean(axis=0)
        prior, total = res["prior_bpd"].mean(), res["total_bpd"].mean()
        c = COLORS.get(name)
        ax_t.plot(t, vb, color=c, lw=1.2, label=f"{name}: L_0 = {vb[0]:.2f}, L_T = {prior:.1e}")
        ax_t.scatter([1], [vb[0]], color=c, s=18, zorder=3)
        ax_c.plot(np.concatenate([[0], t]), prior + np.concatenate([[0], np.cumsum(vb)]), color=c, lw=1.4,
                  label=f"{name}: bound = {total:.2f} bits/dim")
        ax_m.plot(t, res["mse"].mean(axis=0), color=c, lw=1.2, label=name)
    ax_t.set(xscale="log", yscale="log", xlabel="t", ylabel="bits/dim",
             title=r"$L_{t-1}$ per t (dot: decoder $L_0$ at t = 1)")
    ax_c.set(xscale="symlog", xlabel="t (0, then log scale)", ylabel="bits/dim",
             title=r"running total $L_T + \sum_{s\leq t} L_{s-1}$")
    ax_m.set(xscale="log", xlabel="t", ylabel=r"$\|\epsilon_\theta-\epsilon\|^2/D$",
             title=r"$L_{\rm simple}$'s integrand (unweighted)")
    for ax in (ax_t, ax_c, ax_m):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5)
    fig.suptitle(f"The bound term by term for the optimal denoiser of a 2-D mixture ({n} points on the 8-bit grid, "
                 f"T = {T}, σ² = β̃, one x_t per point and t)", fontsize=11)
    return fig


@register("elbo_terms", "The bound's terms L_{t-1} per t in bits/dim, their running total and the ε error, "
          "for a 2-D mixture's optimal denoiser (linear vs cosine)", lessons=("04",))
def _make_elbo_terms(out_dir, seed):
    return [save(plot_elbo_terms(seed), out_dir, "elbo_terms")]


def bound_weights(sched) -> np.ndarray:
    r"""The weight of ‖ε − ε_θ‖² in L_{t−1} (Ho et al. eq. 12) with σ_t² = β̃_t, for t = 2..T:

    .. math::  \lambda_t = \frac{\beta_t^2}{2\tilde\beta_t\,\alpha_t\,(1-\bar\alpha_t)}
               = \tfrac12\big(\mathrm{SNR}(t-1)/\mathrm{SNR}(t) - 1\big)

    (the second form, Kingma et al. 2021, is drawn beside the first in ``plot_elbo_weights``).
    """
    t = np.arange(2, sched.T + 1)
    return sched.betas[t] ** 2 / (2 * sched.posterior_variance[t] * sched.alphas[t] * (1 - sched.alpha_bars[t]))


def plot_elbo_weights(T: int = 1000, schedules=("linear", "cosine")):
    """Three panels: logSNR(t) = log ᾱ_t/(1 − ᾱ_t) against t; the weight λ_t of eq. 12 against t (from the
    β's, and as ½(e^{logSNR(t−1) − logSNR(t)} − 1): dots), with L_simple's λ_t = 1; λ_t against logSNR(t)."""
    fig = new_figure(13, 3.8)
    ax_s, ax_w, ax_ws = fig.subplots(1, 3)
    for name in schedules:
        sched = make_schedule(name, T)
        c = COLORS.get(name)
        t = np.arange(2, T + 1)
        lam = bound_weights(sched)
        via_snr = 0.5 * np.expm1(sched.logsnr[t - 1] - sched.logsnr[t])
        ax_s.plot(np.arange(1, T + 1), sched.logsnr[1:], color=c, lw=1.4, label=name)
        ax_w.plot(t, lam, color=c, lw=1.4, label=f"{name}: λ_2 = {lam[0]:.3g}, median {np.median(lam):.2g}")
        ax_w.plot(t[::50], via_snr[::50], "o", color=c, ms=3.5, mfc="none")
        ax_ws.plot(sched.logsnr[t], lam, color=c, lw=1.4, label=name)
    ax_w.plot([], [], "o", color="0.3", ms=3.5, mfc="none", label="½(SNR(t−1)/SNR(t) − 1), every 50th t")
    ax_w.axhline(1.0, color="k", ls="--", lw=1, label=r"$L_{\rm simple}$: λ_t = 1")
    ax_ws.axhline(1.0, color="k", ls="--", lw=1)
    ax_s.axhline(0.0, color="0.6", lw=0.8)
    ax_s.set(xlabel="t", ylabel="logSNR(t)", title=r"logSNR $= \log\,\bar\alpha_t/(1-\bar\alpha_t)$")
    ax_w.set(yscale="log", xscale="log", xlabel="t", ylabel="λ_t",
             title=r"weight of $\|\epsilon-\epsilon_\theta\|^2$ in $L_{t-1}$ (eq. 12, $\sigma_t^2=\tilde\beta_t$)")
    ax_ws.set(yscale="log", xlabel="logSNR(t)", ylabel="λ_t", title="the same weights against logSNR(t)")
    for ax in (ax_s, ax_w, ax_ws):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5)
    fig.suptitle(f"The bound's weights λ_t and the log signal-to-noise ratio, T = {T}", fontsize=11)
    return fig


@register("elbo_weights", "logSNR(t), and the weight λ_t of ‖ε − ε_θ‖² in L_{t-1} (eq. 12) against t and logSNR, "
          "linear vs cosine", lessons=("04",))
def _make_elbo_weights(out_dir, seed):
    return [save(plot_elbo_weights(), out_dir, "elbo_weights")]
