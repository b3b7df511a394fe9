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

Each head is single-head attention with queries and keys of different lengths, L and M: the
heads are split into the batch axis, (B·H, L, d) queries against (B·H, M, d) keys and values, and
one call to ``ops.attention_forward`` computes them all (``ops.attention_backward`` on the way
back). ``ops`` is the NumPy reference by default (``ddpm_ref.nn.attention``); with
``ops=kernels.get_ops(...)`` the same CUDA kernels as the U-Net's self-attention compute it, in
the emulator or on a GPU (float32). The projections stay in NumPy.

Backward (per head, P the (L, M) attention matrix, S its logits):

.. math::

    dV = P^\top dO,\quad dP = dO\,V^\top,\quad dS = P\odot\big(dP - \textstyle\sum_{keys} dP\odot P\big),\quad
    dQ = dS\,K/\sqrt d,\quad dK = dS^\top Q/\sqrt d

then through the projections: dx = dQ W_q, dc = dK W_k + dV W_v (the context feeds two paths),
dW_q = dQᵀx, dW_k = dKᵀc, dW_v = dVᵀc, dW_o = d(out)ᵀ·heads, db_o = Σ d(out).
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float, check_nonneg_int
from ddpm_ref.nn.backend import numpy_ops
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


def cross_attention_forward(x, ctx, wq, wk, wv, wo, bo=None, heads: int = 1, *, ops=None):
    """out = MultiHead(Q = x W_qᵀ, K = c W_kᵀ, V = c W_vᵀ) W_oᵀ + b_o. Returns ``(out (B, L, C), cache)``.

    ``ops``: what computes each head's softmax(Q_h K_hᵀ/√d) V_h (an ops object, see
    ``ddpm_ref.nn.backend.Ops``); None is the NumPy reference, ``kernels.get_ops(...)`` the CUDA kernels.
    ``cache["p"]`` is the attention matrix P (B·H, L, M) for a figure or a check, when ``ops`` keeps
    it (the NumPy reference does); None otherwise (the kernels keep their own cache, ``cache["attention"]``).
    """
    heads = _check_args(x, ctx, wq, wk, wv, wo, bo, heads)
    ops = numpy_ops() if ops is None else ops
    q, cq = linear_forward(x, wq)                       # Q = x W_qᵀ        (B, L, D)
    k, ck = linear_forward(ctx, wk)                     # K = c W_kᵀ        (B, M, D)
    v, cv = linear_forward(ctx, wv)                     # V = c W_vᵀ        (B, M, D)
    qh, kh, vh = _split(q, heads), _split(k, heads), _split(v, heads)   # (B·H, L, d), (B·H, M, d) twice
    oh, c_att = ops.attention_forward(qh, kh, vh)       # head_h = softmax(Q_h K_hᵀ/√d) V_h, (B·H, L, d)
    o = _merge(oh, heads)                               # [head_1 | ... | head_H], (B, L, D)
    out, co = linear_forward(o, wo, bo)                 # out = o W_oᵀ + b_o
    cache = {"op": "cross_attention", "ops": ops, "attention": c_att, "p": c_att.get("p"), "heads": heads,
             "dtype": x.dtype, "linear_q": cq, "linear_k": ck, "linear_v": cv, "linear_o": co,
             "out_shape": out.shape}
    return out, cache


def cross_attention_backward(dout, cache):
    """Returns ``(dx, dctx, dwq, dwk, dwv, dwo, dbo)``; dbo is None when bo was None."""
    check_cache("cross_attention_backward", cache, "cross_attention",
                ("ops", "attention", "heads", "dtype", "linear_q", "linear_k", "linear_v", "linear_o", "out_shape"))
    heads = cache["heads"]
    check_float("dout", dout, ndim=3, dtype=cache["dtype"])
    if tuple(dout.shape) != tuple(cache["out_shape"]):
        raise ValueError(f"dout must have the output's shape {tuple(cache['out_shape'])}, got {tuple(dout.shape)}")
    do, dwo, dbo = linear_backward(dout, cache["linear_o"])          # through W_o, b_o
    # per head: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − Σ_keys dP ⊙ P), dQ = dS K/√d, dK = dSᵀ Q/√d
    dq, dk, dv = cache["ops"].attention_backward(_split(do, heads), cache["attention"])
    dx, dwq, _ = linear_backward(_merge(dq, heads), cache["linear_q"])   # x reaches Q
    dctx_k, dwk, _ = linear_backward(_merge(dk, heads), cache["linear_k"])   # the context reaches K ...
    dctx_v, dwv, _ = linear_backward(_merge(dv, heads), cache["linear_v"])   # ... and V
    return dx, dctx_k + dctx_v, dwq, dwk, dwv, dwo, dbo
