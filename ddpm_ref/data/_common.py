"""Small helpers shared by the data modules (internal).

Layer: loop (imports the model, layers and math; never the command line).
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def check_noise(noise) -> float:
    """``noise`` as a float, or ValueError unless it is a finite real number >= 0."""
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, numbers.Real) or not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def check_finite_result(x: np.ndarray, culprit: str) -> np.ndarray:
    """``x``, or ValueError naming ``culprit`` when it holds a non-finite value (an overflow)."""
    if not np.isfinite(x).all():
        raise ValueError(f"{culprit} is too large: the result overflows {x.dtype} (it holds ±inf or NaN)")
    return x


def check_seed(name: str, seed) -> int:
    """``seed`` as an int, or ValueError unless it is an integer >= 0."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {seed!r}")
    return int(seed)


def float_dtype(dtype) -> np.dtype:
    """``np.dtype(dtype)`` if it is float32 or float64, else ValueError naming ``dtype``."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt
