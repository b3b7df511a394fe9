"""Claims lessons 15-17 make in prose that their quick-mode runs are too small to assert.

Lesson 15: with the exact classifier, guidance at s = 1 samples p(x₀ | y) (the split between the
two components of class 0 included) and s = 10 moves the split towards component 0. Lesson 16:
RePaint's resampling brings the filled-in coordinate closer to the exact conditional than
replacement, and replacement is measurably off; the respaced chain has ᾱ'_k = ᾱ_{τ_k}.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddpm_ref.data import default_gmm
from ddpm_ref.data.gmm_exact import class_conditional
from ddpm_ref.plots.beyond_ddpm import mixture_stats
from ddpm_ref.plots.beyond_ddpm_2 import (CLASSES, RespacedEps, guidance_runs, inpainting_runs, w1_distance)
from ddpm_ref.schedules import make_schedule


@pytest.mark.slow
def test_exact_guidance_at_s1_samples_the_class_and_s10_moves_the_split():
    n = 2000
    runs = guidance_runs(n, seed=0, runs=(("s1", "ddpm", 0, 1.0), ("s10", "ddpm", 0, 10.0)))
    gmm = default_gmm()
    target = class_conditional(gmm, 0, CLASSES).weights
    se = np.sqrt(target * (1 - target) / n)
    f1, _, _ = mixture_stats(gmm, runs["s1"])
    f10, _, _ = mixture_stats(gmm, runs["s10"])
    assert f1[2] == 0 and np.all(np.abs(f1[:2] - target) < 4 * se), f1
    assert f10[0] - target[0] > 3 * se[0], f10


@pytest.mark.slow
def test_repaint_resampling_beats_replacement_on_the_mixture():
    filled, exact, exact2 = inpainting_runs(2000, seed=0, resamples=(1, 10))
    base = w1_distance(exact, exact2)
    assert w1_distance(filled[1], exact) > 3 * base
    assert w1_distance(filled[10], exact) < 0.7 * w1_distance(filled[1], exact)


def test_w1_distance_of_shifted_samples_is_the_shift():
    a = np.random.default_rng(0).standard_normal(500)
    assert w1_distance(a, a + 0.25) == pytest.approx(0.25)
    assert w1_distance(a, a) == 0.0


def test_respaced_chain_keeps_the_alpha_bars_and_asks_the_model_at_tau():
    sched = make_schedule("linear", 1000)
    seen = []

    def model(x, t, y=None):
        seen.append(np.array(t))
        return np.zeros_like(x)

    r = RespacedEps(model, sched, 50)
    assert r.sched.T == 50 and len(r.taus) == 50 and r.taus[0] == 20 and r.taus[-1] == 1000
    np.testing.assert_allclose(r.sched.alpha_bars[1:], sched.alpha_bars[r.taus], rtol=1e-12)   # ᾱ'_k = ᾱ_{τ_k}
    r(np.zeros((2, 1)), np.array([1, 50]))
    np.testing.assert_array_equal(seen[0], [20, 1000])
