r"""Scaled dot-product attention, one head, the plain version: loops to read against the equations.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

q has shape (B, Lq, D), k and v (B, Lk, D): B independent sequences, Lq query positions, Lk key
positions (Lq = Lk for self-attention), D features. Written per batch b, query position i, key
position j and feature d:

.. math::

    S_{ij} = \frac{1}{\sqrt D} \sum_d q_{id}\, k_{jd}, \qquad
    P_{ij} = \frac{e^{S_{ij}}}{\sum_{j'} e^{S_{ij'}}}, \qquad
    o_{id} = \sum_j P_{ij}\, v_{jd}

Like ``attention.py`` (whose ``attention_forward(q, k, v)`` / ``attention_backward(do, cache)``
these match in arguments, dtypes and returns), there are no q/k/v/output projections and no
residual here: those are the U-Net's attention block around this function. Each cache is read
only by its own backward. Python loops over every multiply-add: for the small float64 shapes of
the tests and lesson 6 only; ``attention.py`` does the same sums as batched matrix products.
"""

from __future__ import annotations

import math

import numpy as np

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.attention import _check_attention_args as check_attention_args

__all__ = ["attention_forward_plain", "attention_backward_plain"]


def _check_backward_args(do, cache):
    check_cache("attention_backward_plain", cache, "attention_plain", keys=("q", "k", "v", "p"))
    q = cache["q"]
    check_float("do", do, ndim=3, dtype=q.dtype)
    if do.shape != q.shape:
        raise ValueError(f"do must have the output's shape {tuple(q.shape)}, got {tuple(do.shape)}")


def attention_forward_plain(q, k, v):
    r"""o = softmax(q kᵀ / √D) v, one position at a time. Returns ``(o, cache)``, o (B, Lq, D).

    The softmax subtracts each row's maximum before exponentiating: e^(S − m) / Σ e^(S − m)
    is the same P (the e^(−m) cancels) and no e^S overflows.
    """
    check_attention_args(q, k, v)                       # the same checks as attention_forward
    B, Lq, D = q.shape
    Lk = k.shape[1]
    S = np.zeros((B, Lq, Lk), dtype=q.dtype)
    P = np.zeros((B, Lq, Lk), dtype=q.dtype)
    o = np.zeros((B, Lq, D), dtype=q.dtype)
    for b, i in np.ndindex(B, Lq):                      # one query position (one row) at a time
        # scores: S[i,j] = Σ_d q[i,d] k[j,d] / √D, for every key position j
        for j in range(Lk):
            for d in range(D):
                S[b, i, j] += q[b, i, d] * k[b, j, d]
            S[b, i, j] /= math.sqrt(D)
        # softmax over the keys of row i
        m = max(S[b, i, j] for j in range(Lk))
        total = sum(math.exp(S[b, i, j] - m) for j in range(Lk))
        for j in range(Lk):
            P[b, i, j] = math.exp(S[b, i, j] - m) / total
        # output: o[i,d] = Σ_j P[i,j] v[j,d]
        for j, d in np.ndindex(Lk, D):
            o[b, i, d] += P[b, i, j] * v[b, j, d]
    return o, {"op": "attention_plain", "q": q, "k": k, "v": v, "p": P}


def attention_backward_plain(do, cache):
    r"""Gradients of ``attention_forward_plain``: returns ``(dq, dk, dv)``, one row at a time.

    For each query position i (row i of P):

    * dv[j,d]  += P[i,j] · do[i,d]                       (o = P v, through v)
    * dP[i,j]   = Σ_d do[i,d] · v[j,d]                   (o = P v, through P)
    * dS[i,j]   = P[i,j] · (dP[i,j] − Σ_j' dP[i,j'] P[i,j'])   (softmax of row i:
      ∂P[i,j']/∂S[i,j] = P[i,j'] (δ_jj' − P[i,j]))
    * dq[i,d]  += Σ_j dS[i,j] · k[j,d] / √D,  dk[j,d] += dS[i,j] · q[i,d] / √D   (S = q kᵀ/√D)
    """
    _check_backward_args(do, cache)
    q, k, v, P = cache["q"], cache["k"], cache["v"], cache["p"]
    B, Lq, D = q.shape
    Lk = k.shape[1]
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b, i in np.ndindex(B, Lq):
        # term 1, through v: dv[j,d] += P[i,j] do[i,d]
        for j, d in np.ndindex(Lk, D):
            dv[b, j, d] += P[b, i, j] * do[b, i, d]
        # term 2, through P: dP[i,j] = Σ_d do[i,d] v[j,d]
        dP = np.zeros(Lk, dtype=q.dtype)
        for j, d in np.ndindex(Lk, D):
            dP[j] += do[b, i, d] * v[b, j, d]
        # softmax backward for row i: dS[i,j] = P[i,j] (dP[i,j] − Σ_j' dP[i,j'] P[i,j'])
        row_dot = sum(dP[j] * P[b, i, j] for j in range(Lk))
        dS = np.zeros(Lk, dtype=q.dtype)
        for j in range(Lk):
            dS[j] = P[b, i, j] * (dP[j] - row_dot)
        # term 3, through S = q kᵀ / √D: to q (row i) and to k (every row j)
        for j, d in np.ndindex(Lk, D):
            dq[b, i, d] += dS[j] * k[b, j, d] / math.sqrt(D)
            dk[b, j, d] += dS[j] * q[b, i, d] / math.sqrt(D)
    return dq, dk, dv
