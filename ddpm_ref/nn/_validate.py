"""Cheap input checks shared by the public layer functions (types, shapes, dtypes, scalars).

They never scan array values (no NaN search): a layer runs hundreds of times per training step,
and an O(size) check on every call would cost as much as a small layer. So a layer given NaN or
±inf returns NaN or ±inf, and so does one whose sums of products overflow the dtype (finite
inputs near its limit, ~1e19 squared in float32). The model checks values once, where they
enter (``UNet.forward`` checks x and ε̂, ``UNet.backward`` checks d_eps). Everything else a layer
is given (an argument of the wrong type, shape or dtype, an empty axis it cannot reduce, a
scalar out of range, a cache from another layer) raises ``ValueError`` naming the argument.
Internal helpers trust their callers and skip these.
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


def check_cache(name: str, cache, kind: str, keys=()):
    """Raise ValueError unless ``cache`` came from the matching forward (or was not kept).

    ``keys``: the entries the backward pass reads; a dict that claims ``kind`` but lacks one
    (built by hand, or edited) is refused here rather than with a KeyError in the middle.
    """
    if cache is None:
        raise ValueError(f"{name}: no cache (the forward pass ran without keeping one)")
    if not isinstance(cache, dict) or cache.get("op") != kind:
        got = cache.get("op") if isinstance(cache, dict) else type(cache).__name__
        raise ValueError(f"{name}: the cache did not come from the matching forward pass "
                         f"(expected a {kind!r} cache, got {got!r})")
    missing = [k for k in keys if k not in cache]
    if missing:
        raise ValueError(f"{name}: the cache lacks {', '.join(missing)}; it did not come from the "
                         f"matching forward pass")
    return cache


def check_axis(name: str, axis, ndim: int) -> int:
    """``axis`` as an index in 0..ndim−1 (negative counts from the end), or ValueError."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be an integer axis in {-ndim}..{ndim - 1}, got {axis!r}")
    return int(axis) % ndim
