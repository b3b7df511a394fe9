"""A Gaussian mixture whose optimal denoiser is known in closed form.

Layer: loop (data); it uses the math layer's ``Schedule`` arrays (ᾱ_t, the input scale) and
nothing above. The lessons run the reverse process with ``GaussianMixture.eps_model`` before any
network is trained, and the tests compare samplers with it.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref._checks import check_positive_int, check_timesteps
from ddpm_ref._rng import as_generator
from ddpm_ref.data._common import check_finite_result, float_dtype

__all__ = ["GaussianMixture", "default_gmm"]


def _real_array(name, values) -> np.ndarray:
    """``values`` as a float64 array, or ValueError naming ``name`` (strings, None, complex, ...)."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of real numbers ({err})") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_xt(xt, dim) -> np.ndarray:
    xt = _real_array("xt", xt)
    if xt.ndim != 2 or xt.shape[1] != dim:
        raise ValueError(f"xt must have shape (N, {dim}), got {xt.shape}")
    if not np.all(np.abs(xt) <= 1e100):
        raise ValueError("xt must be finite with |xt| <= 1e100 (beyond, its squared distances overflow)")
    return xt


class GaussianMixture:
    r"""p(x_0) = Σ_k π_k N(x_0; μ_k, s_k² I) in D dimensions, with its optimal ε-predictor.

    Under the forward process x_t = a_t x_0 + σ_t ε with a_t = √ᾱ_t · b (b: the schedule's
    ``input_scale``, 1 for DDPM) and σ_t = √(1 − ᾱ_t), every component stays Gaussian:

    .. math::

        q(x_t \mid k) = N(x_t;\ a_t μ_k,\ v_{k,t} I), \qquad v_{k,t} = a_t^2 s_k^2 + σ_t^2 .

    The posterior over components is r_k(x_t) ∝ π_k N(x_t; a_t μ_k, v_{k,t} I) (computed with a
    log-sum-exp), each component's posterior mean of x_0 is Gaussian conditioning,

    .. math::

        E[x_0 \mid x_t, k] = μ_k + \frac{a_t s_k^2}{v_{k,t}} (x_t − a_t μ_k),

    and the minimiser of L_simple, E[ε | x_t] (Ho et al. eq. 14 at its optimum), follows from
    x_t = a_t x_0 + σ_t ε:

    .. math::

        E[ε \mid x_t] = \frac{x_t − a_t\, E[x_0 \mid x_t]}{σ_t}, \qquad
        E[x_0 \mid x_t] = Σ_k r_k(x_t)\, E[x_0 \mid x_t, k].

    Given a label y = k (conditional sampling) the posterior is that component alone.
    """

    def __init__(self, means, stds, weights=None):
        means = _real_array("means", means)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D) with K, D >= 1, got {means.shape}")
        k = means.shape[0]
        stds = _real_array("stds", stds)
        if stds.ndim > 1 or stds.size not in (1, k):
            raise ValueError(f"stds must be one number or {k} numbers, got shape {stds.shape}")
        stds = np.broadcast_to(stds, (k,)).copy()
        weights = np.full(k, 1.0 / k) if weights is None else _real_array("weights", weights)
        # finite and bounded, so that every density below stays finite (|μ|, s up to 1e100)
        if not np.all(np.abs(means) <= 1e100):
            raise ValueError("means must be finite with |means| <= 1e100")
        if not np.all((stds > 1e-100) & (stds <= 1e100)):
            raise ValueError(f"stds must be finite numbers in (1e-100, 1e100], got {stds}")
        if weights.shape != (k,) or not np.all((weights > 0) & np.isfinite(weights)):
            raise ValueError(f"weights must be {k} finite positive numbers, got {weights}")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng=0, dtype="float64"):
        """``(x, k)``: n draws x (n, D) and the component k (n,) each came from."""
        n, dt = check_positive_int("n", n), float_dtype(dtype)
        g = as_generator(rng)
        k = g.choice(self.num_components, size=n, p=self.weights).astype(np.int64)
        x = self.means[k] + self.stds[k, None] * g.standard_normal((n, self.dim))
        with np.errstate(over="ignore"):
            x = x.astype(dt)
        return check_finite_result(x, "means or stds (for this dtype)"), k

    def _coefficients(self, sched, t, n):
        """a_t = √ᾱ_t·b and σ_t = √(1 − ᾱ_t) per example, shape (n, 1): the schedule's own arrays."""
        if not all(hasattr(sched, a) for a in ("T", "sqrt_alpha_bars", "sqrt_one_minus_alpha_bars", "input_scale")):
            raise ValueError(f"sched must be a ddpm_ref.schedules.Schedule, got {type(sched).__name__}")
        t = check_timesteps(t[()] if isinstance(t, np.ndarray) and t.ndim == 0 else t, sched.T)
        if isinstance(t, np.ndarray) and t.shape != (n,):
            raise ValueError(f"t must be one timestep or {n} (one per row of xt), got shape {t.shape}")
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))
        a = sched.sqrt_alpha_bars[t][:, None] * sched.input_scale
        sigma = sched.sqrt_one_minus_alpha_bars[t][:, None]
        return a, sigma

    def posterior_components(self, sched, xt, t):
        """r_k(x_t) = q(k | x_t), shape (N, K): the responsibilities of the components."""
        xt = _check_xt(xt, self.dim)
        a, sigma = self._coefficients(sched, t, xt.shape[0])
        v = a**2 * self.stds[None, :] ** 2 + sigma**2                            # (N, K)
        sq = ((xt[:, None, :] - a[:, :, None] * self.means[None]) ** 2).sum(-1)    # (N, K)
        logp = np.log(self.weights)[None] - 0.5 * sq / v - 0.5 * self.dim * np.log(2 * np.pi * v)
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        return r / r.sum(axis=1, keepdims=True)

    def optimal_x0(self, sched, xt, t, y=None):
        """E[x_0 | x_t] (or E[x_0 | x_t, k = y] when labels y are given), shape (N, D)."""
        xt = _check_xt(xt, self.dim)
        a, sigma = self._coefficients(sched, t, xt.shape[0])
        v = a**2 * self.stds[None, :] ** 2 + sigma**2                            # (N, K)
        gain = (a * self.stds[None, :] ** 2 / v)[:, :, None]                      # (N, K, 1)
        mean_k = self.means[None] + gain * (xt[:, None, :] - a[:, :, None] * self.means[None])
        if y is None:
            r = self.posterior_components(sched, xt, t)
        else:
            y = np.asarray(y)
            if (not np.issubdtype(y.dtype, np.integer) or y.shape not in ((), (xt.shape[0],))
                    or (y.size and (y.min() < 0 or y.max() >= self.num_components))):
                raise ValueError(f"y must be one integer or {xt.shape[0]} integers in 0..{self.num_components - 1}")
            y = np.broadcast_to(y, (xt.shape[0],))
            r = np.eye(self.num_components)[y]
        return (r[:, :, None] * mean_k).sum(axis=1)

    def optimal_eps(self, sched, xt, t, y=None):
        """The optimal ε-predictor E[ε | x_t] (see the class docstring), same shape and dtype as xt."""
        x0 = self.optimal_x0(sched, xt, t, y)
        a, sigma = self._coefficients(sched, t, x0.shape[0])
        eps = (_check_xt(xt, self.dim) - a * x0) / sigma
        with np.errstate(over="ignore"):
            eps = eps.astype(np.asarray(xt).dtype if np.asarray(xt).dtype == np.float32 else np.float64)
        return check_finite_result(eps, "xt (for this dtype)")

    def eps_model(self, sched):
        """A callable ``eps_model(xt, t, y=None)`` for the samplers (ddpm_ref.sample)."""

        def eps(xt, t, y=None):
            return self.optimal_eps(sched, xt, t, y)

        eps.num_classes = self.num_components
        return eps


def default_gmm() -> GaussianMixture:
    """The mixture the lessons and ``--data gmm`` use: 3 unequal components in 2-D."""
    return GaussianMixture(means=[[-0.8, -0.4], [0.8, -0.4], [0.0, 0.8]],
                           stds=[0.12, 0.12, 0.12], weights=[0.5, 0.3, 0.2])

