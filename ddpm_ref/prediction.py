r"""Prediction targets: what the network outputs (ε, x₀ or v) and how each converts to the others.

Layer: math. Imports NumPy, ``ddpm_ref._checks``, ``ddpm_ref._math_checks`` (``finite_as``) and ``ddpm_ref.schedules``.

A network trained on x_t = √ᾱ_t·b·x₀ + √(1 − ᾱ_t)·ε can be asked for any one of three things
(b is Chen 2023's ``schedule.input_scale``, 1 for DDPM; the chain's "x₀" is b·x₀):

==========  =====================================================  ============================
prediction  the network outputs                                    introduced by
==========  =====================================================  ============================
``"eps"``   ε, the noise that was added                            Ho et al. 2020 (eq. 11)
``"x0"``    x₀, the clean data, in data units (not multiplied by b) Ho et al. 2020 (sec. 3.2, as
                                                                   an ablation); diffusers' "sample"
``"v"``     v = √ᾱ_t·ε − √(1 − ᾱ_t)·b·x₀, the "velocity"          Salimans & Ho 2022 (sec. 4)
==========  =====================================================  ============================

Whatever the network outputs, x_t and the output together determine both ε and x₀ (two linear
equations in two unknowns), and every sampler is written in terms of those two:

.. math::

    \text{from } \hat x_0:&\quad \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\, b\, \hat x_0}{\sqrt{1 - \bar\alpha_t}} \\
    \text{from } \hat v:&\quad \hat\epsilon = \sqrt{\bar\alpha_t}\,\hat v + \sqrt{1 - \bar\alpha_t}\, x_t, \qquad
                         b\,\hat x_0 = \sqrt{\bar\alpha_t}\, x_t - \sqrt{1 - \bar\alpha_t}\,\hat v \\
    \text{from } \hat\epsilon:&\quad b\,\hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\,\hat\epsilon}{\sqrt{\bar\alpha_t}}

Geometrically (Salimans & Ho 2022, fig. 2): with φ_t = arctan(√(1−ᾱ_t)/√ᾱ_t), (x_t, v) is (b·x₀, ε)
rotated by φ_t, so v is the time derivative dx_t/dφ and the v-conversions never divide.

**Zero terminal SNR** (ᾱ_T = 0, see ``ddpm_ref.schedules.rescale_zero_terminal_snr``): x_T is pure noise and says nothing
about x₀. An x₀- or v-network still gives x̂₀ there (from v: b·x̂₀ = −v), but x₀ from an
ε-prediction divides by √ᾱ_T = 0 and is not recoverable: ``x0_from_prediction`` raises.

Also here, the two ways of keeping x̂₀ in range that samplers apply before using it:
``clip_x0`` (clip to [−r, r], diffusers' ``clip_sample_range``) and ``dynamic_threshold``
(Saharia et al. 2022).

Conventions as in ``ddpm_ref.diffusion``: t = 1..T (an int, or an int array (N,) indexing the
leading axis), arithmetic in float64, results in the inputs' dtype (float32 only if all are).
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_batch, check_choice, check_float_array, check_same_shape, check_timesteps
from ddpm_ref._math_checks import finite_as
from ddpm_ref.schedules import Schedule

__all__ = [
    "PREDICTIONS",
    "v_target",
    "eps_from_prediction",
    "x0_from_prediction",
    "clip_x0",
    "dynamic_threshold",
]

PREDICTIONS = ("eps", "x0", "v")


# ------------------------------------------------------------------ checks and indexing (internal)
def _check_inputs(schedule, t, prediction=None, **arrays):
    """One call at the top of each public function: (float64 arrays, result dtype, checked t)."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule (ddpm_ref.schedules), got {type(schedule).__name__}")
    if prediction is not None:
        check_choice("prediction", prediction, PREDICTIONS)
    checked = [check_float_array(name, a) for name, a in arrays.items()]
    check_same_shape(**dict(zip(arrays, checked)))
    dtype = np.result_type(*checked)
    t = check_timesteps(t, schedule.T)
    check_batch(t, checked[0], name="t", x_name=next(iter(arrays)))
    return [a.astype(np.float64) for a in checked], dtype, t


def _coef(arr: np.ndarray, t, ndim: int):
    """arr[t] as a float64 scalar (int t) or shape (N, 1, ..., 1) to broadcast against ndim-D arrays."""
    c = np.asarray(arr[t], dtype=np.float64)
    return c.reshape(c.shape + (1,) * (ndim - 1)) if c.ndim else np.float64(c)


def _x0_unrecoverable(schedule: Schedule, t) -> bool:
    return bool(np.any(schedule.alpha_bars[t] <= 0.0))


# ------------------------------------------------------------------ the targets
def v_target(schedule: Schedule, x0, t, noise):
    r"""The v-prediction target (Salimans & Ho 2022, sec. 4, written with our ᾱ for their α²):

    .. math::  v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1 - \bar\alpha_t}\; b\, x_0

    x0 is data (multiplied by b here, as ``q_sample`` does), noise the ε of x_t = q_sample(x0, t, ε).
    """
    (x0, noise), dtype, t = _check_inputs(schedule, t, x0=x0, noise=noise)
    nd, b = x0.ndim, schedule.input_scale
    v = _coef(schedule.sqrt_alpha_bars, t, nd) * noise - _coef(schedule.sqrt_one_minus_alpha_bars, t, nd) * b * x0
    return finite_as(v, dtype, "v_target", "x0, noise")


def eps_from_prediction(schedule: Schedule, xt, t, pred, prediction: str = "eps"):
    r"""ε̂ from the network's output ``pred`` (``prediction`` in ``PREDICTIONS``; see the module docstring).

    * ``"eps"``: ε̂ = pred;
    * ``"x0"``:  ε̂ = (x_t − √ᾱ_t·b·x̂₀)/√(1 − ᾱ_t)     (eq. 4 solved for ε);
    * ``"v"``:   ε̂ = √ᾱ_t·v̂ + √(1 − ᾱ_t)·x_t          (Salimans & Ho 2022, sec. 4).

    Defined at every t = 1..T, also where ᾱ_T = 0 (then ε̂ = x_T, from x₀ or v).
    """
    (xt, pred), dtype, t = _check_inputs(schedule, t, prediction, xt=xt, pred=pred)
    nd, b = xt.ndim, schedule.input_scale
    sab, s1m = _coef(schedule.sqrt_alpha_bars, t, nd), _coef(schedule.sqrt_one_minus_alpha_bars, t, nd)
    if prediction == "eps":
        eps = pred
    elif prediction == "x0":
        eps = (xt - sab * b * pred) / s1m            # 1 − ᾱ_t > 0 for every t ≥ 1 since β_t > 0
    else:
        eps = sab * pred + s1m * xt
    return finite_as(eps, dtype, "eps_from_prediction", "xt, pred")


def x0_from_prediction(schedule: Schedule, xt, t, pred, prediction: str = "eps"):
    r"""x̂₀ in data units (divided by b, like ``ddpm_ref.diffusion.predict_x0``) from the network's output.

    * ``"eps"``: b·x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t    (Ho et al. 2020, eq. 15); ValueError where ᾱ_t = 0;
    * ``"x0"``:  x̂₀ = pred;
    * ``"v"``:   b·x̂₀ = √ᾱ_t·x_t − √(1 − ᾱ_t)·v̂      (Salimans & Ho 2022, sec. 4).
    """
    (xt, pred), dtype, t = _check_inputs(schedule, t, prediction, xt=xt, pred=pred)
    if prediction == "eps" and _x0_unrecoverable(schedule, t):
        raise ValueError("x0 cannot be recovered from an eps prediction where alpha_bar_t = 0 (zero terminal "
                         "SNR at t = T: x_T holds no signal); use prediction='v' or 'x0' with such a schedule")
    nd, b = xt.ndim, schedule.input_scale
    sab, s1m = _coef(schedule.sqrt_alpha_bars, t, nd), _coef(schedule.sqrt_one_minus_alpha_bars, t, nd)
    if prediction == "eps":
        x0 = (xt - s1m * pred) / sab / b
    elif prediction == "x0":
        x0 = pred
    else:
        x0 = (sab * xt - s1m * pred) / b
    return finite_as(x0, dtype, "x0_from_prediction", "xt, pred")


# ------------------------------------------------------------------ keeping x̂₀ in range
def _check_positive(name: str, value, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value) or value <= 0 \
            or (np.isinf(value) and not allow_inf):
        what = "a number > 0 (may be inf)" if allow_inf else "a finite number > 0"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def clip_x0(x0, clip_range: float = 1.0):
    r"""Static clipping of x̂₀ to [−r, r] (diffusers' ``clip_sample`` with ``clip_sample_range`` = r).

    Not in Algorithm 2; improved-diffusion and diffusers clip to [−1, 1] by default.
    """
    r = _check_positive("clip_range", clip_range)
    x0 = check_float_array("x0", x0)
    return np.clip(x0, -r, r)


def dynamic_threshold(x0, percentile: float = 0.995, max_value: float = np.inf):
    r"""Dynamic thresholding of x̂₀ (Saharia et al. 2022, "Imagen", sec. 2.3), per example:

    .. math::  s = \min\big(\max(1,\ \mathrm{quantile}_p |\hat x_0|),\ s_{max}\big), \qquad
               \hat x_0 \leftarrow \mathrm{clip}(\hat x_0, -s, s) / s

    The quantile p (``percentile``, in (0, 1]) is taken over all the elements of one example (every
    axis but the first), with linear interpolation between order statistics (NumPy's and
    torch.quantile's default). s ≥ 1, so an example already inside [−1, 1] is unchanged; with s = 1
    this is static clipping to [−1, 1]. ``max_value`` is diffusers' ``sample_max_value`` (Imagen has
    no cap: the default is ∞). Note that diffusers' *default* ``sample_max_value = 1.0`` caps s at 1,
    which makes its thresholding plain clipping to [−1, 1]; pass max_value=1.0 to reproduce that.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 < percentile <= 1:
        raise ValueError(f"percentile must be a number in (0, 1] (e.g. 0.995), got {percentile!r}")
    s_max = _check_positive("max_value", max_value, allow_inf=True)
    if s_max < 1:
        raise ValueError(f"max_value must be >= 1 (s is at least 1), got {max_value!r}")
    x0 = check_float_array("x0", x0)
    if x0.ndim < 2 or x0.shape[0] == 0:
        raise ValueError(f"x0 must have a batch axis and at least one more, shape (N, ...), got {x0.shape}")
    flat = x0.reshape(x0.shape[0], -1).astype(np.float64)
    s = np.quantile(np.abs(flat), percentile, axis=1)               # "a certain percentile absolute pixel value"
    s = np.minimum(np.maximum(s, 1.0), s_max)[:, None]               # s = max(1, ·), capped at s_max
    out = np.clip(flat, -s, s) / s                                   # threshold to [−s, s], divide by s
    return out.reshape(x0.shape).astype(x0.dtype, copy=False)
