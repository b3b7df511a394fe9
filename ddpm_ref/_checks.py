"""Input checks shared by the public functions of ddpm_ref.

Layer: helpers (NumPy only), used by every layer.

Public functions validate what they are given and raise ``ValueError`` saying which argument was
wrong and what is allowed. Internal helpers trust their callers and do not call these.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_choice(name: str, value, choices) -> None:
    """Raise unless ``value`` is one of ``choices`` (the message lists them)."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name}={value!r} is not known; choose one of {allowed}")


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_finite(name: str, x) -> np.ndarray:
    """Return ``x`` as an array, or raise if it holds NaN or infinity (or is not numeric)."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} holds {bad} NaN or infinite value(s); all values must be finite")
    return arr


def check_float_array(name: str, x) -> np.ndarray:
    """Return ``x`` as a finite float32/float64 array (integers and booleans are converted to float64)."""
    arr = check_finite(name, x)
    if np.iscomplexobj(arr):   # astype(float64) would silently drop the imaginary part
        raise ValueError(f"{name} must be real (float32 or float64), got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    elif arr.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be float32 or float64, got {arr.dtype}")
    return arr


def check_same_shape(**arrays) -> None:
    """Raise unless every keyword argument has the same shape (the message names them)."""
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"shapes must match: {desc}")


def check_timesteps(t, T: int, *, lowest: int = 1, name: str = "t"):
    """Validate timesteps in the paper's convention, ``lowest <= t <= T``.

    ``t`` is a Python/NumPy integer, or an integer array of shape (N,). Returns an int or an
    int64 array. Floats (even 3.0), booleans and out-of-range values raise ``ValueError``.
    """
    if isinstance(t, bool) or isinstance(t, np.bool_):
        raise ValueError(f"{name} must be an integer in {lowest}..{T}, got a boolean")
    if isinstance(t, numbers.Integral):
        if not lowest <= t <= T:
            raise ValueError(f"{name}={t} is outside {lowest}..{T} (timesteps follow the paper: t = 1..T)")
        return int(t)
    arr = np.asarray(t)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer or an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be an int or a 1-D int array of shape (N,), got shape {arr.shape}")
    if arr.size and (arr.min() < lowest or arr.max() > T):
        raise ValueError(
            f"{name} has values in {arr.min()}..{arr.max()}, outside {lowest}..{T} "
            "(timesteps follow the paper: t = 1..T)"
        )
    return arr.astype(np.int64)


def check_batch(t, x: np.ndarray, *, name: str = "t", x_name: str = "x") -> None:
    """Raise unless an array of timesteps has one entry per example of ``x`` (its leading axis)."""
    if isinstance(t, np.ndarray):
        if x.ndim == 0 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name} has {t.shape[0]} timesteps but {x_name} has shape {x.shape}; "
                f"an array {name} must index the leading (batch) axis of {x_name}"
            )
