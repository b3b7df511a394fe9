r"""Closed forms of the Gaussian mixture that classifier guidance and inpainting are checked against.

Layer: loop (data), beside ``ddpm_ref.data.gmm``; it reads a ``GaussianMixture`` (means μ_k, stds
s_k, weights π_k) and a ``Schedule``'s arrays (ᾱ_t, the input scale b), and imports nothing above
the math layer. Functions rather than methods because ``gmm.py`` is someone else's file just now;
they can move onto the class later unchanged.

Classes. A *class* is a set of components: ``classes[k]`` is the label of component k (default:
each component its own class, the convention of ``GaussianMixture.eps_model``'s ``y``).

Noised mixture (as in ``gmm.py``): x_t = a_t x_0 + σ_t ε, a_t = √ᾱ_t·b, σ_t = √(1 − ᾱ_t), so
q(x_t | k) = N(a_t μ_k, v_{k,t} I) with v_{k,t} = a_t² s_k² + σ_t². Here t may also be 0 (the data).

* ``class_log_prob``: the exact noise-conditional classifier (Dhariwal & Nichol 2021's p_φ(y | x_t)
  at its optimum),
  log p(y | x_t) = log Σ_{k: c_k = y} π_k q(x_t|k) − log Σ_k π_k q(x_t|k).
* ``class_log_prob_grad``: its gradient in x_t, with ∇ log q(x_t | k) = −(x_t − a_t μ_k)/v_{k,t}:
  ∇ log p(y | x_t) = Σ_{k∈y} r_{k|y} ∇log q(x_t|k) − Σ_k r_k ∇log q(x_t|k)
  (r_k the responsibilities, r_{k|y} those renormalised within class y).
* ``class_conditional``: the mixture of class y alone (what guidance at s = 1 should sample).
* ``inpainting_conditional`` / ``sample_inpainting_conditional``: p(x_miss | x_obs), again a
  Gaussian mixture because each component is isotropic: weights ∝ π_k N(x_obs; μ_k,obs, s_k² I),
  component k's missing coordinates N(μ_k,miss, s_k² I) (independent of x_obs within k).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.data.gmm import GaussianMixture
from ddpm_ref.schedules import Schedule

__all__ = [
    "noised_log_joint", "class_log_prob", "class_log_prob_grad", "exact_classifier",
    "class_conditional", "inpainting_conditional", "sample_inpainting_conditional",
]


# ------------------------------------------------------------------ argument checks (one place)
def _check(gmm, sched=None, xt=None, t=None, y=None, classes=None):
    """Validated (xt (N, D) float64, t int64 (N,), y int64 (N,), classes int64 (K,)); None where not given."""
    if not isinstance(gmm, GaussianMixture):
        raise ValueError(f"gmm must be a GaussianMixture, got {type(gmm).__name__}")
    if sched is not None and not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule, got {type(sched).__name__}")
    K = gmm.num_components
    classes = np.arange(K) if classes is None else np.asarray(classes)
    if classes.shape != (K,) or not np.issubdtype(classes.dtype, np.integer) or classes.min() < 0:
        raise ValueError(f"classes must be {K} integer labels >= 0 (one per component), got {classes!r}")
    out = [None, None, None, classes.astype(np.int64)]
    if xt is not None:
        xt = np.asarray(xt, dtype=np.float64)
        if xt.ndim != 2 or xt.shape[1] != gmm.dim or not np.all(np.isfinite(xt)):
            raise ValueError(f"xt must be a finite array of shape (N, {gmm.dim}), got shape {xt.shape}")
        out[0] = xt
        n = xt.shape[0]
        if t is not None:
            ta = np.broadcast_to(np.asarray(t), (n,))
            if not np.issubdtype(ta.dtype, np.integer) or ta.min() < 0 or ta.max() > sched.T:
                raise ValueError(f"t must be integers in 0..{sched.T} (0: the data, paper indexing), got {t!r}")
            out[1] = ta.astype(np.int64)
        if y is not None:
            ya = np.broadcast_to(np.asarray(y), (n,))
            if not np.issubdtype(ya.dtype, np.integer) or not np.all(np.isin(ya, classes)):
                raise ValueError(f"y must hold class labels among {sorted(set(classes.tolist()))}, got {np.unique(ya)[:10]}")
            out[2] = ya.astype(np.int64)
    return out


# ------------------------------------------------------------------ the exact classifier
def _noised_terms(gmm, sched, xt, t):
    """log π_k + log q(x_t | k) (N, K) and ∇ log q(x_t | k) (N, K, D), float64."""
    a = (sched.sqrt_alpha_bars[t] * sched.input_scale)[:, None]              # a_t, (N, 1)
    sig2 = (1.0 - sched.alpha_bars[t])[:, None]                              # σ_t², (N, 1)
    v = a**2 * gmm.stds[None, :] ** 2 + sig2                                 # v_{k,t} = a_t² s_k² + σ_t²
    diff = xt[:, None, :] - a[:, :, None] * gmm.means[None]                  # x_t − a_t μ_k
    log_joint = (np.log(gmm.weights)[None] - 0.5 * (diff**2).sum(-1) / v
                 - 0.5 * gmm.dim * np.log(2 * np.pi * v))                    # log π_k N(x_t; a_t μ_k, v I)
    score_k = -diff / v[:, :, None]                                          # ∇ log q(x_t | k)
    return log_joint, score_k


def _logsumexp(a, mask=None):
    """log Σ_k exp(a_k) over the last axis, only where mask (bool, same shape) is True."""
    a = np.where(mask, a, -np.inf) if mask is not None else a
    m = a.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=-1, keepdims=True)))[..., 0]


def noised_log_joint(gmm, sched, xt, t):
    """log π_k + log q(x_t | k) for every component, shape (N, K); t in 0..T."""
    xt, t, _, _ = _check(gmm, sched, xt, t)
    return _noised_terms(gmm, sched, xt, t)[0]


def class_log_prob(gmm, sched, xt, t, y, classes=None):
    r"""log p(y | x_t), shape (N,): the exact noise-conditional classifier (module docstring)."""
    xt, t, y, classes = _check(gmm, sched, xt, t, y, classes)
    log_joint, _ = _noised_terms(gmm, sched, xt, t)
    in_y = classes[None, :] == y[:, None]                                    # component k belongs to y
    return _logsumexp(log_joint, in_y) - _logsumexp(log_joint)               # log Σ_{k∈y} − log Σ_k


def class_log_prob_grad(gmm, sched, xt, t, y, classes=None):
    r"""∇_{x_t} log p(y | x_t), shape (N, D):  Σ_{k∈y} r_{k|y} ∇log q(x_t|k) − Σ_k r_k ∇log q(x_t|k)."""
    xt, t, y, classes = _check(gmm, sched, xt, t, y, classes)
    log_joint, score_k = _noised_terms(gmm, sched, xt, t)
    in_y = classes[None, :] == y[:, None]
    r = np.exp(log_joint - _logsumexp(log_joint)[:, None])                   # r_k = q(k | x_t)
    r_y = np.where(in_y, np.exp(log_joint - _logsumexp(log_joint, in_y)[:, None]), 0.0)   # r_{k|y}
    return ((r_y - r)[:, :, None] * score_k).sum(axis=1)                     # ∇log q(x_t|y) − ∇log q(x_t)


def exact_classifier(gmm, sched, classes=None):
    """A ``grad_log_prob(xt, t, y)`` callable for ``ddpm_ref.guidance``: the exact ∇ log p(y | x_t)."""
    _check(gmm, sched, classes=classes)

    def grad_log_prob(xt, t, y):
        return class_log_prob_grad(gmm, sched, xt, t, y, classes)

    return grad_log_prob


def class_conditional(gmm, y, classes=None):
    """The mixture p(x_0 | y): the components of class y, their weights renormalised."""
    _, _, _, classes = _check(gmm, classes=classes)
    keep = classes == y
    if isinstance(y, bool) or not isinstance(y, (int, np.integer)) or not keep.any():
        raise ValueError(f"y must be one of the class labels {sorted(set(classes.tolist()))}, got {y!r}")
    return GaussianMixture(gmm.means[keep], gmm.stds[keep], gmm.weights[keep])


# ------------------------------------------------------------------ inpainting's exact answer
def _check_observed(gmm, x_obs, observed):
    observed = np.asarray(observed)
    if observed.shape != (gmm.dim,) or observed.dtype != bool or observed.all() or not observed.any():
        raise ValueError(f"observed must be a boolean mask of shape ({gmm.dim},) with at least one "
                         f"True (observed) and one False (missing) coordinate, got {observed!r}")
    x_obs = np.asarray(x_obs, dtype=np.float64)
    if x_obs.ndim != 2 or x_obs.shape[1] != observed.sum() or not np.all(np.isfinite(x_obs)):
        raise ValueError(f"x_obs must be finite, of shape (N, {int(observed.sum())}) (the observed "
                         f"coordinates), got shape {x_obs.shape}")
    return x_obs, observed


def inpainting_conditional(gmm, x_obs, observed):
    r"""p(x_miss | x_obs) as (weights (N, K), means (K, D_miss), stds (K,)).

    Component k is N(μ_k, s_k² I), so its observed and missing coordinates are independent and
    Bayes' rule only reweights the components:
    w_k(x_obs) ∝ π_k N(x_obs; μ_{k,obs}, s_k² I), and given k, x_miss ~ N(μ_{k,miss}, s_k² I).
    """
    x_obs, observed = _check_observed(gmm, x_obs, observed)
    s2 = gmm.stds**2
    sq = ((x_obs[:, None, :] - gmm.means[None][:, :, observed]) ** 2).sum(-1)           # (N, K)
    logw = np.log(gmm.weights)[None] - 0.5 * sq / s2 - 0.5 * observed.sum() * np.log(2 * np.pi * s2)
    w = np.exp(logw - _logsumexp(logw)[:, None])
    return w, gmm.means[:, ~observed].copy(), gmm.stds.copy()


def sample_inpainting_conditional(gmm, x_obs, observed, rng=0):
    """One exact draw of x_miss per row of x_obs, shape (N, D_miss): the reference for inpainting."""
    g = as_generator(rng)
    w, means, stds = inpainting_conditional(gmm, x_obs, observed)
    n = check_positive_int("x_obs rows", w.shape[0])
    k = (g.random((n, 1)) > np.cumsum(w, axis=1)).sum(axis=1)               # k ~ Categorical(w)
    k = np.minimum(k, gmm.num_components - 1)                               # guards rounding at 1.0
    return means[k] + stds[k, None] * g.standard_normal((n, means.shape[1]))
