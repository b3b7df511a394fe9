"""What DDPM grew into (lessons 12-14): prediction targets, zero terminal SNR, learned variances,
the score-based samplers on the 2-D mixture with its exact score, and diffusers' conventions.

Layer: tooling beside the stack (imports anything below the command line).

Every figure is cheap (pure formulas, or the mixture's exact denoiser) and deterministic given the seed.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.data import default_gmm
from ddpm_ref.learned_variance import learned_log_variance, vlb_term_learned
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.schedules import make_schedule
from ddpm_ref.score import sample_langevin, sample_probability_flow, sample_reverse_sde
from ddpm_ref.timesteps import SPACINGS, sampling_timesteps
from ddpm_ref.schedules import rescale_zero_terminal_snr

__all__ = ["plot_prediction_targets", "plot_zero_snr_and_learned_variance", "optimal_v_sigma",
           "mixture_stats", "score_sampler_runs", "plot_score_samplers", "plot_diffusers_conventions",
           "FINE", "COARSE"]


# ------------------------------------------------------------------ lesson 12: targets and the rotation
def plot_prediction_targets(T: int = 1000, t_show: int = 300):
    """Left: (x_t, v) is (x₀, ε) rotated by φ_t (Salimans & Ho 2022, fig. 2). Middle: φ_t against t.
    Right: how much an error in each prediction is multiplied on its way to x̂₀."""
    scheds = {name: make_schedule(name, T) for name in ("linear", "cosine")}
    fig = new_figure(13, 3.9)
    ax_rot, ax_phi, ax_amp = fig.subplots(1, 3)

    # the rotation: x₀ along the horizontal axis, ε along the vertical one (one example, unit-length each)
    s = scheds["linear"]
    phi = float(np.arctan2(s.sqrt_one_minus_alpha_bars[t_show], s.sqrt_alpha_bars[t_show]))
    arc = np.linspace(0, np.pi / 2, 100)
    ax_rot.plot(np.cos(arc), np.sin(arc), color="0.7", lw=1)
    xt, v = np.array([np.cos(phi), np.sin(phi)]), np.array([-np.sin(phi), np.cos(phi)])
    for vec, start, color, label in [((1, 0), (0, 0), "k", r"$x_0$"), ((0, 1), (0, 0), "k", r"$\epsilon$"),
                                     (xt, (0, 0), "C0", r"$x_t = \cos\phi_t\,x_0 + \sin\phi_t\,\epsilon$"),
                                     (0.6 * v, xt, "C3", r"$v = dx_t/d\phi = \cos\phi_t\,\epsilon - \sin\phi_t\,x_0$")]:
        ax_rot.annotate("", xy=np.add(start, vec), xytext=start,
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.8))
        ax_rot.plot([], [], color=color, label=label)
    ax_rot.text(1.03, -0.06, r"$x_0$", fontsize=11)
    ax_rot.text(-0.1, 1.02, r"$\epsilon$", fontsize=11)
    small = np.linspace(0, phi, 30)
    ax_rot.plot(0.25 * np.cos(small), 0.25 * np.sin(small), color="C0", lw=1)
    ax_rot.text(0.3 * np.cos(phi / 2), 0.3 * np.sin(phi / 2), r"$\phi_t$", color="C0")
    ax_rot.set(xlim=(-0.7, 1.2), ylim=(-0.1, 1.5), aspect="equal", xticks=[], yticks=[],
               title=f"the rotation (linear, t = {t_show}: φ = {np.degrees(phi):.0f}°)")
    ax_rot.legend(fontsize=7, loc="upper left")

    t = np.arange(1, T + 1)
    for name, sc in scheds.items():
        ph = np.degrees(np.arctan2(sc.sqrt_one_minus_alpha_bars[1:], sc.sqrt_alpha_bars[1:]))
        ax_phi.plot(t, ph, label=name)
    ax_phi.set(xlabel="t", ylabel="φ_t (degrees)", title=r"$\phi_t = \arctan(\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t})$",
               yticks=[0, 30, 60, 90])
    ax_phi.legend(fontsize=8)

    for name, sc in scheds.items():
        style = "-" if name == "linear" else "--"
        ab = sc.alpha_bars[1:]
        ax_amp.semilogy(t, np.sqrt((1 - ab) / ab), "C0" + style, label=f"ε-prediction, {name}")
        ax_amp.semilogy(t, np.sqrt(1 - ab), "C3" + style, label=f"v-prediction, {name}")
    ax_amp.axhline(1.0, color="C2", label="x₀-prediction")
    ax_amp.set(xlabel="t", ylabel="|error of x̂₀| / |error of the prediction|",
               title=r"ε: $\sqrt{(1-\bar\alpha)/\bar\alpha}$, v: $\sqrt{1-\bar\alpha}$, x₀: 1")
    ax_amp.legend(fontsize=7)
    return fig


@register("prediction_targets", "ε, x₀ and v prediction: the rotation x_t = cos φ·x₀ + sin φ·ε with v = dx_t/dφ, "
          "φ_t against t, and the factor by which each prediction's error reaches x̂₀", lessons=("12",))
def _make_prediction_targets(out_dir, seed):
    return [save(plot_prediction_targets(), out_dir, "prediction_targets")]


# ------------------------------------------------------------------ lesson 12: zero SNR and learned variance
def optimal_v_sigma(sched, t: int, n: int = 2000, seed: int = 0, grid=None):
    """(grid, L_{t−1}(v) in bits/dim averaged over n mixture points): the bound's term as a function of
    one shared interpolation v, with the exact mean (the mixture's optimal denoiser)."""
    from ddpm_ref.diffusion import q_sample

    grid = np.linspace(-0.5, 1.5, 81) if grid is None else np.asarray(grid)
    gmm = default_gmm()
    rng = np.random.default_rng(seed)
    x0, _ = gmm.sample(n, rng=seed)
    xt = q_sample(sched, x0, t, rng.standard_normal(x0.shape))
    x0_hat = gmm.optimal_x0(sched, xt, np.full(n, t))
    mean = sched.posterior_mean_coef_x0[t] * x0_hat + sched.posterior_mean_coef_xt[t] * xt      # μ̃_t(x_t, x̂₀)
    losses = np.array([vlb_term_learned(sched, x0, xt, t, mean, np.full_like(x0, v)).mean() for v in grid])
    return grid, losses


def plot_zero_snr_and_learned_variance(T: int = 1000, seed: int = 0, ts=(2, 10, 50, 200)):
    lin = make_schedule("linear", T)
    zero = rescale_zero_terminal_snr(lin)
    fig = new_figure(13, 3.8)
    ax_ab, ax_var, ax_vlb = fig.subplots(1, 3)
    t = np.arange(1, T + 1)
    ax_ab.semilogy(t, lin.sqrt_alpha_bars[1:], label="linear")
    ax_ab.semilogy(t[:-1], zero.sqrt_alpha_bars[1:-1], "--", label="linear, rescaled (ᾱ_T = 0)")
    ax_ab.set(xlabel="t", ylabel=r"$\sqrt{\bar\alpha_t}$ (log scale)",
              title=f"zero terminal SNR: √ᾱ_T = {lin.sqrt_alpha_bars[T]:.4f} → 0")
    ax_ab.legend(fontsize=8)

    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        log_var = learned_log_variance(lin, np.arange(2, T + 1), np.full((T - 1, 1), v))[:, 0]
        ax_var.semilogx(t[1:], np.exp(log_var) / lin.betas[2:], label=f"v = {v}")
    ax_var.set(xlabel="t (log scale)", ylabel=r"$\sigma_t^2 / \beta_t$",
               title=r"eq. 15: $\sigma_t^2 = \exp(v\log\beta_t + (1-v)\log\tilde\beta_t)$")
    ax_var.legend(fontsize=8)

    for k, tt in enumerate(ts):
        grid, losses = optimal_v_sigma(lin, tt, seed=seed)
        ax_vlb.plot(grid, losses / losses.min(), color=f"C{k}", label=f"t = {tt}: best v = {grid[losses.argmin()]:.2f}")
        ax_vlb.plot(grid[losses.argmin()], 1.0, "o", color=f"C{k}")
    ax_vlb.set(xlabel="v (0: β̃_t, 1: β_t)", ylabel=r"$L_{t-1}(v)$ / its minimum", ylim=(0.95, 1.6),
               title=r"$L_{t-1}$ against v, the mixture's exact mean")
    ax_vlb.legend(fontsize=8)
    return fig


@register("zero_snr_learned_variance", "√ᾱ_t of linear and its zero-terminal-SNR rescale; eq. 15's σ_t²/β_t for "
          "several v; L_{t−1} against v with the mixture's exact mean", lessons=("12",))
def _make_zero_snr_learned_variance(out_dir, seed):
    return [save(plot_zero_snr_and_learned_variance(seed=seed), out_dir, "zero_snr_learned_variance")]


# ------------------------------------------------------------------ lesson 13: the samplers on the mixture
#: the settings of the score_samplers figure: name -> (sampler, keyword arguments)
FINE = {
    "annealed Langevin": (sample_langevin, {"steps": 100, "n_inner": 10}),
    "reverse SDE": (sample_reverse_sde, {"steps": 1000}),
    "PF-ODE Euler (= DDIM η=0)": (sample_probability_flow, {"steps": 500}),
    "PF-ODE Heun": (sample_probability_flow, {"steps": 100, "solver": "heun"}),
}
COARSE = {
    "annealed Langevin": (sample_langevin, {"steps": 10, "n_inner": 10}),
    "reverse SDE": (sample_reverse_sde, {"steps": 10}),
    "PF-ODE Euler (= DDIM η=0)": (sample_probability_flow, {"steps": 10}),
    "PF-ODE Heun": (sample_probability_flow, {"steps": 10, "solver": "heun"}),
}


def mixture_stats(gmm, x):
    """(weights, means (K, 2), stds (K,)) of samples assigned to their nearest component mean."""
    k = np.argmin(((x[:, None, :] - gmm.means[None]) ** 2).sum(-1), axis=1)
    K = gmm.num_components
    frac = np.bincount(k, minlength=K) / len(x)
    means = np.array([x[k == j].mean(0) if np.any(k == j) else [np.nan] * 2 for j in range(K)])
    stds = np.array([(x[k == j] - means[j]).std() if np.any(k == j) else np.nan for j in range(K)])
    return frac, means, stds


def score_sampler_runs(settings, n: int = 2000, T: int = 1000, seed: int = 0):
    """{name: samples (n, 2)} for each sampler of ``settings`` (FINE or COARSE), exact score of the mixture."""
    gmm = default_gmm()
    sched = make_schedule("linear", T)
    model = gmm.eps_model(sched)
    return {name: fn(model, sched, (n, 2), rng=seed, **kw) for name, (fn, kw) in settings.items()}


def plot_score_samplers(seed: int = 0, n: int = 2000, T: int = 1000):
    gmm = default_gmm()
    runs = {"fine": score_sampler_runs(FINE, n, T, seed), "10 steps": score_sampler_runs(COARSE, n, T, seed)}
    fig = new_figure(13, 6.6)
    axes = fig.subplots(2, len(FINE))
    for r, (row, samples) in enumerate(runs.items()):
        settings = FINE if r == 0 else COARSE
        for c, (name, x) in enumerate(samples.items()):
            frac, _, stds = mixture_stats(gmm, x)
            ax = axes[r, c]
            ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.6, linewidths=0, rasterized=True)
            ax.set(xlim=(-1.6, 1.6), ylim=(-1.2, 1.4), aspect="equal", xticks=[], yticks=[])
            kw = settings[name][1]
            steps = f"{kw['steps']} levels × {kw['n_inner']}" if "n_inner" in kw else f"{kw['steps']} steps"
            ax.set_title(f"{name}\n{steps}: weights {np.round(frac, 2)}\nstd/s = {np.nanmean(stds) / gmm.stds[0]:.2f}",
                         fontsize=8)
    axes[0, 0].set_ylabel("fine steps")
    axes[1, 0].set_ylabel("coarse: 10 steps")
    fig.suptitle(f"samplers of the score view with the mixture's exact score (linear, T = {T}, {n} samples; "
                 f"true weights {gmm.weights.tolist()}, std/s = 1)", fontsize=10)
    return fig


@register("score_samplers", "annealed Langevin, the reverse SDE and the probability-flow ODE (Euler = DDIM, Heun) "
          "on the 2-D mixture with its exact score, at fine and at 10 steps", lessons=("13",))
def _make_score_samplers(out_dir, seed):
    return [save(plot_score_samplers(seed=seed), out_dir, "score_samplers")]


# ------------------------------------------------------------------ lesson 14: diffusers' conventions
def plot_diffusers_conventions(T: int = 1000, steps: int = 10):
    """Left: the t each timestep spacing visits (paper indexing; diffusers' timesteps + 1). Right: β_t of
    the schedules whose names differ between the two codebases."""
    fig = new_figure(13, 3.8)
    ax_sp, ax_beta = fig.subplots(1, 2)
    for k, spacing in enumerate(SPACINGS):
        ts = sampling_timesteps(T, steps, spacing)
        ax_sp.plot(ts, np.full(len(ts), k), "o", color=f"C{k}")
        ax_sp.text(T * 1.02, k, f"first t = {ts[0]}, last t = {ts[-1]}", va="center", fontsize=8)
    ax_sp.set(yticks=range(len(SPACINGS)), yticklabels=[f'"{s}"' for s in SPACINGS], xlim=(-20, T * 1.45),
              ylim=(-0.6, len(SPACINGS) - 0.4), xlabel=f"t (paper indexing, 1..{T})",
              title=f"timestep_spacing, T = {T}, {steps} steps: the t visited")
    ax_sp.axvline(T, color="0.7", lw=1)
    t = np.arange(1, T + 1)
    for ours, theirs, style in [("linear", "linear", "-"), ("quadratic", "scaled_linear", "-"),
                                ("cosine", "squaredcos_cap_v2", "-"), ("sigmoid_beta", "sigmoid", "-"),
                                ("sigmoid", "(no diffusers name)", ":")]:
        ax_beta.semilogy(t, make_schedule(ours, T).betas[1:], style, label=f'ours "{ours}" = diffusers "{theirs}"'
                         if not theirs.startswith("(") else f'ours "{ours}" (sigmoid on ᾱ): {theirs}')
    ax_beta.set(xlabel="t", ylabel="β_t (log scale)", ylim=(5e-5, 1.5), title=f"schedule names, T = {T}")
    ax_beta.legend(fontsize=7)
    return fig


@register("diffusers_conventions", "the t visited by diffusers' three timestep spacings (10 of 1000), and β_t of the "
          "schedules under their names in ddpm_ref and in diffusers", lessons=("14",))
def _make_diffusers_conventions(out_dir, seed):
    return [save(plot_diffusers_conventions(), out_dir, "diffusers_conventions")]
