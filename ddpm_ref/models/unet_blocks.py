r"""The U-Net's building blocks, each a forward/backward pair over named parameters.

A block reads its weights from the parameter dict ``p`` under a prefix (``"down.0.res0"``), and
its backward writes the gradients under the same keys into ``g``. Convolutions and attention go
through the ``ops`` object (the NumPy reference or the CUDA kernels); everything else is
``ddpm_ref.nn``. Blocks add into arrays they own in place (``h += x``): every layer returns a
fresh output array that its cache does not hold, so this saves a copy without changing a value.

* ResBlock (Ho et al. 2020, App. B; He et al. 2016):
  h = conv₁(silu(GN₁(x))) + Linear(silu(e))[:, :, None, None] (conv₁'s bias added with it);
  out = skip(x) + conv₂(dropout(silu(GN₂(h)))), skip = 1×1 conv when channels change.
* Attention block (one head over the H·W pixels; Wang et al. 2018's non-local block):
  q, k, v = Linear_qkv(GN(x)) per pixel; out = x + Linear_proj(softmax(q kᵀ/√C) v).
* Down: 3×3 conv with stride 2.  Up: nearest 2× upsampling, then a 3×3 conv (computed as four
  2×2 convolutions at low resolution, ``ddpm_ref.nn.upsample_conv``: same function, fewer
  multiplications).
"""

from __future__ import annotations

import numpy as np

import ddpm_ref.nn as nn
from ddpm_ref.nn.init import variance_scaling

__all__ = [
    "init_resblock", "resblock_forward", "resblock_backward",
    "init_attention", "attention_block_forward", "attention_block_backward",
    "init_conv", "init_norm", "accumulate",
]


def accumulate(g, key, value):
    """g[key] += value (first write stores it)."""
    if key in g:
        g[key] = g[key] + value
    else:
        g[key] = value


# ---------------------------------------------------------------- parameters

def init_conv(p, name, c_in, c_out, k, rng, dtype, scale=1.0):
    p[f"{name}.w"] = variance_scaling(rng, (c_out, c_in, k, k), scale, dtype)
    p[f"{name}.b"] = variance_scaling(rng, (c_out,), 0.0, dtype)


def init_linear(p, name, n_in, n_out, rng, dtype, scale=1.0):
    p[f"{name}.w"] = variance_scaling(rng, (n_out, n_in), scale, dtype)
    p[f"{name}.b"] = variance_scaling(rng, (n_out,), 0.0, dtype)


def init_norm(p, name, c, dtype):
    p[f"{name}.gamma"] = np.ones(c, dtype=dtype)
    p[f"{name}.beta"] = np.zeros(c, dtype=dtype)


def init_resblock(p, name, c_in, c_out, emb_dim, rng, dtype):
    init_norm(p, f"{name}.norm1", c_in, dtype)
    init_conv(p, f"{name}.conv1", c_in, c_out, 3, rng, dtype)
    init_linear(p, f"{name}.emb", emb_dim, c_out, rng, dtype)
    init_norm(p, f"{name}.norm2", c_out, dtype)
    init_conv(p, f"{name}.conv2", c_out, c_out, 3, rng, dtype, scale=0.0)   # block starts as identity
    if c_in != c_out:
        init_conv(p, f"{name}.skip", c_in, c_out, 1, rng, dtype)


def init_attention(p, name, c, rng, dtype):
    init_norm(p, f"{name}.norm", c, dtype)
    init_linear(p, f"{name}.qkv", c, 3 * c, rng, dtype)
    init_linear(p, f"{name}.proj", c, c, rng, dtype, scale=0.0)          # block starts as identity


# ---------------------------------------------------------------- ResBlock

def resblock_forward(p, name, x, emb_act, *, groups, ops, dropout=0.0, rng=None):
    """x (N, C_in, H, W), emb_act = silu(e) (N, E) -> (N, C_out, H, W), cache."""
    c = {}
    # silu(GN(x)) as one fused layer (nn.groupnorm_silu: same function, fewer passes)
    h, c["norm_act1"] = nn.groupnorm_silu_forward(x, p[f"{name}.norm1.gamma"], p[f"{name}.norm1.beta"], groups)
    h, c["conv1"] = ops.conv2d_forward(h, p[f"{name}.conv1.w"], None, 1, 1)
    te, c["emb"] = nn.linear_forward(emb_act, p[f"{name}.emb.w"], p[f"{name}.emb.b"])   # (N, C_out)
    # the timestep enters every pixel; conv1's bias is added in the same pass (one array-sized
    # add instead of two: the bias is a per-channel constant, like te is per example)
    h += (te + p[f"{name}.conv1.b"])[:, :, None, None]
    h, c["norm_act2"] = nn.groupnorm_silu_forward(h, p[f"{name}.norm2.gamma"], p[f"{name}.norm2.beta"], groups)
    h, c["dropout"] = nn.dropout_forward(h, dropout, rng)
    h, c["conv2"] = ops.conv2d_forward(h, p[f"{name}.conv2.w"], p[f"{name}.conv2.b"], 1, 1)
    if f"{name}.skip.w" in p:
        x, c["skip"] = ops.conv2d_forward(x, p[f"{name}.skip.w"], p[f"{name}.skip.b"], 1, 0)
    h += x                                             # the residual connection
    return h, c


def resblock_backward(dout, c, name, g, ops):
    """Writes the block's parameter gradients into g; returns (dx, d_emb_act)."""
    # out = skip(x) + h: the gradient reaches both branches unchanged
    dh, dw, db = ops.conv2d_backward(dout, c["conv2"])
    g[f"{name}.conv2.w"], g[f"{name}.conv2.b"] = dw, db
    dh = nn.dropout_backward(dh, c["dropout"])
    dh, g[f"{name}.norm2.gamma"], g[f"{name}.norm2.beta"] = nn.groupnorm_silu_backward(dh, c["norm_act2"])
    # h = conv1(...) + (te + b1)[:, :, None, None]: te's gradient sums over the pixels, b1's
    # over the pixels and the batch
    d_te = dh.sum(axis=(2, 3))
    d_emb, g[f"{name}.emb.w"], g[f"{name}.emb.b"] = nn.linear_backward(d_te, c["emb"])
    g[f"{name}.conv1.b"] = d_te.sum(axis=0)
    dh, g[f"{name}.conv1.w"], _ = ops.conv2d_backward(dh, c["conv1"])
    dx, g[f"{name}.norm1.gamma"], g[f"{name}.norm1.beta"] = nn.groupnorm_silu_backward(dh, c["norm_act1"])
    if "skip" in c:
        dskip, dw, db = ops.conv2d_backward(dout, c["skip"])
        g[f"{name}.skip.w"], g[f"{name}.skip.b"] = dw, db
        dx += dskip
    else:
        dx += dout
    return dx, d_emb


# ---------------------------------------------------------------- attention block

def attention_block_forward(p, name, x, *, groups, ops):
    """x (N, C, H, W) -> x + proj(attention(qkv(GN(x)))), cache."""
    N, C, H, W = x.shape
    c = {}
    h, c["norm"] = nn.groupnorm_forward(x, p[f"{name}.norm.gamma"], p[f"{name}.norm.beta"], groups)
    tokens = h.transpose(0, 2, 3, 1).reshape(N, H * W, C)       # one token per pixel
    qkv, c["qkv"] = nn.linear_forward(tokens, p[f"{name}.qkv.w"], p[f"{name}.qkv.b"])   # (N, HW, 3C)
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    o, c["attention"] = ops.attention_forward(q, k, v)
    o, c["proj"] = nn.linear_forward(o, p[f"{name}.proj.w"], p[f"{name}.proj.b"])
    return x + o.reshape(N, H, W, C).transpose(0, 3, 1, 2), c


def attention_block_backward(dout, c, name, g, ops):
    """Writes the block's parameter gradients into g; returns dx."""
    xp = nn.array_module(dout)
    N, C, H, W = dout.shape
    do = dout.transpose(0, 2, 3, 1).reshape(N, H * W, C)
    do, g[f"{name}.proj.w"], g[f"{name}.proj.b"] = nn.linear_backward(do, c["proj"])
    dq, dk, dv = ops.attention_backward(do, c["attention"])
    dqkv = xp.concatenate([dq, dk, dv], axis=-1)
    dtokens, g[f"{name}.qkv.w"], g[f"{name}.qkv.b"] = nn.linear_backward(dqkv, c["qkv"])
    dh = dtokens.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    dx, g[f"{name}.norm.gamma"], g[f"{name}.norm.beta"] = nn.groupnorm_backward(dh, c["norm"])
    dx += dout                                        # the residual path
    return dx
