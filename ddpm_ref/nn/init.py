r"""Weight initialisation, as in Ho et al.'s TensorFlow U-Net.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

Weights are drawn from the uniform "fan-average" variance scaling (Glorot/Xavier uniform for
scale 1):

.. math::

    w \sim U(-a, a), \qquad a = \sqrt{3\,s / \bar n}, \qquad
    \bar n = \tfrac12(\text{fan\_in} + \text{fan\_out})

with fan_in = C·R·S and fan_out = K·R·S for a (K, C, R, S) kernel (in and out for a Linear).
Ho et al. use s = 1 everywhere except the layers that end a residual branch (each ResBlock's
second conv, each attention's output projection) and the network's last conv, where s = 0
("zero init"): every block then starts as the identity and the network starts by predicting
ε = 0. Biases start at 0, GroupNorm's γ at 1 and β at 0.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["variance_scaling", "fans"]


def _check_shape_arg(shape, min_ndim) -> tuple:
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of integers >= 0, got {shape!r}") from None
    if len(dims) < min_ndim or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 0
                            for d in dims):
        raise ValueError(f"shape must have >= {min_ndim} integer sizes >= 0 ((out, in) or (K, C, R, S)), "
                         f"got {shape!r}")
    return tuple(int(d) for d in dims)


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight (out, in) or a conv kernel (K, C, R, S)."""
    shape = _check_shape_arg(shape, 2)
    if len(shape) == 2:
        return shape[1], shape[0]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def variance_scaling(rng: np.random.Generator, shape, scale: float = 1.0, dtype="float32"):
    """Uniform fan-average variance scaling; scale = 0 gives zeros (no draw is made then)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real) or not 0 <= scale < math.inf:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    shape = _check_shape_arg(shape, 1 if scale == 0 else 2)     # zeros (a bias) need no fans
    if not isinstance(dtype, (str, np.dtype, type)) or dtype not in ("float32", "float64", np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if scale == 0:
        return np.zeros(shape, dtype=dtype)
    fan_in, fan_out = fans(shape)
    if fan_in + fan_out == 0:                        # an empty weight: nothing to draw
        return np.zeros(shape, dtype=dtype)
    limit = np.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)
