"""Checkers (and solutions) for the exercises of lessons 6-7: layers, backward passes, the U-Net."""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise

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


@exercise("06.1", solution=lambda: _my_silu_backward)
def _ex_06_1(answer):
    inputs = _inputs([((5,), (5,)), ((3, 4), (3, 4)), ((2, 3, 2, 2), (2, 3, 2, 2))], 61)
    return compare_function(answer, _silu_reference, inputs, rtol=1e-9, atol=1e-12,
                            hint="dx = dy · (σ(x) + x σ(x)(1 − σ(x))).")


def _my_linear_dw(x, dy):
    return dy.T @ x


def _linear_dw_reference(x, dy):
    import ddpm_ref.nn as nn

    w = np.zeros((dy.shape[1], x.shape[1]))
    return nn.linear_backward(dy, nn.linear_forward(x, w)[1])[1]


@exercise("06.2", solution=lambda: _my_linear_dw)
def _ex_06_2(answer):
    inputs = _inputs([((5, 3), (5, 2)), ((7, 4), (7, 6)), ((1, 3), (1, 3))], 62)
    return compare_function(answer, _linear_dw_reference, inputs, rtol=1e-9, atol=1e-12,
                            hint="dW has W's shape (out, in): dyᵀ x.")


def _my_softmax_backward(p, dp):
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def _softmax_jacobian_reference(p, dp):
    jac = np.einsum("bij,jk->bijk", p, np.eye(p.shape[-1])) - p[..., :, None] * p[..., None, :]
    return np.einsum("bij,bijk->bik", dp, jac)      # ds_k = Σ_j dp_j ∂p_j/∂s_k (J is symmetric)


def _softmax_inputs():
    from ddpm_ref.nn import softmax

    g = np.random.default_rng(63)
    return [(softmax(g.standard_normal((b, n, n)) * 2), g.standard_normal((b, n, n))) for b, n in [(1, 3), (2, 5), (3, 4)]]


@exercise("06.3", solution=lambda: _my_softmax_backward)
def _ex_06_3(answer):
    return compare_function(answer, _softmax_jacobian_reference, _softmax_inputs(), rtol=1e-9, atol=1e-12,
                            hint="ds = p ⊙ (dp − Σ_j dp_j p_j), the sum over the last axis, kept as a column.")


# --------------------------------------------------------------------------------------------
# Lesson 07: the U-Net
# --------------------------------------------------------------------------------------------


def _conv_params():
    from ddpm_ref.models.unet import UNet

    net = UNet(base_channels=32, channel_mults=(1, 2), num_res_blocks=1)
    return int(net.params["down.1.res0.conv1.w"].size + net.params["down.1.res0.conv1.b"].size)


@exercise("07.1", solution=_conv_params)
def _ex_07_1(answer):
    return compare(answer, _conv_params(), atol=0,
                   hint="Weights K·C·R·S (64·32·3·3) plus one bias per output channel.")


def _level_sizes():
    return [32 // 2 ** i for i in range(4)]


@exercise("07.2", solution=_level_sizes)
def _ex_07_2(answer):
    return compare(answer, _level_sizes(), atol=0, hint="Start at 32 and halve after each level but the last.")


def _num_skips():
    from ddpm_ref.models.unet_plan import PushSkip, build_plan

    cfg = {"in_channels": 1, "image_size": 8, "base_channels": 32, "channel_mults": (1, 2, 2),
           "num_res_blocks": 2, "attention_resolutions": ()}
    return sum(1 for step in build_plan(cfg) if isinstance(step, PushSkip))


@exercise("07.3", solution=_num_skips)
def _ex_07_3(answer):
    return compare(answer, _num_skips(), atol=0,
                   hint="1 (input conv) + 2 per level (ResBlocks) + 1 per downsampling (all levels but the last).")
