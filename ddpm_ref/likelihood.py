r"""Gaussian densities for the variational bound: KL between Gaussians and the discrete decoder.

Layer: math (imports NumPy and other math modules only; nothing above).

* ``normal_kl``: KL(N(μ₁, e^{v₁}) ‖ N(μ₂, e^{v₂})) elementwise, in nats (Ho et al. 2020, eq. 5
  uses it for every L_{t−1}).
* ``discretized_gaussian_log_likelihood``: log p(x) of data on the 256-level grid of [−1, 1]
  under a Gaussian integrated over each bin (Ho et al. 2020, eq. 13), in nats. Computed exactly
  in log space (``log_ndtr`` and a stable difference of CDFs), not with the tanh approximation of
  the CDF that Ho et al. and improved-diffusion use, so it stays finite and accurate far in the tails.

NumPy has no erf; the standard normal CDF here uses the C library's ``math.erf``/``math.erfc``
elementwise and an asymptotic series below x = −20, where erfc underflows.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ddpm_ref._checks import check_finite
from ddpm_ref._math_checks import finite_as

__all__ = ["normal_kl", "discretized_gaussian_log_likelihood", "log_ndtr", "BIN_HALF_WIDTH"]

BIN_HALF_WIDTH = 1.0 / 255.0   # the 256 levels of [−1, 1] are 2/255 apart
_EDGE = 0.999                  # below −0.999 / above 0.999 means the first / last level
_SQRT2 = math.sqrt(2.0)
_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)
_erf = np.frompyfunc(math.erf, 1, 1)


def _result_dtype(*values) -> np.dtype:
    """float32 if every array input is float32 (Python scalars do not promote), else float64."""
    arrays = [v if isinstance(v, numbers.Real) else np.asarray(v) for v in values]
    dt = np.result_type(*arrays)
    return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)


def _real(name: str, x) -> np.ndarray:
    arr = check_finite(name, x)
    if arr.dtype == bool or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _broadcast(**arrays) -> None:
    try:
        np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        desc = ", ".join(f"{n} {a.shape}" for n, a in arrays.items())
        raise ValueError(f"shapes do not broadcast together: {desc}") from None


def normal_kl(mean1, logvar1, mean2, logvar2):
    r"""KL divergence between two diagonal Gaussians, elementwise, in nats.

    .. math::

        D_{KL}\big(\mathcal N(\mu_1, \sigma_1^2)\,\|\,\mathcal N(\mu_2, \sigma_2^2)\big)
        = \tfrac12\Big(-1 + \log\sigma_2^2 - \log\sigma_1^2 + \frac{\sigma_1^2}{\sigma_2^2} + \frac{(\mu_1 - \mu_2)^2}{\sigma_2^2}\Big)

    Arguments are log variances (as in Ho et al.'s and improved-diffusion's ``normal_kl``) and
    broadcast against each other. Result dtype: float32 if all array inputs are float32.

    The two ratios are formed as exponentials of log differences, ½σ₁²/σ₂² = exp(v₁ − v₂ − log 2)
    and ½(μ₁ − μ₂)²/σ₂² = exp(2 log|μ₁ − μ₂| − v₂ − log 2), so that no intermediate overflows
    (or becomes 0·∞) while the KL itself is representable; a KL beyond the result dtype's range
    raises ``ValueError``.
    """
    m1, v1, m2, v2, dtype = _check_normal_kl(mean1, logvar1, mean2, logvar2)
    with np.errstate(divide="ignore", over="ignore"):        # log 0 = −∞ and exp(−∞) = 0 where μ₁ = μ₂
        log_abs_dmean = np.log(np.abs(0.5 * m1 - 0.5 * m2)) + _LOG2      # log|μ₁ − μ₂|, without overflow
        var_ratio_half = np.exp(v1 - v2 - _LOG2)                          # ½σ₁²/σ₂²
        mean_term_half = np.exp(2.0 * log_abs_dmean - v2 - _LOG2)         # ½(μ₁ − μ₂)²/σ₂²
        kl = -0.5 + 0.5 * v2 - 0.5 * v1 + var_ratio_half + mean_term_half
    return finite_as(kl, dtype, "normal_kl", "mean1, logvar1, mean2, logvar2")


def log_ndtr(x) -> np.ndarray:
    r"""log Φ(x), the log of the standard normal CDF, accurate for every finite x (float64).

    * x > 0: log Φ(x) = log1p(−½ erfc(x/√2)) (no loss when Φ(x) is close to 1);
    * −20 < x ≤ 0: log(½ erfc(−x/√2));
    * x ≤ −20: the asymptotic series (``_log_mills_series``)
      log Φ(x) = −x²/2 − log(−x) − ½ log 2π + log(1 − 1/x² + 3/x⁴ − 15/x⁶ + …), truncated after
      the 1/x¹⁶ term (error below 1e-15 at x = −20).

    Below x ≈ −1.9e154, log Φ(x) < −1.8e308 is not a float64 and ``ValueError`` is raised.
    """
    x = _check_log_ndtr(x)
    return finite_as(_log_ndtr(x), np.float64, "log_ndtr", "x")


def _log_ndtr(x: np.ndarray) -> np.ndarray:
    """log Φ(x) for a float64 array (−∞ where it underflows); the internal, unchecked version."""
    out = np.empty(x.shape)
    hi, lo = x > 0, x <= -20
    mid = ~hi & ~lo
    out[hi] = np.log1p(-0.5 * _erfc(x[hi] / _SQRT2).astype(np.float64))
    out[mid] = np.log(0.5 * _erfc(-x[mid] / _SQRT2).astype(np.float64))
    xl = x[lo]
    with np.errstate(over="ignore"):               # x² overflows beyond |x| ≈ 1e154: log Φ = −∞, exactly so
        out[lo] = -0.5 * xl * xl - np.log(-xl) - _HALF_LOG_2PI + _log_mills_series(xl)
    return out


def _log_mills_series(x: np.ndarray) -> np.ndarray:
    """log(1 − 1/x² + 3/x⁴ − … + (2·8−1)!!/x¹⁶) for x ≤ −20: the series of Φ(x)·(−x)/φ(x)."""
    with np.errstate(over="ignore"):
        inv2 = 1.0 / (x * x)
    series, term = np.ones_like(x), np.ones_like(x)
    for k in range(1, 9):                          # (−1)^k (2k−1)!! / x^{2k}
        term = -term * (2 * k - 1) * inv2
        series += term
    return np.log(series)


def _log1mexp(d: np.ndarray) -> np.ndarray:
    """log(1 − e^d) for d ≤ 0, stable at both ends (Mächler 2012)."""
    with np.errstate(divide="ignore"):
        return np.where(d > -math.log(2.0), np.log(-np.expm1(np.minimum(d, 0.0))), np.log1p(-np.exp(np.minimum(d, -math.log(2.0)))))


def _log_normal_bin(m: np.ndarray, w: np.ndarray) -> np.ndarray:
    r"""log(Φ(b) − Φ(a)) for the bin [a, b] = [m − w/2, m + w/2] (standard units), w > 0, without cancellation.

    m and w are passed rather than a and b because b − a loses w when |m| ≫ w. The bin's
    probability is symmetric in m, so m is replaced by −|m| ≤ 0 (the bin is mirrored to the left). Regimes:

    * narrow next to σ, w·(1 + |m|) < 1e-3: the midpoint rule with its first correction,
      log w + log φ(m) + log(1 + (m² − 1)w²/24) (next term O(w⁴m⁴) < 1e-15). Without it a huge σ
      gives Φ(a) = Φ(b) in float64 and log 0 = −∞;
    * straddling 0, a < 0 < b: ½(erf(b/√2) + erf(−a/√2)), a sum of two positive numbers;
    * left of 0, a < b ≤ 0: log Φ(b) + log(1 − e^{log Φ(a) − log Φ(b)}); beyond −20 the difference
      log Φ(a) − log Φ(b) = w·m + log(1 + w/a) + (series terms) is formed from w directly;
    * m = −∞ (|x − μ|/σ overflowed float64): log p = −∞, which is what the probability is in float64.
    """
    out = np.full(m.shape, -np.inf)
    m = -np.abs(m)
    finite = np.isfinite(m)
    with np.errstate(over="ignore", invalid="ignore"):   # a, b = ±∞ for bins wider than 1e308 σ
        a, b = m - 0.5 * w, m + 0.5 * w
        narrow = finite & (w * (1.0 - m) < 1e-3)
    wn, mn = w[narrow], m[narrow]
    out[narrow] = np.log(wn) - 0.5 * mn * mn - _HALF_LOG_2PI + np.log1p((mn * mn - 1.0) * wn * wn / 24.0)
    straddle = finite & ~narrow & (b > 0)
    s = (_erf(b[straddle] / _SQRT2) + _erf(-a[straddle] / _SQRT2)).astype(np.float64)
    out[straddle] = np.log(0.5 * s)
    left = finite & ~narrow & ~straddle
    far = left & (b <= -20)
    near = left & ~far
    la, lb = _log_ndtr(a[near]), _log_ndtr(b[near])
    out[near] = lb + _log1mexp(la - lb)
    af, bf, wf = a[far], b[far], w[far]
    with np.errstate(over="ignore"):
        diff = wf * m[far] + np.log1p(wf / af) + _log_mills_series(af) - _log_mills_series(bf)   # log Φ(a) − log Φ(b)
    out[far] = _log_ndtr(bf) + _log1mexp(np.minimum(diff, 0.0))
    return out


def discretized_gaussian_log_likelihood(x, mean, log_scale):
    r"""log p(x) in nats, elementwise, of data x on the 256-level grid of [−1, 1] (Ho et al. 2020, eq. 13):

    .. math::

        p(x) = \int_{\delta_-(x)}^{\delta_+(x)} \mathcal N(u;\, \mu, \sigma^2)\, du, \qquad
        \delta_\pm(x) = \begin{cases} \pm\infty & x = \pm 1 \\ x \pm 1/255 & \text{otherwise} \end{cases}

    with σ = exp(log_scale). Bins are 2/255 wide and the two edge bins extend to ±∞, so the
    probabilities of the 256 levels sum to 1. Computed exactly in log space: log Φ for the edge
    bins and a cancellation-free log(Φ(b) − Φ(a)) for the others (not improved-diffusion's tanh
    approximation of Φ). x should lie on the grid (e.g. (k/255)·2 − 1); it must lie in [−1, 1].

    Args:
        x: data in [−1, 1]; mean: same shape as x; log_scale: log σ, broadcastable to x, in
            [−700, 700] so that σ is a representable float64.
    Returns: log-probabilities, x's shape; float32 if x, mean and log_scale are all float32.
    """
    x, mean, log_scale, dtype = _check_discretized_gaussian_log_likelihood(x, mean, log_scale)
    inv_stdv = np.exp(-log_scale)
    with np.errstate(over="ignore"):                      # ±∞ beyond 1e308 σ: log p = −∞ there (raised below)
        plus_in = inv_stdv * (x - mean + BIN_HALF_WIDTH)  # (δ₊ − μ)/σ
        min_in = inv_stdv * (x - mean - BIN_HALF_WIDTH)   # (δ₋ − μ)/σ
        mid_in = inv_stdv * (x - mean)                    # (x − μ)/σ, the bin's centre
    low, high = x < -_EDGE, x > _EDGE
    inner = ~low & ~high
    log_p = np.empty(x.shape)
    log_p[low] = _log_ndtr(plus_in[low])                  # log Φ(δ₊), first bin (−∞, x + 1/255]
    log_p[high] = _log_ndtr(-min_in[high])                # log(1 − Φ(δ₋)), last bin [x − 1/255, ∞)
    log_p[inner] = _log_normal_bin(mid_in[inner], 2.0 * BIN_HALF_WIDTH * inv_stdv[inner])   # width (δ₊ − δ₋)/σ
    return finite_as(log_p, dtype, "discretized_gaussian_log_likelihood", "x, mean, log_scale")


# ------------------------------------------------------------------ argument checks, one per public function
def _check_normal_kl(mean1, logvar1, mean2, logvar2):
    arrays = {n: _real(n, a) for n, a in (("mean1", mean1), ("logvar1", logvar1), ("mean2", mean2), ("logvar2", logvar2))}
    _broadcast(**arrays)
    return (*arrays.values(), _result_dtype(mean1, logvar1, mean2, logvar2))


def _check_log_ndtr(x) -> np.ndarray:
    return _real("x", x)


def _check_discretized_gaussian_log_likelihood(x, mean, log_scale):
    checked = _real("x", x), _real("mean", mean), _real("log_scale", log_scale)
    dtype = _result_dtype(x, mean, log_scale)             # of the arguments as given, once they are known to be real
    x, mean, log_scale = checked
    if x.shape != mean.shape:
        raise ValueError(f"x and mean must have the same shape, got x {x.shape}, mean {mean.shape}")
    _broadcast(x=x, log_scale=log_scale)
    if np.broadcast_shapes(x.shape, log_scale.shape) != x.shape:
        raise ValueError(f"log_scale {log_scale.shape} must broadcast to the shape of x {x.shape}")
    if np.any(np.abs(x) > 1.0 + 1e-6):
        raise ValueError("x must lie in [-1, 1] (data on the 256-level grid); scale images to [-1, 1] first")
    if np.any(np.abs(log_scale) > 700):
        raise ValueError("log_scale must lie in [-700, 700] (sigma = exp(log_scale) must be a finite, nonzero float64)")
    return x, mean, np.broadcast_to(log_scale, x.shape), dtype
