"""ddpm_ref.evaluate: the Fréchet digit distance orders real digits before noise; bits/dim is sane."""

import numpy as np
import pytest

from ddpm_ref import evaluate as ev
from ddpm_ref.data import load_digits_images
from ddpm_ref.schedules import make_schedule


def test_classifier_is_deterministic_and_accurate():
    a = ev.DigitClassifier(seed=0).fit(*load_digits_images("train", dtype="float64"), steps=50)
    b = ev.DigitClassifier(seed=0).fit(*load_digits_images("train", dtype="float64"), steps=50)
    assert np.array_equal(a.w1, b.w1) and np.array_equal(a.w2, b.w2)
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
    sched = make_schedule("linear", 100)
    x, _ = load_digits_images("test")
    zero = lambda xt, t: np.zeros_like(xt)                           # noqa: E731
    r = ev.bits_per_dim(zero, sched, x[:20], num_t=10, rng=0, progress=False)
    assert np.isfinite(r["bpd"]) and r["bpd"] > 0 and r["n"] == 20 and r["bpd_stderr"] >= 0
    again = ev.bits_per_dim(zero, sched, x[:20], num_t=10, rng=0, progress=False)
    assert again == r                                                 # the seed fixes the estimate
