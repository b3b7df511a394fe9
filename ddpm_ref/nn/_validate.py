"""Cheap input checks shared by the public layer functions (shapes and dtypes only).

They never scan array values (no NaN search): a layer runs hundreds of times per training step,
and an O(size) check on every call would cost as much as a small layer. Internal helpers trust
their callers and skip these.
"""

from __future__ import annotations

import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_float(name: str, x, ndim: int | None = None, dtype=None):
    """Raise ValueError unless ``x`` is an array of float32/float64 (with ``ndim`` axes, ``dtype``)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise ValueError(f"{name} must be a float32 or float64 array, got {type(x).__name__}")
    if x.dtype not in FLOATS:
        raise ValueError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} has dtype {x.dtype} but the input has dtype {dtype}; they must match")
    return x


def check_nonneg_int(name: str, v, lowest: int = 0) -> int:
    """Return ``v`` as int, or raise unless it is an integer >= ``lowest``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {v!r}")
    return int(v)


def check_cache(name: str, cache, kind: str):
    """Raise ValueError unless ``cache`` came from the matching forward (or was not kept)."""
    if cache is None:
        raise ValueError(f"{name}: no cache (the forward pass ran without keeping one)")
    if not isinstance(cache, dict) or cache.get("op") != kind:
        got = cache.get("op") if isinstance(cache, dict) else type(cache).__name__
        raise ValueError(f"{name}: the cache did not come from the matching forward pass "
                         f"(expected a {kind!r} cache, got {got!r})")
    return cache
