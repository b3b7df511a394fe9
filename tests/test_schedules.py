"""Schedules: every family's βs and ᾱs, Chen's γ functions, the derived arrays, bad input.

Independent routes: ᾱ is recomputed with a Python loop (not cumprod), the posterior variance from
its definition one t at a time, and the γ-defined families from the γ functions at t/T.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpm_ref.schedules import (
    SCHEDULE_NAMES,
    Schedule,
    gamma_cosine,
    gamma_linear,
    gamma_sigmoid,
    logsnr,
    make_schedule,
)

ARRAYS = ("betas", "alphas", "alpha_bars", "alpha_bars_prev", "sqrt_alpha_bars", "sqrt_one_minus_alpha_bars",
          "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef_x0",
          "posterior_mean_coef_xt", "eps_coef")


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("T", [1, 2, 7, 50, 1000])
def test_every_family_is_valid(name, T):
    s = make_schedule(name, T)
    assert s.T == T
    for key in ARRAYS:
        a = getattr(s, key)
        assert a.dtype == np.float64 and a.shape == (T + 1,), key
        assert np.all(np.isfinite(a)), key
        assert not a.flags.writeable, key
    # index 0 means "no noise"
    assert s.betas[0] == 0 and s.alphas[0] == 1 and s.alpha_bars[0] == 1
    b = s.betas[1:]
    assert np.all((b > 0) & (b <= 1))
    assert np.all(np.diff(s.alpha_bars) < 0)                    # ᾱ strictly decreasing
    # ᾱ_t = ∏ (1 − β_s), recomputed with a plain loop
    prod, expected = 1.0, [1.0]
    for beta in b:
        prod *= 1.0 - float(beta)
        expected.append(prod)
    np.testing.assert_allclose(s.alpha_bars, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(s.alphas, 1.0 - s.betas, rtol=0, atol=0)
    # β̃_t from its definition; 0 at t = 0 and t = 1
    assert s.posterior_variance[0] == 0 and s.posterior_variance[1] == 0
    for t in range(2, T + 1):
        bt = (1 - s.alpha_bars[t - 1]) / (1 - s.alpha_bars[t]) * s.betas[t]
        assert math.isclose(s.posterior_variance[t], bt, rel_tol=1e-12)
    assert np.all(s.posterior_variance[1:] <= s.betas[1:] * (1 + 1e-12))   # β̃_t ≤ β_t
    # the clipped log variance: β̃_1 = 0 is replaced by β̃_2 (β_1 when T = 1)
    first = s.posterior_variance[2] if T >= 2 else s.betas[1]
    np.testing.assert_allclose(s.posterior_log_variance_clipped[:2], math.log(first), rtol=1e-12)
    np.testing.assert_allclose(s.posterior_log_variance_clipped[2:], np.log(s.posterior_variance[2:]), rtol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 3, 10, 50, 999, 1000, 4000])
def test_linear_is_exactly_linspace(T):
    s = make_schedule("linear", T)
    assert np.array_equal(s.betas[1:], np.linspace(1e-4, 0.02, T))
    assert s.betas[1] == 1e-4 and (T == 1 or s.betas[T] == 0.02)


def test_quadratic_and_sigmoid_beta_formulas():
    T = 37
    q = make_schedule("quadratic", T, beta_start=1e-3, beta_end=0.05)
    np.testing.assert_allclose(q.betas[1:], np.linspace(math.sqrt(1e-3), math.sqrt(0.05), T) ** 2, rtol=1e-14)
    sb = make_schedule("sigmoid_beta", T)
    x = np.linspace(-6, 6, T)
    expected = [1 / (1 + math.exp(-v)) * (0.02 - 1e-4) + 1e-4 for v in x]
    np.testing.assert_allclose(sb.betas[1:], expected, rtol=1e-13)


def test_cosine_matches_nichol_dhariwal_and_clips_at_0_999():
    T, s_off = 1000, 0.008
    sched = make_schedule("cosine", T)

    def f(t):
        return math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2

    raw = [1 - (f(t) / f(0)) / (f(t - 1) / f(0)) for t in range(1, T + 1)]
    np.testing.assert_allclose(sched.betas[1:], np.minimum(raw, 0.999), rtol=1e-9)
    assert raw[-1] > 0.999 and sched.betas[T] == 0.999                 # the last β is clipped
    assert np.max(sched.betas) == 0.999
    # before the clip, ᾱ_t = f(t)/f(0)
    np.testing.assert_allclose(sched.alpha_bars[:T], [f(t) / f(0) for t in range(T)], rtol=1e-9)
    # after the clip, ᾱ is still cumprod(1 − β), not f(T)/f(0)
    assert sched.alpha_bars[T] == pytest.approx(sched.alpha_bars[T - 1] * (1 - 0.999), rel=1e-12)
    small = make_schedule("cosine", T, max_beta=0.5)
    assert np.max(small.betas) == 0.5


@pytest.mark.parametrize("T", [10, 100, 1000])
@pytest.mark.parametrize("params", [{}, {"start": -3, "end": 3, "tau": 1.1}, {"start": 0, "end": 3, "tau": 0.3}])
def test_sigmoid_matches_gamma_sigmoid(T, params):
    s = make_schedule("sigmoid", T, **params)
    g = np.array([gamma_sigmoid(t / T, **params) for t in range(T + 1)])
    # ᾱ_t = γ(t/T) at every grid point where β was not clipped (only t = T can be)
    np.testing.assert_allclose(s.alpha_bars[:T], g[:T], rtol=1e-9)
    assert s.alpha_bars[T] <= max(g[T], s.alpha_bars[T - 1] * 1e-3) * (1 + 1e-9)


@pytest.mark.parametrize("T", [10, 100, 1000])
@pytest.mark.parametrize("params", [{}, {"start": 0.2, "end": 1.0, "tau": 1.0}, {"start": 0, "end": 0.8, "tau": 2}])
def test_cosine_chen_matches_gamma_cosine(T, params):
    s = make_schedule("cosine_chen", T, **params)
    g = np.array([gamma_cosine(t / T, **params) for t in range(T + 1)])
    unclipped = np.concatenate([[True], s.betas[1:] < 0.999])
    np.testing.assert_allclose(s.alpha_bars[unclipped], g[unclipped], rtol=1e-9)


def test_gamma_functions_formulas():
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(gamma_linear(t), np.clip(1 - t, 1e-9, 1), rtol=0)
    for ti in t:
        # Chen 2023, written out with scalars
        start, end, tau = 0.2, 0.9, 1.5
        v = lambda s: math.cos(s * math.pi / 2) ** (2 * tau)  # noqa: E731
        expected = (v(end) - v(ti * (end - start) + start)) / (v(end) - v(start))
        assert gamma_cosine(ti, start, end, tau) == pytest.approx(min(max(expected, 1e-9), 1), rel=1e-12)
        sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        start, end, tau = -3, 3, 0.7
        expected = (sig(end / tau) - sig((ti * (end - start) + start) / tau)) / (sig(end / tau) - sig(start / tau))
        assert gamma_sigmoid(ti, start, end, tau) == pytest.approx(min(max(expected, 1e-9), 1), rel=1e-12)
    for g in (gamma_linear, gamma_cosine, gamma_sigmoid):
        vals = g(t)
        assert vals[0] == pytest.approx(1.0) and vals[-1] == 1e-9        # clipped to [1e-9, 1]
        assert np.all(np.diff(vals) <= 0)


def test_logsnr():
    g = np.array([0.5, 0.9, 0.1, 1.0, 0.0])
    with np.errstate(divide="ignore"):
        expected = [0.0, math.log(9), -math.log(9), np.inf, -np.inf]
    np.testing.assert_allclose(logsnr(g), expected)
    s = make_schedule("linear", 100)
    np.testing.assert_allclose(s.logsnr[1:], logsnr(s.alpha_bars[1:]), rtol=1e-12)
    assert s.logsnr[0] == np.inf


def test_from_betas_and_input_scale():
    s = Schedule.from_betas([0.1, 0.2, 1.0])
    assert s.T == 3 and s.betas[0] == 0 and s.alpha_bars[3] == 0       # β = 1 is allowed
    s2 = make_schedule("cosine", 10, input_scale=0.5)
    assert s2.input_scale == 0.5
    assert make_schedule("cosine", 10).input_scale == 1.0


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(SCHEDULE_NAMES), T=st.integers(1, 300))
def test_property_any_T(name, T):
    s = make_schedule(name, T)
    assert s.betas.shape == (T + 1,) and np.all((s.betas[1:] > 0) & (s.betas[1:] <= 1))
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - s.betas), rtol=1e-12)
    assert np.all(np.diff(s.alpha_bars) < 0)


# ------------------------------------------------------------------ bad input
def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="name") as e:
        make_schedule("cosin", 10)
    for n in SCHEDULE_NAMES:
        assert repr(n) in str(e.value)


@pytest.mark.parametrize("T", [0, -5, 2.0, 10.5, "10", None, True])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        make_schedule("linear", T)


@pytest.mark.parametrize("kwargs, word", [
    ({"beta_start": 0.0}, "beta_start"), ({"beta_end": 1.5}, "beta_end"), ({"beta_start": -0.1}, "beta_start"),
    ({"beta_end": float("nan")}, "beta_end"), ({"beta_start": float("inf")}, "beta_start"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_linear_params(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_schedule("linear", 10, **kwargs)


@pytest.mark.parametrize("name, kwargs, word", [
    ("cosine", {"max_beta": 0.0}, "max_beta"), ("cosine", {"max_beta": 1.2}, "max_beta"),
    ("cosine", {"s": -1.0}, r"s \(the cosine offset\) must be >= 0"), ("sigmoid", {"tau": 0.0}, "tau"), ("sigmoid", {"start": 3, "end": -3}, "start"),
    ("cosine_chen", {"start": 0.9, "end": 0.1}, "start"), ("cosine_chen", {"tau": float("nan")}, "tau"),
    ("linear", {"input_scale": 0.0}, "input_scale"), ("linear", {"input_scale": float("inf")}, "input_scale"),
])
def test_bad_family_params(name, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_schedule(name, 10, **kwargs)


@pytest.mark.parametrize("betas", [[0.1, 0.0], [0.1, 1.01], [-0.2], [0.1, float("nan")], [np.inf], [], [[0.1]]])
def test_betas_outside_0_1(betas):
    with pytest.raises(ValueError, match="betas"):
        Schedule.from_betas(betas)


def test_schedule_constructor_checks():
    with pytest.raises(ValueError, match="betas"):
        Schedule(name="x", T=2, betas=np.array([0.0, 0.1]))                 # wrong length
    with pytest.raises(ValueError, match="betas"):
        Schedule(name="x", T=1, betas=np.array([0.1, 0.1]))                 # β_0 must be 0


@pytest.mark.parametrize("f", [gamma_linear, gamma_cosine, gamma_sigmoid])
@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan"), np.array([0.5, np.inf]), True])
def test_gamma_bad_t(f, t):
    with pytest.raises(ValueError, match=r"t must be (real numbers|finite and) in \[0, 1\]"):
        f(t)


@pytest.mark.parametrize("g", [1.5, -0.1, float("nan"), np.array([0.2, np.inf])])
def test_logsnr_bad_gamma(g):
    with pytest.raises(ValueError, match="gamma"):
        logsnr(g)


# ------------------------------------------------------------------ saturated and extreme parameters (issue 9)
def _gamma_sigmoid_mpmath(t, start, end, tau):
    """Chen's formula at 60 digits, where σ(48) and σ(64) are still different numbers (a test-only oracle)."""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 60
    sig = lambda x: 1 / (1 + mp.exp(-x))  # noqa: E731
    t, start, end, tau = (mp.mpf(v) for v in (t, start, end, tau))
    return float((sig(end / tau) - sig((t * (end - start) + start) / tau)) / (sig(end / tau) - sig(start / tau)))


def _gamma_cosine_mpmath(t, start, end, tau):
    """Chen's formula at 400 digits, enough to resolve cos^(2τ) − 1 ≈ 2τ·log cos for τ = 1e-310."""
    mp = pytest.importorskip("mpmath").mp
    mp.dps = 400
    t, start, end, tau = (mp.mpf(v) for v in (t, start, end, tau))
    # the float64 end = 1 gives cos(fl(π/2)) = 6.1e-17 in the code; use the same angle here
    v = lambda s: mp.cos(s * mp.mpf(float(np.pi)) / 2) ** (2 * tau)  # noqa: E731
    return float((v(end) - v(t * (end - start) + start)) / (v(end) - v(start)))


@pytest.mark.parametrize("t", [0.0, 0.1, 0.5, 0.9])
def test_gamma_sigmoid_where_the_sigmoid_saturates(t):
    """start/τ = 48, end/τ = 64: σ is 1.0 at both in float64 and the textbook form is 0/0.
    rel 1e-12: exp/log1p of arguments up to 64 carry ~64·1.1e-16 relative error."""
    got = gamma_sigmoid(t, 1.5, 2.0, 0.03125)
    assert got == pytest.approx(max(_gamma_sigmoid_mpmath(t, 1.5, 2.0, 0.03125), 1e-9), rel=1e-12)
    s = make_schedule("sigmoid", 100, start=1.5, end=2.0, tau=0.03125)
    assert np.all(np.isfinite(s.alpha_bars)) and np.all((s.betas[1:] > 0) & (s.betas[1:] <= 1))


@pytest.mark.parametrize("tau", [1e-310, 1e-300, 1e-8, 40.0])
@pytest.mark.parametrize("t", [0.25, 0.5, 0.75])
def test_gamma_cosine_with_tiny_and_large_tau(t, tau):
    """τ = 1e-310 made cos^(2τ) round to 1 at start and end (0/0). rel 1e-9 for normal τ (log/exp
    round trips of arguments below 40·75); 1e-6 for subnormal τ, whose 2τ·log cos keeps ~10 digits."""
    expected = max(_gamma_cosine_mpmath(t, 0.0, 1.0, tau), 1e-9)
    assert gamma_cosine(t, 0.0, 1.0, tau) == pytest.approx(expected, rel=1e-6 if tau < 2.3e-308 else 1e-9)


@pytest.mark.parametrize("call, complaint", [
    (lambda: gamma_sigmoid(0.5, 0.0, 1e-300, 1e30), r"gamma_sigmoid needs start/tau < end/tau, both finite"),
    (lambda: gamma_sigmoid(0.5, -1e300, 1e300, 1e-10), r"start/tau = -inf"),
    (lambda: gamma_cosine(0.5, 0.0, 1e-300, 1.0), r"cos\(start\*pi/2\)\^\(2\*tau\) and cos\(end\*pi/2\)\^\(2\*tau\) are equal"),
    (lambda: make_schedule("sigmoid", 1000, tau=0.01), r"schedule 'sigmoid' with T=1000 and start=-3.0, end=3.0, tau=0.01"),
    (lambda: make_schedule("linear", 10, beta_start=1e-300), r"beta_1 = 1e-300"),
])
def test_degenerate_parameters_raise_naming_them(call, complaint):
    with pytest.raises(ValueError, match=complaint):
        call()
