r"""The U-Net's cross-attention block and the token embedding that feeds it (Stable Diffusion's text path).

Layer: model (a U-Net block in the style of ``unet_blocks``: weights read from a parameter dict
``p`` under a prefix, gradients written into ``g`` under the same keys). It imports ``ddpm_ref.nn``
(layers) and ``unet_blocks.init_norm``, nothing above.

Rombach et al. 2022 (sec. 3.3, eq. 3) condition the U-Net on a sequence of tokens τ_θ(y) (M, E):
inside each attention stage, after self-attention, the image attends to the tokens::

    out = x + Proj_o( CrossAttention( Q = GN(x) as H·W tokens,  K, V = context ) )

Here the context is a lookup table of learned token embeddings (the project's stand-in for a text
encoder): ``tokens`` (N, M) integer ids → context (N, M, E) = table[tokens]. The output projection
starts at zero, so the block starts as the identity (as ``init_attention`` does for self-attention).
"""

from __future__ import annotations

import numpy as np

import ddpm_ref.nn as nn
from ddpm_ref.models.unet_blocks import init_norm
from ddpm_ref.nn.cross_attention import cross_attention_backward, cross_attention_forward
from ddpm_ref.nn.init import variance_scaling

__all__ = ["init_cross_attention", "cross_attention_block_forward", "cross_attention_block_backward",
           "token_embedding_forward", "token_embedding_backward"]


def init_cross_attention(p, name, c, ctx_dim, rng, dtype, attn_dim=None):
    """Parameters of one block: GN (c), W_q (D, c), W_k, W_v (D, E), W_o (c, D) = 0, b_o (c,) = 0."""
    D = c if attn_dim is None else attn_dim
    init_norm(p, f"{name}.norm", c, dtype)
    p[f"{name}.q.w"] = variance_scaling(rng, (D, c), 1.0, dtype)
    p[f"{name}.k.w"] = variance_scaling(rng, (D, ctx_dim), 1.0, dtype)
    p[f"{name}.v.w"] = variance_scaling(rng, (D, ctx_dim), 1.0, dtype)
    p[f"{name}.o.w"] = variance_scaling(rng, (c, D), 0.0, dtype)          # block starts as identity
    p[f"{name}.o.b"] = variance_scaling(rng, (c,), 0.0, dtype)


def cross_attention_block_forward(p, name, x, ctx, *, groups, heads=1, ops=None):
    """x (N, C, H, W), ctx (N, M, E) -> x + CrossAttention(GN(x) tokens, ctx) as (N, C, H, W), cache.

    ``ops``: computes the attention of the H·W pixel queries against the M context keys (None: the
    NumPy reference; ``kernels.get_ops(...)``: the CUDA attention kernels, float32).
    """
    N, C, H, W = x.shape
    if ctx.ndim != 3 or ctx.shape[0] != N:
        raise ValueError(f"ctx must have shape (N, M, E) with N = {N} (one context per image), got {tuple(ctx.shape)}")
    h, c_norm = nn.groupnorm_forward(x, p[f"{name}.norm.gamma"], p[f"{name}.norm.beta"], groups)
    tokens = h.transpose(0, 2, 3, 1).reshape(N, H * W, C)               # one query per pixel
    o, c_attn = cross_attention_forward(tokens, ctx, p[f"{name}.q.w"], p[f"{name}.k.w"], p[f"{name}.v.w"],
                                        p[f"{name}.o.w"], p[f"{name}.o.b"], heads, ops=ops)
    return x + o.reshape(N, H, W, C).transpose(0, 3, 1, 2), {"norm": c_norm, "attn": c_attn}


def cross_attention_block_backward(dout, cache, name, g):
    """Writes the block's parameter gradients into g; returns ``(dx, dctx)``."""
    N, C, H, W = dout.shape
    do = dout.transpose(0, 2, 3, 1).reshape(N, H * W, C)
    dtokens, dctx, g[f"{name}.q.w"], g[f"{name}.k.w"], g[f"{name}.v.w"], g[f"{name}.o.w"], g[f"{name}.o.b"] = \
        cross_attention_backward(do, cache["attn"])
    dh = dtokens.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    dx, g[f"{name}.norm.gamma"], g[f"{name}.norm.beta"] = nn.groupnorm_backward(dh, cache["norm"])
    return dx + dout, dctx                                              # + the residual path


def token_embedding_forward(tokens, table):
    """context = table[tokens]: tokens int (N, M) in 0..V−1, table (V, E) -> (N, M, E), cache."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be an integer array (N, M), got shape {tokens.shape}")
    e, cache = nn.class_embedding_forward(tokens.reshape(-1), table)   # a one-hot product, row by row
    return e.reshape(*tokens.shape, table.shape[1]), {"rows": cache, "shape": tokens.shape}


def token_embedding_backward(dctx, cache):
    """dtable (V, E): the rows of repeated tokens add up."""
    return nn.class_embedding_backward(dctx.reshape(-1, dctx.shape[-1]), cache["rows"])
