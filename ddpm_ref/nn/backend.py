"""Which array library a layer runs on: NumPy, or CuPy for arrays that live on a GPU.

Layer code never writes ``np.zeros``; it asks ``xp = array_module(x)`` and writes ``xp.zeros``,
so the same lines run on CuPy arrays. CuPy is imported lazily, only when a CuPy array shows up,
so a machine without it never touches it.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["array_module", "as_strided", "numpy_ops"]


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


def numpy_ops():
    """The NumPy reference ops object: the module ``ddpm_ref.nn`` itself.

    An "ops object" is anything with ``conv2d_forward``, ``conv2d_backward``,
    ``attention_forward`` and ``attention_backward`` as attributes (see ``kernels.get_ops``).
    """
    import ddpm_ref.nn

    return ddpm_ref.nn
