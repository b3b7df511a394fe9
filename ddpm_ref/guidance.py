r"""Classifier guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2) for any ε-model and classifier.

Layer: loop. It imports the math layer (``diffusion``, ``schedules``) and ``ddpm_ref.sample``'s DDIM
loop, nothing above. The classifier enters as a callable ``grad_log_prob(xt, t, y) -> (N, ...)``,
the gradient ∇_{x_t} log p_φ(y | x_t) with t in 1..T (paper indexing); it may be the exact one of
the Gaussian mixture (``ddpm_ref.data.gmm_exact.exact_classifier``) or a trained noisy classifier
(``ddpm_ref.models.noisy_classifier``), whose hand-written backward gives the input gradient.

Why it works: Bayes' rule on the noised marginals, ∇log q(x_t | y) = ∇log q(x_t) + ∇log p(y | x_t),
and the ε-model is a scaled score, ε(x_t, t) ≈ −√(1 − ᾱ_t)·∇log q(x_t). Scaling the classifier
term by s sharpens the class: q(x_t|y)_s ∝ q(x_t) p(y|x_t)^s.

* Algorithm 1 (DDPM): x_{t−1} ~ N(μ + s Σ ∇log p_φ(y | x_t), Σ), Σ = σ_t² I.
* Algorithm 2 (DDIM):  ε̂' = ε̂ − s √(1 − ᾱ_t) ∇log p_φ(y | x_t), then the usual DDIM step.

At s = 1 with the exact classifier, Algorithm 2's ε̂' *is* the conditional ε of class y (an
identity, tested to 1e-12); Algorithm 1's shift σ_t² ∇ differs from the conditional mean's
(β_t/√α_t) ∇ by O(β_t²) per step, so it samples the class-conditional law up to the sampler's
discretisation error (tested by Monte Carlo).
"""

from __future__ import annotations

import numbers

import numpy as np
from tqdm import tqdm

from ddpm_ref._rng import as_generator
from ddpm_ref.diffusion import VARIANCES, p_mean_variance
from ddpm_ref.sample import sample_ddim
from ddpm_ref.schedules import Schedule

__all__ = ["guided_mean", "classifier_guided_eps", "ClassifierGuidedEps", "sample_ddpm_guided",
           "sample_ddim_guided"]


def _check_args(eps_model, grad_log_prob, sched, shape=None, y=None, scale=0.0, variance=None):
    """Every argument check of this module, in one place; returns (shape, y as int64 (N,))."""
    if not callable(eps_model):
        raise ValueError("eps_model must be a callable eps_model(xt, t, y=None)")
    if not callable(grad_log_prob):
        raise ValueError("grad_log_prob must be a callable grad_log_prob(xt, t, y) -> ∇ log p(y | x_t)")
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule, got {type(sched).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not np.isfinite(scale) or scale < 0:
        raise ValueError(f"scale (the guidance scale s) must be a finite number >= 0, got {scale!r}")
    if variance is not None and variance not in VARIANCES:
        raise ValueError(f"variance={variance!r} is not known; choose one of {VARIANCES}")
    if shape is None:
        return None, None
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (N, ...) with every size >= 1, got {shape}")
    ya = np.broadcast_to(np.asarray(y), (shape[0],)) if y is not None else None
    if ya is None or not np.issubdtype(ya.dtype, np.integer) or ya.min() < 0:
        raise ValueError(f"y must be one class label (int >= 0) or one per sample (N,), got {y!r}")
    return shape, ya.astype(np.int64)


# ------------------------------------------------------------------ the two equations
def guided_mean(mean, variance, grad, scale: float):
    r"""Algorithm 1's shifted mean μ + s Σ ∇log p_φ(y | x_t) (Σ = σ_t² I, given per element)."""
    return mean + scale * variance * grad                                   # D&N 2021, Alg. 1


def classifier_guided_eps(eps, sched, t, grad, scale: float):
    r"""Algorithm 2's ε̂' = ε̂ − s √(1 − ᾱ_t) ∇log p_φ(y | x_t); t an int array (N,) in 1..T."""
    c = sched.sqrt_one_minus_alpha_bars[t].reshape((-1,) + (1,) * (np.ndim(eps) - 1))
    return eps - scale * c * grad                                           # D&N 2021, Alg. 2


class ClassifierGuidedEps:
    """An ε-model adaptor: ``ClassifierGuidedEps(eps_model, grad_log_prob, sched, y, s)(xt, t)`` is ε̂'.

    The labels y (N,) are bound here, so the wrapped callable is an *unconditional* ε-model that
    any sampler of ``ddpm_ref.sample`` accepts. The base ε-model is called with y=None (an
    unconditional model, as in Dhariwal & Nichol's guided unconditional ImageNet model).
    """

    def __init__(self, eps_model, grad_log_prob, sched, y, scale: float = 1.0):
        _check_args(eps_model, grad_log_prob, sched, scale=scale)
        self.eps_model, self.grad_log_prob, self.sched = eps_model, grad_log_prob, sched
        self.y, self.scale = np.asarray(y, dtype=np.int64), float(scale)
        self.dtype = getattr(eps_model, "dtype", np.float64)

    def __call__(self, xt, t, y=None):
        eps = np.asarray(self.eps_model(xt, t, None), dtype=np.float64)
        grad = np.asarray(self.grad_log_prob(xt, t, self.y), dtype=np.float64)
        return classifier_guided_eps(eps, self.sched, np.asarray(t), grad, self.scale)


# ------------------------------------------------------------------ the samplers
def sample_ddpm_guided(eps_model, grad_log_prob, sched, shape, y, *, scale: float = 1.0, rng=0,
                       variance: str = "fixed_large", progress: bool = False):
    r"""Algorithm 1 of Dhariwal & Nichol 2021: x_T ~ N(0, I), then for t = T..1

    .. math::  μ, Σ = μ_θ(x_t), σ_t^2 I; \quad x_{t−1} = μ + s Σ ∇_{x_t}\log p_φ(y | x_t) + σ_t z

    (z = 0 at t = 1, as in Ho et al.'s Algorithm 2). ``y``: one label or (N,); ``scale``: s ≥ 0.
    σ_t² = β_t ("fixed_large", the default: then the shift is closest to the exact conditional
    mean's β_t/√α_t) or β̃_t ("fixed_small"). Returns x_0 (N, ...), float64, in data units.
    """
    shape, y = _check_args(eps_model, grad_log_prob, sched, shape, y, scale, variance)
    g = as_generator(rng)
    x = g.standard_normal(shape)                                            # x_T ~ N(0, I)
    for t in tqdm(range(sched.T, 0, -1), desc="guided DDPM", disable=not progress, leave=False):
        t_arr = np.full(shape[0], t, dtype=np.int64)
        eps = np.asarray(eps_model(x, t_arr, None), dtype=np.float64)
        mean, var = p_mean_variance(sched, x, t_arr, eps, variance=variance)   # Ho et al. eq. 11
        mean = guided_mean(mean, var, np.asarray(grad_log_prob(x, t_arr, y), dtype=np.float64), scale)
        z = g.standard_normal(shape) if t > 1 else 0.0
        x = mean + np.sqrt(var) * z
    return x / sched.input_scale


def sample_ddim_guided(eps_model, grad_log_prob, sched, shape, y, *, scale: float = 1.0, steps: int = 50,
                       eta: float = 0.0, rng=0, progress: bool = False):
    r"""Algorithm 2 of Dhariwal & Nichol 2021: DDIM (``ddpm_ref.sample.sample_ddim``) on ε̂'.

    ε̂' = ε̂ − s √(1 − ᾱ_t) ∇log p_φ(y | x_t) (``ClassifierGuidedEps``); ``steps`` and ``eta`` as in
    ``sample_ddim``. Returns x_0 (N, ...), float64.
    """
    shape, y = _check_args(eps_model, grad_log_prob, sched, shape, y, scale)
    guided = ClassifierGuidedEps(eps_model, grad_log_prob, sched, y, scale)
    return sample_ddim(guided, sched, shape, steps=steps, eta=eta, rng=rng, dtype=np.float64, progress=progress)
