r"""Weight initialisation, as in Ho et al.'s TensorFlow U-Net.

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

import numpy as np

__all__ = ["variance_scaling", "fans"]


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear weight (out, in) or a conv kernel (K, C, R, S)."""
    if len(shape) == 2:
        return shape[1], shape[0]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def variance_scaling(rng: np.random.Generator, shape, scale: float = 1.0, dtype="float32"):
    """Uniform fan-average variance scaling; scale = 0 gives zeros (no draw is made then)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    if scale == 0:
        return np.zeros(shape, dtype=dtype)
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)
