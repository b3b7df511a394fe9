"""The same U-Net in PyTorch, built from a ``UNet``'s plan and weights: a test oracle and a yardstick.

PyTorch is never a run-time dependency of ddpm_ref: this file is the only one outside
``tests/`` that imports it, and nothing in the reference stack imports this file.
``tests/nn/test_unet.py`` compares gradients with it and ``ddpm-ref bench`` times it side by
side with the NumPy U-Net. Every layer is PyTorch's own (``nn.Conv2d``, ``nn.GroupNorm``,
``F.scaled_dot_product_attention``, ...), so the comparison is against PyTorch's fastest CPU
code for this architecture.

One module class per kind of plan step (``ddpm_ref.models.unet_plan``): ``InConvStep`` and
``DownsampleStep`` are plain ``nn.Conv2d``; ``ResBlock``, ``Attention``, ``Upsample`` and
``Out`` mirror ``ddpm_ref.models.unet_blocks``; ``TorchUNet`` walks the plan as ``UNet._run``
does. ``torch_unet(net)`` builds one and copies the weights. A ``learn_sigma`` U-Net needs nothing
more: its plan's ``OutStep`` has c_out = 2·C ([prediction | v_σ]) and ``Out`` is built from it. A
U-Net that reads prompts gets ``CrossAttention`` for its ``CrossAttentionStep``s and an
``nn.Embedding`` for its token table; call it as ``module(x, t, tokens=tokens)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn as tnn
from torch.nn import functional as F

from ddpm_ref.models.unet_plan import (
    AttentionStep, ConcatSkip, CrossAttentionStep, DownsampleStep, InConvStep, OutStep, PushSkip,
    ResBlockStep, UpsampleStep,
)

__all__ = ["torch_unet", "TorchUNet"]


class ResBlock(tnn.Module):
    """out = skip(x) + conv2(silu(GN2(conv1(silu(GN1(x))) + emb(silu(e))))) (no dropout)."""

    def __init__(self, c_in, c_out, emb_dim, groups):
        super().__init__()
        self.norm1 = tnn.GroupNorm(groups, c_in)
        self.conv1 = tnn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = tnn.Linear(emb_dim, c_out)
        self.norm2 = tnn.GroupNorm(groups, c_out)
        self.conv2 = tnn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = tnn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x, emb_act):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(tnn.Module):
    """out = x + proj(softmax(q kᵀ/√C) v), q, k, v = qkv(GN(x)) per pixel."""

    def __init__(self, c, groups):
        super().__init__()
        self.norm = tnn.GroupNorm(groups, c)
        self.qkv = tnn.Linear(c, 3 * c)
        self.proj = tnn.Linear(c, c)

    def forward(self, x):
        N, C, H, W = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(N, H * W, C)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        o = self.proj(F.scaled_dot_product_attention(q, k, v))
        return x + o.reshape(N, H, W, C).permute(0, 3, 1, 2)


class CrossAttention(tnn.Module):
    """out = x + o(softmax(q(GN(x)) k(c)ᵀ/√D) v(c)), one query per pixel, keys and values from the context c."""

    def __init__(self, c, ctx_dim, groups):
        super().__init__()
        self.norm = tnn.GroupNorm(groups, c)
        self.q = tnn.Linear(c, c, bias=False)
        self.k = tnn.Linear(ctx_dim, c, bias=False)
        self.v = tnn.Linear(ctx_dim, c, bias=False)
        self.o = tnn.Linear(c, c)

    def forward(self, x, ctx):
        N, C, H, W = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(N, H * W, C)
        o = self.o(F.scaled_dot_product_attention(self.q(tokens), self.k(ctx), self.v(ctx)))
        return x + o.reshape(N, H, W, C).permute(0, 3, 1, 2)


class Upsample(tnn.Module):
    """conv3×3(nearest 2× upsampling of x)."""

    def __init__(self, c):
        super().__init__()
        self.conv = tnn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Out(tnn.Module):
    """conv3×3(silu(GN(x)))."""

    def __init__(self, c_in, c_out, groups):
        super().__init__()
        self.norm = tnn.GroupNorm(groups, c_in)
        self.conv = tnn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return self.conv(F.silu(self.norm(x)))


def _block(step, emb_dim, groups):
    """The torch module for one plan step (None for the skip bookkeeping steps)."""
    match step:
        case InConvStep(c_in=c_in, c_out=c_out):
            return tnn.Conv2d(c_in, c_out, 3, padding=1)
        case DownsampleStep(channels=c):
            return tnn.Conv2d(c, c, 3, stride=2, padding=1)
        case ResBlockStep(c_in=c_in, c_out=c_out):
            return ResBlock(c_in, c_out, emb_dim, groups)
        case AttentionStep(channels=c):
            return Attention(c, groups)
        case CrossAttentionStep(channels=c, context_dim=e):
            return CrossAttention(c, e, groups)
        case UpsampleStep(channels=c):
            return Upsample(c)
        case OutStep(c_in=c_in, c_out=c_out):
            return Out(c_in, c_out, groups)
    return None


def _key(step):
    return step.name.replace(".", "_")            # ModuleDict keys may not contain dots


class TorchUNet(tnn.Module):
    """The U-Net of ``UNet(**config)`` with the same ``plan``; call as ``module(x, t, y)`` or
    ``module(x, t, tokens=tokens)`` (a prompt model)."""

    def __init__(self, config, plan, emb_dim):
        super().__init__()
        base, self.num_classes, self.plan = config["base_channels"], config["num_classes"], plan
        self.time_linear1 = tnn.Linear(base, emb_dim)
        self.time_linear2 = tnn.Linear(emb_dim, emb_dim)
        self.class_emb = tnn.Embedding(self.num_classes + 1, emb_dim) if self.num_classes is not None else None
        self.prompt_emb = (tnn.Embedding(len(config["prompt_vocab"]), config["context_dim"])
                           if config.get("prompt_vocab") is not None else None)
        self.blocks = tnn.ModuleDict()
        for step in plan:
            block = _block(step, emb_dim, config["groups"])
            if block is not None:
                self.blocks[_key(step)] = block
        omega = 10000.0 ** (-2.0 * np.arange(base // 2) / base)   # interleaved sin/cos, as embeddings.py
        self.register_buffer("omega", torch.tensor(omega))
        self.prompt_emb_length = config.get("prompt_length")
        self._names = {}

    def forward(self, x, t, y=None, tokens=None):
        angles = t.to(torch.float64)[:, None] * self.omega[None, :]
        code = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(t), -1).to(x.dtype)
        e = self.time_linear2(F.silu(self.time_linear1(code)))
        if self.class_emb is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes)
            e = e + self.class_emb(y)
        emb_act = F.silu(e)
        ctx = None
        if self.prompt_emb is not None:
            if tokens is None:                                     # the null prompt: all padding
                tokens = torch.zeros((len(t), self.prompt_emb_length), dtype=torch.long)
            ctx = self.prompt_emb(tokens)
        h, skips = x, []
        for step in self.plan:
            match step:
                case PushSkip():
                    skips.append(h)
                case ConcatSkip():
                    h = torch.cat([h, skips.pop()], dim=1)
                case ResBlockStep():
                    h = self.blocks[_key(step)](h, emb_act)
                case CrossAttentionStep():
                    h = self.blocks[_key(step)](h, ctx)
                case _:
                    h = self.blocks[_key(step)](h)
        return h

    def param(self, name):
        """The torch tensor that mirrors ``net.params[name]``."""
        return self._names[name]


def torch_unet(net, device="cpu"):
    """A ``TorchUNet`` computing exactly ``net.forward`` (same plan, copied weights).

    Call it as ``module(x, t, y)`` with torch tensors; ``module.param(name)`` gives the torch
    parameter holding ``net.params[name]``. Dropout is not mirrored (use dropout=0 to compare).
    """
    module = TorchUNet(net.config, net.plan, net.emb_dim).to(dtype=getattr(torch, net.dtype.name))
    module._names = _name_map(module, net)
    with torch.no_grad():
        for name, tensor in module._names.items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(net.params[name])))
    return module.to(device)


def _name_map(module, net):
    """net.params key -> the torch Parameter holding it."""
    out = {}
    for key in net.params:
        if key.startswith("time.linear"):
            lin = getattr(module, key.split(".")[1].replace("linear", "time_linear"))
            out[key] = lin.weight if key.endswith(".w") else lin.bias
            continue
        if key in ("class_emb.table", "prompt_emb.table"):
            out[key] = getattr(module, key.split(".")[0]).weight
            continue
        parts = key.split(".")
        leaf = parts[-1]
        # find the block: the longest prefix that names a block
        for cut in range(len(parts) - 1, 0, -1):
            block_name = "_".join(parts[:cut])
            if block_name in module.blocks:
                break
        mod = module.blocks[block_name]
        for attr in parts[cut:-1]:
            mod = getattr(mod, attr)
        out[key] = {"w": mod.weight, "b": mod.bias, "gamma": mod.weight, "beta": mod.bias}[leaf]
    return out
