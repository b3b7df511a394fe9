r"""The score-based view of DDPM (Song et al. 2021, "Score-based generative modeling through SDEs").

Layer: math. Imports NumPy, ``ddpm_ref._checks``, ``ddpm_ref._rng``, ``ddpm_ref.schedules``,
``ddpm_ref.timesteps`` and the public ``ddpm_ref.diffusion.predict_x0``.

**The score is a rescaled ε.** q(x_t | x₀) = N(√ᾱ_t·b·x₀, (1 − ᾱ_t) I), so ∇ log q(x_t | x₀) =
−ε/√(1 − ᾱ_t), and the best ε-predictor (the minimiser of L_simple) gives the score of the
marginal q_t (denoising score matching; Vincent 2011, Song et al. 2021 sec. 3.2):

.. math::  \nabla_x \log q_t(x) = -\,\frac{\epsilon_\theta(x, t)}{\sqrt{1 - \bar\alpha_t}}

**DDPM as an SDE.** The forward chain is the discretisation of the VP-SDE (Song et al. eq. 11)
dx = −½β(s)x ds + √β(s) dw. Here the continuous β(s) is taken from the discrete schedule so that
the SDE reproduces ᾱ_t exactly at every integer time: β(s) = −log(1 − β_t) on (t − 1, t], so

.. math::  B(t_{prev}, t) = \int_{t_{prev}}^{t}\beta(s)\,ds = \log\bar\alpha_{t_{prev}} - \log\bar\alpha_t \ (\approx \textstyle\sum \beta_s)

Three samplers use only the score, over the same visited timesteps as DDIM
(``ddpm_ref.timesteps.sampling_timesteps``), each ending with the same last step to t = 0, the
posterior mean x̂₀ = E[x₀ | x_{t₁}] (Tweedie's formula; Algorithm 2's last step is this too):

* ``sample_langevin`` — annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) on the
  marginals q_t: at each visited t, ``n_inner`` steps x ← x + (α_t/2)·∇log q_t(x) + √α_t·z with
  α_t = δ·σ_t²/σ_min², σ_t² = 1 − ᾱ_t (the noise variance of level t), σ_min² that of the last
  level. The step shrinks with the noise, in proportion to the variance of what is being sampled.
* ``sample_reverse_sde`` — the reverse-time SDE (Song et al. eq. 6), Euler–Maruyama:
  x_{prev} = x + [½x + ∇log q_t(x)]·B + √B·z.
* ``sample_probability_flow`` — the probability-flow ODE (Song et al. eq. 13),
  dx/ds = −½β(s)[x + ∇log q_s(x)], with Euler or Heun, in one of two sets of variables:
  ``"vp"`` (x and u = −log ᾱ: dx/du = −½(x + ∇log q)) or ``"sigma"``:
  x̄ = x/√ᾱ and σ = √(1 − ᾱ)/√ᾱ, where the ODE becomes dx̄/dσ = ε_θ(x, t)
  (Song, Meng & Ermon 2021, DDIM, eq. 14). **An Euler step in (x̄, σ) is exactly a DDIM step with
  η = 0** (``pf_ode_euler_step`` beside ``ddpm_ref.diffusion.ddim_step``; the test compares them).

Every sampler takes an ε-model ``eps_model(xt, t)`` (or ``eps_model(xt, t, y)`` when labels y are
given) with t an int array (N,), like ``ddpm_ref.sample``; the chain runs on b·x₀ (Chen's input
scale) and the result is returned in data units. The SDE and ODE samplers need ᾱ_t > 0 at
every visited t (their step sizes B and x̄ are infinite at a zero terminal SNR).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ddpm_ref._checks import check_choice, check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.diffusion import predict_x0
from ddpm_ref.prediction import _check_inputs, _coef
from ddpm_ref.schedules import Schedule
from ddpm_ref.timesteps import SPACINGS, sampling_timesteps

__all__ = [
    "score_from_eps",
    "pf_ode_euler_step",
    "integrated_beta",
    "langevin_levels",
    "sample_langevin",
    "sample_reverse_sde",
    "sample_probability_flow",
    "SOLVERS",
    "ODE_VARIABLES",
]

SOLVERS = ("euler", "heun")
ODE_VARIABLES = ("sigma", "vp")


# ------------------------------------------------------------------ the score and one ODE step
def score_from_eps(schedule: Schedule, t, eps):
    r"""∇_x log q_t(x) = −ε_θ(x, t)/√(1 − ᾱ_t) (module docstring), shape and dtype of eps."""
    (eps,), dtype, t = _check_inputs(schedule, t, eps=eps)
    return np.asarray(-eps / _coef(schedule.sqrt_one_minus_alpha_bars, t, eps.ndim)).astype(dtype, copy=False)


def integrated_beta(schedule: Schedule, t, t_prev) -> float:
    r"""B = ∫_{t_prev}^{t} β(s) ds = log ᾱ_{t_prev} − log ᾱ_t, the VP-SDE's β over one sampler step."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    t, t_prev = _check_pair(schedule.T, t, t_prev)
    return _integrated_beta(schedule, t, t_prev)


def _integrated_beta(schedule, t, t_prev):
    ab_t, ab_prev = schedule.alpha_bars[t], schedule.alpha_bars[t_prev]
    return float(math.log(ab_prev) - math.log(ab_t)) if ab_t > 0 else math.inf


def _check_pair(T, t, t_prev):
    for name, value, low in (("t", t, 1), ("t_prev", t_prev, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= T:
            raise ValueError(f"{name} must be an integer in {low}..{T}, got {value!r}")
    if t_prev >= t:
        raise ValueError(f"t_prev must be smaller than t (samplers go down in t), got t={t}, t_prev={t_prev}")
    return int(t), int(t_prev)


def pf_ode_euler_step(schedule: Schedule, xt, t: int, t_prev: int, eps):
    r"""One Euler step of the probability-flow ODE in x̄ = x/√ᾱ, σ = √(1 − ᾱ)/√ᾱ (DDIM, eq. 14):

    .. math::

        \frac{d\bar x}{d\sigma} = \epsilon_\theta(x, t) \ \Rightarrow\
        \bar x_{prev} = \bar x_t + (\sigma_{prev} - \sigma_t)\,\epsilon_\theta(x_t, t), \qquad
        x_{prev} = \sqrt{\bar\alpha_{prev}}\;\bar x_{prev}

    Multiplied out this is √ᾱ_prev·(x_t − √(1 − ᾱ_t)ε)/√ᾱ_t + √(1 − ᾱ_prev)·ε: DDIM's eq. 12 with
    σ = 0, i.e. ``ddim_step(..., eta=0)``. t_prev = 0 (σ = 0, ᾱ = 1) gives b·x̂₀ (Tweedie).
    """
    (xt, eps), dtype, _ = _check_inputs(schedule, t, xt=xt, eps=eps)
    t, t_prev = _check_pair(schedule.T, t, t_prev)
    if schedule.alpha_bars[t] <= 0:
        raise ValueError("x_bar = x/sqrt(alpha_bar_t) is infinite where alpha_bar_t = 0 (zero terminal SNR)")
    x_bar = xt * schedule.sqrt_recip_alpha_bars[t]                                  # x̄_t = x_t/√ᾱ_t
    sigma, sigma_prev = schedule.sqrt_recipm1_alpha_bars[t], schedule.sqrt_recipm1_alpha_bars[t_prev]
    x_bar_prev = x_bar + (sigma_prev - sigma) * eps                                  # Euler: dx̄ = ε dσ
    return np.asarray(schedule.sqrt_alpha_bars[t_prev] * x_bar_prev).astype(dtype, copy=False)


# ------------------------------------------------------------------ shared sampler plumbing
def _setup(eps_model, schedule, shape, rng, dtype):
    """Checked (generator, x_T ~ N(0, I) in float64, the model's dtype)."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if not callable(eps_model):
        raise ValueError("eps_model must be a callable eps_model(xt, t) or eps_model(xt, t, y)")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (N, ...) with every size >= 1, got {shape}")
    g = as_generator(rng)
    dtype = np.dtype(dtype or getattr(eps_model, "dtype", np.float64))
    return g, g.standard_normal(shape), dtype               # x_T ~ N(0, I)


def _visited(schedule, steps, spacing, *, need_signal=True):
    """The decreasing t a sampler visits (``sampling_timesteps``; all T when steps is None)."""
    check_choice("spacing", spacing, SPACINGS)
    ts = sampling_timesteps(schedule.T, schedule.T if steps is None else steps, spacing)
    if need_signal and schedule.alpha_bars[ts[0]] <= 0:
        raise ValueError("this sampler needs alpha_bar_t > 0 at every visited t (its step is infinite at zero "
                         "terminal SNR); use sample_langevin or DDIM with v-prediction")
    return ts


def _eps(eps_model, x, t, y, dtype):
    """ε_θ(x, t) at one t for every example, as float64 (the model sees its own dtype)."""
    t_arr = np.full(x.shape[0], t, dtype=np.int64)
    xin = x.astype(dtype, copy=False)
    out = eps_model(xin, t_arr) if y is None else eps_model(xin, t_arr, y)
    out = np.asarray(out, dtype=np.float64)
    if out.shape != x.shape or not np.all(np.isfinite(out)):
        raise ValueError(f"eps_model returned shape {out.shape} or non-finite values; expected finite, shape {x.shape}")
    return out


def _finish(schedule, x, t, eps, dtype):
    """The last step to t = 0, x̂₀ = E[x₀ | x_t] (Tweedie; predict_x0 divides by b), in dtype."""
    return predict_x0(schedule, x, t, eps).astype(dtype, copy=False)


# ------------------------------------------------------------------ annealed Langevin dynamics
def langevin_levels(schedule: Schedule, steps: int) -> np.ndarray:
    r"""Up to ``steps`` distinct t, decreasing, whose noise levels σ_t² = 1 − ᾱ_t are spaced geometrically.

    Song & Ermon 2019 use geometric σ_1 > ... > σ_L. On a discrete schedule each target
    log σ² ∈ linspace(log σ_T², log σ_1², steps) is rounded to the t with the nearest log σ_t²;
    duplicates (at low noise, where consecutive t are far apart in log σ) are dropped.
    """
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    steps = check_positive_int("steps", steps)
    log_var = np.log1p(-schedule.alpha_bars[1:])                    # log σ_t², t = 1..T, increasing
    targets = np.linspace(log_var[-1], log_var[0], steps)           # geometric in σ², high to low
    nearest = np.abs(log_var[None, :] - targets[:, None]).argmin(axis=1) + 1
    return np.unique(nearest)[::-1].astype(np.int64)


def sample_langevin(eps_model, schedule: Schedule, shape, *, steps: int = 100, n_inner: int = 10,
                    delta: float = 5e-5, spacing: str = "geometric", rng=0, y=None, dtype=None):
    r"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) with the score −ε_θ/√(1 − ᾱ_t).

    Levels, from high noise to low: ``langevin_levels(schedule, steps)`` (σ_t geometric, as Song &
    Ermon; ``spacing="geometric"``) or the ``steps`` timesteps of ``sampling_timesteps`` for the
    other spacings. At each level t, ``n_inner`` Langevin steps

    .. math::  x \leftarrow x + \frac{\alpha_t}{2}\,\nabla_x\log q_t(x) + \sqrt{\alpha_t}\,z, \qquad
               \alpha_t = \delta\,\frac{\sigma_t^2}{\sigma_{min}^2}, \quad \sigma_t^2 = 1 - \bar\alpha_t

    (σ_min² = 1 − ᾱ of the last level, so the last level's step is δ). The ratio α_t/σ_t² = δ/σ_min²
    is the same at every level: each level is sampled with the same relative accuracy. With linear
    T = 1000, σ_min² = 1e-4 and the default δ = 5e-5 make α_t = σ_t²/2 (Song & Ermon: δ = 2e-5 with
    σ_min = 0.01, 10 levels of 100 steps; the default here is 100 levels, about 75 distinct, of 10
    steps). Stability: a Langevin step on a Gaussian of variance v needs α < 4v, and every mode of
    q_t has variance ≥ σ_t², so any δ < 4σ_min² is stable. Then x̂₀ = E[x₀ | x] at the last level.

    Two biases pull against each other (measured on the 2-D mixture, tests/test_score.py): a large
    δ biases the component weights (they are decided at the mid-noise levels where the modes
    separate, and Langevin with a large step samples those levels inexactly: δ = 2e-4 moved a
    weight of 0.5 to 0.455); a small δ·n_inner leaves each level too little time to shrink to the
    next one's variance, so the samples stay too spread out (δ = 5e-5 with 5 steps: std +5%).
    """
    n_inner = check_positive_int("n_inner", n_inner)
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < math.inf:
        raise ValueError(f"delta (the smallest Langevin step) must be a finite number > 0, got {delta!r}")
    g, x, dtype = _setup(eps_model, schedule, shape, rng, dtype)
    ts = langevin_levels(schedule, steps) if spacing == "geometric" else _visited(schedule, steps, spacing, need_signal=False)
    sigma_min2 = 1.0 - schedule.alpha_bars[ts[-1]]
    for t in ts:
        alpha = delta * (1.0 - schedule.alpha_bars[t]) / sigma_min2                 # α_t = δ σ_t²/σ_min²
        for _ in range(n_inner):
            score = -_eps(eps_model, x, t, y, dtype) / schedule.sqrt_one_minus_alpha_bars[t]
            x = x + 0.5 * alpha * score + math.sqrt(alpha) * g.standard_normal(x.shape)   # Langevin step
    return _finish(schedule, x, int(ts[-1]), _eps(eps_model, x, ts[-1], y, dtype), dtype)


# ------------------------------------------------------------------ the reverse-time SDE
def sample_reverse_sde(eps_model, schedule: Schedule, shape, *, steps: int | None = None,
                       spacing: str = "linspace", rng=0, y=None, dtype=None):
    r"""The VP-SDE's reverse-time SDE (Song et al. 2021, eqs. 6 and 11) by Euler–Maruyama.

    From t to the next visited t_prev (``steps`` of them, all T by default), B = log ᾱ_{t_prev} − log ᾱ_t:

    .. math::  x_{t_{prev}} = x_t + \big[\tfrac12 x_t + \nabla_x\log q_t(x_t)\big]\,B + \sqrt{B}\,z

    (the drift f − g²∇log q = −½βx − β∇log q, run backwards in time), then x̂₀ = E[x₀ | x_{t₁}].
    With every t visited this is Algorithm 2 to first order in β_t.
    """
    g, x, dtype = _setup(eps_model, schedule, shape, rng, dtype)
    ts = _visited(schedule, steps, spacing)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        eps = _eps(eps_model, x, t, y, dtype)
        score = -eps / schedule.sqrt_one_minus_alpha_bars[t]
        B = _integrated_beta(schedule, int(t), int(t_prev))
        x = x + (0.5 * x + score) * B + math.sqrt(B) * g.standard_normal(x.shape)    # Euler–Maruyama
    return _finish(schedule, x, int(ts[-1]), _eps(eps_model, x, ts[-1], y, dtype), dtype)


# ------------------------------------------------------------------ the probability-flow ODE
def _ode_step(schedule, x, t, t_prev, eps, variables):
    """One Euler step t → t_prev with slope from ε (float64, trusted inputs)."""
    if variables == "sigma":                                          # dx̄/dσ = ε
        sig, sig_prev = schedule.sqrt_recipm1_alpha_bars[t], schedule.sqrt_recipm1_alpha_bars[t_prev]
        return schedule.sqrt_alpha_bars[t_prev] * (x * schedule.sqrt_recip_alpha_bars[t] + (sig_prev - sig) * eps)
    B = _integrated_beta(schedule, t, t_prev)                          # dx/du = −½(x + score), du = −B
    return x + 0.5 * B * (x - eps / schedule.sqrt_one_minus_alpha_bars[t])


def _vp_slope(schedule, x, t, eps):
    """dx/du = −½(x + ∇log q_t(x)) with u = −log ᾱ."""
    return -0.5 * (x - eps / schedule.sqrt_one_minus_alpha_bars[t])


def sample_probability_flow(eps_model, schedule: Schedule, shape, *, steps: int | None = None,
                            spacing: str = "linspace", solver: str = "euler", variables: str = "sigma",
                            rng=0, y=None, dtype=None):
    r"""The probability-flow ODE (Song et al. 2021, eq. 13), deterministic given x_T, by Euler or Heun.

    ``variables="sigma"``: dx̄/dσ = ε_θ (DDIM eq. 14); Euler here *is* DDIM with η = 0.
    ``variables="vp"``: dx/du = −½(x + ∇log q_t(x)), u = −log ᾱ (Song et al.'s form).

    Heun (2nd order): an Euler step to t_prev, ε at the end point, then the step again with the
    average slope — two model calls per step. The last step to t = 0 is always x̂₀ = E[x₀ | x_{t₁}]
    (the Euler step in σ; Heun would need ε at t = 0, where there is no noise to predict).
    """
    check_choice("solver", solver, SOLVERS)
    check_choice("variables", variables, ODE_VARIABLES)
    _, x, dtype = _setup(eps_model, schedule, shape, rng, dtype)
    ts = _visited(schedule, steps, spacing)
    for t, t_prev in zip(ts[:-1], ts[1:]):
        t, t_prev = int(t), int(t_prev)
        eps = _eps(eps_model, x, t, y, dtype)
        x_euler = _ode_step(schedule, x, t, t_prev, eps, variables)
        if solver == "euler":
            x = x_euler
            continue
        eps_end = _eps(eps_model, x_euler, t_prev, y, dtype)
        if variables == "sigma":                                      # the slope is ε itself
            x = _ode_step(schedule, x, t, t_prev, 0.5 * (eps + eps_end), variables)
        else:                                                         # average dx/du, times Δu = −B
            slope = 0.5 * (_vp_slope(schedule, x, t, eps) + _vp_slope(schedule, x_euler, t_prev, eps_end))
            x = x - _integrated_beta(schedule, t, t_prev) * slope
    return _finish(schedule, x, int(ts[-1]), _eps(eps_model, x, ts[-1], y, dtype), dtype)
