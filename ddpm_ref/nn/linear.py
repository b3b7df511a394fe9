r"""Fully connected layer, y = x Wᵀ + b, with W shaped (out, in) as in PyTorch.

x may have any leading axes (..., in); the product runs on the flattened (M, in) matrix.

.. math::

    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} W, \qquad
    \frac{\partial L}{\partial W} = \Bigl(\frac{\partial L}{\partial y}\Bigr)^{\!\top} x, \qquad
    \frac{\partial L}{\partial b} = \sum_{rows} \frac{\partial L}{\partial y}
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float

__all__ = ["linear_forward", "linear_backward"]


def linear_forward(x, w, b=None):
    """y = x @ w.T + b. x (..., in), w (out, in), b (out,) or None. Returns ``(y, cache)``."""
    check_float("x", x)
    check_float("w", w, ndim=2, dtype=x.dtype)
    if w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"w (out, in) must have out >= 1 and in >= 1, got shape {tuple(w.shape)}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[-1] if x.ndim else 0} features (shape {tuple(x.shape)}) "
                         f"but w (out, in) = {tuple(w.shape)} expects {w.shape[1]}")
    if b is not None:
        check_float("b", b, ndim=1, dtype=x.dtype)
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"b must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    x2 = x.reshape(-1, w.shape[1])
    y = x2 @ w.T
    if b is not None:
        y += b
    cache = {"op": "linear", "x2": x2, "w": w, "x_shape": x.shape, "has_bias": b is not None}
    return y.reshape(*x.shape[:-1], w.shape[0]), cache


def linear_backward(dy, cache):
    """Returns ``(dx, dw, db)``; db is None when b was None."""
    check_cache("linear_backward", cache, "linear", ("x2", "w", "x_shape", "has_bias"))
    x2, w = cache["x2"], cache["w"]
    check_float("dy", dy, dtype=x2.dtype)
    expected = (*cache["x_shape"][:-1], w.shape[0])
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy must have the output's shape {expected}, got {tuple(dy.shape)}")
    dy2 = dy.reshape(-1, w.shape[0])
    db = dy2.sum(axis=0) if cache["has_bias"] else None     # term 1: b is added to every row
    dw = dy2.T @ x2                                          # term 2: W multiplies every row of x
    dx = (dy2 @ w).reshape(cache["x_shape"])                 # term 3: x reaches y through W
    return dx, dw, db
