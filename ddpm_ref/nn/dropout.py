r"""Inverted dropout: zero each entry with probability p and scale the survivors by 1/(1 − p).

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

y = x · m / (1 − p) with m ~ Bernoulli(1 − p), so E[y] = x and evaluation needs no rescaling.
The mask comes from the ``numpy.random.Generator`` passed in (never the global random state).
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["dropout_forward", "dropout_backward"]


def dropout_forward(x, p, rng):
    """Returns ``(y, cache)``. p in [0, 1); with p = 0 or rng None, y is x itself (no mask)."""
    check_float("x", x)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"p must be a probability in [0, 1), got {p!r}")
    if p == 0 or rng is None:
        return x, {"op": "dropout", "mask": None}
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    xp = array_module(x)
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = xp.asarray(keep, dtype=x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, {"op": "dropout", "mask": mask}


def dropout_backward(dy, cache):
    """dx = dy · m / (1 − p) (dy itself when no mask was drawn)."""
    check_cache("dropout_backward", cache, "dropout", ("mask",))
    check_float("dy", dy)
    mask = cache["mask"]
    if mask is None:
        return dy
    if dy.shape != mask.shape:
        raise ValueError(f"dy must have shape {tuple(mask.shape)}, got {tuple(dy.shape)}")
    return dy * mask
