r"""Which timesteps a sampler visits: the three spacings of diffusers (Lin et al. 2024, Table 2).

Layer: math. Imports NumPy and ``ddpm_ref._checks`` only.

A sampler with fewer steps than the schedule's T visits a decreasing subsequence of t = 1..T
(paper indexing) and ends with a step to t = 0 (no noise). Which subsequence is a convention, and
diffusers' ``DDIMScheduler``/``DDPMScheduler`` offer three (``timestep_spacing``). In diffusers'
0-based indexing i = t − 1, for ``steps`` = S:

============  ======================================================  ==========================
spacing       diffusers' i (our t = i + 1)                            first t visited
============  ======================================================  ==========================
"linspace"    round(linspace(0, T − 1, S)), reversed                  T (and always ends at 1)
"leading"     k·(T // S) + steps_offset, k = S − 1, ..., 0             (S − 1)·(T // S) + offset + 1
"trailing"    round(T − k·T/S) − 1, k = 0, ..., S − 1                 T (Lin et al.'s fix)
============  ======================================================  ==========================

Lin et al. 2024 point out that "leading" does not in general visit the last timestep (with T = 1000, S = 10 it
starts at t = 901), so a sampler starts from an x_T it was not trained on; "trailing" starts at T.

Rounding is NumPy's ``round``: halves go to the even neighbour (4.5 → 4, 5.5 → 6), and the
values are computed exactly as diffusers computes them (``linspace``; ``arange`` with a float
step), because on an exact half the float error of those two decides the rounding.

``steps_offset`` is used by "leading" only; diffusers ignores it for the other two, and so does this.

One difference from diffusers, on purpose: for "trailing", diffusers' ``np.arange(T, 0, −T/S)``
sometimes yields S + 1 values, the last being round(≈1e-13) − 1 = −1 (e.g. T = 15, S = 13); we
return the S values it meant (the test shows both).
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_choice, check_positive_int

__all__ = ["sampling_timesteps", "SPACINGS"]

SPACINGS = ("linspace", "leading", "trailing")


def _check(T, steps, spacing, steps_offset):
    T = check_positive_int("T", T)
    steps = check_positive_int("steps", steps)
    check_choice("spacing", spacing, SPACINGS)
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, numbers.Integral) or steps_offset < 0:
        raise ValueError(f"steps_offset must be an integer >= 0, got {steps_offset!r}")
    if steps > T:
        raise ValueError(f"steps={steps} is more than the schedule's T={T}; a sampler visits a subsequence of 1..T")
    if spacing == "leading" and (steps - 1) * (T // steps) + steps_offset + 1 > T:
        raise ValueError(f"steps_offset={steps_offset} moves the first timestep past T={T} "
                         f"(leading spacing visits k·(T // steps) + steps_offset + 1 for k < steps)")
    return T, steps, int(steps_offset)


def sampling_timesteps(T: int, steps: int, spacing: str = "linspace", steps_offset: int = 0) -> np.ndarray:
    r"""The decreasing int64 array of paper-indexed t (1..T) that a sampler with ``steps`` steps visits.

    Equal to diffusers' ``DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing,
    steps_offset=steps_offset).set_timesteps(steps); .timesteps + 1`` (see the module docstring
    for the formulas and the one "trailing" case where diffusers returns an extra −1).
    """
    T, S, offset = _check(T, steps, spacing, steps_offset)
    if spacing == "linspace":
        i = np.linspace(0, T - 1, S).round()[::-1]                 # evenly spaced, both ends included
    elif spacing == "leading":
        i = (np.arange(S) * (T // S))[::-1] + offset               # integer stride from 0 up
    else:
        i = np.round(np.arange(T, 0, -T / S))[:S] - 1              # float stride from T down
    return i.astype(np.int64) + 1                                   # diffusers' i is our t − 1
