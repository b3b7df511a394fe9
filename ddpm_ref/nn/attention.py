r"""Scaled dot-product attention, one head: o = softmax(q kᵀ / √D) v over the keys.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

q has shape (B, Lq, D) and k, v have shape (B, Lk, D): B independent sequences (here: images),
Lq queries and Lk keys (with one value each), D features. Self-attention has Lq = Lk = L tokens
(pixels) and D channels; cross-attention (``cross_attention.py``) asks Lq image tokens about Lk
context tokens, so the two lengths differ. o has the queries' shape (B, Lq, D).

.. math::

    S = \frac{q k^\top}{\sqrt D}, \qquad P = \mathrm{softmax}_{keys}(S), \qquad o = P v

Backward:

.. math::

    dv = P^\top do, \qquad dP = do\, v^\top, \qquad
    dS = P \odot \bigl(dP - \textstyle\sum_{keys} dP \odot P\bigr), \qquad
    dq = \frac{dS\,k}{\sqrt D}, \qquad dk = \frac{dS^\top q}{\sqrt D}

S and P are (B, Lq, Lk): one row per query, one column per key. The softmax subtracts each
row's maximum first (it does not change P and keeps e^S finite).
The cache keeps P (B, Lq, Lk); at Lq = Lk = 16 pixels that is tiny. A long-sequence kernel would
recompute P instead (FlashAttention), which is what the CUDA version may do.
"""

from __future__ import annotations

import math

from ddpm_ref.nn._validate import check_axis, check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["attention_forward", "attention_backward", "softmax"]


def softmax(s, axis=-1):
    """Numerically stable softmax along ``axis`` (a new array, same dtype, float32/float64)."""
    check_float("s", s)
    if s.ndim == 0 or s.shape[check_axis("axis", axis, s.ndim)] == 0:
        raise ValueError(f"s must have at least one entry along axis {axis} to normalise over, "
                         f"got shape {tuple(s.shape)}")
    xp = array_module(s)
    e = s - s.max(axis=axis, keepdims=True)
    xp.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def check_qkv_shapes(q, k, v):
    """q (B, Lq, D), k and v (B, Lk, D), or ValueError naming what disagrees (also used by the kernels' ops)."""
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, Lk, D): one value per key; got k "
                         f"{tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"k, v (B, Lk, D) must have q's batch size B and feature count D, q being (B, Lq, D); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)} (the lengths Lq and Lk may differ)")


def _check_attention_args(q, k, v):
    """The argument checks of ``attention_forward`` (also called by ``attention_plain``)."""
    check_float("q", q, ndim=3)
    check_float("k", k, ndim=3, dtype=q.dtype)
    check_float("v", v, ndim=3, dtype=q.dtype)
    check_qkv_shapes(q, k, v)
    if q.shape[1] == 0 or k.shape[1] == 0 or q.shape[2] == 0:
        raise ValueError(f"q and k need L >= 1 positions each (Lq queries, Lk keys: a softmax over no keys "
                         f"is undefined) and D >= 1 features (the scale is 1/√D); got q (B, Lq, D) = "
                         f"{tuple(q.shape)}, k (B, Lk, D) = {tuple(k.shape)}")


def attention_forward(q, k, v):
    """o = softmax(q kᵀ / √D) v. q (B, Lq, D), k and v (B, Lk, D), same dtype. Returns ``(o (B, Lq, D), cache)``."""
    _check_attention_args(q, k, v)
    scale = q.dtype.type(1.0 / math.sqrt(q.shape[-1]))
    s = q @ k.transpose(0, 2, 1)            # (B, Lq, Lk): every query against every key
    s *= scale
    p = softmax(s, axis=-1)                 # each row sums to 1 over the keys
    o = p @ v                               # (B, Lq, D)
    return o, {"op": "attention", "q": q, "k": k, "v": v, "p": p, "scale": scale}


def attention_backward(do, cache):
    """Returns ``(dq (B, Lq, D), dk (B, Lk, D), dv (B, Lk, D))``."""
    check_cache("attention_backward", cache, "attention", ("q", "k", "v", "p", "scale"))
    q, k, v, p, scale = cache["q"], cache["k"], cache["v"], cache["p"], cache["scale"]
    check_float("do", do, ndim=3, dtype=q.dtype)
    if do.shape != q.shape:
        raise ValueError(f"do must have the output's shape {tuple(q.shape)}, got {tuple(do.shape)}")
    dv = p.transpose(0, 2, 1) @ do                    # o = P v, through v          (B, Lk, D)
    dp = do @ v.transpose(0, 2, 1)                    # ... and through P            (B, Lq, Lk)
    # softmax backward: dS = P ⊙ (dP − rowsum(dP ⊙ P))
    ds = dp - (dp * p).sum(axis=-1, keepdims=True)
    ds *= p
    ds *= scale                                        # S = q kᵀ · scale
    dq = ds @ k                                        # (B, Lq, D)
    dk = ds.transpose(0, 2, 1) @ q                     # (B, Lk, D)
    return dq, dk, dv
