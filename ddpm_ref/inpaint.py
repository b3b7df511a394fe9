r"""Inpainting and editing with an unconditional ε-model: replacement, RePaint and SDEdit.

Layer: loop. It imports the math layer (``diffusion.p_mean_variance``, ``schedules``) and nothing
above; the ε-model is any callable ``eps_model(xt, t, y=None)`` (``ddpm_ref.sample``'s contract),
for instance ``GaussianMixture.eps_model(sched)`` or ``ModelEps(unet)``. Timesteps follow the
paper, t = 1..T; index 0 of the schedule is the data (ᾱ_0 = 1).

The mask m has x's shape (or broadcasts to it): 1 where the pixel (coordinate) is known, 0 where
it is to be filled in. x_known holds the known values (its masked-out entries are ignored).

* **Replacement** (the imputation of Song et al. 2021's score-SDE paper, and the baseline RePaint
  starts from): at every
  step the known region of x_{t−1} is a fresh forward sample of the known data,

  .. math::  x^{known}_{t-1} = \sqrt{\bar α_{t-1}}\, x_0 + \sqrt{1-\bar α_{t-1}}\, ε \qquad (\text{Ho et al. eq. 4})

  the unknown region is the model's reverse step x^{unknown}_{t−1} ~ p_θ(x_{t−1} | x_t) (eq. 11), and
  x_{t−1} = m ⊙ x^{known}_{t−1} + (1 − m) ⊙ x^{unknown}_{t−1} (Lugmayr et al. 2022, eq. 8).
  The unknown region only ever sees a noised *copy* of the known one, so it can commit to a
  completion that disagrees with it (the tests measure how often, on a Gaussian mixture).
* **RePaint** (Lugmayr et al. 2022, Algorithm 1 and sec. 4.2): the same step, but after reaching
  level t the chain is sent *back* j steps by the forward process,

  .. math::  x_{t+j} \sim q(x_{t+j} \mid x_t) = N\big(\sqrt{\bar α_{t+j}/\bar α_t}\, x_t,\ (1 - \bar α_{t+j}/\bar α_t) I\big)

  and denoised again, r − 1 times per jump point (r = ``resamples``, j = ``jump_length``); each
  pass lets the unknown region harmonise with the known one. r = 1 is replacement.
* **SDEdit** (Meng et al. 2022, Algorithm 1 with the DDPM sampler): noise the input to t_0,
  x_{t_0} = √ᾱ_{t_0} x + √(1 − ᾱ_{t_0}) ε, and run the reverse chain from t_0 to 0. t_0 = T forgets the
  input; small t_0 keeps it. On a Gaussian mixture the output's law is exactly
  E_{x_{t_0} ~ q(·|x)} p(x_0 | x_{t_0}), which the tests use.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.diffusion import VARIANCES, p_mean_variance
from ddpm_ref.schedules import Schedule

__all__ = ["MASKS", "make_mask", "repaint_schedule", "sample_repaint", "sample_replacement", "sdedit"]

MASKS = ("left", "right", "top", "bottom", "center")   # the region to *fill in*, named for the CLI


def _check_args(eps_model, sched, x, mask=None, variance="fixed_small"):
    """Every argument check of this module in one place; returns (x float64, mask float64 or None)."""
    if not callable(eps_model):
        raise ValueError("eps_model must be a callable eps_model(xt, t, y=None)")
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule, got {type(sched).__name__}")
    if variance not in VARIANCES:
        raise ValueError(f"variance={variance!r} is not known; choose one of {VARIANCES}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"the input must be a finite array (N, ...) with N >= 1, got shape {x.shape}")
    if mask is None:
        return x, None
    m = np.asarray(mask)
    try:
        m = np.broadcast_to(m, x.shape)
    except ValueError:
        raise ValueError(f"mask of shape {m.shape} does not broadcast to the input's shape {x.shape}") from None
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("mask must hold only 0 (unknown, to fill in) and 1 (known)")
    return x, m.astype(np.float64)


def make_mask(name: str, height: int, width: int):
    """A (1, 1, H, W) float mask, 1 = known, 0 = to fill in; ``name`` is the region filled in.

    "left"/"right": columns [0, W/2) / [W/2, W); "top"/"bottom": rows likewise (W/2 rounded down);
    "center": the middle block [H/4, H − H/4) × [W/4, W − W/4).
    """
    if name not in MASKS:
        raise ValueError(f"mask={name!r} is not known; choose one of {', '.join(MASKS)} (or give a mask array)")
    H, W = check_positive_int("height", height), check_positive_int("width", width)
    m = np.ones((1, 1, H, W))
    hh, hw = H // 2, W // 2
    region = {"left": (slice(None), slice(0, hw)), "right": (slice(None), slice(hw, W)),
              "top": (slice(0, hh), slice(None)), "bottom": (slice(hh, H), slice(None)),
              "center": (slice(H // 4, H - H // 4), slice(W // 4, W - W // 4))}[name]
    m[0, 0][region] = 0.0
    return m


def repaint_schedule(T: int, jump_length: int = 1, resamples: int = 1) -> list[int]:
    """The levels RePaint visits, from T down to 0 with jumps back (Lugmayr et al. 2022, sec. 4.2).

    Going down one step at a time, on reaching a level t that is a multiple of ``jump_length`` with
    0 < t <= T − jump_length, the chain jumps back up to t + jump_length, ``resamples − 1`` times in all for that
    t. ``resamples=1`` is the plain descent [T, T−1, ..., 0]. With jump_length = 1 every step
    t → t−1 for t ≥ 2 runs ``resamples`` times, as in their Algorithm 1.
    """
    T = check_positive_int("T", T)
    j = check_positive_int("jump_length", jump_length)
    r = check_positive_int("resamples", resamples)
    left = {t: r - 1 for t in range(j, T - j + 1, j)}   # jumps owed at each jump point (t + j <= T)
    t, levels = T, [T]
    while t > 0:
        t -= 1
        levels.append(t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            t += j
            levels.append(t)
    return levels


def _reverse_step(eps_model, sched, x, t, g, variance):
    """x_{t−1} ~ p_θ(x_{t−1} | x_t) (Ho et al. eq. 11 and Algorithm 2; no noise at t = 1)."""
    t_arr = np.full(x.shape[0], t, dtype=np.int64)
    eps = np.asarray(eps_model(x, t_arr, None), dtype=np.float64)
    mean, var = p_mean_variance(sched, x, t_arr, eps, variance=variance)
    return mean + np.sqrt(var) * g.standard_normal(x.shape) if t > 1 else mean


def sample_repaint(eps_model, sched, x_known, mask, *, resamples: int = 1, jump_length: int = 1,
                   rng=0, variance: str = "fixed_small"):
    r"""RePaint (Lugmayr et al. 2022): fill in where mask = 0, keeping where mask = 1.

    x_T ~ N(0, I); then along ``repaint_schedule(T, jump_length, resamples)``: a step down t → t−1
    is the replacement step (module docstring, eq. 8), a jump up t → t + j is the forward process
    q(x_{t+j} | x_t). Returns x_0 (N, ...) float64 in data units, equal to x_known where mask = 1.
    """
    x0, m = _check_args(eps_model, sched, x_known, mask, variance)
    g = as_generator(rng)
    b, ab = sched.input_scale, sched.alpha_bars
    levels = repaint_schedule(sched.T, jump_length, resamples)
    x = g.standard_normal(x0.shape)                                          # x_T ~ N(0, I)
    for t, t_next in zip(levels[:-1], levels[1:]):
        if t_next < t:                                                       # down: t → t − 1
            known = (sched.sqrt_alpha_bars[t - 1] * b * x0
                     + sched.sqrt_one_minus_alpha_bars[t - 1] * g.standard_normal(x0.shape))   # eq. 4 at t − 1
            unknown = _reverse_step(eps_model, sched, x, t, g, variance)     # eq. 11
            x = m * known + (1 - m) * unknown                                # Lugmayr et al. eq. 8
        else:                                                                # up: t → t + j
            ratio = ab[t_next] / ab[t]                                       # ᾱ_{t+j}/ᾱ_t
            x = np.sqrt(ratio) * x + np.sqrt(1 - ratio) * g.standard_normal(x.shape)   # q(x_{t+j} | x_t)
    return x / b


def sample_replacement(eps_model, sched, x_known, mask, *, rng=0, variance: str = "fixed_small"):
    """The replacement method: ``sample_repaint`` with one pass (no resampling)."""
    return sample_repaint(eps_model, sched, x_known, mask, resamples=1, rng=rng, variance=variance)


def sdedit(eps_model, sched, x_input, t0: int, *, rng=0, variance: str = "fixed_small"):
    r"""SDEdit (Meng et al. 2022): x_{t_0} = √ᾱ_{t_0}·b·x + √(1 − ᾱ_{t_0})·ε, then the reverse chain t_0 → 0.

    ``t0`` in 1..T (the "strength" t_0/T of the command line). Returns x_0 (N, ...) float64.
    """
    x, _ = _check_args(eps_model, sched, x_input, None, variance)
    if isinstance(t0, bool) or not isinstance(t0, numbers.Integral) or not 1 <= t0 <= sched.T:
        raise ValueError(f"t0 must be an integer in 1..{sched.T} (the step the input is noised to), got {t0!r}")
    g = as_generator(rng)
    xt = (sched.sqrt_alpha_bars[t0] * sched.input_scale * x
          + sched.sqrt_one_minus_alpha_bars[t0] * g.standard_normal(x.shape))   # Ho et al. eq. 4
    for t in range(int(t0), 0, -1):
        xt = _reverse_step(eps_model, sched, xt, t, g, variance)               # eq. 11
    return xt / sched.input_scale
