r"""Zero terminal SNR: rescale a schedule so that ᾱ_T = 0 (Lin et al. 2024, Algorithm 1).

Layer: math. Imports NumPy and ``ddpm_ref.schedules`` only.

Common schedules end with ᾱ_T > 0 (linear, T = 1000: ᾱ_T ≈ 4e-5, √ᾱ_T ≈ 0.0064), so x_T still
holds a little of x₀, its mean brightness in particular, while sampling starts from pure noise.
Lin et al. ("Common diffusion noise schedules and sample steps are flawed", 2024) shift and scale
√ᾱ_t so that the last one is exactly 0 and the first one is unchanged:

.. math::

    \sqrt{\bar\alpha_t}' = \big(\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_T}\big)\,
        \frac{\sqrt{\bar\alpha_1}}{\sqrt{\bar\alpha_1} - \sqrt{\bar\alpha_T}}   \qquad \text{(Algorithm 1)}

then go back to β: α_t' = ᾱ_t'/ᾱ_{t−1}' (α_1' = ᾱ_1'), β_t' = 1 − α_t'. So β_T' = 1 and ᾱ_T' = 0
exactly. The map is affine in √ᾱ, so it keeps the order of the steps (every β' stays in (0, 1]).

The new ``Schedule`` holds β_T = 1 without trouble (β may be 1; ᾱ_T = 0, 1/√ᾱ_T = +∞ and
logsnr_T = −∞ are stored as such). What cannot work with it is the ε-parameterisation at t = T:
x₀ = (x_T − ε)/0. Use v- or x₀-prediction (``ddpm_ref.prediction``); Lin et al. train with v.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.schedules import Schedule

__all__ = ["rescale_zero_terminal_snr", "rescaled_betas"]


def _check(schedule) -> None:
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule (ddpm_ref.schedules), got {type(schedule).__name__}")
    if schedule.T < 2:
        raise ValueError("the rescale needs T >= 2: it keeps alpha_bar_1 and sets alpha_bar_T = 0, "
                         f"which is impossible when they are the same step (T = {schedule.T})")
    if schedule.alpha_bars[schedule.T] == 0.0:
        raise ValueError("the schedule already has zero terminal SNR (alpha_bar_T = 0)")


def rescaled_betas(schedule: Schedule) -> np.ndarray:
    r"""β'_1..β'_T (length T, float64) of Algorithm 1 (module docstring); β'_T = 1."""
    _check(schedule)
    sqrt_ab = schedule.sqrt_alpha_bars[1:].copy()               # √ᾱ_1..√ᾱ_T (drop t = 0)
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab -= last                                             # shift: √ᾱ_T' = 0
    sqrt_ab *= first / (first - last)                           # scale: √ᾱ_1' = √ᾱ_1
    alpha_bars = sqrt_ab ** 2
    alphas = np.concatenate([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])   # undo the cumprod
    return 1.0 - alphas


def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    r"""A new ``Schedule`` with ᾱ_T = 0 and ᾱ_1 unchanged (Lin et al. 2024, Algorithm 1).

    Name, input scale and parameters are kept; the parameters gain ``zero_terminal_snr=True`` and
    the name the suffix ``"+zero_snr"``. Raises ValueError for T = 1 or a schedule already at ᾱ_T = 0.
    """
    betas = rescaled_betas(schedule)
    return Schedule(name=f"{schedule.name}+zero_snr", T=schedule.T, betas=np.concatenate([[0.0], betas]),
                    input_scale=schedule.input_scale, params={**schedule.params, "zero_terminal_snr": True})
