"""Gaussian KL and the discretized decoder likelihood, against Monte Carlo and SciPy (a test-only oracle)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpm_ref.likelihood import discretized_gaussian_log_likelihood, log_ndtr, normal_kl

GRID = np.arange(256) / 255 * 2 - 1          # the 256 levels of [−1, 1]


# ------------------------------------------------------------------ normal_kl
@pytest.mark.parametrize("m1, v1, m2, v2", [(0.0, 0.0, 0.0, 0.0), (0.5, -1.0, -0.3, 0.7), (2.0, 1.5, 0.0, -2.0),
                                            (-1.0, -6.0, -1.2, -5.0)])
def test_normal_kl_matches_monte_carlo(m1, v1, m2, v2):
    """E_{x~N1}[log N1(x) − log N2(x)] from 200 000 draws; tolerance 5 standard errors of that mean."""
    rng = np.random.default_rng(3)
    x = m1 + math.exp(v1 / 2) * rng.standard_normal(200_000)

    def logpdf(x, m, v):
        return -0.5 * (math.log(2 * math.pi) + v + (x - m) ** 2 / math.exp(v))

    ratio = logpdf(x, m1, v1) - logpdf(x, m2, v2)
    se = ratio.std(ddof=1) / math.sqrt(x.size)
    kl = normal_kl(m1, v1, m2, v2)
    assert abs(float(kl) - ratio.mean()) <= 5 * se + 1e-12
    assert kl >= 0


def test_normal_kl_broadcasts_and_keeps_float32():
    m1 = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    out = normal_kl(m1, np.float32(0.1) * np.ones(3, np.float32), 0.0, 0.0)
    assert out.shape == (2, 3) and out.dtype == np.float32
    assert normal_kl(m1, 0.0, m1.astype(np.float64), 0.0).dtype == np.float64
    np.testing.assert_array_equal(normal_kl(m1.astype(np.float64), 0.3, m1.astype(np.float64), 0.3), 0.0)


# ------------------------------------------------------------------ log Φ
def test_log_ndtr_matches_scipy():
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([-np.logspace(-3, 6, 300), [0.0], np.logspace(-3, 1.6, 200), np.linspace(-25, 5, 301)])
    np.testing.assert_allclose(log_ndtr(x), special.log_ndtr(x), rtol=1e-12, atol=1e-300)


# ------------------------------------------------------------------ the discretized decoder
CASES = [(0.0, 0.0), (0.3, math.log(0.05)), (-0.99, math.log(1e-3)), (1.0, math.log(1e-4)), (5.0, math.log(0.01)),
         (-40.0, math.log(0.02)), (0.2, math.log(30.0)), (0.1, math.log(1e-6)), (0.5, 5.0), (0.5, 30.0),
         (0.5, 200.0), (0.1, -200.0)]


@pytest.mark.parametrize("mean, log_scale", CASES)
def test_discretized_likelihood_sums_to_one(mean, log_scale):
    lp = discretized_gaussian_log_likelihood(GRID, np.full(256, mean), log_scale)
    assert lp.shape == (256,) and np.all(np.isfinite(lp)) and np.all(lp <= 0)
    top = lp.max()
    total = top + math.log(np.exp(lp - top).sum())       # log Σ p over all 256 bins
    assert abs(total) < _sum_tolerance(log_scale)


def _sum_tolerance(log_scale):
    """The bins' edges x ± 1/255 are rounded (|error| ≲ 2e-16), so neighbouring bins overlap or leave gaps of
    that width; in units of σ this moves ≲ 255·2e-16/σ·φ(0) of probability. Plus 1e-12 for the arithmetic."""
    return 1e-12 + 255 * 2.3e-16 * 0.4 / math.exp(log_scale)


def _scipy_reference(x, mean, sigma):
    """log P(bin of x) from scipy.stats.norm.logcdf/logsf, the bin's far side subtracted in log space."""
    norm = pytest.importorskip("scipy.stats").norm
    h = 1 / 255
    if x < -0.999:
        return norm.logcdf(x + h, mean, sigma)
    if x > 0.999:
        return norm.logsf(x - h, mean, sigma)
    lo, hi = x - h, x + h
    if lo >= mean:                                     # right of the mean: P = S(lo) − S(hi)
        a, b = norm.logsf(lo, mean, sigma), norm.logsf(hi, mean, sigma)
    else:                                              # left of it (or straddling): P = Φ(hi) − Φ(lo)
        a, b = norm.logcdf(hi, mean, sigma), norm.logcdf(lo, mean, sigma)
    return a + math.log(-math.expm1(b - a))


@pytest.mark.parametrize("mean, log_scale", CASES[:8])
def test_discretized_likelihood_matches_scipy_far_in_the_tails(mean, log_scale):
    pytest.importorskip("scipy")
    lp = discretized_gaussian_log_likelihood(GRID, np.full(256, mean), log_scale)
    ref = np.array([_scipy_reference(x, mean, math.exp(log_scale)) for x in GRID])
    assert np.all(np.isfinite(ref))
    np.testing.assert_allclose(lp, ref, rtol=1e-9, atol=1e-12)
    if log_scale < math.log(1e-2):
        assert lp.min() < -1000                       # far in the tails, still finite and exact


@pytest.mark.parametrize("mean, log_scale", CASES + [(0.3, -1.0), (-0.7, 2.0), (7e13, 0.0), (-3e6, -5.0), (0.99, -150.0)])
def test_discretized_likelihood_matches_mpmath(mean, log_scale):
    """60-digit arithmetic with mpmath's unbounded exponents: a bin 10^14 σ from the mean has log p ≈ −2.5e27,
    a bin of width e^−200 σ has log p ≈ −205.8 (SciPy's difference of two log-CDFs loses every digit there, a
    naive log(Φ(b) − Φ(a)) gives −∞). Bins right of the mean are mirrored so that no CDF is close to 1."""
    mpmath = pytest.importorskip("mpmath")
    idx = np.r_[0, 1, 2, 60:256:37, 127, 128, 254, 255]
    lp = discretized_gaussian_log_likelihood(GRID[idx], np.full(idx.size, mean), log_scale)
    ctx = mpmath.MPContext()
    ctx.dps = 60 if abs(log_scale) < 100 else 120
    sigma, mu, h = ctx.exp(ctx.mpf(log_scale)), ctx.mpf(mean), ctx.mpf(1) / 255
    for k, value in zip(idx, lp):
        x = ctx.mpf(float(GRID[k]))                   # the float the function was given
        lo = -ctx.inf if k == 0 else (x - h - mu) / sigma
        hi = ctx.inf if k == 255 else (x + h - mu) / sigma
        if lo > 0:
            lo, hi = -hi, -lo
        p = (1 if hi == ctx.inf else ctx.ncdf(hi)) - (0 if lo == -ctx.inf else ctx.ncdf(lo))
        ref = float(ctx.log(p))
        assert value == pytest.approx(ref, rel=1e-9, abs=1e-12), (k, value, ref)


def test_discretized_likelihood_known_values():
    # σ huge: every inner bin has probability ≈ (2/255)·φ(0)/σ
    sigma = 1e3
    lp = discretized_gaussian_log_likelihood(np.array([0.0]), np.array([0.0]), math.log(sigma))
    assert lp[0] == pytest.approx(math.log(2 / 255 / (sigma * math.sqrt(2 * math.pi))), rel=1e-9)
    # mean on a level and σ tiny: that level gets all the mass
    lp = discretized_gaussian_log_likelihood(GRID[[10, 11]], GRID[[10, 10]], math.log(1e-5))
    assert lp[0] == pytest.approx(0.0, abs=1e-15) and lp[1] < -1e4


def test_discretized_likelihood_shapes_and_dtype(rng):
    x = GRID[rng.integers(0, 256, (2, 3, 4))].astype(np.float32)
    mean = rng.standard_normal(x.shape).astype(np.float32)
    out = discretized_gaussian_log_likelihood(x, mean, np.float32(-1.0) * np.ones((3, 1), np.float32))
    assert out.shape == x.shape and out.dtype == np.float32
    out64 = discretized_gaussian_log_likelihood(x.astype(np.float64), mean.astype(np.float64), -1.0)
    np.testing.assert_allclose(out, out64, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(mean=st.floats(-50, 50), log_scale=st.floats(-30, 30))
def test_property_always_a_distribution(mean, log_scale):
    lp = discretized_gaussian_log_likelihood(GRID, np.full(256, mean), log_scale)
    assert np.all(np.isfinite(lp)) and np.all(lp <= 1e-15)
    top = lp.max()
    assert abs(top + math.log(np.exp(lp - top).sum())) < _sum_tolerance(log_scale)


# ------------------------------------------------------------------ bad input
def test_bad_input():
    ok = np.zeros(3)
    cases = [
        (lambda: discretized_gaussian_log_likelihood(np.array([0.0, 1.5, 0.0]), ok, 0.0), r"x must lie in \[-1, 1\]"),
        (lambda: discretized_gaussian_log_likelihood(ok, np.array([0.0, np.nan, 0.0]), 0.0), "mean holds 1 NaN"),
        (lambda: discretized_gaussian_log_likelihood(ok, ok, np.inf), "log_scale holds 1 NaN or infinite"),
        (lambda: discretized_gaussian_log_likelihood(ok, ok, 800.0), r"log_scale must lie in \[-700, 700\]"),
        (lambda: discretized_gaussian_log_likelihood(ok, np.zeros(4), 0.0), r"x and mean must have the same shape"),
        (lambda: discretized_gaussian_log_likelihood(ok, ok, np.zeros(4)), r"shapes do not broadcast together: x \(3,\), log_scale \(4,\)"),
        (lambda: discretized_gaussian_log_likelihood(ok, ok, np.zeros((2, 3))), r"log_scale \(2, 3\) must broadcast to the shape of x"),
        (lambda: discretized_gaussian_log_likelihood(ok, ok.astype(complex), 0.0), "mean must be real numbers"),
        (lambda: normal_kl(0.0, 0.0, 0.0, np.nan), "logvar2 holds 1 NaN"),
        (lambda: normal_kl(np.array([np.inf]), 0.0, 0.0, 0.0), "mean1 holds 1 NaN or infinite"),
        (lambda: normal_kl(np.zeros(3), np.zeros(4), 0.0, 0.0), r"shapes do not broadcast together: mean1 \(3,\), logvar1 \(4,\)"),
        (lambda: normal_kl(None, 0.0, 0.0, 0.0), "mean1 must be a numeric array"),
    ]
    for call, complaint in cases:
        with pytest.raises(ValueError, match=complaint):
            call()


@settings(max_examples=60, deadline=None)
@given(mean=st.floats(-1e300, 1e300), log_scale=st.floats(-700, 700))
def test_property_finite_or_a_clear_error_at_extremes(mean, log_scale):
    """A far-off mean with a tiny σ makes log p of some bins below −1.8e308 (not a float64): that raises a
    ValueError naming the arguments; otherwise every bin is finite and the bins form a distribution."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no overflow/invalid warnings either
        try:
            lp = discretized_gaussian_log_likelihood(GRID, np.full(256, mean), log_scale)
        except ValueError as e:
            assert "mean, log_scale" in str(e) and "range of float64" in str(e)
            # only then is some bin's (x − μ)²/2σ² beyond 1e308 (the farthest level is |μ| + 1 away)
            assert (abs(mean) + 1.0) * math.exp(-log_scale) > 1e150
            return
    assert np.all(np.isfinite(lp)) and np.all(lp <= 0)


def test_discretized_likelihood_raises_where_log_p_underflows():
    with pytest.raises(ValueError, match="discretized_gaussian_log_likelihood: the result exceeds the range"):
        discretized_gaussian_log_likelihood(np.array([0.0]), np.array([1e200]), -10.0)


def _kl_mpmath(m1, v1, m2, v2):
    """The KL at 50 digits with mpmath's unbounded exponents (a test-only oracle)."""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 50
    m1, v1, m2, v2 = (mp.mpf(a) for a in (m1, v1, m2, v2))
    return float(0.5 * (-1 + v2 - v1 + mp.exp(v1 - v2) + (m1 - m2) ** 2 * mp.exp(-v2)))


@pytest.mark.parametrize("m1, v1, m2, v2", [
    (0.0, 0.0, 1.35e154, 746.0),      # (μ₁ − μ₂)² overflows, exp(−v₂) underflows: was 0·∞ = NaN
    (0.0, 0.0, 1e200, 800.0),         # the same, further out
    (1e308, 0.0, -1e308, 1000.0),     # μ₁ − μ₂ itself overflows
    (0.0, -1e308, 0.0, 1e308),        # v₂ − v₁ = 2e308 overflows, but ½v₂ − ½v₁ = 1e308 does not
    (0.0, 710.0, 0.0, 0.0),           # σ₁²/σ₂² = e^710 > 1.8e308, but ½e^710 is a float64
    (3.0, -2.0, 3.0, -2.0),           # identical: exactly 0
])
def test_normal_kl_finite_where_the_kl_is(m1, v1, m2, v2):
    """rel 1e-12: the exponentials' arguments (up to ~1500) carry a relative rounding error of 1.1e-16
    each, which exp turns into |argument|·1.1e-16 ≈ 2e-13 relative error in the result."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kl = normal_kl(m1, v1, m2, v2)
    assert float(kl) == pytest.approx(_kl_mpmath(m1, v1, m2, v2), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("m1, v1, m2, v2", [(0.0, 1e308, 0.0, -1e308), (0.0, 0.0, 0.0, -800.0),
                                            (1.0, 0.0, 0.0, -800.0), (0.0, 800.0, 0.0, 0.0)])
def test_normal_kl_raises_where_the_kl_is_beyond_float64(m1, v1, m2, v2):
    assert _kl_mpmath(m1, v1, m2, v2) > 1.8e308 or math.isinf(_kl_mpmath(m1, v1, m2, v2))
    with pytest.raises(ValueError, match="normal_kl: the result exceeds the range of float64 for these mean1, logvar1"):
        normal_kl(m1, v1, m2, v2)
    with pytest.raises(ValueError, match="range of float32"):          # and where only float32 overflows
        normal_kl(np.float32(0), np.float32(100), np.float32(0), np.float32(0))


@pytest.mark.parametrize("bad, complaint", [(None, "x must be a numeric array"), (np.nan, "x holds 1 NaN"),
                                            (np.array([0.0, np.inf]), "x holds 1 NaN or infinite"),
                                            (np.array([1 + 2j]), "x must be real"), (True, "x must be real")])
def test_log_ndtr_bad_x(bad, complaint):
    with pytest.raises(ValueError, match=complaint):
        log_ndtr(bad)


def test_log_ndtr_raises_where_log_phi_is_not_a_float64():
    assert log_ndtr(-1e150) == pytest.approx(-5e299, rel=1e-12)        # −x²/2 dominates: still a float64
    with pytest.raises(ValueError, match="log_ndtr: the result exceeds the range of float64 for these x"):
        log_ndtr(-1e155)
