"""The U-Net's architecture as data: config checks and the list of steps ("the plan").

``build_plan(config)`` turns a config into the ordered steps ``UNet.forward`` runs and
``UNet.__init__`` allocates parameters for, so the two can never disagree.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_config", "build_plan"]


def check_config(in_channels, image_size, base_channels, channel_mults, num_res_blocks,
                 attention_resolutions, groups, dropout, num_classes, dtype):
    """Raise ValueError for a config the U-Net cannot build; returns (channel_mults, attention_resolutions)."""
    for name, v in (("in_channels", in_channels), ("image_size", image_size),
                    ("base_channels", base_channels), ("num_res_blocks", num_res_blocks),
                    ("groups", groups)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    mults = tuple(channel_mults)
    if not mults or any(isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1 for m in mults):
        raise ValueError(f"channel_mults must be a non-empty sequence of integers >= 1, got {channel_mults!r}")
    if image_size % 2 ** (len(mults) - 1):
        raise ValueError(f"image_size={image_size} must be divisible by 2^{len(mults) - 1} "
                         f"(the U-Net halves it {len(mults) - 1} times)")
    if base_channels % groups:
        raise ValueError(f"groups={groups} must divide base_channels={base_channels} (GroupNorm)")
    resolutions = [image_size // 2 ** i for i in range(len(mults))]
    attn = tuple(int(r) for r in attention_resolutions)
    if any(r not in resolutions for r in attn):
        raise ValueError(f"attention_resolutions {attn} must be among the U-Net's resolutions {resolutions}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be None or an integer >= 1, got {num_classes!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return mults, attn


def build_plan(cfg):
    """The network as a list of steps, read by both __init__ (shapes) and forward (order).

    Steps: ("conv", name, c_in, c_out, stride) | ("res", name, c_in, c_out) | ("attn", name, c)
    | ("push",) a skip | ("concat",) the last skip | ("up", name, c) | ("out", name, c_in, c_out).
    """
    base, mults, nrb = cfg["base_channels"], cfg["channel_mults"], cfg["num_res_blocks"]
    attn, res = set(cfg["attention_resolutions"]), cfg["image_size"]
    steps = [("conv", "in_conv", cfg["in_channels"], base, 1), ("push",)]
    ch, skip_channels = base, [base]
    for level, mult in enumerate(mults):                            # encoder
        for i in range(nrb):
            steps.append(("res", f"down.{level}.res{i}", ch, base * mult))
            ch = base * mult
            if res in attn:
                steps.append(("attn", f"down.{level}.attn{i}", ch))
            steps.append(("push",))
            skip_channels.append(ch)
        if level != len(mults) - 1:
            steps += [("conv", f"down.{level}.downsample", ch, ch, 2), ("push",)]
            skip_channels.append(ch)
            res //= 2
    steps += [("res", "mid.res0", ch, ch), ("attn", "mid.attn", ch), ("res", "mid.res1", ch, ch)]
    for level in reversed(range(len(mults))):                      # decoder
        for i in range(nrb + 1):
            c_in = ch + skip_channels.pop()
            ch = base * mults[level]
            steps += [("concat",), ("res", f"up.{level}.res{i}", c_in, ch)]
            if res in attn:
                steps.append(("attn", f"up.{level}.attn{i}", ch))
        if level != 0:
            steps.append(("up", f"up.{level}.upsample", ch))
            res *= 2
    steps.append(("out", "out", ch, cfg["in_channels"]))
    return steps
