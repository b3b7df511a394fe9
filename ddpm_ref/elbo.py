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

Layer: math. Builds on ``ddpm_ref.diffusion`` (its public functions only) and
``ddpm_ref.likelihood``; diffusion does not import this module. As there, each public function
opens with one call that checks its arguments (``_check_<function>``, at the end of this module),
and the lines after it are the equation. Inputs so large that a term is beyond float64 raise a
``ValueError`` naming the function's own arguments (the ``@names_range_errors`` line above it).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ddpm_ref._checks import check_choice, check_float_array, check_positive_int
from ddpm_ref._math_checks import at, check_schedule, finite_as, images, names_range_errors, steps
from ddpm_ref.diffusion import PREDICTIONS, VARIANCES, eps_from_prediction, p_mean_variance, q_posterior, q_sample
from ddpm_ref.likelihood import discretized_gaussian_log_likelihood, normal_kl
from ddpm_ref.schedules import Schedule

__all__ = ["prior_bpd", "vb_term_bpd", "vlb_terms", "vlb_estimate"]

_LOG2 = math.log(2.0)


@names_range_errors("x0")
def prior_bpd(sched: Schedule, x0) -> np.ndarray:
    r"""L_T = D_KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim, one value per example (shape (N,)).

    q(x_T | x_0) = N(√ᾱ_T·b·x_0, (1 − ᾱ_T) I) (eq. 4). No parameters are learned in this term; it is
    tiny when ᾱ_T ≈ 0 (linear, T = 1000: about 1e-5) and not when the chain is short (linear, T = 50).
    """
    x0 = _check_prior_bpd(sched, x0)
    T = sched.T
    kl = normal_kl(sched.sqrt_alpha_bars[T] * sched.input_scale * x0, math.log1p(-sched.alpha_bars[T]), 0.0, 0.0)
    return _mean_flat(kl) / _LOG2


@names_range_errors("x0, xt, eps")
def vb_term_bpd(sched: Schedule, x0, xt, t, eps, variance: str = "fixed_small", clip_x0: bool = False, *,
                prediction: str = "eps"):
    r"""L_{t−1} in bits/dim per example (shape (N,)), for x_t drawn from q(x_t | x_0):

    * t ≥ 2: D_KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) (eq. 5), both Gaussians; q from
      ``q_posterior`` (variance β̃_t), p_θ from ``p_mean_variance`` (variance β̃_t or β_t);
    * t = 1: the decoder NLL −log p_θ(x_0 | x_1) (eq. 13), a Gaussian with mean μ_θ(x_1, 1) = x̂_0
      discretized to the 256 levels, with variance β̃_2 (``posterior_log_variance_clipped[1]``)
      for *both* variance choices, as improved-diffusion does (β̃_1 = 0 would make it degenerate).

    x0 must lie on the 256-level grid of [−1, 1]; eps is the network's output, ε_θ(x_t, t) or, with
    ``prediction="x0"``/``"v"``, its x̂_0 or v̂ (μ_θ = μ̃_t(x_t, x̂_0), see ``p_mean_variance``);
    t an int or an array (N,).
    """
    x0, xt, t, eps, at_1 = _check_vb_term_bpd(sched, x0, xt, t, eps, variance, prediction)
    nd, b = xt.ndim, sched.input_scale
    true_mean, _ = q_posterior(sched, x0, xt, t)                                      # μ̃_t, eq. 7
    model_mean, _ = p_mean_variance(sched, xt, t, eps, variance, clip_x0, prediction=prediction)  # μ_θ, eq. 11
    true_logvar = at(sched.posterior_log_variance_clipped, t, nd)                     # log β̃_t
    model_logvar = true_logvar if variance == "fixed_small" else np.log(at(sched.betas, t, nd))
    vb = _mean_flat(normal_kl(true_mean, true_logvar, model_mean, model_logvar)) / _LOG2          # L_{t−1}, eq. 5
    decoder_log_scale = 0.5 * sched.posterior_log_variance_clipped[1] - math.log(b)  # σ = √β̃_2, in data units
    vb[at_1] = -_mean_flat(discretized_gaussian_log_likelihood(
        x0[at_1], model_mean[at_1] / b, decoder_log_scale)) / _LOG2                   # L_0, eq. 13
    return vb


@names_range_errors("x0, eps_model")
def vlb_terms(sched: Schedule, eps_model, x0, rng, variance: str = "fixed_small", *,
              clip_x0: bool = False, progress: bool = False, prediction: str = "eps") -> dict:
    r"""The whole bound L = L_T + Σ_{t=2}^T L_{t−1} + L_0 of eq. 5 for a model, per example, in bits/dim.

    For each t = 1..T one x_t ~ q(x_t | x_0) is drawn per example (so the sum is a one-sample
    Monte Carlo estimate over x_t, exact in each KL given x_t) and ``eps_model(xt, t_array)`` is
    called with t_array of shape (N,). ``rng``: a Generator or a seed. Returns a dict of float64:

    * ``"prior_bpd"`` (N,): L_T;
    * ``"vb_bpd"`` (N, T): column t − 1 holds L_{t−1} (column 0 is the decoder term L_0);
    * ``"total_bpd"`` (N,): prior_bpd + vb_bpd.sum(axis=1), an upper bound on −log₂ p(x_0) per dim;
    * ``"mse"`` (N, T): mean over dims of (ε̂ − ε)² at each t (the ε-MSE; with ``prediction`` "x0" or
      "v" the model's output is converted to ε̂ first, by ``eps_from_prediction``).

    ``prediction``: what ``eps_model`` returns, "eps" (default), "x0" or "v".
    """
    x0, rng = _check_vlb_terms(sched, eps_model, x0, rng, variance, prediction)
    prior = prior_bpd(sched, x0)                                                                   # L_T
    vb, mse = _terms_at(sched, eps_model, x0, np.arange(1, sched.T + 1), rng, variance, clip_x0, progress,
                        prediction)
    return {"prior_bpd": prior, "vb_bpd": vb, "total_bpd": prior + vb.sum(axis=1), "mse": mse}


@names_range_errors("x0, eps_model")
def vlb_estimate(sched: Schedule, eps_model, x0, rng, num_t: int, variance: str = "fixed_small", *,
                 clip_x0: bool = False, return_terms: bool = False, prediction: str = "eps"):
    r"""An unbiased estimate of ``vlb_terms(...)["total_bpd"]`` from num_t of the T timesteps.

    .. math::  \hat L = L_T + \frac{T}{m} \sum_{t \in S} L_{t-1}, \qquad S \subset \{1..T\},\ |S| = m

    S is drawn uniformly without replacement (each t is in S with probability m/T, hence the
    importance weight T/m), so E[L̂] = L; with m = T it is the full sum. Returns the (N,) float64
    estimate, or with ``return_terms=True`` a dict with ``"total_bpd"``, ``"prior_bpd"``,
    ``"t"`` (the sorted S) and ``"vb_bpd"`` (N, m). ``prediction`` as for ``vlb_terms``.
    """
    x0, rng, num_t = _check_vlb_estimate(sched, eps_model, x0, rng, num_t, variance, prediction)
    ts = np.sort(rng.choice(sched.T, size=num_t, replace=False)) + 1                 # S, in 1..T
    prior = prior_bpd(sched, x0)
    vb, _ = _terms_at(sched, eps_model, x0, ts, rng, variance, clip_x0, False, prediction)
    total = prior + (sched.T / num_t) * vb.sum(axis=1)
    if return_terms:
        return {"total_bpd": total, "prior_bpd": prior, "t": ts, "vb_bpd": vb}
    return total


# ------------------------------------------------------------------ helpers (trust their callers)
def _mean_flat(a: np.ndarray) -> np.ndarray:
    """Mean over every axis but the first: nats per dimension, one value per example."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:]))).mean(axis=1)


def _call_model(eps_model, xt: np.ndarray, t: int) -> np.ndarray:
    """ε_θ(x_t, t) for every example at one t, checked: same shape as x_t, finite."""
    eps = eps_model(xt, np.full(xt.shape[0], t, dtype=np.int64))
    eps = check_float_array("eps_model(xt, t)", eps)
    if eps.shape != xt.shape:
        raise ValueError(f"eps_model returned shape {eps.shape}, expected the shape of x_t {xt.shape}")
    return eps


def _terms_at(sched, eps_model, x0, timesteps, rng, variance, clip_x0, progress, prediction="eps"):
    """L_{t−1} (N, len(timesteps)) and the ε MSE, drawing one x_t ~ q(x_t|x_0) per example and t."""
    vb = np.empty((x0.shape[0], len(timesteps)))
    mse = np.empty_like(vb)
    steps_ = timesteps
    if progress:
        from tqdm.auto import tqdm

        steps_ = tqdm(timesteps, desc="bound", unit="t")
    for j, t in enumerate(steps_):
        t = int(t)
        noise = rng.standard_normal(x0.shape, dtype=x0.dtype)
        xt = q_sample(sched, x0, t, noise)
        eps = _call_model(eps_model, xt, t)
        vb[:, j] = vb_term_bpd(sched, x0, xt, t, eps, variance=variance, clip_x0=clip_x0, prediction=prediction)
        if prediction != "eps":
            eps = eps_from_prediction(sched, xt, t, eps, prediction)
        with np.errstate(over="ignore"):           # (ε_θ − ε)² beyond 1e308 is refused just below
            mse[:, j] = _mean_flat((eps.astype(np.float64) - noise) ** 2)
    return vb, finite_as(mse, np.float64, "the mean squared error of eps_model", "eps_model outputs")


# ------------------------------------------------------------------ argument checks, one per public function
def _batch(name: str, x) -> np.ndarray:
    """Finite float images with a batch axis of at least one example and at least one value per example."""
    x = check_float_array(name, x)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must have a leading batch axis with at least one example, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} has no values per example (shape {x.shape}); bits/dim needs at least one dimension")
    return x


def _check_prior_bpd(sched, x0):
    check_schedule(sched)
    return _batch("x0", x0).astype(np.float64, copy=False)


def _check_vb_term_bpd(sched, x0, xt, t, eps, variance, prediction):
    """The images as float64, t, and the rows where t = 1 (the decoder term) as a boolean (N,)."""
    check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    check_choice("prediction", prediction, PREDICTIONS)
    (x0, xt, eps), _ = images(x0=x0, xt=xt, eps=eps)
    x0 = _batch("x0", x0)
    if np.any(np.abs(x0) > 1.0 + 1e-6):
        raise ValueError("x0 must lie in [-1, 1] (data on the 256-level grid); scale images to [-1, 1] first")
    t = steps(sched, t, xt)
    at_1 = np.broadcast_to(np.asarray(t) == 1, (x0.shape[0],))
    return (*(a.astype(np.float64, copy=False) for a in (x0, xt)), t, eps.astype(np.float64, copy=False), at_1)


def _check_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy.random.Generator or a seed (an integer >= 0), got {type(rng).__name__}")


def _check_vlb_terms(sched, eps_model, x0, rng, variance, prediction):
    check_schedule(sched)
    check_choice("variance", variance, VARIANCES)
    check_choice("prediction", prediction, PREDICTIONS)
    if not callable(eps_model):
        raise ValueError(f"eps_model must be callable as eps_model(xt, t), got {type(eps_model).__name__}")
    x0 = _batch("x0", x0)
    if np.any(np.abs(x0) > 1.0 + 1e-6):
        raise ValueError("x0 must lie in [-1, 1] (data on the 256-level grid); scale images to [-1, 1] first")
    return x0, _check_rng(rng)


def _check_vlb_estimate(sched, eps_model, x0, rng, num_t, variance, prediction):
    x0, rng = _check_vlb_terms(sched, eps_model, x0, rng, variance, prediction)
    num_t = check_positive_int("num_t", num_t)
    if num_t > sched.T:
        raise ValueError(f"num_t must be in 1..T = 1..{sched.T}, got {num_t}")
    return x0, rng, num_t
