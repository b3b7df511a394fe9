r"""The DDPM forward and reverse processes in NumPy, in the paper's notation (Ho et al. 2020).

Conventions (the same everywhere in ddpm_ref):

* t = 1..T as in the paper; a ``Schedule``'s arrays are indexed by t and index 0 means no noise.
  *diffusers* and *improved-diffusion* index 0..T−1: their step i is our t = i + 1, and their
  ``model(x, i)`` gets i where ours gets t.
* ``t`` is an int (the same step for every example) or an int array of shape (N,) that indexes
  the leading (batch) axis of the image arrays; trailing shapes are arbitrary. A coefficient c_t
  is broadcast as shape (N, 1, 1, ...).
* Images may be float32 or float64; results have the input dtype. Schedule coefficients are
  float64 and the arithmetic is done in float64, cast at the end.
* Noise (ε, z) is always passed in, never drawn here: the caller owns the random generator.
* Chen 2023's input scale b (``sched.input_scale``, default 1): the chain runs on b·x_0, i.e.
  x_t = √ᾱ_t·b·x_0 + √(1 − ᾱ_t)·ε. Functions that take the data x_0 (``q_sample``,
  ``q_posterior``, the bound) scale it; ``predict_x0`` returns unscaled data; the reverse steps
  stay in the chain's space, so the last step returns b·x̂_0 (divide by b; with b = 1 nothing
  changes).

Layout of each public function, as in Ho et al.'s ``diffusion_utils_2.py``: the docstring gives the
equation (with its number in the paper), the first line of the body is one call that checks and
converts every argument (``_check_<function>``, at the end of this module), and the lines after it
are the equation. Arguments are checked once; the math trusts them. A result that does not fit the
output dtype (e.g. float32 inputs near 3.4e38) raises ``ValueError`` rather than returning ±inf.

Layer: math. Imports ``ddpm_ref.schedules``, ``ddpm_ref.likelihood`` and the shared checks in
``ddpm_ref._math_checks``; never ``ddpm_ref.elbo``, which builds on this module. The variational
bound (``prior_bpd``, ``vb_term_bpd``, ``vlb_terms``, ``vlb_estimate``) is imported from
``ddpm_ref.elbo``; the Gaussian densities (``normal_kl``, ``discretized_gaussian_log_likelihood``)
live in ``ddpm_ref.likelihood`` and are re-exported here.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_choice, check_timesteps
from ddpm_ref._math_checks import at, check_recoverable, check_schedule, finite_as, images, per_example, steps
from ddpm_ref.likelihood import discretized_gaussian_log_likelihood, normal_kl  # noqa: F401 (re-exported)
from ddpm_ref.schedules import Schedule

__all__ = [
    "q_step",
    "q_sample",
    "q_posterior",
    "predict_x0",
    "p_mean_variance",
    "ddpm_step",
    "ddim_step",
    "ddim_sigma",
    "loss_simple",
    "loss_simple_grad",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
    "VARIANCES",
]

VARIANCES = ("fixed_small", "fixed_large")  # σ_t² = β̃_t or β_t (Ho et al. sec. 3.2)


# ------------------------------------------------------------------ the forward process q
def q_step(sched: Schedule, x_prev, t, noise):
    r"""One step of the forward Markov chain, q(x_t | x_{t−1}) (Ho et al. 2020, eq. 2):

    .. math::  x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I)

    At t = 1, ``x_prev`` is the data x_0 and is first multiplied by the input scale b.
    """
    x_prev, noise, t, dtype = _check_q_step(sched, x_prev, t, noise)
    nd = x_prev.ndim
    b = per_example(np.where(np.asarray(t) == 1, sched.input_scale, 1.0), nd)   # the data enters the chain as b·x_0
    x_t = at(np.sqrt(sched.alphas), t, nd) * b * x_prev + at(np.sqrt(sched.betas), t, nd) * noise
    return finite_as(x_t, dtype, "q_step", "x_prev, noise")


def q_sample(sched: Schedule, x0, t, noise):
    r"""Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. 2020, eq. 4; Chen 2023 for b):

    .. math::  x_t = \sqrt{\bar\alpha_t}\, b\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon

    t in 1..T. Equal in distribution to t ``q_step``s (tested by Monte Carlo).
    """
    x0, noise, t, dtype = _check_q_sample(sched, x0, t, noise)
    nd = x0.ndim
    x_t = at(sched.sqrt_alpha_bars, t, nd) * sched.input_scale * x0 + at(sched.sqrt_one_minus_alpha_bars, t, nd) * noise
    return finite_as(x_t, dtype, "q_sample", "x0, noise")


def q_posterior(sched: Schedule, x0, xt, t):
    r"""Mean and variance of the forward-process posterior q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6–7):

    .. math::

        \tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
            + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \qquad
        \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t

    (x_0 enters as b·x_0). Returns ``(mean, variance)``, both of the images' shape; at t = 1 the
    variance is 0 and the mean is b·x_0. Tested against Bayes' rule for Gaussians.
    """
    x0, xt, t, dtype = _check_q_posterior(sched, x0, xt, t)
    nd = xt.ndim
    mean = at(sched.posterior_mean_coef_x0, t, nd) * sched.input_scale * x0 + at(sched.posterior_mean_coef_xt, t, nd) * xt
    var = np.broadcast_to(at(sched.posterior_variance, t, nd), xt.shape)
    return finite_as(mean, dtype, "q_posterior", "x0, xt"), finite_as(var, dtype, "q_posterior", "t")


def predict_x0(sched: Schedule, xt, t, eps):
    r"""The data x_0 that ε explains, from eq. 4 solved for x_0 (Ho et al. 2020, eq. 15):

    .. math::  \hat x_0 = \frac{1}{b}\Big(\frac{x_t}{\sqrt{\bar\alpha_t}} - \sqrt{\frac{1}{\bar\alpha_t} - 1}\;\epsilon_\theta(x_t, t)\Big)

    Returned in data units (divided by b). No clipping here.
    """
    xt, eps, t, dtype = _check_predict_x0(sched, xt, t, eps)
    nd = xt.ndim
    x0_hat = (at(sched.sqrt_recip_alpha_bars, t, nd) * xt - at(sched.sqrt_recipm1_alpha_bars, t, nd) * eps) / sched.input_scale
    return finite_as(x0_hat, dtype, "predict_x0", "xt, eps")


# ------------------------------------------------------------------ the reverse process p_θ
def p_mean_variance(sched: Schedule, xt, t, eps, variance: str = "fixed_small", clip_x0: bool = False):
    r"""Mean and variance of p_θ(x_{t−1} | x_t) for the ε-parameterisation (Ho et al. 2020, eq. 11):

    .. math::  \mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big),
               \qquad \sigma_t^2 = \tilde\beta_t \ (\text{"fixed\_small"}) \ \text{or}\ \beta_t \ (\text{"fixed\_large"})

    μ_θ equals μ̃_t(x_t, x̂_0) with x̂_0 from ``predict_x0``. With ``clip_x0=True`` x̂_0 is clipped
    to [−1, 1] first and the mean is μ̃_t(x_t, clip(x̂_0)), as improved-diffusion and diffusers do
    by default; it is off by default here because Algorithm 2 has no clipping.
    Returns ``(mean, variance)``, both of the images' shape.
    """
    xt, eps, t, dtype = _check_p_mean_variance(sched, xt, t, eps, variance)
    nd = xt.ndim
    mean = at(sched.sqrt_recip_alphas, t, nd) * (xt - at(sched.eps_coef, t, nd) * eps)           # eq. 11
    var = at(sched.posterior_variance if variance == "fixed_small" else sched.betas, t, nd)     # σ_t²
    if clip_x0:
        x0_clipped = np.clip(predict_x0(sched, xt, t, eps), -1.0, 1.0)
        mean = q_posterior(sched, x0_clipped, xt, t)[0]                                          # μ̃_t(x_t, clip(x̂_0))
    return (finite_as(mean, dtype, "p_mean_variance", "xt, eps"),
            finite_as(np.broadcast_to(var, xt.shape), dtype, "p_mean_variance", "t"))


def ddpm_step(sched: Schedule, xt, t, eps, z, variance: str = "fixed_small", clip_x0: bool = False):
    r"""One step of Algorithm 2 (Ho et al. 2020), x_t → x_{t−1}:

    .. math::  x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z

    with z ~ N(0, I) for t > 1 and **no noise at t = 1** (z is ignored there; it may be None when
    every t is 1). σ_t² = β̃_t ("fixed_small") or β_t ("fixed_large"). ``clip_x0`` is off by
    default because Algorithm 2 has none (see ``p_mean_variance``). At t = 1 the result is b·x̂_0.
    """
    xt, eps, z, t, dtype = _check_ddpm_step(sched, xt, t, eps, z, variance)
    mean, var = p_mean_variance(sched, xt, t, eps, variance, clip_x0)       # float64, as the checked inputs are
    no_noise_at_1 = per_example(np.asarray(t) > 1, xt.ndim)                  # 0 where t = 1
    x_prev = mean + no_noise_at_1 * np.sqrt(var) * z
    return finite_as(x_prev, dtype, "ddpm_step", "xt, eps, z")


def ddim_sigma(sched: Schedule, t, t_prev, eta: float = 0.0):
    r"""σ of a DDIM step t → t_prev (Song et al. 2021, eq. 16; their α is our ᾱ):

    .. math::  \sigma_{t}(\eta) = \eta\,\sqrt{\frac{1 - \bar\alpha_{t_{prev}}}{1 - \bar\alpha_t}}\,\sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{t_{prev}}}}

    ᾱ_0 = 1, so σ = 0 when t_prev = 0. With η = 1 and t_prev = t − 1, σ² = β̃_t. Returns float64
    (a float, or an array (N,) when t or t_prev is an array).
    """
    t, t_prev, eta = _check_ddim_sigma(sched, t, t_prev, eta)
    ab_t, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t_prev]
    sigma = eta * np.sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * np.sqrt(1.0 - ab_t / ab_prev)
    return sigma if isinstance(sigma, np.ndarray) else float(sigma)


def ddim_step(sched: Schedule, xt, t, t_prev, eps, eta: float = 0.0, z=None, clip_x0: bool = False):
    r"""One DDIM step x_t → x_{t_prev} (Song et al. 2021, eq. 12, written with our ᾱ for their α):

    .. math::

        x_{t_{prev}} = \sqrt{\bar\alpha_{t_{prev}}}\,\underbrace{\frac{x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}}_{\text{predicted } x_0}
            + \sqrt{1 - \bar\alpha_{t_{prev}} - \sigma_t^2}\;\epsilon_\theta(x_t, t) + \sigma_t z

    with σ_t from ``ddim_sigma`` (eq. 16). t in 1..T, t_prev in 0..t−1 (ints or arrays (N,));
    t_prev = 0 means ᾱ = 1, so the last step returns the predicted (b·)x_0. η = 0 is deterministic
    (z unused); η > 0 needs z. η = 1 with t_prev = t − 1 is the DDPM step with σ_t² = β̃_t.

    ``clip_x0`` (off by default) clips the predicted x_0 to [−1, 1] **and** replaces ε_θ in the
    direction term by the ε that the clipped x̂_0 implies, ε = (x_t − √ᾱ_t·x̂_0)/√(1 − ᾱ_t). That is
    diffusers' ``DDIMScheduler.step`` with ``use_clipped_model_output=True``; by default diffusers
    clips x̂_0 (``clip_sample=True``) but keeps the model's own ε in the direction term.
    """
    xt, eps, z, t, t_prev, eta, dtype = _check_ddim_step(sched, xt, t, t_prev, eps, eta, z)
    nd = xt.ndim
    sigma = per_example(ddim_sigma(sched, t, t_prev, eta), nd)                           # eq. 16
    ab_prev = at(sched.alpha_bars, t_prev, nd)
    x0_pred = sched.input_scale * predict_x0(sched, xt, t, eps)                          # predicted (b·)x_0
    if clip_x0:
        x0_pred = np.clip(x0_pred, -sched.input_scale, sched.input_scale)
        eps = (xt - at(sched.sqrt_alpha_bars, t, nd) * x0_pred) / at(sched.sqrt_one_minus_alpha_bars, t, nd)
    direction = np.sqrt(np.maximum(1.0 - ab_prev - sigma ** 2, 0.0)) * eps               # ≥ 0 up to rounding
    x_prev = np.sqrt(ab_prev) * x0_pred + direction + sigma * z                          # eq. 12
    return finite_as(x_prev, dtype, "ddim_step", "xt, eps, z")


# ------------------------------------------------------------------ the training objective
def loss_simple(eps, eps_pred) -> float:
    r"""L_simple (Ho et al. 2020, eq. 14) for one batch: the mean squared error over every element,

    .. math::  L_\text{simple} = \frac{1}{M}\sum_{j=1}^{M} \big(\epsilon_j - \epsilon_\theta(x_t, t)_j\big)^2

    (M = number of elements; the paper's expectation over t, x_0, ε is the batch average).
    Returns a Python float, computed in float64 in a scaled form, (2s)²·mean((d/2s)²) with
    d = ε_θ − ε and s = max|d/2|, so that squaring large but finite values does not overflow; a
    loss beyond float64's range raises ``ValueError``.
    """
    eps, eps_pred, _ = _check_loss_simple(eps, eps_pred)
    half_diff = 0.5 * eps_pred - 0.5 * eps                       # d/2, which cannot overflow
    s = max(float(np.max(np.abs(half_diff))), np.finfo(np.float64).tiny)
    loss = 4.0 * s * (s * float(np.mean((half_diff / s) ** 2)))  # = mean(d²), eq. 14 (Python floats: inf, no warning)
    return float(finite_as(loss, np.float64, "loss_simple", "eps, eps_pred"))


def loss_simple_grad(eps, eps_pred):
    r"""∂L_simple/∂ε_θ = 2(ε_θ − ε)/M, with the dtype of ``eps_pred`` (checked by finite differences)."""
    eps, eps_pred, grad_dtype = _check_loss_simple(eps, eps_pred)
    grad = (4.0 / eps.size) * (0.5 * eps_pred - 0.5 * eps)      # 2(ε_θ − ε)/M, without overflow in ε_θ − ε
    return finite_as(grad, grad_dtype, "loss_simple_grad", "eps, eps_pred")


# ------------------------------------------------------------------ argument checks, one per public function
# Each returns the arguments converted (images as float64, t as int or int64 array) and the dtype
# of the result; everything that can be wrong with an argument raises ValueError here, naming it.
def _float64(*arrays):
    return [a.astype(np.float64, copy=False) for a in arrays]


def _check_q_step(sched, x_prev, t, noise):
    check_schedule(sched)
    (x_prev, noise), dtype = images(x_prev=x_prev, noise=noise)
    t = steps(sched, t, x_prev)
    return (*_float64(x_prev, noise), t, dtype)


def _check_q_sample(sched, x0, t, noise):
    check_schedule(sched)
    (x0, noise), dtype = images(x0=x0, noise=noise)
    t = steps(sched, t, x0)
    return (*_float64(x0, noise), t, dtype)


def _check_q_posterior(sched, x0, xt, t):
    check_schedule(sched)
    (x0, xt), dtype = images(x0=x0, xt=xt)
    t = steps(sched, t, xt)
    return (*_float64(x0, xt), t, dtype)


def _check_predict_x0(sched, xt, t, eps):
    check_schedule(sched)
    (xt, eps), dtype = images(xt=xt, eps=eps)
    t = steps(sched, t, xt)
    check_recoverable(sched, t)
    return (*_float64(xt, eps), t, dtype)


def _check_p_mean_variance(sched, xt, t, eps, variance):
    check_choice("variance", variance, VARIANCES)
    return _check_predict_x0(sched, xt, t, eps)   # ᾱ_t > 0 also means α_t > 0: eq. 11 divides by both


def _check_ddpm_step(sched, xt, t, eps, z, variance):
    check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    if z is None:
        if np.any(np.asarray(check_timesteps(t, sched.T)) != 1):
            raise ValueError("z (the noise of Algorithm 2) must be given where t > 1; only t = 1 adds no noise")
        z = _zeros_like(xt)
    (xt, eps, z), dtype = images(xt=xt, eps=eps, z=z)
    t = steps(sched, t, xt)
    check_recoverable(sched, t)
    return (*_float64(xt, eps, z), t, dtype)


def _check_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not np.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
    return float(eta)


def _check_ddim_sigma(sched, t, t_prev, eta):
    check_schedule(sched)
    t = check_timesteps(t, sched.T)
    t_prev = check_timesteps(t_prev, sched.T, lowest=0, name="t_prev")
    eta = _check_eta(eta)
    if isinstance(t, np.ndarray) and isinstance(t_prev, np.ndarray) and t.shape != t_prev.shape:
        raise ValueError(f"t and t_prev must have the same length when both are arrays, got {t.shape} and {t_prev.shape}")
    _check_t_prev_below_t(t, t_prev)
    return t, t_prev, eta


def _check_t_prev_below_t(t, t_prev) -> None:
    if np.any(np.asarray(t_prev) >= np.asarray(t)):
        raise ValueError("t_prev must be smaller than t (DDIM steps go from t down to t_prev, 0 <= t_prev < t)")


def _check_ddim_step(sched, xt, t, t_prev, eps, eta, z):
    check_schedule(sched)
    eta = _check_eta(eta)
    if z is None:
        if eta > 0:
            raise ValueError("z must be given when eta > 0 (the step adds sigma_t * z)")
        z = _zeros_like(xt)
    (xt, eps, z), dtype = images(xt=xt, eps=eps, z=z)
    t = steps(sched, t, xt)
    t_prev = steps(sched, t_prev, xt, name="t_prev", lowest=0)
    _check_t_prev_below_t(t, t_prev)
    check_recoverable(sched, t)
    ab_prev, ab_t = sched.alpha_bars[t_prev], sched.alpha_bars[t]
    sigma2 = eta ** 2 * (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)
    if np.any(1.0 - ab_prev - sigma2 < -1e-12):      # rounding may leave −1e-17 when η = 1
        raise ValueError(f"eta={eta} is too large for this step: 1 - alpha_bar_prev - sigma^2 < 0")
    return (*_float64(xt, eps, z), t, t_prev, eta, dtype)


def _check_loss_simple(eps, eps_pred):
    (eps, eps_pred), _ = images(eps=eps, eps_pred=eps_pred)
    if eps.size == 0:
        raise ValueError("eps and eps_pred are empty; L_simple needs at least one element")
    return (*_float64(eps, eps_pred), eps_pred.dtype)     # the gradient takes eps_pred's dtype


def _zeros_like(x) -> np.ndarray:
    """Zeros standing in for unused noise, of x's shape and (float) dtype."""
    x = np.asarray(x)
    return np.zeros(x.shape, dtype=np.result_type(x.dtype, np.float32) if x.dtype.kind in "fiu" else np.float64)
