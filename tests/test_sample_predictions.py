"""The samplers with x0/v prediction, learned variances, spacings and zero terminal SNR (issue 11).

The oracle is the Gaussian mixture's closed-form posterior (ddpm_ref.data.gmm): its optimal x̂_0 =
E[x_0 | x_t] and ε̂ = E[ε | x_t] are computed by the data module, not by the conversions under test,
and the v-model is v = √ᾱ_t ε̂ − √(1 − ᾱ_t) x̂_0 written out here.
"""

import numpy as np
import pytest

from ddpm_ref.data import default_gmm
from ddpm_ref.sample import guided_eps, sample_ddim, sample_ddpm
from ddpm_ref.schedules import make_schedule, rescale_zero_terminal_snr
from ddpm_ref.timesteps import sampling_timesteps

from test_sample import _check_mixture


def _models(gmm, sched):
    def eps(xt, t, y=None):
        return gmm.optimal_eps(sched, xt, t)

    def x0(xt, t, y=None):
        return gmm.optimal_x0(sched, xt, t)

    def v(xt, t, y=None):
        a, s = np.sqrt(sched.alpha_bars[t])[:, None], np.sqrt(1.0 - sched.alpha_bars[t])[:, None]
        return a * gmm.optimal_eps(sched, xt, t) - s * gmm.optimal_x0(sched, xt, t)

    return {"eps": eps, "x0": x0, "v": v}


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_x0_and_v_models_give_the_eps_samples(prediction):
    """The same optimal denoiser asked for ε, x_0 or v: the same x_T and z give the same samples.
    DDIM η = 0 is deterministic; DDPM draws the same z in the same order. Tolerance 1e-8: the routes
    differ in rounding only (x̂_0 divides by √ᾱ_t ≈ 6e-3 at t = T), amplified over 1000 steps."""
    gmm, sched = default_gmm(), make_schedule("linear", 1000)
    m = _models(gmm, sched)
    ref = sample_ddim(m["eps"], sched, (64, 2), steps=50, rng=1, progress=False)
    got = sample_ddim(m[prediction], sched, (64, 2), steps=50, rng=1, progress=False, prediction=prediction)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8)
    ref = sample_ddpm(m["eps"], sched, (64, 2), rng=2, progress=False)
    got = sample_ddpm(m[prediction], sched, (64, 2), rng=2, progress=False, prediction=prediction)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim-trailing"])
def test_zero_terminal_snr_sampling_from_T_reproduces_the_mixture(prediction, sampler):
    gmm = default_gmm()
    sched = rescale_zero_terminal_snr(make_schedule("linear", 1000))
    model = _models(gmm, sched)[prediction]
    if sampler == "ddpm":
        x = sample_ddpm(model, sched, (2000, 2), rng=0, progress=False, prediction=prediction)
    else:
        # every t (at 100 steps the optimal denoiser's coarse-step bias shrinks the component spread to
        # ≈ 0.83 of its value, beyond the 10% this check allows; that bias is DDIM's, not the zero-SNR path's)
        x = sample_ddim(model, sched, (2000, 2), steps=1000, eta=1.0, rng=0, progress=False, prediction=prediction,
                        spacing="trailing")
    assert np.all(np.isfinite(x))
    _check_mixture(gmm, x)


def test_zero_terminal_snr_refuses_eps():
    gmm = default_gmm()
    sched = rescale_zero_terminal_snr(make_schedule("linear", 100))
    with pytest.raises(ValueError, match="prediction='v' or 'x0'"):
        sample_ddpm(_models(gmm, sched)["eps"], sched, (4, 2), progress=False)
    with pytest.raises(ValueError, match="prediction='v' or 'x0'"):
        sample_ddim(_models(gmm, sched)["eps"], sched, (4, 2), progress=False, spacing="trailing")


@pytest.mark.parametrize("v_value, variance", [(0.0, "fixed_small"), (1.0, "fixed_large")])
def test_learned_variance_at_the_ends_is_the_fixed_variance(v_value, variance):
    """v_σ = 0 gives σ² = β̃_t and v_σ = 1 gives β_t (eq. 15), so a model returning [ε | v_σ] samples
    as the fixed-variance sampler. Tolerance 1e-10: exp(log β) against β, per step."""
    gmm, sched = default_gmm(), make_schedule("linear", 200)
    eps = _models(gmm, sched)["eps"]

    def with_sigma(xt, t, y=None):
        return np.concatenate([eps(xt, t), np.full_like(xt, v_value)], axis=1)

    ref = sample_ddpm(eps, sched, (32, 2), rng=3, progress=False, variance=variance)
    got = sample_ddpm(with_sigma, sched, (32, 2), rng=3, progress=False, learn_sigma=True)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="2·C"):
        sample_ddpm(eps, sched, (4, 2), progress=False, learn_sigma=True)


def test_guidance_mixes_the_prediction_and_keeps_the_conditional_v_sigma():
    def model(xt, t, y=None):
        k = 1.0 if y is None else 3.0
        return np.concatenate([k * xt, np.full_like(xt, k)], axis=1)

    xt = np.ones((2, 2))
    out = guided_eps(model, xt, np.array([5, 5]), y=np.array([0, 1]), guidance=2.0)
    np.testing.assert_array_equal(out[:, :2], 3.0 * 3.0 - 2.0 * 1.0)   # (1 + w)·3 − w·1
    np.testing.assert_array_equal(out[:, 2:], 3.0)


@pytest.mark.parametrize("spacing, offset", [("linspace", 0), ("leading", 1), ("trailing", 0)])
def test_ddim_visits_the_spacing_timesteps(spacing, offset):
    seen = []
    gmm, sched = default_gmm(), make_schedule("linear", 100)

    def model(xt, t, y=None):
        seen.append(int(t[0]))
        return gmm.optimal_eps(sched, xt, t)

    sample_ddim(model, sched, (4, 2), steps=7, rng=0, progress=False, spacing=spacing, steps_offset=offset)
    assert seen == [int(t) for t in sampling_timesteps(100, 7, spacing, offset)]


def test_set_alpha_to_one_false_ends_on_alpha_bar_1():
    """With ᾱ_prev = ᾱ_1 at the last step x does not reach x̂_0: the result differs from the default."""
    gmm, sched = default_gmm(), make_schedule("linear", 100)
    eps = _models(gmm, sched)["eps"]
    a = sample_ddim(eps, sched, (8, 2), steps=10, rng=0, progress=False, spacing="leading")
    b = sample_ddim(eps, sched, (8, 2), steps=10, rng=0, progress=False, spacing="leading", set_alpha_to_one=False)
    assert np.max(np.abs(a - b)) > 1e-4
