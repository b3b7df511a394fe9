r"""The timestep embedding MLP (Ho et al. 2020, App. B): sinusoidal code → Linear → SiLU → Linear.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

.. math::

    e(t) = W_2\,\mathrm{silu}(W_1\,P(t) + b_1) + b_2

P(t) is ``ddpm_ref.embeddings.sinusoidal_embedding(t, d)`` (interleaved sin/cos, t = 1..T as
is) with d = w1.shape[1]. The result, of width w2.shape[0], is what every ResBlock reads (through
its own SiLU → Linear). t is an integer input, so there is no gradient with respect to it.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.embeddings import sinusoidal_embedding
from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.activations import silu_backward, silu_forward
from ddpm_ref.nn.backend import array_module
from ddpm_ref.nn.linear import linear_backward, linear_forward

__all__ = ["time_mlp_forward", "time_mlp_backward"]


def _check_weights(w1, b1, w2, b2):
    check_float("w1", w1, ndim=2)
    if w1.shape[1] < 2 or w1.shape[1] % 2:
        raise ValueError(f"w1 (E, d) must have an even code width d >= 2 (sin/cos pairs), got shape {tuple(w1.shape)}")
    check_float("w2", w2, ndim=2, dtype=w1.dtype)
    if w2.shape[1] != w1.shape[0]:
        raise ValueError(f"w2 (E2, E) must take w1's {w1.shape[0]} outputs, got shape {tuple(w2.shape)}")
    for name, b, n in (("b1", b1, w1.shape[0]), ("b2", b2, w2.shape[0])):
        check_float(name, b, ndim=1, dtype=w1.dtype)
        if b.shape[0] != n:
            raise ValueError(f"{name} must have shape ({n},), got {tuple(b.shape)}")


def time_mlp_forward(t, w1, b1, w2, b2):
    """e = Linear2(silu(Linear1(P(t)))). t int (N,); w1 (E, d); w2 (E2, E). Returns ``(e, cache)``."""
    _check_weights(w1, b1, w2, b2)
    t_arr = np.asarray(t.get() if hasattr(t, "get") else t)      # CuPy -> NumPy for the table
    if t_arr.ndim != 1 or not np.issubdtype(t_arr.dtype, np.integer):
        raise ValueError(f"t must be a 1-D integer array of timesteps, got {t_arr.dtype} shape {t_arr.shape}")
    xp = array_module(w1)
    code = xp.asarray(sinusoidal_embedding(t_arr, w1.shape[1], dtype=w1.dtype))   # (N, d)
    h, c1 = linear_forward(code, w1, b1)
    a, c2 = silu_forward(h)
    e, c3 = linear_forward(a, w2, b2)
    return e, {"op": "time_mlp", "linear1": c1, "silu": c2, "linear2": c3}


def time_mlp_backward(de, cache):
    """Returns ``(dw1, db1, dw2, db2)``."""
    check_cache("time_mlp_backward", cache, "time_mlp", ("linear1", "silu", "linear2"))
    check_float("de", de, ndim=2)
    da, dw2, db2 = linear_backward(de, cache["linear2"])
    dh = silu_backward(da, cache["silu"])
    _, dw1, db1 = linear_backward(dh, cache["linear1"])
    return dw1, db1, dw2, db2
