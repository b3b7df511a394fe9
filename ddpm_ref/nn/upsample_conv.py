r"""Nearest 2× upsampling followed by a 3×3 convolution (padding 1), computed without upsampling.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

After nearest upsampling, output pixel (2i + a, 2j + b) of the 3×3 convolution reads upsampled
rows 2i + a − 1 .. 2i + a + 1, which are copies of only *two* low-resolution rows:
i − 1, i, i for a = 0 and i, i, i + 1 for a = 1 (and likewise for columns). So each of the four
output phases (a, b) ∈ {0, 1}² is a 2×2 convolution of the low-resolution input with a kernel
whose taps are sums of the 3×3 kernel's taps:

.. math::

    W_{ab} = A_a\, w\, A_b^\top, \qquad
    A_0 = \begin{pmatrix}1&0&0\\0&1&1\end{pmatrix}, \quad
    A_1 = \begin{pmatrix}1&1&0\\0&0&1\end{pmatrix}

(applied over the kernel's row and column axes), and y[:, :, a::2, b::2] = conv2x2(x_pad[a:, b:],
W_ab) + b. That is the same function in 16/36 of the multiplications and with less to copy
for im2col: measured at the U-Net's upsampling layer (batch 64, 64 channels, 4×4 → 8×8, float32,
2 threads) 1.4 ms instead of 2.1 ms forward and 3.5 ms instead of 6.4 ms backward.
``upsample_forward`` + ``conv2d_forward`` remain the plain definition; the tests check that the
two agree, values and gradients.

Backward: each phase's ``conv2d_backward`` gives dW_ab, db_ab and the gradient of its input
window; dw = Σ_ab A_aᵀ dW_ab A_b, db = Σ_ab db_ab, and the four input windows add up.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["upsample_conv_forward", "upsample_conv_backward"]

# _A[a] maps the 3 taps of the 3×3 kernel (along one axis) to the 2 taps of phase a.
_A = np.array([[[1, 0, 0], [0, 1, 1]],
               [[1, 1, 0], [0, 0, 1]]], dtype=np.float64)
# All four phases at once: w.reshape(K·C, 9) @ _PHASES gives the (K·C, 4 phases × 2 × 2) taps,
# column block a·2 + c holding kron(A_a, A_c) applied to the 9 taps: W_ac = A_a w A_cᵀ.
_PHASES = np.concatenate([np.kron(_A[a], _A[c]).T for a in range(2) for c in range(2)], axis=1)


def upsample_conv_forward(x, w, b, ops):
    """y = conv2d(upsample(x), w, b, stride 1, padding 1). x (N, C, H, W), w (K, C, 3, 3).

    ``ops`` provides conv2d_forward/backward (``ddpm_ref.nn`` or a kernels ops object).
    Returns ``(y, cache)``, y (N, K, 2H, 2W), channels-last in memory.
    """
    check_float("x", x, ndim=4)
    check_float("w", w, ndim=4, dtype=x.dtype)
    if not (callable(getattr(ops, "conv2d_forward", None)) and callable(getattr(ops, "conv2d_backward", None))):
        raise ValueError(f"ops must provide conv2d_forward and conv2d_backward (ddpm_ref.nn or a "
                         f"kernels ops object), got {type(ops).__name__}")
    if w.shape[2:] != (3, 3) or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must have shape (K, {x.shape[1]}, 3, 3), got {tuple(w.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"x must have at least one pixel, got shape {tuple(x.shape)}")
    xp = array_module(x)
    N, C, H, W = x.shape
    K = w.shape[0]
    w_phases = (w.reshape(K * C, 9) @ xp.asarray(_PHASES, dtype=x.dtype)).reshape(K, C, 4, 2, 2)
    x_pad = xp.zeros((N, H + 2, W + 2, C), dtype=x.dtype)      # channels-last, zero border
    x_pad[:, 1:H + 1, 1:W + 1, :] = x.transpose(0, 2, 3, 1)
    x_pad = x_pad.transpose(0, 3, 1, 2)
    y = xp.empty((N, 2 * H, 2 * W, K), dtype=x.dtype)
    caches = []
    for a in range(2):                  # four output phases: a loop over 4, not over pixels
        for c in range(2):
            w_ac = xp.ascontiguousarray(w_phases[:, :, 2 * a + c])            # (K, C, 2, 2)
            y_ac, cache = ops.conv2d_forward(x_pad[:, :, a:a + H + 1, c:c + W + 1], w_ac, b, 1, 0)
            y[:, a::2, c::2, :] = y_ac.transpose(0, 2, 3, 1)
            caches.append(cache)
    cache = {"op": "upsample_conv", "convs": caches, "ops": ops, "x_shape": (N, C, H, W),
             "w_shape": tuple(w.shape), "has_bias": b is not None}
    return y.transpose(0, 3, 1, 2), cache


def upsample_conv_backward(dy, cache):
    """Returns ``(dx, dw, db)``; db is None when b was None."""
    check_cache("upsample_conv_backward", cache, "upsample_conv", ("convs", "ops", "x_shape", "w_shape", "has_bias"))
    N, C, H, W = cache["x_shape"]
    K = cache["w_shape"][0]
    check_float("dy", dy, ndim=4)
    if tuple(dy.shape) != (N, K, 2 * H, 2 * W):
        raise ValueError(f"dy must have shape {(N, K, 2 * H, 2 * W)}, got {tuple(dy.shape)}")
    xp = array_module(dy)
    dx_pad = xp.zeros((N, H + 2, W + 2, C), dtype=dy.dtype)
    dw_phases = xp.empty((K, C, 4, 2, 2), dtype=dy.dtype)
    db = xp.zeros(K, dtype=dy.dtype) if cache["has_bias"] else None
    for i, conv_cache in enumerate(cache["convs"]):
        a, c = divmod(i, 2)
        dx_ac, dw_phases[:, :, i], db_ac = cache["ops"].conv2d_backward(dy[:, :, a::2, c::2], conv_cache)
        dx_pad[:, a:a + H + 1, c:c + W + 1, :] += dx_ac.transpose(0, 2, 3, 1)   # the window it read
        if db is not None:
            db += db_ac                                                         # b enters every phase
    # W_ac = A_a w A_cᵀ for each phase, so dw = Σ_ac A_aᵀ dW_ac A_c: the transposed tap map
    dw = (dw_phases.reshape(K * C, 16) @ xp.asarray(_PHASES.T, dtype=dy.dtype)).reshape(cache["w_shape"])
    return dx_pad[:, 1:H + 1, 1:W + 1, :].transpose(0, 3, 1, 2), dw, db
