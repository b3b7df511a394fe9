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

The variational bound (``prior_bpd``, ``vb_term_bpd``, ``vlb_terms``, ``vlb_estimate``) lives in
``ddpm_ref.elbo`` and the Gaussian densities (``normal_kl``, ``discretized_gaussian_log_likelihood``)
in ``ddpm_ref.likelihood``; every one of those names can also be imported from here.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_batch, check_choice, check_float_array, check_same_shape, check_timesteps
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
    "prior_bpd",
    "vb_term_bpd",
    "vlb_terms",
    "vlb_estimate",
    "VARIANCES",
]

VARIANCES = ("fixed_small", "fixed_large")  # σ_t² = β̃_t or β_t (Ho et al. sec. 3.2)
_ELBO_NAMES = ("prior_bpd", "vb_term_bpd", "vlb_terms", "vlb_estimate")


def __getattr__(name):
    # The bound is built on this module, so it cannot be imported at the top without a cycle;
    # `from ddpm_ref.diffusion import vlb_terms` reaches it through this hook (PEP 562).
    if name in _ELBO_NAMES:
        from ddpm_ref import elbo

        return getattr(elbo, name)
    raise AttributeError(f"module 'ddpm_ref.diffusion' has no attribute {name!r}")


# ------------------------------------------------------------------ input checks and indexing
def _check_schedule(sched) -> None:
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule (see ddpm_ref.schedules.make_schedule), got {type(sched).__name__}")


def _images(**arrays) -> tuple[list[np.ndarray], np.dtype]:
    """Finite float arrays of one shape, and the dtype the result takes (float32 only if all are)."""
    out = [check_float_array(name, a) for name, a in arrays.items()]
    check_same_shape(**dict(zip(arrays, out)))
    return out, np.result_type(*out)


def _steps(sched: Schedule, t, x: np.ndarray, *, name: str = "t", lowest: int = 1):
    """Validated timesteps (int or int64 array (N,)) that index the batch axis of x."""
    t = check_timesteps(t, sched.T, lowest=lowest, name=name)
    check_batch(t, x, name=name, x_name="the images")
    return t


def _at(arr: np.ndarray, t, ndim: int):
    """arr[t] as a float64 scalar (int t) or as shape (N, 1, ..., 1) for broadcasting against ndim-D images.

    A NumPy float64 (not a Python float, which NumPy 2 treats as "weak") so that float32 images are
    computed in float64 whether t is an int or an array, and only the result is cast back.
    """
    c = arr[t]
    return c.reshape(c.shape + (1,) * (ndim - 1)) if isinstance(t, np.ndarray) else np.float64(c)


def _zeros_like(x) -> np.ndarray:
    """Zeros standing in for unused noise, of x's shape and (float) dtype."""
    x = np.asarray(x)
    return np.zeros(x.shape, dtype=np.result_type(x.dtype, np.float32) if x.dtype.kind in "fiu" else np.float64)


def _check_recoverable(sched: Schedule, t) -> None:
    if np.any(sched.alpha_bars[t] <= 0):
        raise ValueError("x_0 cannot be recovered where alpha_bar_t = 0 (a beta of 1 in the schedule); "
                         "use t with alpha_bar_t > 0")


# ------------------------------------------------------------------ the forward process q
def q_step(sched: Schedule, x_prev, t, noise):
    r"""One step of the forward Markov chain, q(x_t | x_{t−1}) (Ho et al. 2020, eq. 2):

    .. math::  x_t = \sqrt{1 - \beta_t}\, x_{t-1} + \sqrt{\beta_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I)

    At t = 1, ``x_prev`` is the data x_0 and is first multiplied by the input scale b.
    """
    _check_schedule(sched)
    (x_prev, noise), dtype = _images(x_prev=x_prev, noise=noise)
    t = _steps(sched, t, x_prev)
    b = np.where(np.asarray(t) == 1, sched.input_scale, 1.0)
    b = b.reshape(b.shape + (1,) * (x_prev.ndim - 1)) if isinstance(t, np.ndarray) else float(b)
    x_t = _at(np.sqrt(sched.alphas), t, x_prev.ndim) * b * x_prev + _at(np.sqrt(sched.betas), t, x_prev.ndim) * noise
    return np.asarray(x_t).astype(dtype, copy=False)


def q_sample(sched: Schedule, x0, t, noise):
    r"""Sample x_t ~ q(x_t | x_0) in closed form (Ho et al. 2020, eq. 4; Chen 2023 for b):

    .. math::  x_t = \sqrt{\bar\alpha_t}\, b\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon

    t in 1..T. Equal in distribution to t ``q_step``s (tested by Monte Carlo).
    """
    _check_schedule(sched)
    (x0, noise), dtype = _images(x0=x0, noise=noise)
    t = _steps(sched, t, x0)
    nd = x0.ndim
    x_t = _at(sched.sqrt_alpha_bars, t, nd) * sched.input_scale * x0 + _at(sched.sqrt_one_minus_alpha_bars, t, nd) * noise
    return np.asarray(x_t).astype(dtype, copy=False)


def q_posterior(sched: Schedule, x0, xt, t):
    r"""Mean and variance of the forward-process posterior q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eqs. 6–7):

    .. math::

        \tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0
            + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t, \qquad
        \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t

    (x_0 enters as b·x_0). Returns ``(mean, variance)``, both of the images' shape; at t = 1 the
    variance is 0 and the mean is b·x_0. Tested against Bayes' rule for Gaussians.
    """
    _check_schedule(sched)
    (x0, xt), dtype = _images(x0=x0, xt=xt)
    t = _steps(sched, t, xt)
    nd = xt.ndim
    mean = _at(sched.posterior_mean_coef_x0, t, nd) * sched.input_scale * x0 + _at(sched.posterior_mean_coef_xt, t, nd) * xt
    var = np.broadcast_to(_at(sched.posterior_variance, t, nd), xt.shape)
    return np.asarray(mean).astype(dtype, copy=False), var.astype(dtype)


def predict_x0(sched: Schedule, xt, t, eps):
    r"""The data x_0 that ε explains, from eq. 4 solved for x_0 (Ho et al. 2020, eq. 15):

    .. math::  \hat x_0 = \frac{1}{b}\Big(\frac{x_t}{\sqrt{\bar\alpha_t}} - \sqrt{\frac{1}{\bar\alpha_t} - 1}\;\epsilon_\theta(x_t, t)\Big)

    Returned in data units (divided by b). No clipping here.
    """
    _check_schedule(sched)
    (xt, eps), dtype = _images(xt=xt, eps=eps)
    t = _steps(sched, t, xt)
    _check_recoverable(sched, t)
    return (_predict_x0_scaled(sched, xt, t, eps) / sched.input_scale).astype(dtype, copy=False)


def _predict_x0_scaled(sched, xt, t, eps):
    """b·x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε, float64 (inputs already checked)."""
    nd = xt.ndim
    return np.asarray(_at(sched.sqrt_recip_alpha_bars, t, nd) * xt - _at(sched.sqrt_recipm1_alpha_bars, t, nd) * eps)


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
    _check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    (xt, eps), dtype = _images(xt=xt, eps=eps)
    t = _steps(sched, t, xt)
    return tuple(a.astype(dtype, copy=False) for a in _p_mean_variance(sched, xt, t, eps, variance, clip_x0))


def _p_mean_variance(sched, xt, t, eps, variance, clip_x0):
    """(mean, variance) in float64, inputs already checked."""
    nd = xt.ndim
    _check_recoverable(sched, t)  # ᾱ_t > 0 also means α_t > 0: eq. 11 divides by both
    if clip_x0:
        b = sched.input_scale
        x0_scaled = np.clip(_predict_x0_scaled(sched, xt, t, eps), -b, b)   # clip x̂_0 to [−1, 1]
        mean = _at(sched.posterior_mean_coef_x0, t, nd) * x0_scaled + _at(sched.posterior_mean_coef_xt, t, nd) * xt
    else:
        mean = _at(sched.sqrt_recip_alphas, t, nd) * (xt - _at(sched.eps_coef, t, nd) * eps)  # eq. 11
    var_arr = sched.posterior_variance if variance == "fixed_small" else sched.betas
    var = np.broadcast_to(np.asarray(_at(var_arr, t, nd), dtype=np.float64), xt.shape)
    return np.asarray(mean, dtype=np.float64), var


def ddpm_step(sched: Schedule, xt, t, eps, z, variance: str = "fixed_small", clip_x0: bool = False):
    r"""One step of Algorithm 2 (Ho et al. 2020), x_t → x_{t−1}:

    .. math::  x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{1 - \alpha_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z

    with z ~ N(0, I) for t > 1 and **no noise at t = 1** (z is ignored there; it may be None when
    every t is 1). σ_t² = β̃_t ("fixed_small") or β_t ("fixed_large"). ``clip_x0`` is off by
    default because Algorithm 2 has none (see ``p_mean_variance``). At t = 1 the result is b·x̂_0.
    """
    _check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    t_checked = check_timesteps(t, sched.T)
    if z is None:
        if np.any(np.asarray(t_checked) != 1):
            raise ValueError("z (the noise of Algorithm 2) must be given where t > 1; only t = 1 adds no noise")
        z = _zeros_like(xt)
    (xt, eps, z), dtype = _images(xt=xt, eps=eps, z=z)
    t = _steps(sched, t, xt)
    mean, var = _p_mean_variance(sched, xt, t, eps, variance, clip_x0)
    nonzero = _at((np.arange(sched.T + 1) > 1).astype(np.float64), t, xt.ndim)   # 0 at t = 1
    return (mean + nonzero * np.sqrt(var) * z).astype(dtype, copy=False)


def ddim_sigma(sched: Schedule, t, t_prev, eta: float = 0.0):
    r"""σ of a DDIM step t → t_prev (Song et al. 2021, eq. 16; their α is our ᾱ):

    .. math::  \sigma_{t}(\eta) = \eta\,\sqrt{\frac{1 - \bar\alpha_{t_{prev}}}{1 - \bar\alpha_t}}\,\sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_{t_{prev}}}}

    ᾱ_0 = 1, so σ = 0 when t_prev = 0. With η = 1 and t_prev = t − 1, σ² = β̃_t. Returns float64
    (a float, or an array (N,) when t or t_prev is an array).
    """
    _check_schedule(sched)
    t = check_timesteps(t, sched.T)
    t_prev = check_timesteps(t_prev, sched.T, lowest=0, name="t_prev")
    eta = _check_eta(eta)
    if np.any(np.asarray(t_prev) >= np.asarray(t)):
        raise ValueError("t_prev must be smaller than t (DDIM steps go from t down to t_prev, 0 <= t_prev < t)")
    return _ddim_sigma(sched, t, t_prev, eta)


def _ddim_sigma(sched, t, t_prev, eta):
    ab_t, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t_prev]
    sigma = eta * np.sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * np.sqrt(1.0 - ab_t / ab_prev)
    return sigma if isinstance(sigma, np.ndarray) else float(sigma)


def _check_eta(eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not np.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0 (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")
    return float(eta)


def ddim_step(sched: Schedule, xt, t, t_prev, eps, eta: float = 0.0, z=None, clip_x0: bool = False):
    r"""One DDIM step x_t → x_{t_prev} (Song et al. 2021, eq. 12, written with our ᾱ for their α):

    .. math::

        x_{t_{prev}} = \sqrt{\bar\alpha_{t_{prev}}}\,\underbrace{\frac{x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}}_{\text{predicted } x_0}
            + \sqrt{1 - \bar\alpha_{t_{prev}} - \sigma_t^2}\;\epsilon_\theta(x_t, t) + \sigma_t z

    with σ_t from ``ddim_sigma`` (eq. 16). t in 1..T, t_prev in 0..t−1 (ints or arrays (N,));
    t_prev = 0 means ᾱ = 1, so the last step returns the predicted (b·)x_0. η = 0 is deterministic
    (z unused); η > 0 needs z. η = 1 with t_prev = t − 1 is the DDPM step with σ_t² = β̃_t.
    ``clip_x0`` (off by default) clips the predicted x_0 to [−1, 1].
    """
    _check_schedule(sched)
    eta = _check_eta(eta)
    if z is None:
        if eta > 0:
            raise ValueError("z must be given when eta > 0 (the step adds sigma_t * z)")
        z = _zeros_like(xt)
    (xt, eps, z), dtype = _images(xt=xt, eps=eps, z=z)
    t = _steps(sched, t, xt)
    t_prev = _steps(sched, t_prev, xt, name="t_prev", lowest=0)
    if np.any(np.asarray(t_prev) >= np.asarray(t)):
        raise ValueError("t_prev must be smaller than t (DDIM steps go from t down to t_prev, 0 <= t_prev < t)")
    _check_recoverable(sched, t)
    nd = xt.ndim
    sigma = _ddim_sigma(sched, t, t_prev, eta)
    ab_prev = sched.alpha_bars[t_prev]
    dir_var = 1.0 - ab_prev - np.asarray(sigma) ** 2          # 1 − ᾱ_prev − σ²
    if np.any(dir_var < -1e-12):
        raise ValueError(f"eta={eta} is too large for this step: 1 - alpha_bar_prev - sigma^2 < 0")
    x0_scaled = _predict_x0_scaled(sched, xt, t, eps)
    if clip_x0:
        x0_scaled = np.clip(x0_scaled, -sched.input_scale, sched.input_scale)
        # the direction term uses the ε consistent with the clipped x̂_0 (as diffusers/DDIM do)
        eps = (xt - _at(sched.sqrt_alpha_bars, t, nd) * x0_scaled) / _at(sched.sqrt_one_minus_alpha_bars, t, nd)

    def per_example(v):
        v = np.asarray(v, dtype=np.float64)
        return v.reshape(v.shape + (1,) * (nd - 1)) if v.ndim else np.float64(v)

    x_prev = (per_example(np.sqrt(ab_prev)) * x0_scaled
              + per_example(np.sqrt(np.maximum(dir_var, 0.0))) * eps
              + per_example(sigma) * z)
    return np.asarray(x_prev).astype(dtype, copy=False)


# ------------------------------------------------------------------ the training objective
def loss_simple(eps, eps_pred) -> float:
    r"""L_simple (Ho et al. 2020, eq. 14) for one batch: the mean squared error over every element,

    .. math::  L_\text{simple} = \frac{1}{M}\sum_{j=1}^{M} \big(\epsilon_j - \epsilon_\theta(x_t, t)_j\big)^2

    (M = number of elements; the paper's expectation over t, x_0, ε is the batch average).
    Returns a Python float, computed in float64.
    """
    (eps, eps_pred), _ = _images(eps=eps, eps_pred=eps_pred)
    if eps.size == 0:
        raise ValueError("eps and eps_pred are empty; L_simple needs at least one element")
    diff = eps_pred.astype(np.float64) - eps.astype(np.float64)
    return float(np.mean(diff * diff))


def loss_simple_grad(eps, eps_pred):
    r"""∂L_simple/∂ε_θ = 2(ε_θ − ε)/M, with the dtype of ``eps_pred`` (checked by finite differences)."""
    (eps, eps_pred), _ = _images(eps=eps, eps_pred=eps_pred)
    if eps.size == 0:
        raise ValueError("eps and eps_pred are empty; L_simple needs at least one element")
    grad = 2.0 * (eps_pred.astype(np.float64) - eps.astype(np.float64)) / eps.size
    return grad.astype(eps_pred.dtype, copy=False)
