"""Prediction targets (ε, x₀, v), their conversions, and clipping/thresholding of x̂₀.

Independent routes: v from the rotation picture of Salimans & Ho (angle φ_t, computed with
math.atan2/cos/sin, not the schedule's square roots) and as dx_t/dφ by finite differences; every
conversion recovers the (x₀, ε) that built x_t; dynamic thresholding against diffusers' own
``_threshold_sample`` (test-only oracle) and against hand-computed cases.

Tolerances: 1e-12 relative for float64 conversions (a few roundings of O(1) numbers; a wrong
coefficient shows up at O(1e-2) or more), 1e-6 for float32 results.
"""

import math

import numpy as np
import pytest

from ddpm_ref.prediction import (
    PREDICTIONS,
    clip_x0,
    dynamic_threshold,
    eps_from_prediction,
    v_target,
    x0_from_prediction,
)
from ddpm_ref.schedules import Schedule, make_schedule

LIN = make_schedule("linear", 100)
SCALED = make_schedule("cosine", 40, input_scale=0.6)


def _angle(sched, t):
    """φ_t with cos φ = √ᾱ_t, sin φ = √(1 − ᾱ_t), from atan2 of the two (Salimans & Ho, fig. 2)."""
    ab = float(sched.alpha_bars[t])
    return math.atan2(math.sqrt(1.0 - ab), math.sqrt(ab))


@pytest.mark.parametrize("sched", [LIN, SCALED])
@pytest.mark.parametrize("t", [1, 7, 40])
def test_v_target_is_the_rotated_noise(sched, t, rng):
    x0, eps = rng.uniform(-1, 1, (3, 5)), rng.standard_normal((3, 5))
    b, phi = sched.input_scale, _angle(sched, t)
    expected = math.cos(phi) * eps - math.sin(phi) * b * x0
    np.testing.assert_allclose(v_target(sched, x0, t, eps), expected, rtol=1e-12, atol=1e-14)


def test_v_is_the_derivative_of_x_t_along_the_angle(rng):
    """x_t(φ) = cos φ·b·x₀ + sin φ·ε; its derivative at φ_t, by centred differences (h = 1e-5, error O(h²)), is v."""
    sched, t = SCALED, 13
    x0, eps = rng.uniform(-1, 1, 6), rng.standard_normal(6)
    b, phi, h = sched.input_scale, _angle(sched, t), 1e-5

    def x_of(p):
        return math.cos(p) * b * x0 + math.sin(p) * eps

    fd = (x_of(phi + h) - x_of(phi - h)) / (2 * h)
    np.testing.assert_allclose(v_target(sched, x0, t, eps), fd, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("sched", [LIN, SCALED])
def test_conversions_recover_the_x0_and_noise_that_built_x_t(sched, prediction, rng):
    n = 6
    t = rng.integers(1, sched.T + 1, n)
    x0, eps = rng.uniform(-1, 1, (n, 2, 3)), rng.standard_normal((n, 2, 3))
    b = sched.input_scale
    c = np.array([math.cos(_angle(sched, int(s))) for s in t])[:, None, None]
    s = np.array([math.sin(_angle(sched, int(s))) for s in t])[:, None, None]
    xt = c * b * x0 + s * eps                                    # eq. 4, written as a rotation
    pred = {"eps": eps, "x0": x0, "v": c * eps - s * b * x0}[prediction]
    np.testing.assert_allclose(eps_from_prediction(sched, xt, t, pred, prediction), eps, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(x0_from_prediction(sched, xt, t, pred, prediction), x0, rtol=1e-10, atol=1e-11)


def test_float32_in_float32_out_and_int_t(rng):
    x0 = rng.uniform(-1, 1, (4, 3)).astype(np.float32)
    eps = rng.standard_normal((4, 3)).astype(np.float32)
    v = v_target(LIN, x0, 50, eps)
    assert v.dtype == np.float32
    xt = (math.sqrt(LIN.alpha_bars[50]) * x0 + math.sqrt(1 - LIN.alpha_bars[50]) * eps).astype(np.float32)
    out = x0_from_prediction(LIN, xt, 50, v, "v")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x0, rtol=1e-5, atol=1e-5)
    assert eps_from_prediction(LIN, xt, 50, v.astype(np.float64), "v").dtype == np.float64


def _zero_snr_schedule(T=10):
    """ᾱ_T = 0 built by hand: β_T = 1 (not by rescale_zero_terminal_snr, so this test is independent of it)."""
    return Schedule.from_betas(np.r_[np.linspace(0.01, 0.2, T - 1), 1.0], input_scale=0.5)


def test_zero_terminal_snr_v_and_x0_predictions_work_at_T_eps_does_not(rng):
    sched = _zero_snr_schedule()
    T = sched.T
    assert sched.alpha_bars[T] == 0.0
    x0, eps = rng.uniform(-1, 1, (3, 4)), rng.standard_normal((3, 4))
    xt = eps                                                     # x_T = 0·x₀ + 1·ε: pure noise
    v = v_target(sched, x0, T, eps)
    np.testing.assert_array_equal(v, -0.5 * x0)                  # v = 0·ε − 1·b·x₀
    np.testing.assert_allclose(x0_from_prediction(sched, xt, T, v, "v"), x0, rtol=1e-15)
    np.testing.assert_array_equal(eps_from_prediction(sched, xt, T, v, "v"), xt)
    np.testing.assert_array_equal(eps_from_prediction(sched, xt, T, x0, "x0"), xt)
    with pytest.raises(ValueError, match="alpha_bar_t = 0"):
        x0_from_prediction(sched, xt, T, eps, "eps")
    with pytest.raises(ValueError, match="alpha_bar_t = 0"):
        x0_from_prediction(sched, xt, np.array([1, T, 2]), eps, "eps")
    assert np.all(np.isfinite(x0_from_prediction(sched, xt, T - 1, eps, "eps")))


@pytest.mark.parametrize("call, match", [
    (lambda x: eps_from_prediction(LIN, x, 3, x, "sample"), "prediction"),
    (lambda x: x0_from_prediction(LIN, x, 0, x, "v"), "t=0"),
    (lambda x: x0_from_prediction(LIN, x, np.array([1, 2]), x, "v"), "leading"),
    (lambda x: v_target(LIN, x, 3, x[:, :2]), "shapes must match"),
    (lambda x: v_target("linear", x, 3, x), "schedule"),
    (lambda x: clip_x0(x, 0.0), "clip_range"),
    (lambda x: dynamic_threshold(x, 1.5), "percentile"),
    (lambda x: dynamic_threshold(x, 0.9, 0.5), "max_value"),
    (lambda x: dynamic_threshold(x[0], 0.9), "batch"),
])
def test_bad_arguments_raise_value_error_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros((3, 4)))


# ------------------------------------------------------------------ clipping and thresholding
def test_clip_x0_clips_to_the_range():
    x = np.array([[-3.0, -0.5, 0.2, 2.5]])
    np.testing.assert_array_equal(clip_x0(x), [[-1.0, -0.5, 0.2, 1.0]])
    np.testing.assert_array_equal(clip_x0(x, 2.0), [[-2.0, -0.5, 0.2, 2.0]])


def test_dynamic_threshold_by_hand():
    # example 0 inside [−1, 1]: unchanged (s = 1). Example 1: |x| = 0..9 over 10 elements; the
    # p = 0.9 quantile with linear interpolation is at position 0.9·9 = 8.1 → 8.1; clip to ±8.1, /8.1.
    a = np.array([0.5, -0.9, 0.1, 0.0, 1.0, -1.0, 0.3, 0.2, -0.2, 0.7])
    b = np.array([0.0, -1, 2, -3, 4, -5, 6, -7, 8, -9.0])
    out = dynamic_threshold(np.stack([a, b]), 0.9)
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_allclose(out[1], np.clip(b, -8.1, 8.1) / 8.1, rtol=1e-15)
    capped = dynamic_threshold(np.stack([a, b]), 0.9, max_value=2.0)   # s = min(8.1, 2)
    np.testing.assert_allclose(capped[1], np.clip(b, -2, 2) / 2, rtol=1e-15)
    np.testing.assert_array_equal(dynamic_threshold(np.stack([a, b]), 0.9, max_value=1.0),
                                  np.clip(np.stack([a, b]), -1, 1))


@pytest.mark.parametrize("ratio, smax", [(0.995, 1.0), (0.995, 3.0), (0.9, 1.5), (0.5, 10.0)])
def test_dynamic_threshold_matches_diffusers(ratio, smax, rng):
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from diffusers import DDPMScheduler

    x = rng.standard_normal((5, 3, 7, 6)) * np.array([0.3, 1.0, 2.0, 4.0, 8.0])[:, None, None, None]
    sch = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=ratio, sample_max_value=smax)
    ref = sch._threshold_sample(torch.from_numpy(x)).numpy()        # float64 in torch too
    np.testing.assert_allclose(dynamic_threshold(x, ratio, smax), ref, rtol=1e-12, atol=1e-14)
    assert dynamic_threshold(x.astype(np.float32), ratio, smax).dtype == np.float32


# ------------------------------------------------------------------ against diffusers' DDIM step (test-only)
_DIFFUSERS_NAMES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


@pytest.mark.parametrize("prediction, zero_snr",   # eps at zero SNR: x0 is not recoverable (tested above)
                         [("eps", False), ("x0", False), ("v", False), ("x0", True), ("v", True)])
def test_conversions_match_diffusers_ddim_step(prediction, zero_snr, rng):
    """DDIMScheduler.step's pred_original_sample is our x̂₀, and its η = 0 prev_sample is
    √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev)·ε̂ with our ε̂. Their ᾱ is replaced by ours in float64 (their own is
    float32), so the comparison is at 1e-12. Their step i is our t = i + 1."""
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from diffusers import DDIMScheduler

    from ddpm_ref.schedules import rescale_zero_terminal_snr

    sched = make_schedule("linear", 50)
    if zero_snr:
        sched = rescale_zero_terminal_snr(sched)
    ds = DDIMScheduler(num_train_timesteps=50, prediction_type=_DIFFUSERS_NAMES[prediction], clip_sample=False,
                       timestep_spacing="trailing")
    ds.alphas_cumprod = torch.from_numpy(sched.alpha_bars[1:].copy())
    ds.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    ds.set_timesteps(10)
    xt, out = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    for i in ds.timesteps.tolist():
        t, t_prev = i + 1, i + 1 - 50 // 10
        res = ds.step(torch.from_numpy(out), i, torch.from_numpy(xt), eta=0.0)
        x0 = x0_from_prediction(sched, xt, t, out, prediction)
        eps = eps_from_prediction(sched, xt, t, out, prediction)
        ab_prev = sched.alpha_bars[max(t_prev, 0)]
        np.testing.assert_allclose(res.pred_original_sample.numpy(), x0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.prev_sample.numpy(), math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps,
                                   rtol=1e-12, atol=1e-12)
