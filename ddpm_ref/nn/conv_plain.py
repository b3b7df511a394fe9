r"""2-D convolution, the plain version: loops to read against the equation (layer: ``nn``).

.. math::

    y_{n,k,i,j} = b_k + \sum_{c} \sum_{r} \sum_{s} w_{k,c,r,s}\; x^{pad}_{n,c,\,i\sigma + r,\,j\sigma + s},
    \qquad H_{out} = \lfloor (H + 2p - R) / \sigma \rfloor + 1

with stride σ, zero padding p, x (N, C, H, W), w (K, C, R, S), b (K,) or None. This is the
cross-correlation every deep-learning library calls "convolution" (the kernel is not flipped).

Same arguments, dtypes and returns as ``conv.py``'s ``conv2d_forward`` / ``conv2d_backward``, so
the two are interchangeable: ``y, cache = conv2d_forward_plain(...)`` and
``dx, dw, db = conv2d_backward_plain(dy, cache)`` (db is None when b was None). Each cache is
read only by its own backward. Python loops over every multiply-add: fine for the small float64
shapes of the tests and lesson 6, far too slow for training (``conv.py`` does the same sums as
one matrix product; its docstring says how).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.nn.conv import _check_conv_args as check_conv_args
from ddpm_ref.nn._validate import check_cache, check_float

__all__ = ["conv2d_forward_plain", "conv2d_backward_plain"]


def _check_backward_args(dy, cache):
    check_cache("conv2d_backward_plain", cache, "conv2d_plain",
                keys=("x_pad", "w", "stride", "padding", "x_shape", "y_shape", "has_bias"))
    check_float("dy", dy, ndim=4, dtype=cache["w"].dtype)
    if tuple(dy.shape) != cache["y_shape"]:
        raise ValueError(f"dy must have the output's shape {cache['y_shape']}, got {tuple(dy.shape)}")


def conv2d_forward_plain(x, w, b=None, stride=1, padding=0):
    r"""y[n,k,i,j] = b[k] + Σ_c Σ_r Σ_s w[k,c,r,s] · x_pad[n,c, i·stride + r, j·stride + s].

    Returns ``(y, cache)``; y is (N, K, H_out, W_out), dtype of x.

    Raises:
        ValueError: as ``conv2d_forward`` (x not (N, C, H, W) float32/float64, w not
            (K, C, R, S) of the same dtype, b not (K,) or None, stride < 1, padding < 0,
            kernel larger than the padded input).
    """
    stride, padding = check_conv_args(x, w, b, stride, padding)   # the same checks as conv2d_forward
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    H_out = (H + 2 * padding - R) // stride + 1
    W_out = (W + 2 * padding - S) // stride + 1
    p = padding
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))          # zeros around each image

    y = np.zeros((N, K, H_out, W_out), dtype=x.dtype)
    for n, k, i, j in np.ndindex(N, K, H_out, W_out):            # every output element
        total = b[k] if b is not None else 0.0
        for c, r, s in np.ndindex(C, R, S):                      # Σ_c Σ_r Σ_s
            total += w[k, c, r, s] * x_pad[n, c, i * stride + r, j * stride + s]
        y[n, k, i, j] = total

    cache = {"op": "conv2d_plain", "x_pad": x_pad, "w": w, "x_shape": (N, C, H, W),
             "y_shape": (N, K, H_out, W_out), "stride": stride, "padding": padding,
             "has_bias": b is not None}
    return y, cache


def conv2d_backward_plain(dy, cache):
    r"""Gradients of ``conv2d_forward_plain``: returns ``(dx, dw, db)``; db is None without a bias.

    Each term differentiates the forward sum by one of its factors:

    * db[k]       = Σ_n Σ_i Σ_j dy[n,k,i,j]
    * dw[k,c,r,s] = Σ_n Σ_i Σ_j dy[n,k,i,j] · x_pad[n,c, i·stride + r, j·stride + s]
    * dx_pad[n,c,h,v] = Σ_k Σ_i Σ_j Σ_r Σ_s dy[n,k,i,j] · w[k,c,r,s]
      over the (i, j, r, s) with i·stride + r = h and j·stride + s = v (the windows that read
      that pixel); dx is dx_pad without its padded border.

    Raises:
        ValueError: the cache is not a conv2d_plain cache, or dy does not have the output's
            shape/dtype.
    """
    _check_backward_args(dy, cache)
    x_pad, w, stride, p = cache["x_pad"], cache["w"], cache["stride"], cache["padding"]
    N, C, H, W = cache["x_shape"]
    K, _, R, S = w.shape
    _, _, H_out, W_out = dy.shape

    # term 1 (db): the bias b[k] is added to every output pixel of channel k
    db = None
    if cache["has_bias"]:
        db = np.zeros(K, dtype=dy.dtype)
        for n, k, i, j in np.ndindex(N, K, H_out, W_out):
            db[k] += dy[n, k, i, j]

    # term 2 (dw): w[k,c,r,s] multiplies x_pad[n,c, i·stride+r, j·stride+s] in every y[n,k,i,j]
    dw = np.zeros_like(w)
    for k, c, r, s in np.ndindex(K, C, R, S):
        for n, i, j in np.ndindex(N, H_out, W_out):
            dw[k, c, r, s] += dy[n, k, i, j] * x_pad[n, c, i * stride + r, j * stride + s]

    # term 3 (dx): each input pixel collects w[k,c,r,s]·dy[n,k,i,j] from every window that read it
    dx_pad = np.zeros_like(x_pad)
    for n, k, i, j in np.ndindex(N, K, H_out, W_out):
        for c, r, s in np.ndindex(C, R, S):
            dx_pad[n, c, i * stride + r, j * stride + s] += dy[n, k, i, j] * w[k, c, r, s]
    dx = dx_pad[:, :, p:p + H, p:p + W].copy()                   # drop the padded border

    return dx, dw, db
