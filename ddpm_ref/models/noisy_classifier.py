r"""A noise-conditional classifier p_φ(y | x_t, t): the U-Net's encoder half with a linear head.

Layer: model. It imports ``ddpm_ref.nn`` (layers) and the U-Net's own blocks and config check
(``models.unet_blocks``, ``models.unet_plan``), nothing above. Dhariwal & Nichol 2021 (sec. 4.1,
App. C) guide with "the downsampling trunk of the UNet model with an attention pool at the 8×8
layer"; ours, for 8×8 digits, pools by a global average instead (a linear head needs a fixed width,
and at 2×2 or 4×4 an attention pool has almost nothing to attend over)::

    x_t ─ conv3×3 (C_in→base)
          [ResBlock(→base·m_l) (+ attention)] × num_res_blocks, then conv3×3 stride 2, per level l
          middle: ResBlock (+ attention)
          GroupNorm → SiLU → mean over H, W → Linear(→K) = logits

Every ResBlock reads silu(e), e = TimeMLP(t) (t = 1..T, paper indexing), exactly as in the U-Net.

Loss: cross-entropy on noised data, L = −(1/N) Σ_n log softmax(ℓ_n)_{y_n}, with
∂L/∂ℓ = (softmax(ℓ) − onehot(y))/N.

Guidance needs the gradient with respect to the *input*: ∇_{x_t} log p_φ(y | x_t, t) is the backward
pass with dℓ = onehot(y) − softmax(ℓ) (per example, not averaged), run through every layer down to
x_t. ``grad_log_prob(xt, t, y)`` is that callable, in the form ``ddpm_ref.guidance`` takes.
The head's backward: pooled = mean_{H,W} h, so dh = dpooled/(H·W) at every pixel (term "through the
pool"); ℓ = pooled W_hᵀ + b_h (``nn.linear``).
"""

from __future__ import annotations

import numpy as np

import ddpm_ref.nn as nn
from ddpm_ref.models.unet_blocks import (
    attention_block_backward, attention_block_forward, conv3x3_backward, conv3x3_forward, init_attention,
    init_conv, init_norm, init_resblock, resblock_backward, resblock_forward,
)
from ddpm_ref.models.unet_plan import AttentionStep, DownsampleStep, InConvStep, ResBlockStep, check_config

__all__ = ["NoisyClassifier", "cross_entropy"]


def cross_entropy(logits, y):
    """(mean −log softmax(ℓ)_y, ∂L/∂ℓ = (softmax − onehot)/N); logits (N, K), y int (N,)."""
    n = logits.shape[0]
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))                 # log softmax
    loss = -float(logp[np.arange(n), y].mean())
    d = np.exp(logp)
    d[np.arange(n), y] -= 1.0
    return loss, d / n


class NoisyClassifier:
    """p_φ(y | x_t, t) with a hand-written backward that also returns ∂/∂x_t.

    ``params``: a dict of arrays (names as in the U-Net: ``in_conv.w``, ``down.0.res0.conv1.w``, ...,
    ``head.w``). ``forward`` keeps one tape for ``backward``.
    """

    kind = "noisy_classifier"          # the name a checkpoint gives this class (ddpm_ref.runs)

    def __init__(self, in_channels=1, image_size=8, base_channels=16, channel_mults=(1, 2),
                 num_res_blocks=1, attention_resolutions=(), groups=4, num_classes=10,
                 dtype="float32", seed=0):
        mults, attn = check_config(in_channels, image_size, base_channels, channel_mults, num_res_blocks,
                                   attention_resolutions, groups, 0.0, num_classes, dtype)
        if num_classes is None or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 for a classifier, got {num_classes!r}")
        self.config = {"in_channels": int(in_channels), "image_size": int(image_size),
                       "base_channels": int(base_channels), "channel_mults": list(mults),
                       "num_res_blocks": int(num_res_blocks), "attention_resolutions": list(attn),
                       "groups": int(groups), "num_classes": int(num_classes),
                       "dtype": np.dtype(dtype).name, "seed": int(seed)}
        self.dtype, self.emb_dim, self.ops = np.dtype(dtype), 4 * base_channels, nn.numpy_ops()
        self.plan = self._build_plan()
        self.params = self._init_params(np.random.default_rng(seed))
        self._tape = None

    # ------------------------------------------------------------ architecture
    def _build_plan(self):
        """The U-Net's encoder and middle as its named records (``models.unet_plan``): the input conv,
        ResBlocks, attention and downsampling per level, then the middle ResBlock (+ attention)."""
        cfg = self.config
        base, res, attn = cfg["base_channels"], cfg["image_size"], set(cfg["attention_resolutions"])
        steps, ch = [InConvStep("in_conv", cfg["in_channels"], base)], base
        for level, mult in enumerate(cfg["channel_mults"]):
            for i in range(cfg["num_res_blocks"]):
                steps.append(ResBlockStep(f"down.{level}.res{i}", ch, base * mult))
                ch = base * mult
                if res in attn:
                    steps.append(AttentionStep(f"down.{level}.attn{i}", ch))
            if level != len(cfg["channel_mults"]) - 1:
                steps.append(DownsampleStep(f"down.{level}.downsample", ch))
                res //= 2
        steps.append(ResBlockStep("mid.res0", ch, ch))
        if attn:
            steps.append(AttentionStep("mid.attn", ch))
        self.width = ch
        return steps

    def _init_params(self, rng):
        p, dt, base, E = {}, self.dtype, self.config["base_channels"], self.emb_dim
        p["time.linear1.w"] = nn.variance_scaling(rng, (E, base), 1.0, dt)
        p["time.linear1.b"] = np.zeros(E, dt)
        p["time.linear2.w"] = nn.variance_scaling(rng, (E, E), 1.0, dt)
        p["time.linear2.b"] = np.zeros(E, dt)
        for step in self.plan:
            match step:
                case InConvStep(name, c_in, c_out):
                    init_conv(p, name, c_in, c_out, 3, rng, dt)
                case DownsampleStep(name, ch):
                    init_conv(p, name, ch, ch, 3, rng, dt)
                case ResBlockStep(name, c_in, c_out):
                    init_resblock(p, name, c_in, c_out, E, rng, dt)
                case AttentionStep(name, ch):
                    init_attention(p, name, ch, rng, dt)
        init_norm(p, "out.norm", self.width, dt)
        p["head.w"] = nn.variance_scaling(rng, (self.config["num_classes"], self.width), 1.0, dt)
        p["head.b"] = np.zeros(self.config["num_classes"], dt)
        return p

    def _check_inputs(self, x, t, y=None):
        c, s = self.config["in_channels"], self.config["image_size"]
        if not hasattr(x, "shape") or x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"x must have shape (N, {c}, {s}, {s}), got {tuple(getattr(x, 'shape', ()))}")
        x = np.asarray(x, dtype=self.dtype)
        t = np.broadcast_to(np.asarray(t), (x.shape[0],))
        if not np.issubdtype(t.dtype, np.integer) or t.min() < 1:
            raise ValueError(f"t must be integer timesteps >= 1 (paper indexing), one or one per example, got {t!r}")
        if y is not None:
            y = np.broadcast_to(np.asarray(y), (x.shape[0],))
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.config["num_classes"]:
                raise ValueError(f"y must be labels in 0..{self.config['num_classes'] - 1}, got {np.unique(y)[:10]}")
            y = y.astype(np.int64)
        return x, t.astype(np.int64).copy(), y

    # ------------------------------------------------------------ forward / backward
    def forward(self, x, t, keep_cache: bool = True):
        """Logits ℓ (N, K) of p_φ(y | x_t, t). x (N, C, H, W); t int, one or (N,)."""
        x, t, _ = self._check_inputs(x, t)
        p, ops, groups = self.params, self.ops, self.config["groups"]
        e, c_time = nn.time_mlp_forward(t, p["time.linear1.w"], p["time.linear1.b"],
                                        p["time.linear2.w"], p["time.linear2.b"])
        emb_act, c_act = nn.silu_forward(e)                                  # every ResBlock reads silu(e)
        h, steps = x, []
        for step in self.plan:
            match step:
                case InConvStep(name) | DownsampleStep(name):
                    stride = 2 if isinstance(step, DownsampleStep) else 1
                    h, cache = conv3x3_forward(h, p, name, ops=ops, stride=stride)
                case ResBlockStep(name):
                    h, cache = resblock_forward(h, emb_act, p, name, groups=groups, ops=ops)
                case AttentionStep(name):
                    h, cache = attention_block_forward(h, p, name, groups=groups, ops=ops)
            steps.append((step, cache))
        h, c_out = nn.groupnorm_silu_forward(h, p["out.norm.gamma"], p["out.norm.beta"], groups)
        pooled = h.mean(axis=(2, 3))                                         # global average pool, (N, C)
        logits, c_head = nn.linear_forward(pooled, p["head.w"], p["head.b"])  # ℓ = pooled W_hᵀ + b_h
        self._tape = ({"steps": steps, "time": c_time, "act": c_act, "out": c_out, "head": c_head,
                       "hw": h.shape[2:], "n": x.shape[0]} if keep_cache else None)
        return logits

    def backward(self, d_logits):
        """Gradients of Σ d_logits ⊙ ℓ for the last forward: ``(param grads dict, dL/dx_t)``."""
        if self._tape is None:
            raise ValueError("backward needs a forward pass run with keep_cache=True just before it")
        tape, ops, g = self._tape, self.ops, {}
        if not hasattr(d_logits, "shape") or d_logits.shape != (tape["n"], self.config["num_classes"]):
            raise ValueError(f"d_logits must have the logits' shape {(tape['n'], self.config['num_classes'])}")
        d_logits = np.asarray(d_logits, dtype=self.dtype)
        d_pooled, g["head.w"], g["head.b"] = nn.linear_backward(d_logits, tape["head"])
        H, W = tape["hw"]
        dh = np.broadcast_to((d_pooled / (H * W))[:, :, None, None], (tape["n"], d_pooled.shape[1], H, W))
        dh, g["out.norm.gamma"], g["out.norm.beta"] = nn.groupnorm_silu_backward(np.ascontiguousarray(dh), tape["out"])
        d_emb_act = 0
        for step, cache in reversed(tape["steps"]):
            match step:
                case InConvStep() | DownsampleStep():
                    dh = conv3x3_backward(dh, cache, g)
                case ResBlockStep():
                    dh, d_e = resblock_backward(dh, cache, g)
                    d_emb_act = d_emb_act + d_e                              # every ResBlock read silu(e)
                case AttentionStep():
                    dh = attention_block_backward(dh, cache, g)
        d_e = nn.silu_backward(d_emb_act, tape["act"])
        g["time.linear1.w"], g["time.linear1.b"], g["time.linear2.w"], g["time.linear2.b"] = \
            nn.time_mlp_backward(d_e, tape["time"])
        return {k: g[k] for k in self.params}, np.ascontiguousarray(dh)

    # ------------------------------------------------------------ what training and guidance call
    def loss_and_grads(self, x, t, y):
        """Cross-entropy on (x_t, t, y): ``(loss, param grads, dL/dx_t)``."""
        x, t, y = self._check_inputs(x, t, y)
        if y is None:
            raise ValueError("y (the labels) is required for the loss")
        loss, d_logits = cross_entropy(self.forward(x, t).astype(np.float64), y)
        grads, dx = self.backward(d_logits)
        return loss, grads, dx

    def log_prob(self, x, t, y):
        """log p_φ(y | x_t, t), shape (N,), float64."""
        x, t, y = self._check_inputs(x, t, y)
        logits = self.forward(x, t, keep_cache=False).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits[np.arange(len(y)), y] - np.log(np.exp(logits).sum(axis=1))

    def grad_log_prob(self, x, t, y):
        """∇_{x_t} log p_φ(y | x_t, t), x's shape: the backward pass with dℓ = onehot(y) − softmax(ℓ)."""
        x, t, y = self._check_inputs(x, t, y)
        logits = self.forward(x, t).astype(np.float64)
        prob = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        d_logits = -prob
        d_logits[np.arange(len(y)), y] += 1.0                                # ∂ log softmax_y / ∂ℓ
        return self.backward(d_logits)[1]
