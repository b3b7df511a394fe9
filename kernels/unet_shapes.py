"""The shapes at which the U-Net really calls the ops, recorded by running it once with NumPy ops.

Used by the tests at real shapes (tests/cuda_kernels/test_kernels_real_shapes.py) and by
``python -m kernels.gpu_day``.

    unet_shapes()  ->  {"conv": [(N, C, H, W, K, R, stride, pad), ...], "attention": [(B, L, D), ...]}

with N = B = 1 (one image: the tiles the ops choose depend on C, K, H, W, L, D, not on the batch,
except for grid sizes). Recording beats a hand-written list: the demo net has a 2x2 convolution
(the upsampling path) that nobody would have listed.
"""

from __future__ import annotations

import functools

import numpy as np

from ddpm_ref import nn

DEMO = {}                                                               # the UNet's defaults: the demo net
WIDER = dict(image_size=16, base_channels=64, attention_resolutions=(8,))   # C up to 256, L = 64, D = 128


@functools.lru_cache(maxsize=None)
def _record(items):
    from ddpm_ref.models.unet import UNet

    cfg = dict(items)
    seen = {"conv": set(), "attention": set()}
    base = nn.numpy_ops()

    class Recorder:
        def __getattr__(self, name):
            return getattr(base, name)

        def conv2d_forward(self, x, w, b=None, stride=1, padding=0):
            _, C, H, W = x.shape
            K, _, R, _ = w.shape
            seen["conv"].add((1, C, H, W, K, R, stride, padding))
            return base.conv2d_forward(x, w, b, stride, padding)

        def attention_forward(self, q, k, v):
            seen["attention"].add((1,) + tuple(q.shape[1:]))
            return base.attention_forward(q, k, v)

    net = UNet(ops=Recorder(), **cfg)
    size = net.config["image_size"]
    net.forward(np.zeros((1, net.config["in_channels"], size, size), np.float32), np.array([5]))
    return {"conv": sorted(seen["conv"]), "attention": sorted(seen["attention"])}


def unet_shapes(batch: int = 1, **cfg):
    """{"conv": [...], "attention": [...]} of the U-Net built with `cfg`, with N = B = `batch`."""
    shapes = _record(tuple(sorted(cfg.items())))
    return {kind: [(batch,) + s[1:] for s in found] for kind, found in shapes.items()}
