"""Argument and result checks and the one indexing helper shared by the math modules.

Layer: math. Imports only NumPy, ``ddpm_ref._checks`` and ``ddpm_ref.schedules``. It exists so
that ``ddpm_ref.elbo`` can use the same checks as ``ddpm_ref.diffusion`` without importing that
module's private names (and so that diffusion never imports elbo); ``ddpm_ref.likelihood`` uses
``finite_as``. Every check raises
``ValueError`` naming the argument and what is allowed; ``at`` trusts its caller.
"""

from __future__ import annotations

import functools

import numpy as np

from ddpm_ref._checks import check_batch, check_float_array, check_same_shape, check_timesteps
from ddpm_ref.schedules import Schedule


def check_schedule(sched) -> None:
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule (see ddpm_ref.schedules.make_schedule), got {type(sched).__name__}")


def images(**arrays) -> tuple[list[np.ndarray], np.dtype]:
    """Finite float arrays of one shape, and the dtype the result takes (float32 only if all are)."""
    out = [check_float_array(name, a) for name, a in arrays.items()]
    check_same_shape(**dict(zip(arrays, out)))
    return out, np.result_type(*out)


def steps(sched: Schedule, t, x: np.ndarray, *, name: str = "t", lowest: int = 1):
    """Validated timesteps (int or int64 array (N,)) that index the batch axis of x."""
    t = check_timesteps(t, sched.T, lowest=lowest, name=name)
    check_batch(t, x, name=name, x_name="the images")
    return t


def check_recoverable(sched: Schedule, t) -> None:
    """x̂_0 divides by √ᾱ_t (and eq. 11 by √α_t): both must be > 0 at every t used."""
    if np.any(sched.alpha_bars[t] <= 0):
        bad = np.unique(np.asarray(t)[sched.alpha_bars[np.asarray(t)] <= 0])
        raise ValueError(f"x_0 cannot be recovered where alpha_bar_t = 0 (a beta of 1 in the schedule sched, "
                         f"at t = {', '.join(map(str, bad))}); use t with alpha_bar_t > 0, or a network with "
                         f"prediction='v' or 'x0' (zero terminal SNR)")


class RangeError(ValueError):
    """A result beyond the range of its dtype (raised by ``finite_as``); a ValueError like every other."""


def names_range_errors(names: str):
    """Decorator: a RangeError raised inside the function (by a function it calls) is raised again
    naming *this* function's arguments, so that vb_term_bpd's caller reads "x0, xt, eps", not normal_kl's."""
    def decorate(fn):
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except RangeError as e:
                raise RangeError(f"{fn.__name__}: no finite result for these {names} ({e})") from None
        return checked
    return decorate


def finite_as(result, dtype, function: str, names: str) -> np.ndarray:
    """``result`` cast to ``dtype``, or a ValueError naming the arguments if it is not representable there.

    The math is done in float64; a result beyond float32's (or float64's) range would otherwise come
    back as ±inf, which no caller wants from finite inputs.
    """
    with np.errstate(over="ignore", invalid="ignore"):     # the check below says it, with the names
        out = np.asarray(result).astype(dtype, copy=False)
    if not np.all(np.isfinite(out)):
        hint = "; pass float64 arrays" if np.dtype(dtype) == np.float32 else ""
        raise RangeError(f"{function}: the result exceeds the range of {np.dtype(dtype)} for these {names} "
                         f"(its largest finite value is {np.finfo(dtype).max:.3g}){hint}")
    return out


def at(arr: np.ndarray, t, ndim: int):
    """arr[t] as a float64 scalar (int t) or as shape (N, 1, ..., 1) for broadcasting against ndim-D images.

    A NumPy float64 (not a Python float, which NumPy 2 treats as "weak") so that float32 images are
    computed in float64 whether t is an int or an array, and only the result is cast back.
    """
    c = arr[t]
    return c.reshape(c.shape + (1,) * (ndim - 1)) if isinstance(t, np.ndarray) else np.float64(c)


def per_example(v, ndim: int):
    """A float64 scalar, or an array (N,) reshaped to (N, 1, ..., 1) against ndim-D images."""
    v = np.asarray(v, dtype=np.float64)
    return v.reshape(v.shape + (1,) * (ndim - 1)) if v.ndim else np.float64(v)
