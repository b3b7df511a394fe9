"""sampling_timesteps against diffusers' DDIMScheduler.set_timesteps (test-only oracle), by hand, and by its properties.

The oracle runs over every steps = 1..T for several T (many steps do not divide T, and many land
on exact halves where the rounding convention matters) and over steps_offset 0..3 for "leading".
Comparisons are exact (integers).
"""

import numpy as np
import pytest

from ddpm_ref.timesteps import SPACINGS, sampling_timesteps


def _diffusers(T, steps, spacing, offset):
    from diffusers import DDIMScheduler

    sch = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
    sch.set_timesteps(steps)
    return sch.timesteps.numpy() + 1                           # their 0-based i is our t − 1


@pytest.fixture(scope="module")
def diffusers_available():
    pytest.importorskip("diffusers")
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)     # steps_offset warnings are noise here


@pytest.mark.parametrize("T", [7, 10, 15, 37, 100, 1000])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_equals_diffusers_timesteps_plus_one(T, spacing, diffusers_available):
    step_counts = range(1, T + 1) if T <= 100 else [1, 2, 3, 7, 10, 13, 50, 64, 99, 250, 333, 999, 1000]
    extra = []
    for steps in step_counts:
        for offset in ([0, 1, 3] if spacing == "leading" else [0, 1]):
            if spacing == "leading" and (steps - 1) * (T // steps) + offset + 1 > T:
                with pytest.raises(ValueError, match="steps_offset"):
                    sampling_timesteps(T, steps, spacing, offset)
                continue
            ours, ref = sampling_timesteps(T, steps, spacing, offset), _diffusers(T, steps, spacing, offset)
            assert ours.dtype == np.int64
            if len(ref) == steps + 1:                          # diffusers' float arange overshoot (module docstring)
                assert spacing == "trailing" and ref[-1] == 0, (T, steps, ref)
                extra.append(steps)
                ref = ref[:-1]
            np.testing.assert_array_equal(ours, ref, err_msg=f"T={T} steps={steps} {spacing} offset={offset}")
    if spacing == "trailing" and T == 15:
        assert 13 in extra                                     # the documented case: diffusers adds a t = 0 (its −1)


def test_by_hand():
    # linspace(0, 9, 5) = 0, 2.25, 4.5, 6.75, 9 → round half to even: 0, 2, 4, 7, 9 → t = i + 1
    np.testing.assert_array_equal(sampling_timesteps(10, 5, "linspace"), [10, 8, 5, 3, 1])
    # leading: stride 1000 // 10 = 100, i = 900, ..., 0, plus offset 1 → t = 902, ..., 2
    np.testing.assert_array_equal(sampling_timesteps(1000, 10, "leading", 1), np.arange(902, 1, -100))
    # trailing: 10 − k·2.5 = 10, 7.5, 5, 2.5 → round: 10, 8, 5, 2 → i = ... − 1 → t = 10, 8, 5, 2
    np.testing.assert_array_equal(sampling_timesteps(10, 4, "trailing"), [10, 8, 5, 2])
    np.testing.assert_array_equal(sampling_timesteps(50, 50, "trailing"), np.arange(50, 0, -1))
    np.testing.assert_array_equal(sampling_timesteps(50, 1, "linspace"), [1])   # diffusers' one linspace step is t = 1
    np.testing.assert_array_equal(sampling_timesteps(50, 1, "trailing"), [50])


@pytest.mark.parametrize("spacing", SPACINGS)
def test_properties(spacing):
    for T in (1, 2, 9, 64, 257):
        for steps in range(1, T + 1, max(1, T // 17)):
            ts = sampling_timesteps(T, steps, spacing)
            assert len(ts) == steps and np.all(np.diff(ts) < 0) and ts.min() >= 1 and ts.max() <= T
            if spacing != "leading":
                assert ts[0] == T or (spacing == "linspace" and steps == 1)


@pytest.mark.parametrize("args, match", [
    ((10, 11), "steps"), ((10, 0), "steps"), ((0, 1), "T"), ((10, 3, "uniform"), "spacing"),
    ((10, 3, "leading", -1), "steps_offset"), ((10, 3, "leading", 2.0), "steps_offset"),
    ((10, 10, "leading", 1), "steps_offset"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        sampling_timesteps(*args)
