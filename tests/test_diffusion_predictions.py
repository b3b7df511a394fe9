"""diffusion's issue-11 arguments: prediction types, learned variance, keep-range options, zero terminal SNR.

Independent routes: the x0/v forms are checked against the ε form fed the same model (converted
here by the textbook formulas, not by ddpm_ref.prediction), and at t = T of a zero-SNR schedule
against μ̃_T written out by hand. diffusers' schedulers are the oracle in test_diffusers_oracle.py.
"""

import math

import numpy as np
import pytest

from ddpm_ref import diffusion as d
from ddpm_ref.elbo import vb_term_bpd
from ddpm_ref.schedules import make_schedule, rescale_zero_terminal_snr

SCHED = make_schedule("linear", 100)


def _as(sched, t, x0, eps):
    """x_t and the three network outputs for a 'perfect' model, by eq. 4 and Salimans & Ho's v."""
    a, s = math.sqrt(sched.alpha_bars[t]), math.sqrt(1 - sched.alpha_bars[t])
    xt = a * x0 + s * eps
    return xt, {"eps": eps, "x0": x0, "v": a * eps - s * x0}


def test_defaults_are_bit_identical_to_prediction_eps(rng):
    xt, eps, z = rng.standard_normal((3, 4, 2, 3))
    t = np.array([1, 20, 57, 100])
    for kw in ({}, {"clip_x0": True}):
        a = d.p_mean_variance(SCHED, xt, t, eps, **kw)
        b = d.p_mean_variance(SCHED, xt, t, eps, prediction="eps", v_sigma=None, clip_range=1.0, threshold=None, **kw)
        assert all(np.array_equal(u, v) for u, v in zip(a, b))
        assert np.array_equal(d.ddpm_step(SCHED, xt, t, eps, z, **kw), d.ddpm_step(SCHED, xt, t, eps, z, prediction="eps", **kw))
        assert np.array_equal(d.ddim_step(SCHED, xt, t, t - 1, eps, **kw),
                              d.ddim_step(SCHED, xt, t, t - 1, eps, prediction="eps", use_clipped_model_output=True, **kw))


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("t", [1, 2, 50, 100])
def test_x0_and_v_steps_equal_the_eps_step(prediction, t, rng):
    """Same model, three parameterisations: the same mean, step and bound. 1e-10: the ε route divides
    by √ᾱ_t (≈ 0.006 at t = 100) where the others do not; rounding only."""
    x0, eps, z = rng.uniform(-1, 1, (4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    x0 = np.round((x0 + 1) * 127.5) / 127.5 - 1                         # on the 256-level grid for the bound
    xt, out = _as(SCHED, t, x0, eps)
    for kw in ({}, {"clip_x0": True, "clip_range": 0.5}, {"threshold": "dynamic", "percentile": 0.9}):
        ref = d.p_mean_variance(SCHED, xt, t, out["eps"], **kw)[0]
        np.testing.assert_allclose(d.p_mean_variance(SCHED, xt, t, out[prediction], prediction=prediction, **kw)[0],
                                   ref, rtol=1e-10, atol=1e-10)
        ref = d.ddim_step(SCHED, xt, t, max(t - 7, 0), out["eps"], eta=0.5, z=z, **kw)
        got = d.ddim_step(SCHED, xt, t, max(t - 7, 0), out[prediction], eta=0.5, z=z, prediction=prediction, **kw)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(vb_term_bpd(SCHED, x0, xt, t, out[prediction], prediction=prediction),
                               vb_term_bpd(SCHED, x0, xt, t, out["eps"]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_training_target(prediction, rng):
    x0, eps = rng.standard_normal((2, 3, 4))
    t = np.array([1, 40, 100])
    a, s = np.sqrt(SCHED.alpha_bars[t])[:, None], np.sqrt(1 - SCHED.alpha_bars[t])[:, None]
    want = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
    np.testing.assert_allclose(d.training_target(SCHED, x0, t, eps, prediction), want, rtol=1e-14, atol=1e-15)
    assert d.training_target(SCHED, x0.astype(np.float32), t, eps.astype(np.float32), prediction).dtype == np.float32
    with pytest.raises(ValueError, match="prediction"):
        d.training_target(SCHED, x0, t, eps, "epsilon")


def test_zero_terminal_snr_step_at_T_by_hand(rng):
    """ᾱ_T = 0: μ̃_T(x_T, x̂_0) = √ᾱ_{T−1}·x̂_0 (coefficient of x_T = 0), σ² = β̃_T = 1 − ᾱ_{T−1}.
    With v: x̂_0 = −v; with x0: x̂_0 = the output."""
    sched = rescale_zero_terminal_snr(make_schedule("linear", 20))
    T, ab = 20, sched.alpha_bars[19]
    xt, out, z = rng.standard_normal((3, 5, 2))
    np.testing.assert_allclose(d.ddpm_step(sched, xt, T, out, z, prediction="v"),
                               math.sqrt(ab) * (-out) + math.sqrt(1 - ab) * z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.ddpm_step(sched, xt, T, out, z, prediction="x0"),
                               math.sqrt(ab) * out + math.sqrt(1 - ab) * z, rtol=1e-12, atol=1e-12)
    # DDIM η = 0 from T to t_prev: √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε̂, ε̂ = x_T (from v: √0·v + 1·x_T)
    abp = sched.alpha_bars[10]
    np.testing.assert_allclose(d.ddim_step(sched, xt, T, 10, out, prediction="v"),
                               math.sqrt(abp) * (-out) + math.sqrt(1 - abp) * xt, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="prediction='v' or 'x0'"):
        d.p_mean_variance(sched, xt, T, out)


def test_learned_variance_interpolates_beta_tilde_and_beta(rng):
    xt, eps = rng.standard_normal((2, 3, 4))
    t = np.array([2, 30, 100])
    bt = SCHED.posterior_variance[t][:, None]
    b = SCHED.betas[t][:, None]
    for v, want in ((0.0, bt), (1.0, b), (0.5, np.sqrt(bt * b))):          # geometric mean at v = ½
        var = d.p_mean_variance(SCHED, xt, t, eps, v_sigma=np.full_like(xt, v))[1]
        np.testing.assert_allclose(var, np.broadcast_to(want, xt.shape), rtol=1e-12)


def test_keep_range_options(rng):
    xt, eps = 3 * rng.standard_normal((2, 2, 8))
    with pytest.raises(ValueError, match="choose one"):
        d.p_mean_variance(SCHED, xt, 50, eps, clip_x0=True, threshold="dynamic")
    for bad in (0.0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="clip_range"):
            d.ddim_step(SCHED, xt, 50, 40, eps, clip_x0=True, clip_range=bad)
    with pytest.raises(ValueError, match="threshold"):
        d.ddim_step(SCHED, xt, 50, 40, eps, threshold="static")
    with pytest.raises(ValueError, match="alpha_bar_prev"):
        d.ddim_step(SCHED, xt, 50, 0, eps, alpha_bar_prev=SCHED.alpha_bars[60])     # below ᾱ_t
    # use_clipped_model_output only matters when something was clipped
    a = d.ddim_step(SCHED, xt, 50, 40, eps, clip_x0=True)
    b = d.ddim_step(SCHED, xt, 50, 40, eps, clip_x0=True, use_clipped_model_output=False)
    assert np.max(np.abs(a - b)) > 1e-3
    assert np.array_equal(d.ddim_step(SCHED, xt, 50, 40, eps, use_clipped_model_output=False),
                          d.ddim_step(SCHED, xt, 50, 40, eps))
