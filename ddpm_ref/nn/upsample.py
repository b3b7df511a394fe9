r"""Nearest-neighbour 2× upsampling: every pixel becomes a 2×2 block of copies.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

y[n, c, 2i + a, 2j + b] = x[n, c, i, j] for a, b ∈ {0, 1}; so dx[n, c, i, j] is the sum of dy
over that 2×2 block.
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["upsample_forward", "upsample_backward"]


def upsample_forward(x):
    """(N, C, H, W) -> (N, C, 2H, 2W). Returns ``(y, cache)``; y is channels-last in memory."""
    check_float("x", x, ndim=4)
    xp = array_module(x)
    N, C, H, W = x.shape
    xt = x.transpose(0, 2, 3, 1)[:, :, None, :, None, :]                 # (N, H, 1, W, 1, C)
    y = xp.broadcast_to(xt, (N, H, 2, W, 2, C)).reshape(N, 2 * H, 2 * W, C)   # one copy
    return y.transpose(0, 3, 1, 2), {"op": "upsample", "x_shape": (N, C, H, W)}


def upsample_backward(dy, cache):
    """dx = sum of dy over each 2×2 block."""
    check_cache("upsample_backward", cache, "upsample", ("x_shape",))
    N, C, H, W = cache["x_shape"]
    check_float("dy", dy, ndim=4)
    if tuple(dy.shape) != (N, C, 2 * H, 2 * W):
        raise ValueError(f"dy must have shape {(N, C, 2 * H, 2 * W)}, got {tuple(dy.shape)}")
    blocks = dy.transpose(0, 2, 3, 1).reshape(N, H, 2, W, 2, C)
    return blocks.sum(axis=(2, 4)).transpose(0, 3, 1, 2)
