"""The shapes at which the U-Net really calls the ops, recorded by running it once with NumPy ops.

Used by the tests at real shapes (tests/cuda_kernels/test_kernels_real_shapes.py) and by
``python -m kernels.gpu_day``.

    unet_shapes()  ->  {"conv": [(N, C, H, W, K, R, stride, pad), ...], "attention": [(B, L, D), ...],
                        "cross_attention": [(B, Lq, Lk, D), ...]}

``cross_attention`` is empty but for a U-Net that reads prompts (``unet_shapes(**PROMPTS)``: its
cross-attention blocks call the same attention ops with Lq pixels against Lk tokens).

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
# the prompt model (ddpm-ref train --prompts): the demo net reading 3 tokens of width 32 (a tuple: hashable)
PROMPTS = dict(prompt_vocab=("<pad>", "digit", "zero", "one", "two", "three", "four", "five", "six", "seven",
                             "eight", "nine", "thick", "thin"), prompt_length=3, context_dim=32)


@functools.lru_cache(maxsize=None)
def _record(items):
    from ddpm_ref.models.unet import UNet

    cfg = dict(items)
    seen = {"conv": set(), "attention": set(), "cross_attention": set()}
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
            if k.shape[1] == q.shape[1]:
                seen["attention"].add((1,) + tuple(q.shape[1:]))
            else:                                                        # pixels attending to tokens
                seen["cross_attention"].add((1, q.shape[1], k.shape[1], q.shape[2]))
            return base.attention_forward(q, k, v)

    net = UNet(ops=Recorder(), **cfg)
    size = net.config["image_size"]
    net.forward(np.zeros((1, net.config["in_channels"], size, size), np.float32), np.array([5]))
    return {kind: sorted(found) for kind, found in seen.items()}


def unet_shapes(batch: int = 1, **cfg):
    """{"conv": [...], "attention": [...], "cross_attention": [...]} of the U-Net built with `cfg`, with
    N = B = `batch`."""
    shapes = _record(tuple(sorted(cfg.items())))
    return {kind: [(batch,) + s[1:] for s in found] for kind, found in shapes.items()}
