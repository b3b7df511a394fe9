"""The U-Net's architecture as data: config checks and the list of steps ("the plan").

``build_plan(config)`` turns a config into the ordered steps that ``UNet.forward`` runs and
``UNet.__init__`` allocates parameters for, so the two can never disagree. Each step is a small
frozen dataclass with named fields; ``print(step)`` shows it, e.g.
``ResBlockStep(name='down.1.res0', c_in=32, c_out=64)``. ``name`` is the prefix of the step's
keys in ``UNet.params`` (``"down.1.res0.conv1.w"``, ...).

Layer: model. Imports NumPy only.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["check_config", "check_prompt_config", "build_plan", "InConvStep", "ResBlockStep", "AttentionStep",
           "CrossAttentionStep", "DownsampleStep", "UpsampleStep", "PushSkip", "ConcatSkip", "OutStep"]


@dataclass(frozen=True)
class InConvStep:
    """The first layer: a 3×3 convolution (stride 1, padding 1) from the image's channels."""
    name: str
    c_in: int
    c_out: int


@dataclass(frozen=True)
class ResBlockStep:
    """A ResBlock, c_in → c_out channels, told the timestep (``unet_blocks.resblock_forward``)."""
    name: str
    c_in: int
    c_out: int


@dataclass(frozen=True)
class AttentionStep:
    """Self-attention over the pixels, with a residual (``unet_blocks.attention_block_forward``)."""
    name: str
    channels: int


@dataclass(frozen=True)
class CrossAttentionStep:
    """The pixels attend to the prompt's tokens, with a residual
    (``cross_attention_block.cross_attention_block_forward``); only in a U-Net that reads prompts,
    after each self-attention step. ``context_dim``: the width E of a token embedding."""
    name: str
    channels: int
    context_dim: int


@dataclass(frozen=True)
class DownsampleStep:
    """Halve the resolution: a 3×3 convolution with stride 2 (``unet_blocks.downsample_forward``)."""
    name: str
    channels: int


@dataclass(frozen=True)
class UpsampleStep:
    """Double the resolution: nearest 2× upsampling, then a 3×3 convolution
    (``unet_blocks.upsample_forward``)."""
    name: str
    channels: int


@dataclass(frozen=True)
class PushSkip:
    """Keep the current activation (``channels`` wide) for the decoder: a skip connection."""
    channels: int


@dataclass(frozen=True)
class ConcatSkip:
    """[h | s]: join the most recently pushed skip s to h along the channels."""
    channels: int           # h's channels
    skip_channels: int      # s's channels


@dataclass(frozen=True)
class OutStep:
    """The head: GroupNorm → SiLU → 3×3 convolution to the image's channels, or twice that with
    learn_sigma (``unet_blocks.out_forward``)."""
    name: str
    c_in: int
    c_out: int


def _int_tuple(name, values, lowest):
    """``values`` as a tuple of ints >= ``lowest``, or ValueError naming ``name``."""
    try:
        items = tuple(values)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers, got {values!r}") from None
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < lowest for v in items):
        raise ValueError(f"{name} must be a sequence of integers >= {lowest}, got {values!r}")
    return tuple(int(v) for v in items)


def check_config(in_channels, image_size, base_channels, channel_mults, num_res_blocks,
                 attention_resolutions, groups, dropout, num_classes, dtype):
    """Raise ValueError for a config the U-Net cannot build; returns (channel_mults, attention_resolutions)."""
    for name, v in (("in_channels", in_channels), ("image_size", image_size),
                    ("base_channels", base_channels), ("num_res_blocks", num_res_blocks),
                    ("groups", groups)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    mults = _int_tuple("channel_mults", channel_mults, 1)
    if not mults:
        raise ValueError(f"channel_mults must be a non-empty sequence of integers >= 1, got {channel_mults!r}")
    if image_size % 2 ** (len(mults) - 1):
        raise ValueError(f"image_size={image_size} must be divisible by 2^{len(mults) - 1} "
                         f"(the U-Net halves it {len(mults) - 1} times)")
    if base_channels % groups:
        raise ValueError(f"groups={groups} must divide base_channels={base_channels} (GroupNorm)")
    resolutions = [image_size // 2 ** i for i in range(len(mults))]
    attn = _int_tuple("attention_resolutions", attention_resolutions, 1)
    if any(r not in resolutions for r in attn):
        raise ValueError(f"attention_resolutions {attn} must be among the U-Net's resolutions {resolutions}")
    if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if num_classes is not None and (isinstance(num_classes, (bool, np.bool_))
                                    or not isinstance(num_classes, numbers.Integral) or num_classes < 1):
        raise ValueError(f"num_classes must be None or an integer >= 1, got {num_classes!r}")
    if not isinstance(dtype, (str, np.dtype, type)) or dtype not in ("float32", "float64", np.float32,
                                                                     np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return mults, attn


def check_prompt_config(prompt_vocab, prompt_length, context_dim, num_classes):
    """Raise ValueError for prompt settings the U-Net cannot build; returns (vocab list, length, dim) or None."""
    if prompt_vocab is None:
        for name, v in (("prompt_length", prompt_length), ("context_dim", context_dim)):
            if v is not None:
                raise ValueError(f"{name} is set but prompt_vocab is None: a U-Net without prompts has no {name}")
        return None
    if isinstance(prompt_vocab, str) or not all(isinstance(w, str) and w and not any(ch.isspace() for ch in w)
                                                for w in prompt_vocab) or len(prompt_vocab) < 2:
        raise ValueError(f"prompt_vocab must be a list of at least 2 distinct words without spaces (the first "
                         f"is the padding token), got {prompt_vocab!r}")
    if len(set(prompt_vocab)) != len(prompt_vocab):
        raise ValueError(f"prompt_vocab must not repeat a word, got {prompt_vocab!r}")
    for name, v in (("prompt_length", prompt_length), ("context_dim", context_dim)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1 with prompt_vocab, got {v!r}")
    if num_classes is not None:
        raise ValueError("a U-Net reads class labels (num_classes) or prompts (prompt_vocab), not both; "
                         "set num_classes=None for a prompt model")
    return list(prompt_vocab), int(prompt_length), int(context_dim)


def build_plan(cfg) -> list:
    """The network as a list of steps (the dataclasses above), read by ``__init__`` (shapes) and
    ``forward`` (order). ``cfg`` needs in_channels, image_size, base_channels, channel_mults,
    num_res_blocks and attention_resolutions (a ``UNet.config`` has them), and optionally
    learn_sigma (the head then gives 2·in_channels: [prediction | v_σ]) and context_dim (a U-Net that
    reads prompts: a ``CrossAttentionStep`` after every ``AttentionStep``)."""
    base, mults, nrb = cfg["base_channels"], cfg["channel_mults"], cfg["num_res_blocks"]
    attn, res = set(cfg["attention_resolutions"]), cfg["image_size"]
    ctx_dim = cfg.get("context_dim")

    def attention(name, ch):
        """Self-attention, then (prompt models) cross-attention to the prompt: "down.1.attn0", "down.1.xattn0"."""
        return [AttentionStep(name, ch)] + ([] if ctx_dim is None else
                                            [CrossAttentionStep(name.replace("attn", "xattn"), ch, ctx_dim)])
    steps = [InConvStep("in_conv", cfg["in_channels"], base), PushSkip(base)]
    ch, skip_channels = base, [base]
    for level, mult in enumerate(mults):                            # encoder
        for i in range(nrb):
            steps.append(ResBlockStep(f"down.{level}.res{i}", ch, base * mult))
            ch = base * mult
            if res in attn:
                steps += attention(f"down.{level}.attn{i}", ch)
            steps.append(PushSkip(ch))
            skip_channels.append(ch)
        if level != len(mults) - 1:
            steps += [DownsampleStep(f"down.{level}.downsample", ch), PushSkip(ch)]
            skip_channels.append(ch)
            res //= 2
    steps += [ResBlockStep("mid.res0", ch, ch), *attention("mid.attn", ch), ResBlockStep("mid.res1", ch, ch)]
    for level in reversed(range(len(mults))):                      # decoder
        for i in range(nrb + 1):
            skip = skip_channels.pop()
            steps += [ConcatSkip(ch, skip), ResBlockStep(f"up.{level}.res{i}", ch + skip, base * mults[level])]
            ch = base * mults[level]
            if res in attn:
                steps += attention(f"up.{level}.attn{i}", ch)
        if level != 0:
            steps.append(UpsampleStep(f"up.{level}.upsample", ch))
            res *= 2
    out_channels = cfg["in_channels"] * (2 if cfg.get("learn_sigma", False) else 1)
    steps.append(OutStep("out", ch, out_channels))
    return steps
