"""The score-based samplers on the 2-D Gaussian mixture with its exact score (GaussianMixture.optimal_eps).

How the Monte Carlo bounds are computed (n = 4000 samples, each assigned to the nearest component
mean; the means are ≥ 1.2 apart and the stds 0.12, so a sample lands nearer another mean with
probability < Φ(−5) ≈ 3e-7 and the assignment is the true component):

* weight π_k: the fraction n_k/n has standard error √(π_k(1 − π_k)/n);
* mean of component k, per coordinate: standard error s_k/√n_k;
* variance of component k, per coordinate: standard error s_k²·√(2/(n_k − 1)) (Gaussian sample variance);
* covariance (off-diagonal): standard error s_k²/√n_k.

"Match" means every one of these 3·(1 + 2 + 2 + 1) = 18 statistics is within 5 standard errors
(a correct sampler fails one with probability < 18·6e-7 ≈ 1e-5; the seeds are fixed anyway).
"Fine" means steps small enough that the discretisation bias is below that (1000 or 500 steps of
the linear T = 1000 schedule, 100 for Heun, 100 levels × 10 steps for Langevin).

At coarse steps (10 steps or 10 levels) the samplers are biased, and ``test_coarse_step_bias``
records by how much: it prints the table (run pytest with -s) and checks the measured values
against the ones written here, so a change of behaviour shows up as a failure, not silently.
"""

import math

import numpy as np
import pytest

from ddpm_ref.data.gmm import default_gmm
from ddpm_ref.diffusion import ddim_step
from ddpm_ref.schedules import Schedule, make_schedule
from ddpm_ref.score import (
    integrated_beta,
    langevin_levels,
    pf_ode_euler_step,
    sample_langevin,
    sample_probability_flow,
    sample_reverse_sde,
    score_from_eps,
)
from ddpm_ref.timesteps import sampling_timesteps

GMM = default_gmm()
LIN = make_schedule("linear", 1000)
N = 4000


def _stats(x):
    """Per component: (z of the weight, z of the 2 mean coords, z of the 2 variances, z of the covariance), stds."""
    k = np.argmin(((x[:, None, :] - GMM.means[None]) ** 2).sum(-1), axis=1)
    z, stds = [], []
    n = len(x)
    for j in range(GMM.num_components):
        xs, pi, s = x[k == j], GMM.weights[j], GMM.stds[j]
        nk = len(xs)
        cov = np.cov(xs.T)
        z.append([(nk / n - pi) / math.sqrt(pi * (1 - pi) / n),
                  *((xs.mean(0) - GMM.means[j]) / (s / math.sqrt(nk))),
                  *((np.diag(cov) - s ** 2) / (s ** 2 * math.sqrt(2 / (nk - 1)))),
                  cov[0, 1] / (s ** 2 / math.sqrt(nk))])
        stds.append(np.sqrt(np.diag(cov)).mean() / s)
    return np.array(z), np.array(stds), np.bincount(k, minlength=3) / n


FINE = {
    "langevin": lambda m, s, rng: sample_langevin(m, s, (N, 2), steps=100, n_inner=10, rng=rng),
    "sde": lambda m, s, rng: sample_reverse_sde(m, s, (N, 2), steps=1000, rng=rng),
    "ode-euler-sigma": lambda m, s, rng: sample_probability_flow(m, s, (N, 2), steps=500, rng=rng),
    "ode-euler-vp": lambda m, s, rng: sample_probability_flow(m, s, (N, 2), steps=500, variables="vp", rng=rng),
    "ode-heun-sigma": lambda m, s, rng: sample_probability_flow(m, s, (N, 2), steps=100, solver="heun", rng=rng),
    "ode-heun-vp": lambda m, s, rng: sample_probability_flow(m, s, (N, 2), steps=100, solver="heun",
                                                            variables="vp", rng=rng),
}


@pytest.mark.parametrize("name", list(FINE))
def test_fine_steps_match_the_mixture(name):
    x = FINE[name](GMM.eps_model(LIN), LIN, 1)
    z, stds, _ = _stats(x)
    assert np.all(np.abs(z) < 5), f"{name}: z-scores (weight, mean x/y, var x/y, cov) per component\n{np.round(z, 1)}"


# Measured at 10 steps (linspace: t = 1000, 889, ..., 112, 1; Langevin: 10 geometric levels × 5
# steps), n = 4000, seed 1, and written here: the largest |weight error|, the largest |mean error|
# in units of the component's std, and the sample std over the true std (averaged over components
# and coordinates). The test fails if a measurement moves by more than 5 standard errors: weight
# 5·√(0.25/n) = 0.04; mean and std ratio 5/√(2·800) relative (n_k ≥ 800, the smallest component;
# the standard error of a std estimate is std/√(2n_k), and of a mean std/√n_k, both scaled by how
# inflated the std is). Read: every sampler is far off at 10 steps; the spread is the worst
# (SDE and Euler in vp variables are 2.6–3× too wide); Heun fixes weights and means (vs Euler in
# σ: 0.006 vs 0.019, 0.36 vs 1.55 s) but not the spread (1.85 vs 1.37): the last linspace step,
# from t = 112 to t = 1, is most of the way from noise to data, and 10 steps spaced evenly in t
# are a poor grid for any solver here.
COARSE = {                          # (max |Δπ|, max |Δμ|/s, std ratio)
    "langevin": (0.0797, 0.101, 1.314),
    "sde": (0.0608, 0.756, 3.080),
    "ode-euler-sigma": (0.0190, 1.551, 1.369),
    "ode-euler-vp": (0.0418, 0.512, 2.647),
    "ode-heun-sigma": (0.0058, 0.360, 1.854),
    "ode-heun-vp": (0.0038, 0.430, 1.646),
}
COARSE_RUN = {
    "langevin": lambda m, s: sample_langevin(m, s, (N, 2), steps=10, n_inner=5, rng=1),
    "sde": lambda m, s: sample_reverse_sde(m, s, (N, 2), steps=10, rng=1),
    "ode-euler-sigma": lambda m, s: sample_probability_flow(m, s, (N, 2), steps=10, rng=1),
    "ode-euler-vp": lambda m, s: sample_probability_flow(m, s, (N, 2), steps=10, variables="vp", rng=1),
    "ode-heun-sigma": lambda m, s: sample_probability_flow(m, s, (N, 2), steps=10, solver="heun", rng=1),
    "ode-heun-vp": lambda m, s: sample_probability_flow(m, s, (N, 2), steps=10, solver="heun", variables="vp", rng=1),
}


def test_coarse_step_bias(capsys):
    rows = {}
    for name, run in COARSE_RUN.items():
        x = run(GMM.eps_model(LIN), LIN)
        _, stds, weights = _stats(x)
        k = np.argmin(((x[:, None, :] - GMM.means[None]) ** 2).sum(-1), axis=1)
        dmu = max(np.abs(x[k == j].mean(0) - GMM.means[j]).max() / GMM.stds[j] for j in range(3))
        rows[name] = (np.abs(weights - GMM.weights).max(), dmu, stds.mean())
    with capsys.disabled():
        print("\ncoarse (10 steps) bias on the mixture: max|Δπ|, max|Δμ|/s, std ratio")
        for name, r in rows.items():
            print(f"  {name:16s} {r[0]:.4f} {r[1]:.3f} {r[2]:.3f}")
    rel = 5 / math.sqrt(2 * 800)
    for name, (w, mu, sd) in COARSE.items():
        got = rows[name]
        ok = (abs(got[0] - w) < 5 * math.sqrt(0.25 / N) and abs(got[1] - mu) < 5 * got[2] / math.sqrt(800)
              and abs(got[2] / sd - 1) < rel)
        assert ok, f"{name}: measured {np.round(got, 4)}, recorded {(w, mu, sd)}: update COARSE and its comment"
    # the bias is real: every sampler's spread is off by more than 5 standard errors at 10 steps
    assert all(abs(r[2] - 1) > rel * r[2] for r in rows.values())
    # Heun (second order) fixes the weights and means of Euler, in both sets of variables
    for v in ("sigma", "vp"):
        assert rows[f"ode-heun-{v}"][0] < rows[f"ode-euler-{v}"][0] and rows[f"ode-heun-{v}"][1] < rows[f"ode-euler-{v}"][1]


# ------------------------------------------------------------------ DDIM is Euler on the ODE in (x̄, σ)
@pytest.mark.parametrize("sched", [LIN, make_schedule("cosine", 200, input_scale=0.5)], ids=repr)
def test_ddim_eta0_is_exactly_an_euler_step_of_the_probability_flow_ode(sched, rng):
    for _ in range(20):
        t = int(rng.integers(1, sched.T + 1))
        t_prev = int(rng.integers(0, t))
        x, eps = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
        ours = pf_ode_euler_step(sched, x, t, t_prev, eps)
        theirs = ddim_step(sched, x, t, t_prev, eps, eta=0.0)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_ode_euler_sampler_is_the_ddim_loop():
    """The whole Euler-σ sampler equals a hand-written DDIM loop over the same timesteps (to 1e-12)."""
    sched, n, steps = LIN, 64, 20
    model = GMM.eps_model(sched)
    ours = sample_probability_flow(model, sched, (n, 2), steps=steps, rng=3)
    x = np.random.default_rng(3).standard_normal((n, 2))
    ts = sampling_timesteps(sched.T, steps)
    for t, t_prev in zip(ts, np.append(ts[1:], 0)):
        eps = model(x, np.full(n, t))
        x = ddim_step(sched, x, int(t), int(t_prev), eps, eta=0.0)
    np.testing.assert_allclose(ours, x, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ the pieces
def test_score_from_eps_is_the_gradient_of_log_q_for_a_gaussian(rng):
    """Data N(m, s²): q_t = N(√ᾱ m, ᾱ s² + 1 − ᾱ), its score by hand, and the optimal ε of that Gaussian."""
    sched, t, m, s = LIN, 300, 0.4, 0.7
    ab = sched.alpha_bars[t]
    x = rng.standard_normal((7, 1))
    v = ab * s ** 2 + 1 - ab
    exact_score = -(x - math.sqrt(ab) * m) / v
    gauss = type(GMM)(means=[[m]], stds=[s])                  # a one-component "mixture"
    eps = gauss.optimal_eps(sched, x, np.full(7, t))
    np.testing.assert_allclose(score_from_eps(sched, t, eps), exact_score, rtol=1e-12)


def test_integrated_beta_reproduces_alpha_bar():
    """exp(−B) over a step equals ᾱ_t/ᾱ_prev, and one step's B is −log(1 − β_t) ≈ β_t."""
    assert math.isclose(math.exp(-integrated_beta(LIN, 500, 300)), LIN.alpha_bars[500] / LIN.alpha_bars[300],
                        rel_tol=1e-12)
    assert math.isclose(integrated_beta(LIN, 7, 6), -math.log(1 - LIN.betas[7]), rel_tol=1e-12)


def test_langevin_levels_are_geometric_in_sigma():
    """Every chosen level is within half a t-step (in log σ²) of a geometric target, and every target has one."""
    ts = langevin_levels(LIN, 100)
    assert ts[0] == 1000 and ts[-1] == 1 and np.all(np.diff(ts) < 0)
    lv = np.log(1 - LIN.alpha_bars[1:])                  # log σ_t², t = 1..T at index t − 1
    targets = np.linspace(math.log(1 - LIN.alpha_bars[1000]), math.log(1 - LIN.alpha_bars[1]), 100)
    gap = np.maximum(np.diff(lv, prepend=lv[0]), np.diff(lv, append=lv[-1]))   # local t-step in log σ²
    chosen = lv[ts - 1]
    assert np.all(np.abs(chosen[:, None] - targets[None]).min(axis=1) <= gap[ts - 1] / 2 + 1e-12)
    near = np.abs(targets[:, None] - chosen[None]).argmin(axis=1)
    assert np.all(np.abs(targets - chosen[near]) <= gap[ts[near] - 1] / 2 + 1e-12)
    # at low noise t runs out: levels 1, 2, 3, ... are all used, and there are fewer than 100
    assert set(range(1, 11)) <= set(ts.tolist()) and len(ts) < 100


def test_zero_terminal_snr_is_refused_by_sde_and_ode_not_by_langevin():
    sched = Schedule.from_betas(np.r_[np.linspace(1e-3, 0.2, 19), 1.0])
    model = GMM.eps_model(sched)
    for run in (sample_reverse_sde, sample_probability_flow):
        with pytest.raises(ValueError, match="alpha_bar_t > 0"):
            run(model, sched, (4, 2))
    assert np.all(np.isfinite(sample_langevin(model, sched, (4, 2), steps=5, n_inner=2)))


@pytest.mark.parametrize("call, match", [
    (lambda: sample_probability_flow(GMM.eps_model(LIN), LIN, (4, 2), solver="rk4"), "solver"),
    (lambda: sample_probability_flow(GMM.eps_model(LIN), LIN, (4, 2), variables="ve"), "variables"),
    (lambda: sample_reverse_sde(GMM.eps_model(LIN), LIN, (4, 2), spacing="uniform"), "spacing"),
    (lambda: sample_langevin(GMM.eps_model(LIN), LIN, (4, 2), delta=0.0), "delta"),
    (lambda: sample_langevin(GMM.eps_model(LIN), LIN, (4, 2), n_inner=0), "n_inner"),
    (lambda: sample_reverse_sde(lambda x, t: x[:, :1], LIN, (4, 2), steps=3), "shape"),
    (lambda: pf_ode_euler_step(LIN, np.zeros((2, 2)), 5, 5, np.zeros((2, 2))), "t_prev"),
    (lambda: score_from_eps(LIN, 0, np.zeros((2, 2))), "t=0"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
