r"""Cross-attention with its projections: queries from image tokens, keys and values from a context.

Layer: layers (imports NumPy and ``ddpm_ref.nn``'s own helpers, nothing above). This is how text
enters Stable Diffusion's U-Net (Rombach et al. 2022, eq. 3 and sec. 3.3): the image tokens x
(B, L, C) — one per pixel — ask, the conditioning tokens c (B, M, E) — words, here labels —
answer. L and M differ, and so do the widths C and E.

.. math::

    Q = x W_q^\top,\quad K = c W_k^\top,\quad V = c W_v^\top \qquad (W_q: D×C,\ W_k, W_v: D×E)

    \mathrm{head}_h = \mathrm{softmax}\Big(\frac{Q_h K_h^\top}{\sqrt{d}}\Big) V_h, \qquad
    \mathrm{out} = [\mathrm{head}_1 | \dots | \mathrm{head}_H]\, W_o^\top + b_o \quad (W_o: C×D)

with H heads of width d = D/H (Vaswani et al. 2017, eqs. 1 and sec. 3.2.2). Stable Diffusion has
no biases on Q, K, V and one on the output; so does this layer.

Backward (per head, P the (L, M) attention matrix, S its logits):

.. math::

    dV = P^\top dO,\quad dP = dO\,V^\top,\quad dS = P\odot\big(dP - \textstyle\sum_{keys} dP\odot P\big),\quad
    dQ = dS\,K/\sqrt d,\quad dK = dS^\top Q/\sqrt d

then through the projections: dx = dQ W_q, dc = dK W_k + dV W_v (the context feeds two paths),
dW_q = dQᵀx, dW_k = dKᵀc, dW_v = dVᵀc, dW_o = d(out)ᵀ·heads, db_o = Σ d(out).
"""

from __future__ import annotations

import math

from ddpm_ref.nn._validate import check_cache, check_float, check_nonneg_int
from ddpm_ref.nn.attention import softmax
from ddpm_ref.nn.linear import linear_backward, linear_forward

__all__ = ["cross_attention_forward", "cross_attention_backward"]


def _check_args(x, ctx, wq, wk, wv, wo, bo, heads):
    check_float("x", x, ndim=3)
    check_float("ctx", ctx, ndim=3, dtype=x.dtype)
    for name, w in (("wq", wq), ("wk", wk), ("wv", wv), ("wo", wo)):
        check_float(name, w, ndim=2, dtype=x.dtype)
    heads = check_nonneg_int("heads", heads, lowest=1)
    (B, L, C), (Bc, M, E), D = x.shape, ctx.shape, wq.shape[0]
    if Bc != B:
        raise ValueError(f"ctx has {Bc} sequences but x has {B}; one context per image (shape (B, M, E))")
    if wq.shape != (D, C):
        raise ValueError(f"wq must have shape (D, C) = (D, {C}) to read x {tuple(x.shape)}, got {tuple(wq.shape)}")
    for name, w in (("wk", wk), ("wv", wv)):
        if w.shape != (D, E):
            raise ValueError(f"{name} must have shape (D, E) = ({D}, {E}) to read ctx {tuple(ctx.shape)}, got {tuple(w.shape)}")
    if wo.shape != (C, D):
        raise ValueError(f"wo must have shape (C, D) = ({C}, {D}), got {tuple(wo.shape)}")
    if bo is not None:
        check_float("bo", bo, ndim=1, dtype=x.dtype)
        if bo.shape != (C,):
            raise ValueError(f"bo must have shape ({C},), got {tuple(bo.shape)}")
    if D % heads:
        raise ValueError(f"heads={heads} must divide the attention width D={D}")
    return heads


def _split(a, heads):
    """(B, T, D) -> (B·H, T, d): each head its own batch entry."""
    B, T, D = a.shape
    return a.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3).reshape(B * heads, T, D // heads)


def _merge(a, heads):
    """(B·H, T, d) -> (B, T, H·d), the inverse of ``_split``."""
    BH, T, d = a.shape
    return a.reshape(BH // heads, heads, T, d).transpose(0, 2, 1, 3).reshape(BH // heads, T, heads * d)


def cross_attention_forward(x, ctx, wq, wk, wv, wo, bo=None, heads: int = 1):
    """out = MultiHead(Q = x W_qᵀ, K = c W_kᵀ, V = c W_vᵀ) W_oᵀ + b_o. Returns ``(out (B, L, C), cache)``."""
    heads = _check_args(x, ctx, wq, wk, wv, wo, bo, heads)
    q, cq = linear_forward(x, wq)                       # Q = x W_qᵀ        (B, L, D)
    k, ck = linear_forward(ctx, wk)                     # K = c W_kᵀ        (B, M, D)
    v, cv = linear_forward(ctx, wv)                     # V = c W_vᵀ        (B, M, D)
    qh, kh, vh = _split(q, heads), _split(k, heads), _split(v, heads)
    scale = x.dtype.type(1.0 / math.sqrt(qh.shape[-1]))
    p = softmax((qh @ kh.transpose(0, 2, 1)) * scale, axis=-1)   # P = softmax(Q Kᵀ/√d), (B·H, L, M)
    o = _merge(p @ vh, heads)                           # [head_1 | ... | head_H], (B, L, D)
    out, co = linear_forward(o, wo, bo)                 # out = o W_oᵀ + b_o
    cache = {"op": "cross_attention", "q": qh, "k": kh, "v": vh, "p": p, "scale": scale, "heads": heads,
             "linear_q": cq, "linear_k": ck, "linear_v": cv, "linear_o": co, "out_shape": out.shape}
    return out, cache


def cross_attention_backward(dout, cache):
    """Returns ``(dx, dctx, dwq, dwk, dwv, dwo, dbo)``; dbo is None when bo was None."""
    check_cache("cross_attention_backward", cache, "cross_attention")
    q, k, v, p, scale, heads = cache["q"], cache["k"], cache["v"], cache["p"], cache["scale"], cache["heads"]
    check_float("dout", dout, ndim=3, dtype=q.dtype)
    if tuple(dout.shape) != tuple(cache["out_shape"]):
        raise ValueError(f"dout must have the output's shape {tuple(cache['out_shape'])}, got {tuple(dout.shape)}")
    do, dwo, dbo = linear_backward(dout, cache["linear_o"])          # through W_o, b_o
    do = _split(do, heads)
    dv = p.transpose(0, 2, 1) @ do                                    # o = P V, through V
    dp = do @ v.transpose(0, 2, 1)                                    # ... and through P
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))              # softmax backward
    ds *= scale                                                       # S = Q Kᵀ/√d
    dq, dk = ds @ k, ds.transpose(0, 2, 1) @ q
    dx, dwq, _ = linear_backward(_merge(dq, heads), cache["linear_q"])   # x reaches Q
    dctx_k, dwk, _ = linear_backward(_merge(dk, heads), cache["linear_k"])   # the context reaches K ...
    dctx_v, dwv, _ = linear_backward(_merge(dv, heads), cache["linear_v"])   # ... and V
    return dx, dctx_k + dctx_v, dwq, dwk, dwv, dwo, dbo
