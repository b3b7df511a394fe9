"""Small helpers shared by the data modules (internal)."""

from __future__ import annotations

import numpy as np


def float_dtype(dtype) -> np.dtype:
    """``np.dtype(dtype)`` if it is float32 or float64, else ValueError naming ``dtype``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt
