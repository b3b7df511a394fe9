"""ddpm_step / ddim_step against diffusers' DDPMScheduler.step / DDIMScheduler.step (test-only oracle).

diffusers indexes timesteps 0..T−1: their i is our t = i + 1, and their ``alphas_cumprod[i]`` is our
``alpha_bars[i + 1]``. Their ᾱ is float32 (computed from float32 βs); each test replaces it by ours
in float64, so that both sides compute in float64 from the same numbers and only the order of the
operations differs. Tolerance: rtol = atol = 1e-10. Why that much and not 1e-15: near t = T the
ε-step divides by √ᾱ_t (≈ 6e-3 for linear T = 50 … 1000) and multiplies back, and eq. 11 (ours, for
plain ε) and μ̃_t(x_t, x̂_0) (theirs) are different float64 routes to the same number; the rounding
of each is ≲ 1e-13 on values of order 1–10. An error in a coefficient (a wrong ᾱ index, a
missing b, √ instead of square) is of order 1e-2 or more.

Each step is compared from the same x_t (no accumulation). The noise of a stochastic step is drawn
by diffusers from a seeded ``torch.Generator``; we draw the same numbers from a generator with the
same seed and pass them as z.

What diffusers does that we do not copy (and how the tests pass it): DDIMScheduler.step goes from
i to i − T // steps whatever the spacing, which for "linspace" is not the next timestep it visits
(T = 50, 10 steps: 44 → 39 while it visits 38). Our ``ddim_step`` takes t_prev explicitly; the test
passes theirs.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddpm_ref.diffusion import ddim_step, ddpm_step, sampling_timesteps
from ddpm_ref.schedules import make_schedule, rescale_zero_terminal_snr

pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

NAMES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
TOL = dict(rtol=1e-10, atol=1e-10)
SHAPE = (3, 2, 4, 4)                      # (N, C, H, W): diffusers splits learned variances on axis 1


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _noise(seed, shape=SHAPE):
    """The numbers diffusers' randn_tensor draws from torch.Generator().manual_seed(seed), float64."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def _ours_into(ds, sched):
    ds.alphas_cumprod = _t(sched.alpha_bars[1:].copy())          # their i ↔ our t = i + 1, in float64
    ds.one = torch.tensor(1.0, dtype=torch.float64)
    return ds


# ------------------------------------------------------------------ DDPMScheduler
DDPM_CASES = [   # (prediction, variance, keep-range options: ours, theirs)
    *[(p, "fixed_small", {}, {}) for p in NAMES],
    *[(p, "fixed_large", {}, {}) for p in NAMES],
    ("eps", "fixed_small", {"clip_x0": True}, {"clip_sample": True}),
    ("v", "fixed_small", {"clip_x0": True, "clip_range": 1.5}, {"clip_sample": True, "clip_sample_range": 1.5}),
    ("x0", "fixed_large", {"clip_x0": True, "clip_range": 0.5}, {"clip_sample": True, "clip_sample_range": 0.5}),
    ("eps", "fixed_small", {"threshold": "dynamic"},
     {"thresholding": True, "sample_max_value": 1e9}),
    ("v", "fixed_small", {"threshold": "dynamic", "percentile": 0.9},
     {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1e9}),
]


@pytest.mark.parametrize("prediction, variance, ours, theirs", DDPM_CASES)
def test_ddpm_step_matches_diffusers(prediction, variance, ours, theirs):
    T = 50
    sched = make_schedule("linear", T)
    ds = _ours_into(DDPMScheduler(num_train_timesteps=T, prediction_type=NAMES[prediction], variance_type=variance,
                                  **{"clip_sample": False, **theirs}), sched)
    rng = np.random.default_rng(0)
    for i in range(T - 1, -1, -1):
        xt = rng.standard_normal(SHAPE)
        out = 3.0 * rng.standard_normal(SHAPE)            # large enough that clipping/thresholding acts
        res = ds.step(_t(out), i, _t(xt), generator=torch.Generator().manual_seed(i)).prev_sample.numpy()
        mine = ddpm_step(sched, xt, i + 1, out, _noise(i) if i > 0 else None, variance=variance,
                         prediction=prediction, **ours)
        np.testing.assert_allclose(mine, res, **TOL, err_msg=f"diffusers i = {i}, our t = {i + 1}")


@pytest.mark.parametrize("prediction", list(NAMES))
def test_ddpm_step_learned_range_matches_diffusers(prediction):
    """variance_type="learned_range": the model's 2·C channels are [pred | o], o in [−1, 1], and
    diffusers' interpolation is frac = (o + 1)/2, our v_sigma (Nichol & Dhariwal eq. 15)."""
    T = 40
    sched = make_schedule("cosine", T)
    ds = _ours_into(DDPMScheduler(num_train_timesteps=T, prediction_type=NAMES[prediction],
                                  variance_type="learned_range", clip_sample=False), sched)
    rng = np.random.default_rng(1)
    for i in range(T - 1, -1, -1):
        xt, out = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
        o = rng.uniform(-1, 1, SHAPE)
        res = ds.step(_t(np.concatenate([out, o], axis=1)), i, _t(xt),
                      generator=torch.Generator().manual_seed(i)).prev_sample.numpy()
        mine = ddpm_step(sched, xt, i + 1, out, _noise(i) if i > 0 else None, prediction=prediction,
                         v_sigma=(o + 1) / 2)
        np.testing.assert_allclose(mine, res, **TOL, err_msg=f"diffusers i = {i}")


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_ddpm_step_zero_terminal_snr_matches_diffusers(prediction):
    """rescale_betas_zero_snr=True: both run from t = T, where ᾱ_T = 0 (our rescale, float64, in both)."""
    T = 30
    sched = rescale_zero_terminal_snr(make_schedule("linear", T))
    assert sched.alpha_bars[T] == 0.0
    ds = _ours_into(DDPMScheduler(num_train_timesteps=T, prediction_type=NAMES[prediction], clip_sample=False,
                                  rescale_betas_zero_snr=True), sched)
    rng = np.random.default_rng(2)
    for i in range(T - 1, -1, -1):
        xt, out = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
        res = ds.step(_t(out), i, _t(xt), generator=torch.Generator().manual_seed(i)).prev_sample.numpy()
        mine = ddpm_step(sched, xt, i + 1, out, _noise(i) if i > 0 else None, prediction=prediction)
        assert np.all(np.isfinite(mine))
        np.testing.assert_allclose(mine, res, **TOL, err_msg=f"diffusers i = {i}")


def test_eps_prediction_at_zero_terminal_snr_is_refused():
    sched = rescale_zero_terminal_snr(make_schedule("linear", 10))
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="prediction='v'"):
        ddpm_step(sched, x, 10, x, x)
    with pytest.raises(ValueError, match="prediction='v'"):
        ddim_step(sched, x, 10, 5, x)


# ------------------------------------------------------------------ DDIMScheduler
DDIM_KEEP = [   # (ours, theirs, use_clipped_model_output)
    ({}, {}, False),
    ({"clip_x0": True}, {"clip_sample": True}, True),
    ({"clip_x0": True, "use_clipped_model_output": False}, {"clip_sample": True}, False),
    ({"clip_x0": True, "clip_range": 2.0}, {"clip_sample": True, "clip_sample_range": 2.0}, True),
    ({"threshold": "dynamic", "percentile": 0.95},
     {"thresholding": True, "dynamic_thresholding_ratio": 0.95, "sample_max_value": 1e9}, True),
    ({"threshold": "dynamic", "use_clipped_model_output": False},
     {"thresholding": True, "sample_max_value": 1e9}, False),
]


@pytest.mark.parametrize("spacing, steps_offset", [("linspace", 0), ("leading", 0), ("leading", 1), ("trailing", 0)])
@pytest.mark.parametrize("prediction", list(NAMES))
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("keep", range(len(DDIM_KEEP)))
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_matches_diffusers(spacing, steps_offset, prediction, set_alpha_to_one, keep, eta):
    T, S = 50, 7
    ours, theirs, use_clipped = DDIM_KEEP[keep]
    sched = make_schedule("linear", T)
    ds = DDIMScheduler(num_train_timesteps=T, prediction_type=NAMES[prediction], set_alpha_to_one=set_alpha_to_one,
                       timestep_spacing=spacing, steps_offset=steps_offset, **{"clip_sample": False, **theirs})
    ds.alphas_cumprod = _t(sched.alpha_bars[1:].copy())
    ds.final_alpha_cumprod = torch.tensor(1.0 if set_alpha_to_one else sched.alpha_bars[1], dtype=torch.float64)
    ds.set_timesteps(S)
    ts = sampling_timesteps(T, S, spacing, steps_offset)
    np.testing.assert_array_equal(ds.timesteps.numpy() + 1, ts)           # the visited t, shifted by one
    rng = np.random.default_rng(3)
    for i in ds.timesteps.tolist():
        xt, out = rng.standard_normal(SHAPE), 3.0 * rng.standard_normal(SHAPE)
        z = rng.standard_normal(SHAPE)
        res = ds.step(_t(out), i, _t(xt), eta=eta, use_clipped_model_output=use_clipped,
                      variance_noise=_t(z)).prev_sample.numpy()
        t_prev = max(i - T // S + 1, 0)                                    # diffusers' prev, our indexing
        ab_prev = None if (set_alpha_to_one or t_prev > 0) else sched.alpha_bars[1]
        mine = ddim_step(sched, xt, i + 1, t_prev, out, eta=eta, z=z if eta > 0 else None, prediction=prediction,
                         alpha_bar_prev=ab_prev, **ours)
        np.testing.assert_allclose(mine, res, **TOL, err_msg=f"diffusers i = {i}, our t = {i + 1} -> {t_prev}")


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_ddim_step_zero_terminal_snr_matches_diffusers(prediction):
    """Lin et al.'s setting: zero terminal SNR, trailing spacing (starts at t = T), v or x0."""
    T, S = 100, 10
    sched = rescale_zero_terminal_snr(make_schedule("linear", T))
    ds = DDIMScheduler(num_train_timesteps=T, prediction_type=NAMES[prediction], clip_sample=False,
                       rescale_betas_zero_snr=True, timestep_spacing="trailing")
    # their rescale, in float32, lands within float32 rounding of ours (tests/test_zero_snr.py is exact)
    np.testing.assert_allclose(ds.alphas_cumprod.numpy(), sched.alpha_bars[1:], atol=1e-6)
    ds.alphas_cumprod = _t(sched.alpha_bars[1:].copy())
    ds.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    ds.set_timesteps(S)
    assert ds.timesteps[0] + 1 == T
    rng = np.random.default_rng(4)
    for i in ds.timesteps.tolist():
        xt, out = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
        res = ds.step(_t(out), i, _t(xt)).prev_sample.numpy()
        mine = ddim_step(sched, xt, i + 1, max(i - T // S + 1, 0), out, prediction=prediction)
        np.testing.assert_allclose(mine, res, **TOL, err_msg=f"diffusers i = {i}")
