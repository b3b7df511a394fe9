"""Forward and reverse process: each function against an independent route.

Monte Carlo tolerances are stated where they are used: 5 standard errors, so that a correct
implementation fails with probability well below 1e-5 per comparison (the seeds are fixed anyway).
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ddpm_ref.diffusion import (
    ddim_sigma,
    ddim_step,
    ddpm_step,
    loss_simple,
    loss_simple_grad,
    p_mean_variance,
    predict_x0,
    q_posterior,
    q_sample,
    q_step,
)
from ddpm_ref.schedules import make_schedule

LIN50 = make_schedule("linear", 50)
COS20 = make_schedule("cosine", 20)
SCALED = make_schedule("sigmoid", 30, input_scale=0.5)


# ------------------------------------------------------------------ forward process
@pytest.mark.parametrize("sched, t", [(LIN50, 1), (LIN50, 30), (COS20, 20), (SCALED, 17)])
def test_q_sample_matches_iterated_q_step(sched, t):
    """t Markov steps and the closed form give the same Gaussian (mean and variance, per dimension)."""
    rng = np.random.default_rng(1)
    n = 20000
    x0 = np.broadcast_to(np.array([-1.0, 0.3, 0.9]), (n, 3))
    x = x0.copy()
    for s in range(1, t + 1):
        x = q_step(sched, x, s, rng.standard_normal(x.shape))
    closed = q_sample(sched, x0, t, rng.standard_normal(x0.shape))
    mean = math.sqrt(sched.alpha_bars[t]) * sched.input_scale * x0[0]
    var = 1.0 - sched.alpha_bars[t]
    se_mean = math.sqrt(var / n)                      # standard error of a sample mean
    se_var = var * math.sqrt(2.0 / (n - 1))          # standard error of a Gaussian sample variance
    for sample in (x, closed):
        assert np.all(np.abs(sample.mean(0) - mean) < 5 * se_mean)
        assert np.all(np.abs(sample.var(0, ddof=1) - var) < 5 * se_var)
    # and the two samples against each other (difference of two independent estimates: √2·SE)
    assert np.all(np.abs(x.mean(0) - closed.mean(0)) < 5 * math.sqrt(2) * se_mean)
    assert np.all(np.abs(x.var(0, ddof=1) - closed.var(0, ddof=1)) < 5 * math.sqrt(2) * se_var)


def test_q_step_and_q_sample_formulas_with_t_array(rng):
    s = SCALED
    x = rng.standard_normal((4, 2, 3))
    e = rng.standard_normal((4, 2, 3))
    t = np.array([1, 5, 30, 2])
    out = q_sample(s, x, t, e)
    step = q_step(s, x, t, e)
    for i, ti in enumerate(t):
        ab = s.alpha_bars[ti]
        np.testing.assert_allclose(out[i], math.sqrt(ab) * 0.5 * x[i] + math.sqrt(1 - ab) * e[i], rtol=1e-13)
        b = 0.5 if ti == 1 else 1.0       # the data is scaled once, on entering the chain
        np.testing.assert_allclose(step[i], math.sqrt(1 - s.betas[ti]) * b * x[i] + math.sqrt(s.betas[ti]) * e[i],
                                   rtol=1e-13)
    assert np.array_equal(q_step(s, x, 1, e), q_sample(s, x, 1, e))


# ------------------------------------------------------------------ posterior
def _posterior_by_conditioning(sched, x0, xt, t):
    """q(x_{t−1} | x_t, x_0) from the joint Gaussian of (x_{t−1}, x_t) given x_0, with its covariance matrix."""
    ab_prev = sched.alpha_bars[t - 1]
    a, beta = sched.alphas[t], sched.betas[t]
    m1 = math.sqrt(ab_prev) * sched.input_scale * x0
    v = 1 - ab_prev
    cov = np.array([[v, math.sqrt(a) * v], [math.sqrt(a) * v, a * v + beta]])
    m2 = math.sqrt(a) * m1
    mean = m1 + cov[0, 1] / cov[1, 1] * (xt - m2)
    var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
    return mean, var


def _posterior_on_grid(sched, x0, xt, t):
    """The same posterior from Bayes' rule on a grid: q(x_t | x_{t−1}) · q(x_{t−1} | x_0), normalised numerically."""
    ab_prev = sched.alpha_bars[t - 1]
    m_prior, v_prior = math.sqrt(ab_prev) * sched.input_scale * x0, 1 - ab_prev
    sd = math.sqrt(min(v_prior, sched.betas[t]))
    grid = np.linspace(xt - 12, xt + 12, 400001) if sd > 1e-3 else None
    center = m_prior
    grid = np.linspace(center - 3, center + 3, 600001) if grid is None else grid
    log_p = (-(grid - m_prior) ** 2 / (2 * v_prior)
             - (xt - math.sqrt(sched.alphas[t]) * grid) ** 2 / (2 * sched.betas[t]))
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    mean = float((w * grid).sum())
    return mean, float((w * (grid - mean) ** 2).sum())


@pytest.mark.parametrize("sched", [LIN50, COS20, SCALED])
@pytest.mark.parametrize("t", [2, 3, 10, "T"])
def test_q_posterior_is_bayes_rule(sched, t):
    t = sched.T if t == "T" else t
    x0 = np.array([-0.7, 0.0, 1.0])
    xt = np.array([0.4, -1.3, 2.0])
    mean, var = q_posterior(sched, x0, xt, t)
    for i in range(3):
        m_c, v_c = _posterior_by_conditioning(sched, x0[i], xt[i], t)
        assert mean[i] == pytest.approx(m_c, rel=1e-10, abs=1e-12)
        assert var[i] == pytest.approx(v_c, rel=1e-9)
        m_g, v_g = _posterior_on_grid(sched, x0[i], xt[i], t)
        assert mean[i] == pytest.approx(m_g, rel=1e-5, abs=1e-6)
        assert var[i] == pytest.approx(v_g, rel=1e-4)


def test_q_posterior_at_t1_is_the_data(rng):
    x0 = rng.standard_normal((3, 4))
    xt = rng.standard_normal((3, 4))
    mean, var = q_posterior(SCALED, x0, xt, 1)
    np.testing.assert_allclose(mean, 0.5 * x0, rtol=1e-14)
    assert np.all(var == 0)


# ------------------------------------------------------------------ x̂_0 and p_θ
@pytest.mark.parametrize("sched", [LIN50, COS20, SCALED])
def test_predict_x0_inverts_q_sample(sched, rng):
    x0 = rng.uniform(-1, 1, (5, 3, 2, 2))
    eps = rng.standard_normal(x0.shape)
    t = np.array([1, 2, sched.T // 2, sched.T - 1, sched.T])
    xt = q_sample(sched, x0, t, eps)
    np.testing.assert_allclose(predict_x0(sched, xt, t, eps), x0, atol=1e-9 if sched is not COS20 else 1e-6)


@pytest.mark.parametrize("sched", [LIN50, COS20, SCALED])
def test_p_mean_variance(sched, rng):
    x0 = rng.uniform(-1, 1, (6, 4))
    eps = rng.standard_normal(x0.shape)
    t = np.array([1, 2, 3, 7, sched.T - 1, sched.T])
    xt = q_sample(sched, x0, t, eps)
    # with the true ε, μ_θ (eq. 11) is the posterior mean μ̃_t(x_t, x_0) (eq. 7)
    post_mean, post_var = q_posterior(sched, x0, xt, t)
    for variance, expected_var in (("fixed_small", sched.posterior_variance), ("fixed_large", sched.betas)):
        mean, var = p_mean_variance(sched, xt, t, eps, variance=variance)
        np.testing.assert_allclose(mean, post_mean, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(var, np.broadcast_to(expected_var[t][:, None], xt.shape), rtol=1e-14)
    np.testing.assert_allclose(p_mean_variance(sched, xt, t, eps)[1], post_var, rtol=1e-14)  # default: fixed_small
    # clip_x0: the mean is μ̃_t(x_t, clip(x̂_0)); with x̂_0 far outside [−1, 1], clipping matters
    eps_bad = eps + 3.0
    x0_hat = predict_x0(sched, xt, t, eps_bad)
    assert np.any(np.abs(x0_hat) > 1)
    mean_c, _ = p_mean_variance(sched, xt, t, eps_bad, clip_x0=True)
    expected, _ = q_posterior(sched, np.clip(x0_hat, -1, 1), xt, t)
    np.testing.assert_allclose(mean_c, expected, rtol=1e-8, atol=1e-8)


def test_ddpm_step_adds_no_noise_at_t1(rng):
    x = rng.standard_normal((3, 5))
    eps = rng.standard_normal(x.shape)
    z1, z2 = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
    for variance in ("fixed_small", "fixed_large"):
        a = ddpm_step(LIN50, x, 1, eps, z1, variance=variance)
        assert np.array_equal(a, ddpm_step(LIN50, x, 1, eps, z2, variance=variance))
        assert np.array_equal(a, ddpm_step(LIN50, x, 1, eps, None, variance=variance))
        np.testing.assert_allclose(a, p_mean_variance(LIN50, x, 1, eps, variance=variance)[0], rtol=1e-15)
    # mixed batch: the t = 1 rows ignore z, the others add σ_t z (Algorithm 2)
    t = np.array([1, 2, 50])
    out = ddpm_step(LIN50, x, t, eps, z1, variance="fixed_large")
    mean, var = p_mean_variance(LIN50, x, t, eps, variance="fixed_large")
    np.testing.assert_allclose(out[0], mean[0], rtol=1e-15)
    np.testing.assert_allclose(out[1:], mean[1:] + np.sqrt(var[1:]) * z1[1:], rtol=1e-14)
    # Algorithm 2 written out for one row
    ti = 50
    expected = (x[2] - LIN50.betas[ti] / math.sqrt(1 - LIN50.alpha_bars[ti]) * eps[2]) / math.sqrt(LIN50.alphas[ti]) \
        + math.sqrt(LIN50.betas[ti]) * z1[2]
    np.testing.assert_allclose(out[2], expected, rtol=1e-13)


# ------------------------------------------------------------------ DDIM
def test_ddim_eta0_is_deterministic(rng):
    x = rng.standard_normal((4, 3))
    eps = rng.standard_normal(x.shape)
    a = ddim_step(COS20, x, 10, 5, eps)
    assert np.array_equal(a, ddim_step(COS20, x, 10, 5, eps, eta=0.0, z=rng.standard_normal(x.shape)))
    # eq. 12 with σ = 0, written out
    ab_t, ab_p = COS20.alpha_bars[10], COS20.alpha_bars[5]
    x0_hat = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    np.testing.assert_allclose(a, math.sqrt(ab_p) * x0_hat + math.sqrt(1 - ab_p) * eps, rtol=1e-12)


@pytest.mark.parametrize("sched", [LIN50, COS20, SCALED])
def test_ddim_eta1_is_ddpm_on_the_full_schedule(sched, rng):
    """Song et al. 2021, sec. 4.1: η = 1 with t_prev = t − 1 gives σ_t² = β̃_t, i.e. DDPM with fixed_small."""
    t = np.arange(2, sched.T + 1)
    x = rng.standard_normal((t.size, 3))
    eps = rng.standard_normal(x.shape)
    z = rng.standard_normal(x.shape)
    np.testing.assert_allclose(ddim_sigma(sched, t, t - 1, eta=1.0) ** 2, sched.posterior_variance[t], rtol=1e-10)
    np.testing.assert_allclose(ddim_step(sched, x, t, t - 1, eps, eta=1.0, z=z),
                               ddpm_step(sched, x, t, eps, z, variance="fixed_small"), rtol=1e-9, atol=1e-10)


def test_ddim_t_prev_0_uses_alpha_bar_1(rng):
    x = rng.standard_normal((3, 2))
    eps = rng.standard_normal(x.shape)
    for eta in (0.0, 1.0):
        out = ddim_step(SCALED, x, np.array([1, 9, 30]), np.array([0, 0, 0]), eps, eta=eta, z=rng.standard_normal(x.shape))
        # ᾱ_0 = 1: the step returns the predicted (b·)x_0, with no noise
        np.testing.assert_allclose(out / 0.5, predict_x0(SCALED, x, np.array([1, 9, 30]), eps), rtol=1e-12)
    assert ddim_sigma(SCALED, 9, 0, eta=1.0) == 0.0


# ------------------------------------------------------------------ L_simple
def test_loss_simple_and_its_gradient_by_finite_differences(rng):
    eps = rng.standard_normal((2, 3, 4))
    pred = rng.standard_normal((2, 3, 4))
    assert loss_simple(eps, pred) == pytest.approx(float(np.mean((eps - pred) ** 2)), rel=1e-14)
    g = loss_simple_grad(eps, pred)
    h = 1e-6
    num = np.empty_like(pred)
    for idx in np.ndindex(pred.shape):
        p, m = pred.copy(), pred.copy()
        p[idx] += h
        m[idx] -= h
        num[idx] = (loss_simple(eps, p) - loss_simple(eps, m)) / (2 * h)    # centred differences
    rel = np.max(np.abs(num - g)) / np.max(np.abs(g))
    assert rel < 1e-7, rel
    assert loss_simple_grad(eps.astype(np.float32), pred.astype(np.float32)).dtype == np.float32


# ------------------------------------------------------------------ properties over shapes, dtypes, t
@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]),
       trailing=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4), n=st.integers(1, 5),
       as_array=st.booleans())
def test_property_shapes_dtypes_and_t(data, dtype, trailing, n, as_array):
    sched = COS20
    shape = (n, *trailing)
    elems = st.floats(-3, 3, width=32)
    x0 = data.draw(hnp.arrays(dtype, shape, elements=elems))
    eps = data.draw(hnp.arrays(dtype, shape, elements=elems))
    z = data.draw(hnp.arrays(dtype, shape, elements=elems))
    if as_array:
        t = np.array(data.draw(st.lists(st.integers(1, sched.T), min_size=n, max_size=n)))
    else:
        t = data.draw(st.integers(1, sched.T))
    xt = q_sample(sched, x0, t, eps)
    results = [xt, q_step(sched, x0, t, eps), *q_posterior(sched, x0, xt, t), predict_x0(sched, xt, t, eps),
               *p_mean_variance(sched, xt, t, eps, variance="fixed_large"), ddpm_step(sched, xt, t, eps, z),
               ddim_step(sched, xt, t, np.maximum(np.asarray(t) - 3, 0), eps, eta=0.5, z=z)]
    for r in results:
        assert r.shape == shape and r.dtype == dtype
        assert np.all(np.isfinite(r))
    # predict_x0 inverts q_sample within the dtype's precision (amplified by 1/√ᾱ_t)
    tol = (1e-4 if dtype == np.float32 else 1e-10) / math.sqrt(sched.alpha_bars[np.max(t)])
    np.testing.assert_allclose(results[4], x0, atol=tol * 10)
    # a float64 anywhere makes the result float64
    assert q_sample(sched, x0.astype(np.float32), t, eps.astype(np.float64)).dtype == np.float64


def test_per_example_t_matches_scalar_t(rng):
    x0 = rng.standard_normal((3, 2, 2))
    eps = rng.standard_normal(x0.shape)
    t = np.array([4, 11, 20])
    batched = q_sample(COS20, x0, t, eps)
    for i, ti in enumerate(t):                          # eq. 4 row by row, with Python's math
        ab = float(COS20.alpha_bars[ti])
        np.testing.assert_allclose(batched[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * eps[i], rtol=1e-13, atol=1e-15)
    ab4 = float(COS20.alpha_bars[4])
    np.testing.assert_allclose(q_sample(COS20, x0, np.int64(4), eps), math.sqrt(ab4) * x0 + math.sqrt(1 - ab4) * eps,
                               rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------ bad input
X = np.zeros((2, 3))
NAN = np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]])
INF = np.array([[0.0, 0.0, np.inf], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("t", [0, 51, -1, np.array([1, 51]), np.array([0, 3])])
def test_t_outside_1_T(t):
    with pytest.raises(ValueError, match=r"t(=-?\d+ is| has values in -?\d+\.\.\d+,) outside 1\.\.50 \(timesteps follow the paper"):
        q_sample(LIN50, X, t, X)


@pytest.mark.parametrize("t", [2.0, 2.5, np.array([1.0, 2.0]), "3", None, True, np.array([[1, 2]])])
def test_t_not_integer(t):
    with pytest.raises(ValueError, match=r"t must be an (integer in 1\.\.50, got a boolean|integer or an integer array|int or a 1-D int array)"):
        q_sample(LIN50, X, t, X)


@pytest.mark.parametrize("call", [
    lambda: q_sample(LIN50, X, 3, np.zeros((2, 4))),
    lambda: q_step(LIN50, X, 3, np.zeros((3, 3))),
    lambda: q_posterior(LIN50, X, np.zeros(3), 3),
    lambda: predict_x0(LIN50, X, 3, np.zeros((2, 3, 1))),
    lambda: ddpm_step(LIN50, X, 3, X, np.zeros((2, 2))),
    lambda: ddim_step(LIN50, X, 3, 1, X, eta=1.0, z=np.zeros((1, 3))),
    lambda: loss_simple(X, np.zeros((3, 2))),
])
def test_mismatched_shapes(call):
    with pytest.raises(ValueError, match="shapes must match: "):
        call()


def test_t_array_must_match_the_batch():
    with pytest.raises(ValueError, match=r"t has 3 timesteps but the images has shape \(2, 3\)"):
        q_sample(LIN50, X, np.array([1, 2, 3]), X)
    with pytest.raises(ValueError, match=r"t_prev has 3 timesteps but the images has shape \(2, 3\)"):
        ddim_step(LIN50, X, np.array([5, 5]), np.array([1, 2, 3]), X)


@pytest.mark.parametrize("bad", [NAN, INF])
@pytest.mark.parametrize("fn, names", [
    (lambda b: q_sample(LIN50, b, 3, X), "x0"), (lambda b: q_sample(LIN50, X, 3, b), "noise"),
    (lambda b: q_step(LIN50, b, 3, X), "x_prev"), (lambda b: q_posterior(LIN50, X, b, 3), "xt"),
    (lambda b: predict_x0(LIN50, X, 3, b), "eps"), (lambda b: p_mean_variance(LIN50, b, 3, X), "xt"),
    (lambda b: ddpm_step(LIN50, X, 3, X, b), "z"), (lambda b: ddim_step(LIN50, X, 3, 1, b), "eps"),
    (lambda b: loss_simple(X, b), "eps_pred"), (lambda b: loss_simple_grad(b, X), "eps"),
])
def test_nan_and_inf_inputs(bad, fn, names):
    with pytest.raises(ValueError, match=f"^{names} holds 1 NaN or infinite value"):
        fn(bad)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="variance") as e:
        p_mean_variance(LIN50, X, 3, X, variance="learned")
    assert "fixed_small" in str(e.value) and "fixed_large" in str(e.value)
    with pytest.raises(ValueError, match="variance='large' is not known"):
        ddpm_step(LIN50, X, 3, X, X, variance="large")
    with pytest.raises(ValueError, match="sched must be a Schedule"):
        q_sample("linear", X, 3, X)
    with pytest.raises(ValueError, match=r"z \(the noise of Algorithm 2\) must be given where t > 1"):
        ddpm_step(LIN50, X, 3, X, None)             # noise is needed where t > 1
    with pytest.raises(ValueError, match="t_prev must be smaller than t"):
        ddim_step(LIN50, X, 3, 3, X)
    with pytest.raises(ValueError, match=r"t_prev=-1 is outside 0\.\.50"):
        ddim_step(LIN50, X, 3, -1, X)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        ddim_step(LIN50, X, 3, 1, X, eta=-0.5)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        ddim_step(LIN50, X, 3, 1, X, eta=float("nan"))
    with pytest.raises(ValueError, match="z must be given when eta > 0"):
        ddim_step(LIN50, X, 3, 1, X, eta=1.0)
    with pytest.raises(ValueError, match="eps and eps_pred are empty"):
        loss_simple(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="x0 must be a numeric array"):
        q_sample(LIN50, np.array([["a", "b", "c"]] * 2), 3, X)
    with pytest.raises(ValueError, match=r"noise must be real \(float32 or float64\), got dtype complex128"):
        q_sample(LIN50, X, 3, X + 1j)               # the imaginary part must not be dropped silently
    with pytest.raises(ValueError, match="eps must be float32 or float64, got float16"):
        predict_x0(LIN50, X, 3, X.astype(np.float16))


def test_float32_is_computed_in_float64_for_int_and_array_t(rng):
    """The same float32 result whether t is an int or an array: the coefficients are float64 either way."""
    x0 = rng.standard_normal((3, 5)).astype(np.float32)
    eps = rng.standard_normal((3, 5)).astype(np.float32)
    t_arr = np.full(3, 13)
    for fn in (lambda t: q_sample(COS20, x0, t, eps), lambda t: q_step(COS20, x0, t, eps),
               lambda t: predict_x0(COS20, x0, t, eps), lambda t: q_posterior(COS20, x0, eps, t)[0],
               lambda t: p_mean_variance(COS20, x0, t, eps)[0], lambda t: ddpm_step(COS20, x0, t, eps, eps),
               lambda t: ddim_step(COS20, x0, t, 4 if np.isscalar(t) else np.full(3, 4), eps, eta=0.3, z=eps)):
        a, b = fn(13), fn(t_arr)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    # and equal to eq. 4 computed in float64 (the same operations, in the same order) and rounded once
    ab = float(COS20.alpha_bars[13])
    exact = (math.sqrt(ab) * x0.astype(np.float64) + math.sqrt(1.0 - ab) * eps.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(q_sample(COS20, x0, 13, eps), exact)


# ------------------------------------------------------------------ results beyond the dtype's range (issue 9)
def test_loss_simple_large_but_finite_values():
    """One difference of 1e155 among 10 000 elements: d² = 1e310 overflows, the mean 1e306 does not.
    Expected value from exact rational arithmetic (fractions), which has no range limit; rel 1e-15 is
    a few roundings of the scaled form."""
    from fractions import Fraction

    eps = np.zeros(10_000)
    pred = np.full(10_000, 0.5)
    pred[0] = 1e155
    exact = sum(Fraction(float(v)) ** 2 for v in pred - eps) / pred.size
    assert loss_simple(eps, pred) == pytest.approx(float(exact), rel=1e-15)
    grad = loss_simple_grad(eps, pred)
    assert grad[0] == pytest.approx(2e155 / 1e4, rel=1e-15) and grad[1] == pytest.approx(2 * 0.5 / 1e4, rel=1e-15)
    with pytest.raises(ValueError, match="loss_simple: the result exceeds the range of float64 for these eps, eps_pred"):
        loss_simple(np.zeros(1), np.array([1e155]))             # 1e310 is not a float64


def test_float32_results_beyond_float32_raise():
    big = np.full((2, 3), -3e38, dtype=np.float32)                 # finite float32; √ᾱ + √(1−ᾱ) > 1 makes x_t < −3.4e38
    with pytest.raises(ValueError, match="q_sample: the result exceeds the range of float32 for these x0, noise.*float64"):
        q_sample(LIN50, big, 25, big)
    out = q_sample(LIN50, big.astype(np.float64), 25, big.astype(np.float64))   # float64 holds it
    ab = float(LIN50.alpha_bars[25])
    np.testing.assert_allclose(out, -3e38 * (math.sqrt(ab) + math.sqrt(1 - ab)), rtol=1e-7)   # 3e38 is 3.0000000054977558e38 in float32
