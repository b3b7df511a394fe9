"""Classifier guidance (ddpm_ref.guidance) checked exactly on a Gaussian mixture (ddpm_ref.data.gmm_exact).

Independent routes:
* the closed-form ∇ log p(y | x_t) against centred differences of log p(y | x_t);
* Algorithm 2's ε̂ − √(1 − ᾱ_t)·∇log p(y | x_t) at s = 1 against the conditional optimal ε that
  gmm.py computes from the class's own mixture (Bayes' rule on another path: no classifier);
* the guided samplers against the class-conditional mixture's parameters, by Monte Carlo.

Monte Carlo bounds (n samples in the class, n_k of them in component k, s_k its std):
* component weight w_k within the class: binomial standard error √(w(1 − w)/n);
* each coordinate of the mean: s_k/√n_k;
* each coordinate's variance: the sample variance of a Gaussian has standard error s_k²·√(2/(n_k − 1));
* the covariance of the two (independent) coordinates: s_k²/√n_k.
Each check allows 4 standard errors (a false alarm has probability ≈ 6e-5 per check, ≈ 2e-3 over
the ~30 checks; the seeds are fixed, so a pass is repeatable) plus, for the second moments, a
sampler-discretisation allowance: 0.08 relative on the variance and 0.005 absolute on the mean.
Those allowances are what the *unguided* exact sampler (sample_ddpm with the exact denoiser, same
mixture, T = 250 cosine, σ_t² = β_t, 16 000 samples) needs: measured, its variances are 1-7% too
large (σ_t² = β̃_t: 5-13% too small, hence β_t here) and its means off by at most 0.004. A wrong
guidance term moves a weight by ≥ 0.2 or puts samples in the other class (planted bugs: a sign
flip in the mean shift, √ᾱ_t for √(1 − ᾱ_t), a gradient without the −Σ r_k term; each fails here).
"""

import time

import numpy as np
import pytest

from ddpm_ref.data.gmm import GaussianMixture, default_gmm
from ddpm_ref.data.gmm_exact import (
    class_conditional, class_log_prob, class_log_prob_grad, exact_classifier, noised_log_joint,
)
from ddpm_ref.guidance import (
    ClassifierGuidedEps, classifier_guided_eps, guided_mean, sample_ddim_guided, sample_ddpm_guided,
)
from ddpm_ref.sample import sample_ddpm
from ddpm_ref.schedules import make_schedule

SCHED = make_schedule("cosine", 250)
# Four components in two classes; every pair of means ≥ 1.4 apart (≥ 4.7 stds to the midpoint),
# so assigning a sample to its nearest mean mislabels it with probability < 1e-5.
GMM = GaussianMixture(means=[[-1.0, 0.8], [-0.6, -0.8], [1.0, 0.8], [0.8, -0.7]],
                      stds=[0.15, 0.1, 0.12, 0.15], weights=[0.4, 0.1, 0.2, 0.3])
CLASSES = np.array([0, 0, 1, 1])


def _nearest(gmm, x):
    return np.argmin(((x[:, None, :] - gmm.means[None]) ** 2).sum(-1), axis=1)


def _check_class_conditional(x, y):
    """x must follow p(x_0 | y): weights, means, variances, covariance (bounds in the module docstring)."""
    n = len(x)
    k = _nearest(GMM, x)
    other = np.mean(CLASSES[k] != y)
    assert other <= 1e-3, f"{other:.4f} of the samples landed in the other class"
    in_y = np.flatnonzero(CLASSES == y)
    for j in in_y:
        w = GMM.weights[j] / GMM.weights[in_y].sum()               # expected from the definition
        frac = np.mean(k == j)
        assert abs(frac - w) <= 4 * np.sqrt(w * (1 - w) / n), (j, frac, w)
        xs = x[k == j]
        nk, s = len(xs), GMM.stds[j]
        mean_err = np.abs(xs.mean(0) - GMM.means[j])
        assert np.all(mean_err <= 4 * s / np.sqrt(nk) + 0.005), (j, mean_err, s / np.sqrt(nk))
        rel_var_err = np.abs(xs.var(0, ddof=1) / s**2 - 1)
        assert np.all(rel_var_err <= 4 * np.sqrt(2 / (nk - 1)) + 0.08), (j, rel_var_err)
        cov = np.cov(xs.T)[0, 1]
        assert abs(cov) <= 4 * s**2 / np.sqrt(nk), (j, cov)


# ------------------------------------------------------------------ the exact classifier
@pytest.mark.parametrize("t", [0, 1, 40, 125, 250])
def test_grad_log_prob_matches_centred_differences(t):
    """h = 1e-5 in float64: truncation ≈ h²·|f'''| ≈ 1e-8 here, rounding ≈ 1e-16/h; tol 1e-6."""
    rng = np.random.default_rng(t)
    x = rng.standard_normal((6, 2)) * 0.8
    y = np.array([0, 1, 0, 1, 1, 0])
    grad = class_log_prob_grad(GMM, SCHED, x, t, y, CLASSES)
    h = 1e-5
    num = np.zeros_like(x)
    for d in range(2):
        e = np.zeros(2)
        e[d] = h
        num[:, d] = (class_log_prob(GMM, SCHED, x + e, t, y, CLASSES)
                     - class_log_prob(GMM, SCHED, x - e, t, y, CLASSES)) / (2 * h)
    rel = np.linalg.norm(grad - num) / max(np.linalg.norm(grad) + np.linalg.norm(num), 1e-12)
    assert rel < 1e-6, rel


def test_class_probabilities_sum_to_one_and_tend_to_the_prior():
    x = np.random.default_rng(0).standard_normal((5, 2))
    p = np.stack([np.exp(class_log_prob(GMM, SCHED, x, 100, c, CLASSES)) for c in (0, 1)], 1)
    assert np.allclose(p.sum(1), 1.0, atol=1e-12)
    # at t = T (ᾱ_T ≈ 0 for the cosine schedule) x_T carries almost nothing about y: the prior
    prior0 = GMM.weights[:2].sum()
    assert np.allclose(np.exp(class_log_prob(GMM, SCHED, x, 250, 0, CLASSES)), prior0, atol=1e-3)
    assert noised_log_joint(GMM, SCHED, x, 3).shape == (5, 4)


@pytest.mark.parametrize("t", [1, 30, 125, 249])
def test_guided_eps_at_scale_one_is_the_conditional_eps(t):
    """Algorithm 2 with the exact classifier, s = 1: ε̂(x_t) − √(1 − ᾱ_t)∇log p(y|x_t) = E[ε | x_t, y]."""
    rng = np.random.default_rng(t)
    x = rng.standard_normal((8, 2))
    t_arr = np.full(8, t)
    for y in (0, 1):
        grad = exact_classifier(GMM, SCHED, CLASSES)(x, t_arr, np.full(8, y))
        got = classifier_guided_eps(GMM.optimal_eps(SCHED, x, t_arr), SCHED, t_arr, grad, 1.0)
        want = class_conditional(GMM, y, CLASSES).optimal_eps(SCHED, x, t_arr)   # gmm.py, class y alone
        assert np.allclose(got, want, rtol=1e-9, atol=1e-9), np.abs(got - want).max()
    # each component its own class: gmm.py's labelled ε (r = one-hot) is the same thing
    gmm = default_gmm()
    y = np.arange(8) % 3
    guided = ClassifierGuidedEps(gmm.eps_model(SCHED), exact_classifier(gmm, SCHED), SCHED, y, 1.0)
    assert np.allclose(guided(x, t_arr), gmm.optimal_eps(SCHED, x, t_arr, y), rtol=1e-9, atol=1e-9)


def test_guided_mean_is_mu_plus_s_sigma2_grad():
    mean, var, grad = np.array([[1.0, 2.0]]), np.array([[0.5, 0.5]]), np.array([[2.0, -4.0]])
    assert np.allclose(guided_mean(mean, var, grad, 3.0), [[1.0 + 3.0, 2.0 - 6.0]])


# ------------------------------------------------------------------ the samplers, by Monte Carlo
def test_scale_zero_is_the_unguided_ddpm_sampler():
    """Same generator, same draw order: s = 0 must give sample_ddpm's samples exactly."""
    eps = GMM.eps_model(SCHED)
    a = sample_ddpm_guided(eps, exact_classifier(GMM, SCHED, CLASSES), SCHED, (50, 2), 0, scale=0.0,
                           rng=3, variance="fixed_small")
    b = sample_ddpm(eps, SCHED, (50, 2), rng=3, variance="fixed_small", progress=False)
    assert np.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("y", [0, 1])
def test_guided_ddpm_with_the_exact_classifier_samples_the_class(y):
    start = time.perf_counter()
    x = sample_ddpm_guided(GMM.eps_model(SCHED), exact_classifier(GMM, SCHED, CLASSES), SCHED,
                           (4000, 2), y, scale=1.0, rng=10 + y)
    _check_class_conditional(x, y)
    print(f"guided DDPM, 4000 samples x 250 steps: {time.perf_counter() - start:.1f} s")


def test_guided_ddim_with_the_exact_classifier_samples_the_class():
    x = sample_ddim_guided(GMM.eps_model(SCHED), exact_classifier(GMM, SCHED, CLASSES), SCHED,
                           (3000, 2), 1, scale=1.0, steps=250, eta=0.0, rng=20)
    _check_class_conditional(x, 1)


def test_larger_scale_sharpens_towards_the_likelier_component():
    """s > 1 samples ∝ q(x) p(y|x)^s: the class stays, nothing lands outside it."""
    x = sample_ddim_guided(GMM.eps_model(SCHED), exact_classifier(GMM, SCHED, CLASSES), SCHED,
                           (300, 2), 0, scale=4.0, steps=50, rng=5)
    assert np.mean(CLASSES[_nearest(GMM, x)] == 0) > 0.99


# ------------------------------------------------------------------ bad inputs
def test_bad_arguments_name_the_argument():
    eps, grad = GMM.eps_model(SCHED), exact_classifier(GMM, SCHED, CLASSES)
    with pytest.raises(ValueError, match="scale"):
        sample_ddpm_guided(eps, grad, SCHED, (4, 2), 0, scale=-1.0)
    with pytest.raises(ValueError, match="grad_log_prob"):
        sample_ddim_guided(eps, None, SCHED, (4, 2), 0)
    with pytest.raises(ValueError, match="y must"):
        sample_ddpm_guided(eps, grad, SCHED, (4, 2), None)
    with pytest.raises(ValueError, match="variance"):
        sample_ddpm_guided(eps, grad, SCHED, (4, 2), 0, variance="learned")
    with pytest.raises(ValueError, match="classes"):
        class_log_prob(GMM, SCHED, np.zeros((2, 2)), 3, 0, classes=[0, 1])
    with pytest.raises(ValueError, match="y must"):
        class_log_prob(GMM, SCHED, np.zeros((2, 2)), 3, 2, CLASSES)
    with pytest.raises(ValueError, match="t must"):
        class_log_prob_grad(GMM, SCHED, np.zeros((2, 2)), 251, 0, CLASSES)
    with pytest.raises(ValueError, match="xt must"):
        class_log_prob_grad(GMM, SCHED, np.zeros((2, 3)), 1, 0, CLASSES)
