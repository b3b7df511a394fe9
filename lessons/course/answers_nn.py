"""Checkers (and solutions) for the exercises of lessons 6-7: layers, backward passes, the U-Net.

The expected values come from ``ddpm_ref.nn`` (or, for the softmax, from the full Jacobian);
the solutions below are written independently of the library's code.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise

#: What a function exercise says when the student's function still returns None (its body is `...`).
NOT_ANSWERED = ("not answered yet: your function still returns None (its body is `...`). "
                "Write it, return the result, and run the cell again.")


def returns_none(fn, args) -> bool:
    """True when the student's function is still a stub (returns None on the first input)."""
    return callable(fn) and fn(*args) is None


# --------------------------------------------------------------------------------------------
# Lesson 06: backpropagation by hand
# --------------------------------------------------------------------------------------------


def _inputs(shapes, seed):
    g = np.random.default_rng(seed)
    return [tuple(g.standard_normal(s) * 2 for s in group) for group in shapes]


def _my_silu_backward(x, dy):
    s = 1 / (1 + np.exp(-x))
    return dy * (s + x * s * (1 - s))


def _silu_reference(x, dy):
    import ddpm_ref.nn as nn

    return nn.silu_backward(dy, nn.silu_forward(x)[1])


_SILU_MISTAKES = {
    "dy/dx without the factor dy (the chain rule's last step)":
        lambda x, dy: (lambda s: s + x * s * (1 - s))(1 / (1 + np.exp(-x))),
    "only term 1, σ(x) (the path through σ is missing)": lambda x, dy: dy / (1 + np.exp(-x)),
    "the derivative of the sigmoid, σ(1 − σ), instead of SiLU's":
        lambda x, dy: dy * (lambda s: s * (1 - s))(1 / (1 + np.exp(-x))),
}


@exercise("06.1", solution=lambda: _my_silu_backward,
          wrong={what: (lambda fn=fn: fn) for what, fn in _SILU_MISTAKES.items()},
          hints=("SiLU is a product, x times σ(x): use the product rule, and remember that "
                 "dσ/dx = σ(1 − σ). Then multiply by dy (chain rule).",
                 "dx = dy · (σ(x) + x σ(x) (1 − σ(x)))."))
def _ex_06_1(answer):
    inputs = _inputs([((5,), (5,)), ((3, 4), (3, 4)), ((2, 3, 2, 2), (2, 3, 2, 2))], 61)
    if returns_none(answer, inputs[0]):
        return None, NOT_ANSWERED
    return compare_function(answer, _silu_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_SILU_MISTAKES)


# ---- 06.2: GroupNorm backward ----

def _my_groupnorm_backward(dy, x, gamma, groups, eps=1e-5):
    N, C, H, W = x.shape
    xg = x.reshape(N, groups, -1)                                   # one row per (image, group)
    mu = xg.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(xg.var(axis=-1, keepdims=True) + eps)
    xhat = ((xg - mu) * rstd).reshape(x.shape)
    dgamma = (dy * xhat).sum(axis=(0, 2, 3))
    dbeta = dy.sum(axis=(0, 2, 3))
    dxhat = (dy * gamma[None, :, None, None]).reshape(N, groups, -1)
    xh = xhat.reshape(N, groups, -1)
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xh * (dxhat * xh).mean(axis=-1, keepdims=True))
    return dx.reshape(x.shape), dgamma, dbeta


def _groupnorm_reference(dy, x, gamma, groups, eps=1e-5):
    import ddpm_ref.nn as nn

    _, cache = nn.groupnorm_forward(x, gamma, np.zeros_like(gamma), groups, eps)
    return nn.groupnorm_backward(dy, cache)


def _gn_without(path):
    """The solution with one of the three paths from x to y left out (a plausible mistake)."""
    def wrong(dy, x, gamma, groups, eps=1e-5):
        N = x.shape[0]
        xg = x.reshape(N, groups, -1)
        mu = xg.mean(axis=-1, keepdims=True)
        rstd = 1 / np.sqrt(xg.var(axis=-1, keepdims=True) + eps)
        xh = (xg - mu) * rstd
        dxhat = (dy * gamma[None, :, None, None]).reshape(N, groups, -1)
        dx = dxhat.copy()
        if path != "mean":
            dx -= dxhat.mean(axis=-1, keepdims=True)
        if path != "variance":
            dx -= xh * (dxhat * xh).mean(axis=-1, keepdims=True)
        dgamma = (dy * xh.reshape(x.shape)).sum(axis=(0, 2, 3))
        return (rstd * dx).reshape(x.shape), dgamma, dy.sum(axis=(0, 2, 3))
    return wrong


def _gn_per_channel(dy, x, gamma, groups, eps=1e-5):
    return _my_groupnorm_backward(dy, x, gamma, x.shape[1], eps)     # statistics per channel (InstanceNorm)


def _gn_dgamma_from_y(dy, x, gamma, groups, eps=1e-5):
    dx, _, dbeta = _my_groupnorm_backward(dy, x, gamma, groups, eps)
    return dx, (dy * x).sum(axis=(0, 2, 3)), dbeta                   # x where x̂ belongs


_GN_MISTAKES = {
    "the path through σ² is missing": _gn_without("variance"),
    "the path through μ is missing": _gn_without("mean"),
    "statistics per channel instead of per group of channels": _gn_per_channel,
    "dγ summed with x instead of the normalised x̂": _gn_dgamma_from_y,
}


def _gn_inputs():
    g = np.random.default_rng(62)
    out = []
    for (N, C, H, W), groups in [((2, 4, 3, 3), 2), ((1, 6, 2, 5), 3), ((3, 8, 4, 4), 4)]:
        x = g.standard_normal((N, C, H, W)) * 2 + 1
        out.append((g.standard_normal((N, C, H, W)), x, g.standard_normal(C), groups))
    return out


@exercise("06.2", solution=lambda: _my_groupnorm_backward,
          wrong={what: (lambda fn=fn: fn) for what, fn in _GN_MISTAKES.items()},
          hints=("Recompute μ, σ² and x̂ per (image, group): reshape x to (N, groups, C/groups·H·W) and take "
                 "means over the last axis. dβ and dγ are sums over every axis but the channel one.",
                 "With dx̂ = γ·dy (per channel) and bars for means over the group: "
                 "dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) / √(σ² + ε); dγ = Σ dy·x̂; dβ = Σ dy."))
def _ex_06_2(answer):
    inputs = _gn_inputs()
    if not callable(answer):
        return False, f"expected a function, got {type(answer).__name__}."
    if answer(*inputs[0]) is None:
        return None, NOT_ANSWERED
    for args in inputs:
        got = answer(*args)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return False, "return three arrays: (dx, dgamma, dbeta)."
        ref = _groupnorm_reference(*args)
        for name, g_, r_, i in zip(("dx", "dgamma", "dbeta"), got, ref, range(3)):
            known = {what: fn(*args)[i] for what, fn in _GN_MISTAKES.items()}
            ok, message = compare(g_, r_, rtol=1e-7, atol=1e-9, mistakes=known)
            if not ok:
                shape = "x".join(str(s) for s in args[1].shape)
                return False, f"{name} (x of shape {shape}, {args[3]} groups): {message}"
    return True, f"(dx, dγ, dβ agree with nn.groupnorm_backward on {len(inputs)} inputs)"


# ---- 06.3: softmax backward ----

def _my_softmax_backward(p, dp):
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def _softmax_jacobian_reference(p, dp):
    jac = np.einsum("bij,jk->bijk", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]
    return np.einsum("bij,bijk->bik", dp, jac)      # ds_k = Σ_j dp_j ∂p_j/∂s_k (J is symmetric)


def _softmax_inputs():
    from ddpm_ref.nn import softmax

    g = np.random.default_rng(63)
    return [(softmax(g.standard_normal((b, n, n)) * 2), g.standard_normal((b, n, n))) for b, n in [(1, 3), (2, 5), (3, 4)]]


_SOFTMAX_MISTAKES = {
    "p ⊙ dp: the diagonal of the Jacobian only (the −p pᵀ part is missing)": lambda p, dp: p * dp,
    "the sum Σ dp_j p_j taken over the wrong axis (columns instead of each row)":
        lambda p, dp: p * (dp - (dp * p).sum(axis=-2, keepdims=True)),
    "a sign error: p ⊙ (Σ dp_j p_j − dp)": lambda p, dp: p * ((dp * p).sum(axis=-1, keepdims=True) - dp),
}


@exercise("06.3", solution=lambda: _my_softmax_backward,
          wrong={what: (lambda fn=fn: fn) for what, fn in _SOFTMAX_MISTAKES.items()},
          hints=("Each row is its own softmax. Write ds_i = Σ_j dp_j ∂p_j/∂s_i with "
                 "∂p_j/∂s_i = p_j(δ_ij − p_i), and collect the terms.",
                 "ds = p ⊙ (dp − Σ_j dp_j p_j), the sum over the last axis, kept as a column (keepdims=True)."))
def _ex_06_3(answer):
    inputs = _softmax_inputs()
    if returns_none(answer, inputs[0]):
        return None, NOT_ANSWERED
    return compare_function(answer, _softmax_jacobian_reference, inputs, rtol=1e-9, atol=1e-12,
                            mistakes=_SOFTMAX_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 07: the U-Net
# --------------------------------------------------------------------------------------------


def _conv_params():
    from ddpm_ref.models.unet import UNet

    net = UNet(base_channels=32, channel_mults=(1, 2), num_res_blocks=1)
    return int(net.params["down.1.res0.conv1.w"].size + net.params["down.1.res0.conv1.b"].size)


@exercise("07.1", solution=_conv_params,
          wrong={"no bias": lambda: 9 * 32 * 64, "one 3×3 kernel per output channel only": lambda: 9 * 64 + 64},
          hints=("Each output channel has one 3×3 kernel per input channel, and one bias.",
                 "K·C·R·S weights (64·32·3·3) plus K biases."))
def _ex_07_1(answer):
    return compare(answer, _conv_params(), atol=0,
                   mistakes={"the weights without the 64 biases": 9 * 32 * 64})


def _level_sizes():
    return [32 // 2 ** i for i in range(4)]


@exercise("07.2", solution=_level_sizes,
          wrong={"halving once too often": lambda: [16, 8, 4, 2], "one level too few": lambda: [32, 16, 8]},
          hints=("Four entries in channel_mults, four levels; the first works at the input size.",
                 "Start at 32 and halve after each level but the last."))
def _ex_07_2(answer):
    return compare(answer, _level_sizes(), atol=0,
                   mistakes={"the sizes after each level's downsampling (start at the input size)": [16, 8, 4, 2]})


def _num_skips(mults=(1, 2, 2), num_res_blocks=2):
    """By the rule (independent of how the plan is stored): input conv + every encoder ResBlock +
    every downsampling."""
    return 1 + len(mults) * num_res_blocks + (len(mults) - 1)


@exercise("07.3", solution=_num_skips,
          wrong={"the ResBlocks only": lambda: 6, "without the input convolution": lambda: 8},
          hints=("The decoder has one ResBlock per skip; count what the encoder pushes: after the input "
                 "convolution, after each of its ResBlocks, after each downsampling.",
                 "1 + (levels × ResBlocks per level) + (levels − 1)."))
def _ex_07_3(answer):
    return compare(answer, _num_skips(), atol=0,
                   mistakes={"the encoder ResBlocks only (input conv and downsamplings push too)": 6,
                             "everything but the input convolution's skip": 8,
                             "everything but the downsamplings' skips": 7})
