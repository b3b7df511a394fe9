r"""The variational bound of DDPM in bits/dim, term by term (Ho et al. 2020, eq. 5):

.. math::

    L = \underbrace{D_{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
      + \sum_{t=2}^{T} \underbrace{D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
      \underbrace{-\log p_\theta(x_0|x_1)}_{L_0}

Each term is returned separately (``prior_bpd`` is L_T, ``vb_term_bpd`` is L_{t−1} for t ≥ 2 and
L_0 at t = 1) so that a figure can show where the bound comes from, as in Ho et al.'s
``diffusion_utils_2.py`` and improved-diffusion's ``calc_bpd_loop``. Units: bits per dimension,
i.e. nats averaged over every non-batch axis and divided by log 2. Results are float64 whatever
the images' dtype (they are sums of many terms).

Every name here is also importable from ``ddpm_ref.diffusion``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ddpm_ref._checks import check_choice, check_float_array, check_positive_int
from ddpm_ref.diffusion import VARIANCES, _at, _check_schedule, _images, _p_mean_variance, _steps, q_sample
from ddpm_ref.likelihood import discretized_gaussian_log_likelihood, normal_kl
from ddpm_ref.schedules import Schedule

__all__ = ["prior_bpd", "vb_term_bpd", "vlb_terms", "vlb_estimate"]

_LOG2 = math.log(2.0)


def _mean_flat(a: np.ndarray) -> np.ndarray:
    """Mean over every axis but the first: nats per dimension, one value per example."""
    return a.reshape(a.shape[0], -1).mean(axis=1)


def _batch(name: str, x) -> np.ndarray:
    x = check_float_array(name, x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a leading batch axis with at least one example, got shape {x.shape}")
    return x


def prior_bpd(sched: Schedule, x0) -> np.ndarray:
    r"""L_T = D_KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim, one value per example (shape (N,)).

    q(x_T | x_0) = N(√ᾱ_T·b·x_0, (1 − ᾱ_T) I) (eq. 4). No parameters are learned in this term; it is
    tiny when ᾱ_T ≈ 0 (linear, T = 1000: about 1e-5) and not when the chain is short (linear, T = 50).
    """
    _check_schedule(sched)
    x0 = _batch("x0", x0)
    T = sched.T
    mean = sched.sqrt_alpha_bars[T] * sched.input_scale * x0.astype(np.float64)
    logvar = math.log1p(-sched.alpha_bars[T])                # ᾱ_T < 1 since every β_t > 0
    kl = normal_kl(mean, logvar, 0.0, 0.0)
    return _mean_flat(kl) / _LOG2


def vb_term_bpd(sched: Schedule, x0, xt, t, eps, variance: str = "fixed_small", clip_x0: bool = False):
    r"""L_{t−1} in bits/dim per example (shape (N,)), for x_t drawn from q(x_t | x_0):

    * t ≥ 2: D_KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) (eq. 5), both Gaussians; q from
      ``q_posterior`` (variance β̃_t), p_θ from ``p_mean_variance`` (variance β̃_t or β_t);
    * t = 1: the decoder NLL −log p_θ(x_0 | x_1) (eq. 13), a Gaussian with mean μ_θ(x_1, 1) = x̂_0
      discretized to the 256 levels, with variance β̃_2 (``posterior_log_variance_clipped[1]``)
      for *both* variance choices, as improved-diffusion does (β̃_1 = 0 would make it degenerate).

    x0 must lie on the 256-level grid of [−1, 1]; eps is ε_θ(x_t, t); t an int or an array (N,).
    """
    _check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    (x0, xt, eps), _ = _images(x0=x0, xt=xt, eps=eps)
    x0 = _batch("x0", x0)
    t = _steps(sched, t, xt)
    t_arr = np.broadcast_to(np.asarray(t), (x0.shape[0],))
    x0, xt, eps = (a.astype(np.float64) for a in (x0, xt, eps))
    nd = xt.ndim
    b = sched.input_scale
    model_mean, _ = _p_mean_variance(sched, xt, t, eps, variance, clip_x0)
    out = np.empty(x0.shape[0])

    kl_rows = t_arr > 1
    if kl_rows.any():
        tk = t_arr[kl_rows] if isinstance(t, np.ndarray) else t
        true_mean = (_at(sched.posterior_mean_coef_x0, tk, nd) * b * x0[kl_rows]
                     + _at(sched.posterior_mean_coef_xt, tk, nd) * xt[kl_rows])
        true_logvar = _at(sched.posterior_log_variance_clipped, tk, nd)      # log β̃_t (t ≥ 2)
        model_logvar = _at(sched.posterior_log_variance_clipped if variance == "fixed_small"
                           else np.log(sched.betas, where=sched.betas > 0, out=np.zeros(sched.T + 1)), tk, nd)
        kl = normal_kl(true_mean, true_logvar, model_mean[kl_rows], model_logvar)
        out[kl_rows] = _mean_flat(np.broadcast_to(kl, x0[kl_rows].shape)) / _LOG2

    dec_rows = ~kl_rows
    if dec_rows.any():
        log_scale = 0.5 * sched.posterior_log_variance_clipped[1] - math.log(b)   # σ = √β̃_2, in data units
        ll = discretized_gaussian_log_likelihood(x0[dec_rows], model_mean[dec_rows] / b, log_scale)
        out[dec_rows] = -_mean_flat(ll) / _LOG2
    return out


def _check_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy.random.Generator or a seed (an integer >= 0), got {type(rng).__name__}")


def _call_model(eps_model, xt: np.ndarray, t: int) -> np.ndarray:
    """ε_θ(x_t, t) for every example at one t, checked: same shape as x_t, finite."""
    eps = eps_model(xt, np.full(xt.shape[0], t, dtype=np.int64))
    eps = check_float_array("eps_model(xt, t)", eps)
    if eps.shape != xt.shape:
        raise ValueError(f"eps_model returned shape {eps.shape}, expected the shape of x_t {xt.shape}")
    return eps


def _terms_at(sched, eps_model, x0, timesteps, rng, variance, clip_x0, progress):
    """L_{t−1} (N, len(timesteps)) and the ε MSE, drawing one x_t ~ q(x_t|x_0) per example and t."""
    vb = np.empty((x0.shape[0], len(timesteps)))
    mse = np.empty_like(vb)
    steps = timesteps
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(timesteps, desc="bound", unit="t")
    for j, t in enumerate(steps):
        t = int(t)
        noise = rng.standard_normal(x0.shape, dtype=x0.dtype)
        xt = q_sample(sched, x0, t, noise)
        eps = _call_model(eps_model, xt, t)
        vb[:, j] = vb_term_bpd(sched, x0, xt, t, eps, variance=variance, clip_x0=clip_x0)
        mse[:, j] = _mean_flat((eps.astype(np.float64) - noise) ** 2)
    return vb, mse


def vlb_terms(sched: Schedule, eps_model, x0, rng, variance: str = "fixed_small", *,
              clip_x0: bool = False, progress: bool = False) -> dict:
    r"""The whole bound L = L_T + Σ_{t=2}^T L_{t−1} + L_0 of eq. 5 for an ε-model, per example, in bits/dim.

    For each t = 1..T one x_t ~ q(x_t | x_0) is drawn per example (so the sum is a one-sample
    Monte Carlo estimate over x_t, exact in each KL given x_t) and ``eps_model(xt, t_array)`` is
    called with t_array of shape (N,). ``rng``: a Generator or a seed. Returns a dict of float64:

    * ``"prior_bpd"`` (N,): L_T;
    * ``"vb_bpd"`` (N, T): column t − 1 holds L_{t−1} (column 0 is the decoder term L_0);
    * ``"total_bpd"`` (N,): prior_bpd + vb_bpd.sum(axis=1), an upper bound on −log₂ p(x_0) per dim;
    * ``"mse"`` (N, T): mean over dims of (ε_θ − ε)² at each t (the L_simple integrand).
    """
    _check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    x0 = _batch("x0", x0)
    rng = _check_rng(rng)
    prior = prior_bpd(sched, x0)
    vb, mse = _terms_at(sched, eps_model, x0, np.arange(1, sched.T + 1), rng, variance, clip_x0, progress)
    return {"prior_bpd": prior, "vb_bpd": vb, "total_bpd": prior + vb.sum(axis=1), "mse": mse}


def vlb_estimate(sched: Schedule, eps_model, x0, rng, num_t: int, variance: str = "fixed_small", *,
                 clip_x0: bool = False, return_terms: bool = False):
    r"""An unbiased estimate of ``vlb_terms(...)["total_bpd"]`` from num_t of the T timesteps.

    .. math::  \hat L = L_T + \frac{T}{m} \sum_{t \in S} L_{t-1}, \qquad S \subset \{1..T\},\ |S| = m

    S is drawn uniformly without replacement (each t is in S with probability m/T, hence the
    importance weight T/m), so E[L̂] = L; with m = T it is the full sum. Returns the (N,) float64
    estimate, or with ``return_terms=True`` a dict with ``"total_bpd"``, ``"prior_bpd"``,
    ``"t"`` (the sorted S) and ``"vb_bpd"`` (N, m).
    """
    _check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    x0 = _batch("x0", x0)
    rng = _check_rng(rng)
    num_t = check_positive_int("num_t", num_t)
    if num_t > sched.T:
        raise ValueError(f"num_t must be in 1..T = 1..{sched.T}, got {num_t}")
    ts = np.sort(rng.choice(sched.T, size=num_t, replace=False)) + 1
    prior = prior_bpd(sched, x0)
    vb, _ = _terms_at(sched, eps_model, x0, ts, rng, variance, clip_x0, False)
    total = prior + (sched.T / num_t) * vb.sum(axis=1)
    if return_terms:
        return {"total_bpd": total, "prior_bpd": prior, "t": ts, "vb_bpd": vb}
    return total
