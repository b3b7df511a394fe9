"""Which array library a layer runs on: NumPy, or CuPy for arrays that live on a GPU.

Layer code never writes ``np.zeros``; it asks ``xp = array_module(x)`` and writes ``xp.zeros``,
so the same lines run on CuPy arrays. CuPy is imported lazily, only when a CuPy array shows up,
so a machine without it never touches it.
"""

from __future__ import annotations

import sys
from typing import Protocol

import numpy as np

__all__ = ["array_module", "as_strided", "numpy_ops", "Ops"]


def array_module(x):
    """``cupy`` if ``x`` is a CuPy array, else ``numpy``."""
    if isinstance(x, np.ndarray):
        return np
    cupy = sys.modules.get("cupy")          # already imported by whoever made the CuPy array
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy
    return np


def as_strided(x, shape, strides):
    """A read-only strided view of ``x`` (numpy's or cupy's ``as_strided``)."""
    xp = array_module(x)
    if xp is np:
        return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(x, shape, strides)


class Ops(Protocol):
    """What the U-Net asks of an ops object: the four layer functions that a GPU would run.

    The NumPy reference is the module ``ddpm_ref.nn`` itself (``numpy_ops()``): its
    ``conv2d_forward`` is ``ddpm_ref.nn.conv.conv2d_forward`` and its ``attention_forward`` is
    ``ddpm_ref.nn.attention.attention_forward``; ``kernels.get_ops(...)`` returns another.
    Same signatures, dtypes and shapes as those, and one promise more: the array that a forward
    returns is new (no cache holds it and it shares no memory with the inputs), because the
    U-Net's blocks add into a convolution's output in place (``ddpm_ref.models.unet_blocks``).
    """

    def conv2d_forward(self, x, w, b=None, stride=1, padding=0):
        """``(y, cache)``: y = conv2d(x, w) + b, see ``ddpm_ref.nn.conv.conv2d_forward``."""

    def conv2d_backward(self, dy, cache):
        """``(dx, dw, db)``, see ``ddpm_ref.nn.conv.conv2d_backward``."""

    def attention_forward(self, q, k, v):
        """``(o, cache)``: o = softmax(q kᵀ/√D) v, q (B, Lq, D), k and v (B, Lk, D) (Lq ≠ Lk in
        cross-attention), see ``ddpm_ref.nn.attention.attention_forward``."""

    def attention_backward(self, do, cache):
        """``(dq, dk, dv)``, see ``ddpm_ref.nn.attention.attention_backward``."""


def numpy_ops():
    """The NumPy reference ops object: the module ``ddpm_ref.nn`` itself.

    An "ops object" is anything with ``conv2d_forward``, ``conv2d_backward``,
    ``attention_forward`` and ``attention_backward`` as attributes (see ``kernels.get_ops``).
    """
    import ddpm_ref.nn

    return ddpm_ref.nn
