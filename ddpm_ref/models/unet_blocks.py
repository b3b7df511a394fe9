r"""The U-Net's building blocks, each a forward/backward pair over named parameters.

Layer: model (imports ddpm_ref.nn and the math layer; nothing above).

One pair per kind of step in the plan (``unet_plan.py``):

===================  ==========================================================================
plan step            block
===================  ==========================================================================
``InConvStep``       ``conv3x3_forward`` / ``conv3x3_backward`` (stride 1)
``DownsampleStep``   ``conv3x3_forward`` / ``conv3x3_backward`` (stride 2)
``ResBlockStep``     ``resblock_forward`` / ``resblock_backward``
``AttentionStep``    ``attention_block_forward`` / ``attention_block_backward``
``UpsampleStep``     ``upsample_block_forward`` / ``upsample_block_backward``
``OutStep``          ``out_block_forward`` / ``out_block_backward``
===================  ==========================================================================

A block reads its weights from the parameter dict ``p`` under a prefix (``"down.0.res0"``);
its cache remembers that prefix, and its backward writes the gradients under the same keys into
the dict ``g``. Convolutions and attention go through the ``ops`` object (``ddpm_ref.nn``, whose
``conv2d_forward`` is ``ddpm_ref.nn.conv.conv2d_forward``, or a ``kernels.get_ops(...)`` object;
see ``ddpm_ref.nn.backend.Ops``); every other layer is called by its own name.

* ResBlock (Ho et al. 2020, App. B; He et al. 2016):
  h = conv₁(silu(GN₁(x))) + Linear(silu(e))[:, :, None, None] (conv₁'s bias added with it);
  out = skip(x) + conv₂(dropout(silu(GN₂(h)))), skip = 1×1 conv when channels change.
* Attention block (one head over the H·W pixels; Wang et al. 2018's non-local block):
  q, k, v = Linear_qkv(GN(x)) per pixel; out = x + Linear_proj(softmax(q kᵀ/√C) v).
* Down: 3×3 conv with stride 2.  Up: nearest 2× upsampling, then a 3×3 conv (computed as four
  2×2 convolutions at low resolution, ``ddpm_ref.nn.upsample_conv``: same function, fewer
  multiplications).
* Out: GroupNorm → SiLU → 3×3 conv.

In-place updates, and why they cannot corrupt a cache
-----------------------------------------------------
Some layers return an array that a cache (theirs or an earlier layer's) still reads:
``silu_forward``'s y is in its cache, ``groupnorm_silu_forward`` returns a view of its cached y,
``dropout_forward`` with p = 0 (or no generator) returns x itself, a 1×1 ``conv2d_forward`` with
padding 0 caches a view of its input x, ``add_backward`` returns dy twice and
``concat_backward`` returns views of dy. Writing into any of those would silently change a
later backward pass. So the blocks write in place (``h += ...``, one pass and no new array
instead of two) only into

* the output y of ``ops.conv2d_forward``, right after the call: the ops contract
  (``ddpm_ref.nn.backend.Ops``) makes y a new array that no cache holds and that shares no
  memory with the inputs (tests/nn/test_unet.py checks this for the NumPy and the kernels ops);
* the dx returned by ``groupnorm_silu_backward`` / ``groupnorm_backward``: a new array (a
  backward pass keeps no cache).

Everything else is combined out of place (``x + o``, ``dh + d_skip``).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.nn.backend import array_module
from ddpm_ref.nn.dropout import dropout_backward, dropout_forward
from ddpm_ref.nn.groupnorm import groupnorm_backward, groupnorm_forward
from ddpm_ref.nn.groupnorm_silu import groupnorm_silu_backward, groupnorm_silu_forward
from ddpm_ref.nn.init import variance_scaling
from ddpm_ref.nn.linear import linear_backward, linear_forward
from ddpm_ref.nn.upsample_conv import upsample_conv_backward, upsample_conv_forward

__all__ = [
    "init_conv", "init_linear", "init_norm", "init_resblock", "init_attention",
    "conv3x3_forward", "conv3x3_backward",
    "resblock_forward", "resblock_backward",
    "attention_block_forward", "attention_block_backward",
    "upsample_block_forward", "upsample_block_backward",
    "out_block_forward", "out_block_backward",
]


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


# ---------------------------------------------------------------- 3×3 convolution (input, downsample)

def conv3x3_forward(x, p, name, *, ops, stride=1):
    """y = conv3×3(x) + b with padding 1: the input conv (stride 1) or a downsample (stride 2)."""
    y, c_conv = ops.conv2d_forward(x, p[f"{name}.w"], p[f"{name}.b"], stride, 1)
    return y, {"name": name, "ops": ops, "conv": c_conv}


def conv3x3_backward(dout, cache, g):
    """Writes ``g[name.w]``, ``g[name.b]``; returns dx."""
    name = cache["name"]
    dx, g[f"{name}.w"], g[f"{name}.b"] = cache["ops"].conv2d_backward(dout, cache["conv"])
    return dx


# ---------------------------------------------------------------- ResBlock

def resblock_forward(x, emb_act, p, name, *, groups, ops, dropout=0.0, rng=None):
    """x (N, C_in, H, W), emb_act = silu(e) (N, E) -> (N, C_out, H, W), cache."""
    c = {"name": name, "ops": ops}
    # silu(GN(x)) as one fused layer (nn.groupnorm_silu: same function, fewer passes)
    h, c["norm_act1"] = groupnorm_silu_forward(x, p[f"{name}.norm1.gamma"], p[f"{name}.norm1.beta"], groups)
    h, c["conv1"] = ops.conv2d_forward(h, p[f"{name}.conv1.w"], None, 1, 1)
    te, c["emb"] = linear_forward(emb_act, p[f"{name}.emb.w"], p[f"{name}.emb.b"])   # (N, C_out)
    # the timestep enters every pixel; conv1's bias is added in the same pass (one array-sized
    # add instead of two: the bias is a per-channel constant, like te is per example). In place:
    # h is conv1's fresh output (see the module docstring)
    h += (te + p[f"{name}.conv1.b"])[:, :, None, None]
    h, c["norm_act2"] = groupnorm_silu_forward(h, p[f"{name}.norm2.gamma"], p[f"{name}.norm2.beta"], groups)
    h, c["dropout"] = dropout_forward(h, dropout, rng)
    h, c["conv2"] = ops.conv2d_forward(h, p[f"{name}.conv2.w"], p[f"{name}.conv2.b"], 1, 1)
    if f"{name}.skip.w" in p:
        x, c["skip"] = ops.conv2d_forward(x, p[f"{name}.skip.w"], p[f"{name}.skip.b"], 1, 0)
    h += x                                  # the residual connection (h: conv2's fresh output)
    return h, c


def resblock_backward(dout, c, g):
    """Writes the block's parameter gradients into g; returns (dx, d_emb_act)."""
    name, ops = c["name"], c["ops"]
    # out = skip(x) + h: the gradient reaches both branches unchanged
    dh, g[f"{name}.conv2.w"], g[f"{name}.conv2.b"] = ops.conv2d_backward(dout, c["conv2"])
    dh = dropout_backward(dh, c["dropout"])
    dh, g[f"{name}.norm2.gamma"], g[f"{name}.norm2.beta"] = groupnorm_silu_backward(dh, c["norm_act2"])
    # h = conv1(...) + (te + b1)[:, :, None, None]: te's gradient sums over the pixels, b1's
    # over the pixels and the batch
    d_te = dh.sum(axis=(2, 3))
    d_emb, g[f"{name}.emb.w"], g[f"{name}.emb.b"] = linear_backward(d_te, c["emb"])
    g[f"{name}.conv1.b"] = d_te.sum(axis=0)
    dh, g[f"{name}.conv1.w"], _ = ops.conv2d_backward(dh, c["conv1"])
    dx, g[f"{name}.norm1.gamma"], g[f"{name}.norm1.beta"] = groupnorm_silu_backward(dh, c["norm_act1"])
    # dx is groupnorm_silu_backward's new array: adding the residual path in place is safe
    if "skip" in c:
        dskip, g[f"{name}.skip.w"], g[f"{name}.skip.b"] = ops.conv2d_backward(dout, c["skip"])
        dx += dskip
    else:
        dx += dout
    return dx, d_emb


# ---------------------------------------------------------------- attention block

def attention_block_forward(x, p, name, *, groups, ops):
    """x (N, C, H, W) -> x + proj(attention(qkv(GN(x)))), cache."""
    N, C, H, W = x.shape
    c = {"name": name, "ops": ops}
    h, c["norm"] = groupnorm_forward(x, p[f"{name}.norm.gamma"], p[f"{name}.norm.beta"], groups)
    tokens = h.transpose(0, 2, 3, 1).reshape(N, H * W, C)       # one token per pixel
    qkv, c["qkv"] = linear_forward(tokens, p[f"{name}.qkv.w"], p[f"{name}.qkv.b"])   # (N, HW, 3C)
    q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    o, c["attention"] = ops.attention_forward(q, k, v)
    o, c["proj"] = linear_forward(o, p[f"{name}.proj.w"], p[f"{name}.proj.b"])
    return x + o.reshape(N, H, W, C).transpose(0, 3, 1, 2), c


def attention_block_backward(dout, c, g):
    """Writes the block's parameter gradients into g; returns dx."""
    name, ops = c["name"], c["ops"]
    xp = array_module(dout)
    N, C, H, W = dout.shape
    do = dout.transpose(0, 2, 3, 1).reshape(N, H * W, C)
    do, g[f"{name}.proj.w"], g[f"{name}.proj.b"] = linear_backward(do, c["proj"])
    dq, dk, dv = ops.attention_backward(do, c["attention"])
    dqkv = xp.concatenate([dq, dk, dv], axis=-1)
    dtokens, g[f"{name}.qkv.w"], g[f"{name}.qkv.b"] = linear_backward(dqkv, c["qkv"])
    dh = dtokens.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    dx, g[f"{name}.norm.gamma"], g[f"{name}.norm.beta"] = groupnorm_backward(dh, c["norm"])
    dx += dout                                # the residual path (dx: groupnorm_backward's new array)
    return dx


# ---------------------------------------------------------------- upsample, output head

def upsample_block_forward(x, p, name, *, ops):
    """(N, C, H, W) -> conv3×3(nearest 2× upsampling of x), (N, C, 2H, 2W): fused, see
    ``ddpm_ref.nn.upsample_conv``."""
    y, c_up = upsample_conv_forward(x, p[f"{name}.conv.w"], p[f"{name}.conv.b"], ops)
    return y, {"name": name, "upsample_conv": c_up}


def upsample_block_backward(dout, cache, g):
    """Writes ``g[name.conv.w]``, ``g[name.conv.b]``; returns dx."""
    name = cache["name"]
    dx, g[f"{name}.conv.w"], g[f"{name}.conv.b"] = upsample_conv_backward(dout, cache["upsample_conv"])
    return dx


def out_block_forward(x, p, name, *, groups, ops):
    """The head: conv3×3(silu(GN(x))) -> ε̂ (N, in_channels, H, W), cache."""
    h, c_norm_act = groupnorm_silu_forward(x, p[f"{name}.norm.gamma"], p[f"{name}.norm.beta"], groups)
    y, c_conv = ops.conv2d_forward(h, p[f"{name}.conv.w"], p[f"{name}.conv.b"], 1, 1)
    return y, {"name": name, "ops": ops, "norm_act": c_norm_act, "conv": c_conv}


def out_block_backward(dout, cache, g):
    """Writes the head's parameter gradients into g; returns dx."""
    name = cache["name"]
    dh, g[f"{name}.conv.w"], g[f"{name}.conv.b"] = cache["ops"].conv2d_backward(dout, cache["conv"])
    dx, g[f"{name}.norm.gamma"], g[f"{name}.norm.beta"] = groupnorm_silu_backward(dh, cache["norm_act"])
    return dx
