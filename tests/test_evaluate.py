"""ddpm_ref.evaluation: the Fréchet digit distance orders real digits before noise; bits/dim is sane."""

import numpy as np
import pytest

from ddpm_ref import evaluation as ev
from ddpm_ref.data import load_digits_images
from ddpm_ref.schedules import make_schedule


def test_classifier_is_deterministic_and_accurate():
    a = ev.DigitClassifier(seed=0).fit(*load_digits_images("train", dtype="float64"), steps=50)
    b = ev.DigitClassifier(seed=0).fit(*load_digits_images("train", dtype="float64"), steps=50)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    x, y = load_digits_images("test")
    assert ev.label_accuracy(x, y) > 0.9


def test_frechet_distance_closed_forms(rng):
    mu, a = rng.standard_normal(4), rng.standard_normal((4, 4))
    cov = a @ a.T + np.eye(4)
    assert abs(ev.frechet_distance(mu, cov, mu, cov)) < 1e-9
    # 1-D: (μ1 − μ2)² + (σ1 − σ2)²
    d = ev.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([0.0]), np.array([[1.0]]))
    assert abs(d - (1 + 1)) < 1e-12
    # commuting (diagonal) covariances: Σ (√a − √b)²
    d = ev.frechet_distance(np.zeros(2), np.diag([1.0, 9.0]), np.zeros(2), np.diag([4.0, 1.0]))
    assert abs(d - (1 + 4)) < 1e-12


def test_score_orders_real_before_degraded_before_noise():
    x, _ = load_digits_images("test")
    b = ev.baselines()
    noisy = x + 0.5 * np.random.default_rng(0).standard_normal(x.shape)
    assert b["fdd_test_digits"] < ev.fdd(noisy) < b["fdd_noise"]
    assert b["fdd_test_digits"] < 1.0 and b["fdd_noise"] > 5.0
    with pytest.raises(ValueError):
        ev.fdd(x[:1])


def test_bits_per_dim_of_a_zero_eps_model():
    """bits_per_dim (an estimate from num_t of the T timesteps, batched) must agree with the exact
    per-example sum of every term (``vlb_terms``, checked term by term in test_elbo.py), within the
    Monte Carlo error of the two estimates (both draw x_t at random): 5 standard errors."""
    from ddpm_ref.elbo import vlb_terms

    sched = make_schedule("linear", 100)
    x, _ = load_digits_images("test")
    x = x[:40]
    zero = lambda xt, t: np.zeros_like(xt)                           # noqa: E731
    r = ev.bits_per_dim(zero, sched, x, num_t=10, rng=0, batch_size=16, progress=False)
    assert r["n"] == 40 and r["num_t"] == 10
    full = vlb_terms(sched, zero, x, rng=1)["total_bpd"]
    se = np.hypot(r["bpd_stderr"], full.std(ddof=1) / np.sqrt(len(full)))
    assert abs(r["bpd"] - full.mean()) < 5 * se, (r, full.mean(), se)
    assert r["bpd"] > 5.0                     # an untrained model is far from the data (about 20)
    again = ev.bits_per_dim(zero, sched, x, num_t=10, rng=0, batch_size=16, progress=False)
    assert again == r                                                 # the seed fixes the estimate


def test_bits_per_dim_of_a_learned_variance_model_at_its_ends():
    """A model with learned variances whose v_σ is 0 everywhere has Σ_θ = β̃_t (eq. 15), and one whose
    v_σ is 1 has Σ_θ = β_t: its bound must agree with the fixed-variance bound ("fixed_small",
    "fixed_large"), computed by ddpm_ref.elbo, within the Monte Carlo error of the two estimates."""
    sched = make_schedule("linear", 50)
    x, _ = load_digits_images("test")
    x = x[:40]
    eps_hat = lambda xt: 0.3 * xt                                                 # noqa: E731
    for v, variance in ((0.0, "fixed_small"), (1.0, "fixed_large")):
        learned = lambda xt, t: np.concatenate([eps_hat(xt), np.full_like(xt, v)], axis=1)   # noqa: E731
        a = ev.bits_per_dim(learned, sched, x, num_t=50, rng=0, progress=False, learn_sigma=True)
        b = ev.bits_per_dim(lambda xt, t: eps_hat(xt), sched, x, num_t=50, rng=1, variance=variance,
                            progress=False)
        se = np.hypot(a["bpd_stderr"], b["bpd_stderr"])
        assert abs(a["bpd"] - b["bpd"]) < 5 * se, (variance, a, b)
    # and the two ends differ: the test would see a model that ignored v_σ
    small = ev.bits_per_dim(lambda xt, t: np.concatenate([eps_hat(xt), np.zeros_like(xt)], 1), sched, x,
                            num_t=50, rng=0, progress=False, learn_sigma=True)
    large = ev.bits_per_dim(lambda xt, t: np.concatenate([eps_hat(xt), np.ones_like(xt)], 1), sched, x,
                            num_t=50, rng=0, progress=False, learn_sigma=True)
    assert abs(small["bpd"] - large["bpd"]) > 10 * np.hypot(small["bpd_stderr"], large["bpd_stderr"])


def test_evaluate_ddpm_steps_bad_inputs_exit_2(capsys):
    from ddpm_ref.cli import main

    assert main(["evaluate", "--sampler", "ddim", "--ddpm-steps", "10", "--run-dir", "no/such/run"]) == 2
    assert "--ddpm-steps respaces DDPM" in capsys.readouterr().err
    assert main(["evaluate", "--sampler", "ddpm", "--ddpm-steps", "0", "--run-dir", "no/such/run"]) == 2
    assert "--ddpm-steps" in capsys.readouterr().err
