r"""SiLU (also called swish): the U-Net's only nonlinearity.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

.. math::

    \mathrm{silu}(x) = x\,\sigma(x), \qquad
    \frac{d\,\mathrm{silu}}{dx} = \sigma + x\,\sigma(1 - \sigma) = y + \sigma\,(1 - y)

(the last form reads only the cached output y and σ: four passes over the array instead of five).

σ is computed as ½(1 + tanh(x/2)), which equals 1/(1 + e^{−x}) but never overflows (e^{−x}
does for x < −88 in float32).
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["sigmoid", "silu_forward", "silu_backward"]


def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}), computed as ½(1 + tanh(x/2)) (same dtype as x, float32/float64)."""
    check_float("x", x)
    xp = array_module(x)
    s = xp.asarray(x * x.dtype.type(0.5))          # asarray: a 0-d x gives a NumPy scalar here
    xp.tanh(s, out=s)
    s += 1
    s *= x.dtype.type(0.5)
    return s


def silu_forward(x):
    """y = x · σ(x). Returns ``(y, cache)``; any shape, float32 or float64."""
    check_float("x", x)
    sig = sigmoid(x)
    y = x * sig
    return y, {"op": "silu", "y": y, "sig": sig}


def silu_backward(dy, cache):
    """dx = dy · (σ + x σ (1 − σ)) = dy · (y + σ (1 − y)), with y = x σ(x) from the cache."""
    check_cache("silu_backward", cache, "silu", ("y", "sig"))
    y, sig = cache["y"], cache["sig"]
    check_float("dy", dy, dtype=y.dtype)
    if dy.shape != y.shape:
        raise ValueError(f"dy must have the input's shape {tuple(y.shape)}, got {tuple(dy.shape)}")
    # d/dx [x σ(x)] = σ (term 1: through x) + x σ (1 − σ) (term 2: through σ(x)) = y + σ (1 − y)
    g = 1 - y
    g *= sig
    g += y
    g *= dy
    return g
