"""The same U-Net in PyTorch, built from a ``UNet``'s plan and weights: a test oracle and a yardstick.

PyTorch is never a run-time dependency of ddpm_ref. This module imports it only inside
``torch_unet``; ``tests/nn/test_unet.py`` compares gradients with it and ``ddpm-ref bench``
times it side by side with the NumPy U-Net. Every layer is PyTorch's own (``nn.Conv2d``,
``nn.GroupNorm``, ``F.scaled_dot_product_attention``, ...), so the comparison is against
PyTorch's fastest CPU code for this architecture.
"""

from __future__ import annotations

import numpy as np

__all__ = ["torch_unet"]


def torch_unet(net, device="cpu"):
    """A ``torch.nn.Module`` computing exactly ``net.forward`` (same plan, copied weights).

    Call it as ``module(x, t, y)`` with torch tensors; ``module.param(name)`` gives the torch
    parameter holding ``net.params[name]``. Dropout is not mirrored (use dropout=0 to compare).
    """
    import torch
    from torch import nn as tnn
    from torch.nn import functional as F

    cfg = net.config
    groups, E, base = cfg["groups"], net.emb_dim, cfg["base_channels"]

    class ResBlock(tnn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.norm1 = tnn.GroupNorm(groups, c_in)
            self.conv1 = tnn.Conv2d(c_in, c_out, 3, padding=1)
            self.emb = tnn.Linear(E, c_out)
            self.norm2 = tnn.GroupNorm(groups, c_out)
            self.conv2 = tnn.Conv2d(c_out, c_out, 3, padding=1)
            self.skip = tnn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

        def forward(self, x, emb_act):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.emb(emb_act)[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return (x if self.skip is None else self.skip(x)) + h

    class Attention(tnn.Module):
        def __init__(self, c):
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

    class Upsample(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = tnn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class Out(tnn.Module):
        def __init__(self, c_in, c_out):
            super().__init__()
            self.norm = tnn.GroupNorm(groups, c_in)
            self.conv = tnn.Conv2d(c_in, c_out, 3, padding=1)

        def forward(self, x):
            return self.conv(F.silu(self.norm(x)))

    class TorchUNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.time_linear1 = tnn.Linear(base, E)
            self.time_linear2 = tnn.Linear(E, E)
            self.class_emb = (tnn.Embedding(cfg["num_classes"] + 1, E)
                              if cfg["num_classes"] is not None else None)
            self.blocks = tnn.ModuleDict()
            for step in net.plan:
                kind = step[0]
                if kind == "conv":
                    mod = tnn.Conv2d(step[2], step[3], 3, stride=step[4], padding=1)
                elif kind == "res":
                    mod = ResBlock(step[2], step[3])
                elif kind == "attn":
                    mod = Attention(step[2])
                elif kind == "up":
                    mod = Upsample(step[2])
                elif kind == "out":
                    mod = Out(step[2], step[3])
                else:
                    continue
                self.blocks[step[1].replace(".", "_")] = mod
            omega = 10000.0 ** (-2.0 * np.arange(base // 2) / base)
            self.register_buffer("omega", torch.tensor(omega))

        def forward(self, x, t, y=None):
            angles = t.to(torch.float64)[:, None] * self.omega[None, :]
            code = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(t), base).to(x.dtype)
            e = self.time_linear2(F.silu(self.time_linear1(code)))
            if self.class_emb is not None:
                if y is None:
                    y = torch.full_like(t, cfg["num_classes"])
                e = e + self.class_emb(y)
            emb_act = F.silu(e)
            h, skips = x, []
            for step in net.plan:
                kind = step[0]
                if kind == "push":
                    skips.append(h)
                elif kind == "concat":
                    h = torch.cat([h, skips.pop()], dim=1)
                elif kind == "res":
                    h = self.blocks[step[1].replace(".", "_")](h, emb_act)
                else:
                    h = self.blocks[step[1].replace(".", "_")](h)
            return h

        def param(self, name):
            """The torch tensor that mirrors ``net.params[name]``."""
            return self._names[name]

    module = TorchUNet().to(dtype=getattr(torch, net.dtype.name))
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
        if key == "class_emb.table":
            out[key] = module.class_emb.weight
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
