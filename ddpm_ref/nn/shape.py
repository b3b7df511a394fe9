r"""The two ways the U-Net joins paths: the residual add and the skip concatenation.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

* add: y = a + b, so da = db = dy (the gradient is copied to both branches).
* concat along channels: y = [a | b], so da and db are the two slices of dy.
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["add_forward", "add_backward", "concat_forward", "concat_backward"]


def add_forward(a, b):
    """y = a + b (same shape, same dtype). Returns ``(y, cache)``."""
    check_float("a", a)
    check_float("b", b, dtype=a.dtype)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a + b, {"op": "add", "shape": a.shape}


def add_backward(dy, cache):
    """Returns ``(da, db)``: both are dy itself (the same array; do not modify it in place)."""
    check_cache("add_backward", cache, "add", ("shape",))
    check_float("dy", dy)
    if dy.shape != cache["shape"]:
        raise ValueError(f"dy must have shape {tuple(cache['shape'])}, got {tuple(dy.shape)}")
    return dy, dy


def concat_forward(a, b):
    """y = concatenate([a, b], axis=1) for (N, C_a, H, W) and (N, C_b, H, W).

    The result is channels-last in memory (NCHW shape), ready for the next convolution.
    """
    check_float("a", a, ndim=4)
    check_float("b", b, ndim=4, dtype=a.dtype)
    N, Ca, H, W = a.shape
    if b.shape[0] != N or b.shape[2:] != a.shape[2:]:
        raise ValueError(f"a and b must agree in every axis but channels, got {tuple(a.shape)} and {tuple(b.shape)}")
    xp = array_module(a)
    y = xp.empty((N, H, W, Ca + b.shape[1]), dtype=a.dtype)
    y[..., :Ca] = a.transpose(0, 2, 3, 1)
    y[..., Ca:] = b.transpose(0, 2, 3, 1)
    return y.transpose(0, 3, 1, 2), {"op": "concat", "split": Ca, "shape": (N, Ca + b.shape[1], H, W)}


def concat_backward(dy, cache):
    """Returns ``(da, db)``: the first C_a channels of dy, and the rest (views)."""
    check_cache("concat_backward", cache, "concat", ("split", "shape"))
    check_float("dy", dy)
    if tuple(dy.shape) != cache["shape"]:
        raise ValueError(f"dy must have shape {cache['shape']}, got {tuple(dy.shape)}")
    ca = cache["split"]
    return dy[:, :ca], dy[:, ca:]
