"""Zero-terminal-SNR rescale against diffusers' rescale_zero_terminal_snr (test-only oracle, run in
float64) and by its defining properties: ᾱ_T = 0, ᾱ_1 unchanged, √ᾱ' an affine function of √ᾱ.

Tolerances: 1e-12 (both routes do a handful of float64 operations on O(1) numbers; a forgotten
shift or scale changes values at O(1e-3) and more).
"""

import numpy as np
import pytest

from ddpm_ref.schedules import SCHEDULE_NAMES, Schedule, make_schedule
from ddpm_ref.schedules import rescale_zero_terminal_snr, rescaled_betas

SCHEDULES = [make_schedule(n, T) for n in SCHEDULE_NAMES for T in (2, 37, 1000)]


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_matches_diffusers(sched):
    pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as theirs

    ref = theirs(torch.from_numpy(sched.betas[1:].copy())).numpy()      # their index i is our t = i + 1
    np.testing.assert_allclose(rescaled_betas(sched), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_defining_properties(sched):
    new = rescale_zero_terminal_snr(sched)
    T = sched.T
    assert isinstance(new, Schedule) and new.T == T and new.input_scale == sched.input_scale
    assert new.betas[T] == 1.0 and new.alpha_bars[T] == 0.0 and new.logsnr[T] == -np.inf
    assert np.all((new.betas[1:] > 0) & (new.betas[1:] <= 1))
    assert np.all(np.diff(new.alpha_bars) < 0)                          # still decreasing
    np.testing.assert_allclose(new.alpha_bars[1], sched.alpha_bars[1], rtol=1e-12)
    # √ᾱ' = k·(√ᾱ − √ᾱ_T) for one constant k: the ratio is the same at every t < T
    old, rescaled = sched.sqrt_alpha_bars[1:T], new.sqrt_alpha_bars[1:T]
    ratio = rescaled / (old - sched.sqrt_alpha_bars[T])
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-10)
    assert new.params["zero_terminal_snr"] is True


def test_keeps_the_input_scale_and_name():
    s = rescale_zero_terminal_snr(make_schedule("cosine", 50, input_scale=0.5))
    assert s.input_scale == 0.5 and s.name == "cosine+zero_snr" and s.params["s"] == 0.008


def test_bad_arguments():
    with pytest.raises(ValueError, match="T >= 2"):
        rescale_zero_terminal_snr(make_schedule("linear", 1))
    with pytest.raises(ValueError, match="already"):
        rescale_zero_terminal_snr(rescale_zero_terminal_snr(make_schedule("linear", 10)))
    with pytest.raises(ValueError, match="schedule"):
        rescale_zero_terminal_snr("linear")
