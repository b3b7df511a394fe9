"""Inpainting and editing (ddpm_ref.inpaint) against the Gaussian mixture's exact conditionals.

The mixture: three components in 2-D, stds 0.2, means (−0.6, −0.3), (0.6, 0.3), (0, 0.9). We observe
x[0] = 0.3 and fill in x[1]. Its exact conditional (ddpm_ref.data.gmm_exact, itself checked here
against a numerical Bayes' rule on a grid) is an equal mixture of N(0.3, 0.2²) and N(0.9, 0.2²),
with a negligible (≈ 1e-5) share of N(−0.3, 0.2²).

Distance: the 1-D Wasserstein distance W1 between 1500 completions and 40 000 exact draws.
Monte Carlo baseline: the same W1 for 1500 *exact* draws, over 20 seeds (measured: mean 0.011,
95th percentile 0.017, max 0.024 over 40 seeds). Measured with the exact denoiser on a 100-step
cosine schedule (``python -m pytest tests/test_inpaint.py -s`` prints them):

    method                    W1 (two seeds)
    replacement (r = 1)       0.147, 0.128
    RePaint r = 2             0.067, 0.066
    RePaint r = 5             0.038, 0.038
    RePaint r = 10            0.021, 0.019, 0.029 (seed of the test)
    RePaint r = 20            0.023, 0.029   (no better than r = 10: what is left is the 100-step
                                              sampler's and RePaint's own bias)

Replacement undershoots the upper mode (the unknown coordinate commits before the noised known one
says which mode is right); resampling fixes most of it. The tests assert exactly that, with
margins: replacement is > 4 baseline-95th-percentiles away, RePaint with r = 10 is within 2.5 of
them and at least 3 times closer than replacement.
"""

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from ddpm_ref.data.gmm import GaussianMixture
from ddpm_ref.data.gmm_exact import inpainting_conditional, sample_inpainting_conditional
from ddpm_ref.inpaint import make_mask, repaint_schedule, sample_repaint, sample_replacement, sdedit
from ddpm_ref.schedules import make_schedule

SCHED = make_schedule("cosine", 100)
GMM = GaussianMixture(means=[[-0.6, -0.3], [0.6, 0.3], [0.0, 0.9]], stds=0.2)
OBSERVED = np.array([True, False])
X_OBS = 0.3
N = 1500


@pytest.fixture(scope="module")
def reference():
    """(40 000 exact draws of x[1] | x[0] = 0.3, the baseline W1 of 1500 exact draws over 20 seeds)."""
    big = sample_inpainting_conditional(GMM, np.full((40000, 1), X_OBS), OBSERVED, rng=99)[:, 0]
    base = [wasserstein_distance(sample_inpainting_conditional(GMM, np.full((N, 1), X_OBS), OBSERVED, rng=s)[:, 0], big)
            for s in range(20)]
    return big, float(np.quantile(base, 0.95))


def _known():
    return np.tile([[X_OBS, 0.0]], (N, 1)), np.array([1.0, 0.0])


# ------------------------------------------------------------------ the exact conditional
def test_inpainting_conditional_matches_bayes_rule_on_a_grid():
    """p(x1 | x0) ∝ p(x0, x1), the joint density written out here, normalised numerically."""
    grid = np.linspace(-2.5, 2.5, 20001)
    dx = grid[1] - grid[0]
    joint = sum(w / (2 * np.pi * s**2) * np.exp(-((X_OBS - m[0]) ** 2 + (grid - m[1]) ** 2) / (2 * s**2))
                for w, m, s in zip(GMM.weights, GMM.means, GMM.stds))
    density = joint / (joint.sum() * dx)
    w, means, stds = inpainting_conditional(GMM, [[X_OBS]], OBSERVED)
    closed = sum(wk * np.exp(-(grid - mk[0]) ** 2 / (2 * sk**2)) / np.sqrt(2 * np.pi * sk**2)
                 for wk, mk, sk in zip(w[0], means, stds))
    assert np.abs(closed - density).max() < 1e-6
    draws = sample_inpainting_conditional(GMM, np.full((20000, 1), X_OBS), OBSERVED, rng=0)[:, 0]
    exact_mean = (grid * density).sum() * dx
    assert abs(draws.mean() - exact_mean) < 4 * draws.std() / np.sqrt(20000)


# ------------------------------------------------------------------ RePaint's schedule
def test_repaint_schedule_by_hand():
    assert repaint_schedule(5) == [5, 4, 3, 2, 1, 0]
    assert repaint_schedule(4, 1, 2) == [4, 3, 4, 3, 2, 3, 2, 1, 2, 1, 0]        # Algorithm 1, U = 2
    # jump points 3 and 6 (9 + 3 would pass T = 10), each jumped back once
    assert repaint_schedule(10, 3, 2) == [10, 9, 8, 7, 6, 9, 8, 7, 6, 5, 4, 3, 6, 5, 4, 3, 2, 1, 0]
    levels = repaint_schedule(100, 10, 10)
    assert max(levels) == 100 and levels[-1] == 0 and all(abs(a - b) in (1, 10) for a, b in zip(levels, levels[1:]))


# ------------------------------------------------------------------ the distances
def test_replacement_is_biased_and_repaint_resampling_closes_the_gap(reference):
    big, base95 = reference
    xk, m = _known()
    eps = GMM.eps_model(SCHED)
    w = {}
    x = sample_replacement(eps, SCHED, xk, m, rng=1)
    assert np.array_equal(x[:, 0], xk[:, 0]), "the known coordinate must come back unchanged"
    w[1] = wasserstein_distance(x[:, 1], big)
    for r in (5, 10):
        w[r] = wasserstein_distance(sample_repaint(eps, SCHED, xk, m, resamples=r, rng=r)[:, 1], big)
    print(f"baseline W1 (95th pct) {base95:.4f}; " + ", ".join(f"r={r}: {d:.4f}" for r, d in w.items()))
    assert w[1] > 4 * base95, "replacement was expected to miss the conditional (measured 0.13-0.15)"
    assert w[10] < 2.5 * base95, "RePaint with 10 resamples was measured at 0.019-0.021"
    assert w[10] < w[1] / 3 and w[5] < w[1]


def test_repaint_with_jumps_also_improves_on_replacement(reference):
    big, _ = reference
    xk, m = _known()
    eps = GMM.eps_model(SCHED)
    w1 = wasserstein_distance(sample_replacement(eps, SCHED, xk[:600], m, rng=2)[:, 1], big)
    w10 = wasserstein_distance(sample_repaint(eps, SCHED, xk[:600], m, resamples=10, jump_length=10, rng=2)[:, 1], big)
    assert w10 < w1 / 2, (w1, w10)        # measured 0.15 -> 0.05 at 1000 samples


# ------------------------------------------------------------------ SDEdit
def _nearest(x):
    return np.argmin(((x[:, None, :] - GMM.means[None]) ** 2).sum(-1), axis=1)


def test_sdedit_follows_the_exact_posterior_at_t0():
    """The output's component shares equal E_{x_t0 ~ q(.|x)} q(k | x_t0), from gmm.py's responsibilities."""
    t0, n = 35, 1500
    x_in = np.tile([[0.0, 0.2]], (n, 1))                   # a "sketch" between the three modes
    out = sdedit(GMM.eps_model(SCHED), SCHED, x_in, t0, rng=4)
    g = np.random.default_rng(5)
    xt = SCHED.sqrt_alpha_bars[t0] * np.tile(x_in[:1], (40000, 1)) + SCHED.sqrt_one_minus_alpha_bars[t0] * g.standard_normal((40000, 2))
    expected = GMM.posterior_components(SCHED, xt, t0).mean(0)
    got = np.bincount(_nearest(out), minlength=3) / n
    se = np.sqrt(expected * (1 - expected) / n) + 0.005     # + the 100-step sampler's bias
    print("SDEdit shares", np.round(got, 3), "expected", np.round(expected, 3))
    assert np.all(np.abs(got - expected) <= 4 * se), (got, expected)
    assert np.all(expected > 0.05) and np.all(expected < 0.9)   # a real test: no component is certain


def test_sdedit_extremes():
    x_in = np.tile([[0.0, 0.2]], (200, 1))
    near = sdedit(GMM.eps_model(SCHED), SCHED, x_in, 1, rng=0)
    # t0 = 1: the input plus noise of std σ_1 = √(1 − ᾱ_1) = 0.025, denoised once: within 5 σ_1
    assert np.abs(near - x_in).max() < 5 * SCHED.sqrt_one_minus_alpha_bars[1]
    far = sdedit(GMM.eps_model(SCHED), SCHED, x_in, 100, rng=0)
    assert np.bincount(_nearest(far), minlength=3).min() > 30    # t0 = T: all three modes, input forgotten


# ------------------------------------------------------------------ masks for images
def test_masks_by_hand():
    left = make_mask("left", 4, 4)[0, 0]
    np.testing.assert_array_equal(left, [[0, 0, 1, 1]] * 4)
    np.testing.assert_array_equal(make_mask("bottom", 3, 2)[0, 0], [[1, 1], [0, 0], [0, 0]])
    centre = make_mask("center", 8, 8)[0, 0]
    assert centre.sum() == 64 - 16 and centre[2:6, 2:6].sum() == 0
    # an image inpainted with its own mask keeps the known pixels exactly
    sched = make_schedule("cosine", 5)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 1, 4, 4))
    out = sample_repaint(lambda xt, t, y=None: np.zeros_like(xt), sched, x, make_mask("right", 4, 4), resamples=2)
    np.testing.assert_array_equal(out[..., :2], x[..., :2])
    with pytest.raises(ValueError, match="mask='diagonal'"):
        make_mask("diagonal", 8, 8)


# ------------------------------------------------------------------ bad inputs
def test_bad_arguments_name_the_argument():
    eps = GMM.eps_model(SCHED)
    xk, m = _known()
    with pytest.raises(ValueError, match="mask"):
        sample_repaint(eps, SCHED, xk, np.ones(3))
    with pytest.raises(ValueError, match="mask"):
        sample_repaint(eps, SCHED, xk, np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="resamples"):
        sample_repaint(eps, SCHED, xk, m, resamples=0)
    with pytest.raises(ValueError, match="jump_length"):
        sample_repaint(eps, SCHED, xk, m, jump_length=1.5)
    with pytest.raises(ValueError, match="t0"):
        sdedit(eps, SCHED, xk, 101)
    with pytest.raises(ValueError, match="eps_model"):
        sdedit(None, SCHED, xk, 10)
    with pytest.raises(ValueError, match="observed"):
        inpainting_conditional(GMM, [[0.1]], np.array([True, True]))
