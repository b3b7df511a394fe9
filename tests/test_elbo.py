"""The variational bound in bits/dim: each term recomputed by hand, the terms add up, the estimate is unbiased."""

import math

import numpy as np
import pytest

from ddpm_ref.diffusion import q_sample
from ddpm_ref.elbo import prior_bpd, vb_term_bpd, vlb_estimate, vlb_terms
from ddpm_ref.schedules import make_schedule

LN2 = math.log(2)
GRID = np.arange(256) / 255 * 2 - 1


def _x0(rng, shape):
    return GRID[rng.integers(0, 256, shape)]


def _kl_scalar(m1, v1, m2, v2):
    """KL(N(m1, v1) ‖ N(m2, v2)) for scalars, written from log densities."""
    return 0.5 * math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5


def test_prior_bpd_tiny_for_linear_1000_not_for_linear_50(rng):
    x0 = _x0(rng, (4, 3, 5, 5))
    p1000 = prior_bpd(make_schedule("linear", 1000), x0)
    p50 = prior_bpd(make_schedule("linear", 50), x0)
    assert p1000.shape == (4,) and p1000.dtype == np.float64
    assert np.all(p1000 < 1e-4) and np.all(p1000 > 0)
    assert np.all(p50 > 0.1)                                # ᾱ_50 ≈ 0.6: x_T still holds most of x_0
    # by hand: KL(N(√ᾱ_T x, 1 − ᾱ_T) ‖ N(0, 1)) averaged over the dims, in bits
    s = make_schedule("linear", 50)
    ab = s.alpha_bars[50]
    for i in range(4):
        kls = [_kl_scalar(math.sqrt(ab) * v, 1 - ab, 0.0, 1.0) for v in x0[i].ravel()]
        assert p50[i] == pytest.approx(np.mean(kls) / LN2, rel=1e-12)
    # Chen's input scale shrinks x_0 before the chain
    half = prior_bpd(make_schedule("linear", 50, input_scale=0.5), x0)
    assert np.all(half < p50)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_vb_term_for_t_ge_2_by_hand(variance, rng):
    s = make_schedule("cosine", 30, input_scale=0.8)
    x0 = _x0(rng, (3, 2, 2))
    noise = rng.standard_normal(x0.shape)
    eps = rng.standard_normal(x0.shape)                    # a wrong ε-model
    t = np.array([2, 11, 30])
    xt = q_sample(s, x0, t, noise)
    out = vb_term_bpd(s, x0, xt, t, eps, variance=variance)
    for i, ti in enumerate(t):
        ab, ab_prev, a, beta = s.alpha_bars[ti], s.alpha_bars[ti - 1], s.alphas[ti], s.betas[ti]
        post_var = (1 - ab_prev) / (1 - ab) * beta
        model_var = post_var if variance == "fixed_small" else beta
        kls = []
        for x, y, e in zip(x0[i].ravel(), xt[i].ravel(), eps[i].ravel()):
            post_mean = (math.sqrt(ab_prev) * beta * 0.8 * x + math.sqrt(a) * (1 - ab_prev) * y) / (1 - ab)
            model_mean = (y - beta / math.sqrt(1 - ab) * e) / math.sqrt(a)        # eq. 11
            kls.append(_kl_scalar(post_mean, post_var, model_mean, model_var))
        assert out[i] == pytest.approx(np.mean(kls) / LN2, rel=1e-9)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_decoder_term_at_t1_by_hand(variance, rng):
    s = make_schedule("linear", 100)
    x0 = _x0(rng, (2, 6))
    x0[0, 0], x0[1, 0] = -1.0, 1.0                          # the edge bins extend to ±∞
    eps = 0.3 * rng.standard_normal(x0.shape)
    xt = q_sample(s, x0, 1, rng.standard_normal(x0.shape))
    out = vb_term_bpd(s, x0, xt, 1, eps, variance=variance)
    sigma = math.sqrt(s.posterior_variance[2])              # β̃_2 for both variance choices
    x0_hat = (xt - math.sqrt(1 - s.alpha_bars[1]) * eps) / math.sqrt(s.alpha_bars[1])

    def cdf(u):
        return 0.5 * math.erfc(-u / math.sqrt(2))

    for i in range(2):
        nll = []
        for x, m in zip(x0[i], x0_hat[i]):
            hi = 1.0 if x > 0.999 else cdf((x + 1 / 255 - m) / sigma)
            lo = 0.0 if x < -0.999 else cdf((x - 1 / 255 - m) / sigma)
            nll.append(-math.log(hi - lo))
        assert out[i] == pytest.approx(np.mean(nll) / LN2, rel=1e-9)


def _oracle_for_one_point(sched, x0):
    """The exact ε for data that is a single point x_0: ε = (x_t − √ᾱ_t·b·x_0)/√(1 − ᾱ_t)."""
    def eps_model(xt, t):
        assert t.shape == (xt.shape[0],) and t.dtype.kind == "i"
        c = sched.sqrt_alpha_bars[t].reshape(-1, *[1] * (xt.ndim - 1)) * sched.input_scale
        return (xt - c * x0) / sched.sqrt_one_minus_alpha_bars[t].reshape(-1, *[1] * (xt.ndim - 1))
    return eps_model


def test_vlb_terms_add_up_and_vanish_for_the_exact_model(rng):
    s = make_schedule("linear", 40)
    x0 = _x0(rng, (3, 2, 3))
    terms = vlb_terms(s, _oracle_for_one_point(s, x0), x0, rng)
    assert terms["prior_bpd"].shape == (3,) and terms["vb_bpd"].shape == (3, 40) and terms["total_bpd"].shape == (3,)
    np.testing.assert_allclose(terms["total_bpd"], terms["prior_bpd"] + terms["vb_bpd"].sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(terms["prior_bpd"], prior_bpd(s, x0), rtol=1e-14)
    # the exact ε makes μ_θ = μ̃_t and, with σ² = β̃_t, every KL L_{t−1} (t ≥ 2) zero
    np.testing.assert_allclose(terms["vb_bpd"][:, 1:], 0.0, atol=1e-9)
    assert np.all(terms["vb_bpd"][:, 0] > 0)                # L_0: the decoder still spreads over bins
    np.testing.assert_allclose(terms["mse"], 0.0, atol=1e-18)


def test_vlb_terms_with_a_wrong_model_and_float32(rng):
    s = make_schedule("cosine", 12)
    x0 = _x0(rng, (2, 4)).astype(np.float32)
    terms = vlb_terms(s, lambda xt, t: 0.5 * xt, x0, 7, variance="fixed_large")
    for key in ("prior_bpd", "vb_bpd", "total_bpd", "mse"):
        assert terms[key].dtype == np.float64 and np.all(np.isfinite(terms[key]))
    assert np.all(terms["vb_bpd"] >= 0)
    np.testing.assert_allclose(terms["total_bpd"], terms["prior_bpd"] + terms["vb_bpd"].sum(axis=1), rtol=1e-14)
    again = vlb_terms(s, lambda xt, t: 0.5 * xt, x0, 7, variance="fixed_large")
    np.testing.assert_array_equal(terms["total_bpd"], again["total_bpd"])      # a seed fixes every draw


def test_vlb_estimate_is_unbiased():
    """mean of many 2-of-12-timestep estimates ≈ mean of many full sums; tolerance 5 combined standard errors."""
    s = make_schedule("linear", 12)
    rng = np.random.default_rng(5)
    x0 = _x0(rng, (3, 4))
    model = lambda xt, t: 0.3 * xt + 0.01 * t[:, None]  # noqa: E731  a deliberately poor ε-model
    est = np.array([vlb_estimate(s, model, x0, rng, num_t=2) for _ in range(600)])
    full = np.array([vlb_terms(s, model, x0, rng)["total_bpd"] for _ in range(100)])
    se = np.sqrt(est.var(0, ddof=1) / len(est) + full.var(0, ddof=1) / len(full))
    assert np.all(np.abs(est.mean(0) - full.mean(0)) < 5 * se), (est.mean(0), full.mean(0), se)
    assert np.all(est.std(0) > 0)                           # it really is random, and the test not trivial


def test_vlb_estimate_with_all_timesteps_is_the_full_sum(rng):
    s = make_schedule("linear", 15)
    x0 = _x0(rng, (2, 3))
    model = _oracle_for_one_point(s, x0)                    # every term deterministic for this model
    est = vlb_estimate(s, model, x0, 1, num_t=15, return_terms=True)
    full = vlb_terms(s, model, x0, 2)
    np.testing.assert_array_equal(est["t"], np.arange(1, 16))
    np.testing.assert_allclose(est["total_bpd"], full["total_bpd"], rtol=1e-12)


# ------------------------------------------------------------------ bad input
def test_bad_input(rng):
    s = make_schedule("linear", 10)
    x0 = _x0(rng, (2, 3))
    good = lambda xt, t: np.zeros_like(xt)  # noqa: E731
    cases = [
        (lambda: vlb_terms(s, lambda xt, t: np.zeros((2, 4)), x0, rng), r"eps_model returned shape \(2, 4\)"),
        (lambda: vlb_terms(s, lambda xt, t: np.full_like(xt, np.nan), x0, rng), r"eps_model\(xt, t\) holds 6 NaN"),
        (lambda: vlb_terms(s, "model", x0, rng), "eps_model must be callable"),
        (lambda: vlb_terms(s, good, x0, rng=0.5), "rng must be a numpy.random.Generator or a seed"),
        (lambda: vlb_estimate(s, good, x0, rng, num_t=11), r"num_t must be in 1\.\.T = 1\.\.10, got 11"),
        (lambda: vlb_estimate(s, good, x0, rng, num_t=0), "num_t must be an integer >= 1, got 0"),
        (lambda: vlb_terms(s, good, x0, rng, variance="learned"), "variance='learned' is not known"),
        (lambda: prior_bpd(s, np.array([[0.0, np.inf]])), "x0 holds 1 NaN or infinite"),
        (lambda: prior_bpd(s, np.float64(0.5)), "x0 must have a leading batch axis"),          # no batch axis
        (lambda: vb_term_bpd(s, np.full((2, 3), 1.5), x0, 1, x0), r"x0 must lie in \[-1, 1\]"),
        (lambda: vb_term_bpd(s, x0, x0, 11, x0), r"t=11 is outside 1\.\.10"),
        (lambda: vb_term_bpd(s, x0, x0, np.array([1.0, 2.0]), x0), "t must be an integer or an integer array"),
        (lambda: vb_term_bpd(s, x0, x0, 2, np.zeros((2, 2))), r"shapes must match: x0 \(2, 3\), xt \(2, 3\), eps \(2, 2\)"),
        (lambda: vb_term_bpd(s, x0, x0, 2, np.full((2, 3), np.nan)), "eps holds 6 NaN"),
    ]
    for call, complaint in cases:
        with pytest.raises(ValueError, match=complaint):
            call()


def test_terms_beyond_float64_raise_naming_the_arguments():
    s = make_schedule("linear", 10)
    x0 = np.zeros((2, 3))
    for t in (1, 5):                        # the decoder term and a KL term
        with pytest.raises(ValueError, match=r"vb_term_bpd: no finite result for these x0, xt, eps \(normal_kl: "):
            vb_term_bpd(s, x0, x0, t, np.full((2, 3), 1e300))
    with pytest.raises(ValueError, match="prior_bpd: no finite result for these x0"):
        prior_bpd(s, np.full((2, 3), 1e300))
    with pytest.raises(ValueError, match=r"vlb_terms: no finite result for these x0, eps_model \(vb_term_bpd: "):
        vlb_terms(s, lambda xt, t: np.full_like(xt, 1e300), x0, 0)


@pytest.mark.parametrize("shape", [(2, 0), (3, 0, 4), (0, 3)])
def test_zero_size_images_raise_instead_of_nan(shape):
    """issue 9: bits/dim of an image with no values was 0/0 = NaN; now a ValueError naming x0."""
    s = make_schedule("linear", 5)
    x0 = np.zeros(shape)
    model = lambda xt, t: np.zeros_like(xt)  # noqa: E731
    complaint = "x0 has no values per example" if shape[0] else "x0 must have a leading batch axis with at least one"
    for call in (lambda: prior_bpd(s, x0), lambda: vb_term_bpd(s, x0, x0, 1, x0), lambda: vlb_terms(s, model, x0, 0),
                 lambda: vlb_estimate(s, model, x0, 0, num_t=2)):
        with pytest.raises(ValueError, match=complaint):
            call()


def test_no_import_cycle_and_no_private_names_across_math_modules():
    """diffusion must not import elbo (elbo builds on diffusion); a private name crosses modules only
    from the helper modules made for that (_checks, _math_checks)."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, ddpm_ref.diffusion; print('ddpm_ref.elbo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False", out
    root = Path(__file__).resolve().parents[1] / "ddpm_ref"
    for name in ("schedules", "diffusion", "elbo", "likelihood", "embeddings", "_math_checks"):
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddpm_ref"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private or node.module in ("ddpm_ref._checks", "ddpm_ref._math_checks"), (name, node.module, private)
                if name == "diffusion":
                    assert node.module != "ddpm_ref.elbo"
    import ddpm_ref.diffusion as diffusion

    with pytest.raises(AttributeError):
        diffusion.vlb_terms  # noqa: B018   the bound is imported from ddpm_ref.elbo only
