r"""Learned reverse-process variances and the hybrid loss (Nichol & Dhariwal 2021, "Improved DDPM").

Layer: math. Imports NumPy, ``ddpm_ref._checks``, ``ddpm_ref._math_checks``, ``ddpm_ref.schedules``, ``ddpm_ref.likelihood``
and ``ddpm_ref.prediction`` (same layer).

Ho et al. fix σ_t² at β_t or β̃_t. Nichol & Dhariwal let the network choose between the two, per
pixel, with a second output v (their eq. 15; the network has 2·C output channels):

.. math::  \Sigma_\theta(x_t, t) = \exp\big(v \log\beta_t + (1 - v)\log\tilde\beta_t\big)

(log β̃_1 = −∞ is replaced by log β̃_2, the schedule's ``posterior_log_variance_clipped``). L_simple
gives v no gradient, so they train on

.. math::  L_\text{hybrid} = L_\text{simple} + \lambda\, L_\text{vlb}, \qquad \lambda = 0.001   \qquad \text{(sec. 3.1)}

with a **stop-gradient on the mean** inside L_vlb: L_vlb trains only v, L_simple trains only the
mean. L_vlb = Σ_t L_{t−1} is estimated from the one t drawn per example as T·L_{t−1}
(uniform t), so λ·L_vlb = λT·L_{t−1} (improved-diffusion writes this ``vb * num_timesteps / 1000``).

Forward/backward pairs as in the layers: ``vlb_term_learned_forward`` returns the per-example
L_{t−1} in bits/dim and a cache; ``vlb_term_learned_backward(dL, cache)`` returns ∂/∂v. The
network output v is used as is (eq. 15); improved-diffusion maps its raw output o ∈ [−1, 1] to
v = (o + 1)/2, a factor ½ in the chain rule that belongs to the model, not here.

Optional (sec. 3.3): ``ImportanceSampler`` draws t ∝ √E[L_t²] once every t has 10 stored losses.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref._math_checks import finite_as
from ddpm_ref.likelihood import discretized_gaussian_log_likelihood, normal_kl
from ddpm_ref.prediction import _check_inputs, _coef, v_target, x0_from_prediction
from ddpm_ref.schedules import Schedule

__all__ = [
    "HYBRID_LAMBDA",
    "learned_log_variance",
    "vlb_term_learned",
    "vlb_term_learned_forward",
    "vlb_term_learned_backward",
    "hybrid_loss",
    "ImportanceSampler",
]

HYBRID_LAMBDA = 0.001          # λ of L_hybrid (Nichol & Dhariwal 2021, sec. 3.1)
_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_EDGE = 0.999                  # as in ddpm_ref.likelihood: beyond ±0.999 is an edge bin


def _log_beta(schedule: Schedule) -> np.ndarray:
    """log β_t for t = 0..T (index 0, where β = 0, holds 0 and is never used)."""
    return np.log(schedule.betas, where=schedule.betas > 0, out=np.zeros(schedule.T + 1))


def learned_log_variance(schedule: Schedule, t, v_sigma):
    r"""log σ_t² = v·log β_t + (1 − v)·log β̃_t (Nichol & Dhariwal 2021, eq. 15), elementwise.

    v_sigma: the network's interpolation output, shape (N, ...) (any real; 0 gives β̃_t, 1 gives
    β_t). β̃_1 = 0 is replaced by β̃_2 (``posterior_log_variance_clipped``). Input dtype out.
    """
    (v,), dtype, t = _check_inputs(schedule, t, v_sigma=v_sigma)
    nd = v.ndim
    log_var = v * _coef(_log_beta(schedule), t, nd) + (1.0 - v) * _coef(schedule.posterior_log_variance_clipped, t, nd)  # eq. 15
    return finite_as(log_var, dtype, "learned_log_variance", "v_sigma")


# ------------------------------------------------------------------ L_{t−1} with a learned variance
def _mean_flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).mean(axis=1)


def vlb_term_learned_forward(schedule: Schedule, x0, xt, t, mean, v_sigma):
    r"""L_{t−1} in bits/dim per example (shape (N,)) for p_θ(x_{t−1}|x_t) = N(mean, Σ_θ), Σ_θ from eq. 15.

    * t ≥ 2: D_KL(q(x_{t−1} | x_t, x₀) ‖ N(mean, Σ_θ)) (Ho et al. eq. 5; q from eqs. 6–7, variance β̃_t);
    * t = 1: the decoder NLL −log p_θ(x₀ | x₁) (Ho et al. eq. 13): a Gaussian with mean ``mean``
      and the learned variance, discretized to the 256 levels of [−1, 1] (as improved-diffusion).

    ``mean`` is μ_θ(x_t, t) in the chain's space (b·x scale, as ``p_mean_variance`` returns it) and is
    treated as a constant (the stop-gradient). x0 on the 256-level grid of [−1, 1]. Returns
    ``(L, cache)``, L float64 (N,); the cache feeds ``vlb_term_learned_backward``.
    """
    (x0, xt, mean, v), _, t = _check_inputs(schedule, t, x0=x0, xt=xt, mean=mean, v_sigma=v_sigma)
    if x0.ndim < 2 or x0.shape[0] == 0:
        raise ValueError(f"x0 must have shape (N, ...) with N >= 1 and at least one more axis, got {x0.shape}")
    n, nd, b = x0.shape[0], x0.ndim, schedule.input_scale
    t_rows = np.broadcast_to(np.asarray(t), (n,))
    log_beta = _coef(_log_beta(schedule), t, nd)
    log_beta_tilde = _coef(schedule.posterior_log_variance_clipped, t, nd)
    log_var = v * log_beta + (1.0 - v) * log_beta_tilde                      # eq. 15
    d_log_var_dv = np.broadcast_to(log_beta - log_beta_tilde, x0.shape)        # ∂ log Σ_θ / ∂v
    kl_rows, dec_rows = t_rows > 1, t_rows == 1
    out = np.empty(n)
    d_nats = np.zeros(x0.shape)            # ∂(per-element nats)/∂log Σ_θ, filled row by row

    if kl_rows.any():
        tk = t_rows[kl_rows]
        nk = (1,) * (nd - 1)
        true_mean = (schedule.posterior_mean_coef_x0[tk].reshape(-1, *nk) * b * x0[kl_rows]
                     + schedule.posterior_mean_coef_xt[tk].reshape(-1, *nk) * xt[kl_rows])   # μ̃_t, eq. 7
        true_log_var = schedule.posterior_log_variance_clipped[tk].reshape(-1, *nk)          # log β̃_t
        lv2 = log_var[kl_rows]
        kl = normal_kl(true_mean, true_log_var, mean[kl_rows], lv2)
        out[kl_rows] = _mean_flat(kl) / _LOG2
        # ∂KL/∂logσ₂² = ½(1 − σ₁²/σ₂² − (μ₁ − μ₂)²/σ₂²)
        d_nats[kl_rows] = 0.5 * (1.0 - np.exp(true_log_var - lv2) - (true_mean - mean[kl_rows]) ** 2 * np.exp(-lv2))

    if dec_rows.any():
        x, mu = x0[dec_rows], mean[dec_rows] / b                   # data units
        log_scale = 0.5 * log_var[dec_rows] - math.log(b)         # log σ of the decoder, data units
        log_p = discretized_gaussian_log_likelihood(x, mu, log_scale)
        out[dec_rows] = -_mean_flat(log_p) / _LOG2
        # ∂(−log p)/∂log Σ = ½·∂(−log p)/∂log σ
        d_nats[dec_rows] = -0.5 * _dlogp_dlogscale(x, mu, log_scale, log_p)

    cache = {"d_nats_d_logvar": d_nats, "d_logvar_dv": d_log_var_dv, "dims": x0[0].size, "dtype": np.asarray(v_sigma).dtype}
    return out, cache


def _dlogp_dlogscale(x, mu, log_scale, log_p):
    r"""∂ log p/∂ log σ of the discretized Gaussian, p = Φ(u₊) − Φ(u₋), u± = (x − μ ± 1/255)/σ:

    .. math::  \frac{\partial \log p}{\partial \log\sigma} = \frac{-u_+\varphi(u_+) + u_-\varphi(u_-)}{p}

    (∂u/∂log σ = −u). In the edge bins u₋ = −∞ (x = −1) or u₊ = +∞ (x = 1) and that term is 0.
    Each ratio φ(u)/p is formed as exp(log φ(u) − log p), finite wherever log p is.
    """
    inv_sigma = np.exp(-log_scale)
    u_plus, u_minus = (x - mu + 1.0 / 255.0) * inv_sigma, (x - mu - 1.0 / 255.0) * inv_sigma

    def u_phi_over_p(u):
        return u * np.exp(-0.5 * u * u - _HALF_LOG_2PI - log_p)

    term_plus = np.where(x > _EDGE, 0.0, -u_phi_over_p(u_plus))      # last bin: u₊ = +∞
    term_minus = np.where(x < -_EDGE, 0.0, u_phi_over_p(u_minus))    # first bin: u₋ = −∞
    return term_plus + term_minus


def vlb_term_learned_backward(dL, cache) -> np.ndarray:
    r"""∂/∂v of Σ_i dL_i·L_i (L from ``vlb_term_learned_forward``), shape of v, v's dtype.

    Chain rule, per element j of example i (D = elements per example, bits = nats/log 2):

    .. math::  \frac{\partial L_i}{\partial v_{ij}} = \frac{1}{D \log 2}\,
               \frac{\partial\,\text{nats}_{ij}}{\partial \log\Sigma_{ij}}\,(\log\beta_t - \log\tilde\beta_t)

    term 1 (t ≥ 2): ∂KL/∂log Σ; term 2 (t = 1): ½·∂(−log p)/∂log σ. Nothing flows to the mean.
    """
    d_nats = cache["d_nats_d_logvar"]
    dL = np.asarray(dL, dtype=np.float64).reshape((-1,) + (1,) * (d_nats.ndim - 1))
    dv = dL / (cache["dims"] * _LOG2) * d_nats * cache["d_logvar_dv"]
    return dv.astype(cache["dtype"] if cache["dtype"] in (np.float32, np.float64) else np.float64, copy=False)


def vlb_term_learned(schedule: Schedule, x0, xt, t, mean, v_sigma) -> np.ndarray:
    """L_{t−1} in bits/dim per example, (N,) float64 (``vlb_term_learned_forward`` without the cache)."""
    return vlb_term_learned_forward(schedule, x0, xt, t, mean, v_sigma)[0]


# ------------------------------------------------------------------ the hybrid loss
def _check_lambda(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam (the hybrid loss' λ) must be a finite number >= 0, got {lam!r}")
    return float(lam)


def hybrid_loss(schedule: Schedule, x0, xt, t, noise, pred, v_sigma, prediction: str = "eps",
                lam: float = HYBRID_LAMBDA, weights=None) -> dict:
    r"""L_hybrid = L_simple + λ·L_vlb for one batch (Nichol & Dhariwal 2021, sec. 3.1), with gradients.

    * L_simple = mean over every element of (pred − target)², target = ε, x₀ or v (``prediction``);
    * L_vlb ≈ T·mean_i w_i·L_{t_i−1}(mean_i, v_i) in bits/dim, where mean_i = μ̃_t(x_t, x̂₀(pred)) (eq. 7)
      is held constant (stop-gradient); w_i = 1 for uniform t, or the importance weights of
      ``ImportanceSampler`` (``weights``, shape (N,)).

    x_t must be q_sample(x0, t, noise). Returns a dict: ``"loss"``, ``"loss_simple"``,
    ``"loss_vlb"`` (the T·mean estimate, before λ), ``"vlb_bpd"`` (N,) the per-example L_{t−1},
    ``"d_pred"`` = ∂L_simple/∂pred only, ``"d_v_sigma"`` = λ·∂L_vlb/∂v.
    """
    lam = _check_lambda(lam)
    (x0, xt, noise, pred, _), dtype, t = _check_inputs(schedule, t, prediction, x0=x0, xt=xt, noise=noise,
                                                     pred=pred, v_sigma=v_sigma)
    n = x0.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be {n} finite numbers >= 0 (one per example), got shape {w.shape}")
    target = {"eps": noise, "x0": x0, "v": v_target(schedule, x0, t, noise)}[prediction]
    diff = pred - target
    loss_simple = float(np.mean(diff * diff))                                 # Ho et al. eq. 14
    d_pred = 2.0 * diff / diff.size

    nd, b = xt.ndim, schedule.input_scale
    x0_hat = x0_from_prediction(schedule, xt, t, pred, prediction)            # stop-gradient from here on
    mean = _coef(schedule.posterior_mean_coef_x0, t, nd) * b * x0_hat + _coef(schedule.posterior_mean_coef_xt, t, nd) * xt
    vlb, cache = vlb_term_learned_forward(schedule, x0, xt, t, mean, v_sigma)
    loss_vlb = schedule.T * float(np.mean(w * vlb))                           # Σ_t L_{t−1} ≈ T·E_t[L_{t−1}]
    d_v = vlb_term_learned_backward(lam * schedule.T * w / n, cache)
    return {"loss": loss_simple + lam * loss_vlb, "loss_simple": loss_simple, "loss_vlb": loss_vlb,
            "vlb_bpd": vlb, "d_pred": d_pred.astype(dtype, copy=False), "d_v_sigma": d_v}


# ------------------------------------------------------------------ importance sampling of t (sec. 3.3)
class ImportanceSampler:
    r"""Draw t ∝ √E[L_t²] for L_vlb (Nichol & Dhariwal 2021, sec. 3.3), with the weights that keep it unbiased.

    Keeps the last ``history`` (10) values of L_{t−1} seen at each t. Until every t has that many,
    t is drawn uniformly (weights 1). Then p_t ∝ √(mean of the stored L²), mixed with a little of
    the uniform (``uniform_prob`` = 0.001, improved-diffusion's ``LossSecondMomentResampler``) so no t
    is starved, and w_t = 1/(T·p_t), so that E_p[w_t·L_t] = (1/T)Σ_t L_t = E_uniform[L_t].
    """

    def __init__(self, T: int, history: int = 10, uniform_prob: float = 0.001):
        self.T = check_positive_int("T", T)
        self.history = check_positive_int("history", history)
        if isinstance(uniform_prob, bool) or not isinstance(uniform_prob, numbers.Real) or not 0 < uniform_prob <= 1:
            raise ValueError(f"uniform_prob must be in (0, 1], got {uniform_prob!r}")
        self.uniform_prob = float(uniform_prob)
        self._losses = np.zeros((self.T, self.history))     # row t − 1: the last values at t
        self._counts = np.zeros(self.T, dtype=np.int64)

    def ready(self) -> bool:
        return bool(np.all(self._counts >= self.history))

    def probabilities(self) -> np.ndarray:
        """p_t for t = 1..T (index t − 1): uniform until ready, then ∝ √E[L_t²] mixed with uniform."""
        if not self.ready():
            return np.full(self.T, 1.0 / self.T)
        p = np.sqrt(np.mean(self._losses ** 2, axis=1))
        p = p / p.sum()
        return (1.0 - self.uniform_prob) * p + self.uniform_prob / self.T

    def sample(self, n: int, rng: np.random.Generator):
        """``(t, weights)``: n timesteps in 1..T (int64) and their importance weights 1/(T·p_t)."""
        n = check_positive_int("n", n)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        p = self.probabilities()
        idx = rng.choice(self.T, size=n, p=p)
        return idx.astype(np.int64) + 1, 1.0 / (self.T * p[idx])

    def update(self, t, losses) -> None:
        """Store L_{t−1} values (e.g. ``hybrid_loss(...)["vlb_bpd"]``) for the timesteps t that produced them."""
        t = np.asarray(t).reshape(-1)
        losses = np.asarray(losses, dtype=np.float64).reshape(-1)
        if t.shape != losses.shape or not np.issubdtype(t.dtype, np.integer) or t.min() < 1 or t.max() > self.T:
            raise ValueError(f"t must be integers in 1..{self.T}, one per loss value")
        for ti, li in zip(t, losses):
            row = ti - 1
            if self._counts[row] < self.history:
                self._losses[row, self._counts[row]] = li
                self._counts[row] += 1
            else:                                            # keep the last `history` values
                self._losses[row, :-1] = self._losses[row, 1:]
                self._losses[row, -1] = li
