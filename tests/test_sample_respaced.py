"""DDPM with fewer steps (``respace`` + ``sample_ddpm_respaced``, Nichol & Dhariwal 2021 sec. 4)."""

import numpy as np
import pytest

from ddpm_ref.data import default_gmm
from ddpm_ref.sample import respace, sample_ddpm, sample_ddpm_respaced
from ddpm_ref.schedules import make_schedule


def test_respaced_chain_keeps_alpha_bar_at_the_visited_steps():
    """ᾱ'_i = ᾱ_{τ_i}: the new chain's cumulative product lands exactly on the old one's values
    (a second route: the product of the new βs, compared with the indexed old ᾱ)."""
    sched = make_schedule("cosine", 200)
    new, taus = respace(sched, [200, 150, 100, 40, 7, 1])
    assert list(taus) == [1, 7, 40, 100, 150, 200] and new.T == 6
    # 1 − β' loses relative precision where ᾱ is tiny (cosine ᾱ_T ≈ 6e-8): rtol 1e-9
    np.testing.assert_allclose(np.cumprod(1.0 - new.betas[1:]), sched.alpha_bars[taus], rtol=1e-9)
    with pytest.raises(ValueError, match="timesteps must lie in 1..200"):
        respace(sched, [0, 5])


def test_all_steps_is_algorithm_2_itself():
    """With steps = T the respaced chain is the original one: the samples agree with sample_ddpm
    to float64 rounding of β' = 1 − ᾱ_t/ᾱ_{t−1} (1e-9 after 100 steps)."""
    sched = make_schedule("linear", 100)
    eps = default_gmm().eps_model(sched)
    a = sample_ddpm(eps, sched, (300, 2), rng=3, progress=False)
    b = sample_ddpm_respaced(eps, sched, (300, 2), steps=100, rng=3, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_fewer_steps_sample_the_mixture():
    """50 of 1000 steps with the mixture's exact denoiser: component weights within 5 standard errors
    √(π(1−π)/n) of the truth, and the model is called at the original timesteps (a model that sees
    the new indices i = 1..50 instead gives the wrong weights)."""
    gmm = default_gmm()
    sched = make_schedule("linear", 1000)
    n = 3000
    x = sample_ddpm_respaced(gmm.eps_model(sched), sched, (n, 2), steps=50, rng=0, progress=False,
                             variance="fixed_large")
    k = np.argmin(((x[:, None, :] - gmm.means[None]) ** 2).sum(-1), axis=1)
    w = np.bincount(k, minlength=3) / n
    se = np.sqrt(gmm.weights * (1 - gmm.weights) / n)
    assert np.all(np.abs(w - gmm.weights) < 5 * se), (w, gmm.weights)
    new, _ = respace(sched, np.arange(1000, 0, -20))          # the same chain, but the network is told i
    x_wrong = sample_ddpm(gmm.eps_model(sched), new, (n, 2), rng=0, progress=False, variance="fixed_large")
    k = np.argmin(((x_wrong[:, None, :] - gmm.means[None]) ** 2).sum(-1), axis=1)
    w_wrong = np.bincount(k, minlength=3) / n
    assert np.any(np.abs(w_wrong - gmm.weights) > 5 * se) or np.abs(x_wrong).max() > 3, w_wrong
