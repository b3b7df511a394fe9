"""One way to turn "a Generator or a seed" into a ``numpy.random.Generator`` (used by every layer).

Every random draw in ddpm_ref takes a ``numpy.random.Generator`` or an int seed; nothing reads
NumPy's global random state. This is the single place that converts one into the other.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_generator"]


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    """``rng`` itself if it is a Generator, ``default_rng(rng)`` for an int seed >= 0, else ValueError."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        if rng < 0:
            raise ValueError(f"{name} must be a seed >= 0 or a numpy.random.Generator, got {rng}")
        return np.random.default_rng(int(rng))
    raise ValueError(f"{name} must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")
