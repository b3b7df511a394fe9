"""Every kernel version at the shapes the U-Net really uses, through the ops object (so with the
tiles the ops really choose), against the reference and against each other (v1 versus v2).

The shapes are recorded from the U-Net itself (unet_shapes.py): every convolution of the demo net
(C = 1..128, 8x8 and 4x4 images, 3x3, 2x2 and 1x1 filters, stride 1 and 2) and its attention
(L = 16, D = 64), plus attention of a wider net (L = 64, D = 128). Batch 1: the tiles depend on the
channels and sizes, not on the batch (which only repeats blocks, and costs emulator time). The
wider net's convolutions (C up to 256 at 16x16) are left out: one of them takes the emulator
about 20 s (a barrier of 256 OS threads costs about a millisecond), too long for CI.

Tolerance: kernels/harness.py (C_TOL * eps32 * M). Two float32 versions agree within the sum of
their tolerances.
"""

import numpy as np
import pytest

import kernels
from kernels import harness
from kernels.unet_shapes import PROMPTS, WIDER, unet_shapes

pytestmark = pytest.mark.slow


CONV_OUTPUTS = {"conv2d_forward": ("y",), "conv2d_backward_data": ("dx",), "conv2d_backward_weight": ("dw", "db")}


def _conv_ops(v):
    """The ops at version v for every conv op that has it ({op: v}), and the outputs those ops make."""
    have = {op: v for op in CONV_OUTPUTS if v in kernels.VERSIONS[op]}
    return kernels.get_ops("emulate", version=have), [n for op in have for n in CONV_OUTPUTS[op]]


def _check(name, got, ref, tol):
    problems = harness.compare(name, got, ref, tol)
    assert not problems, "\n".join(problems)


# One recorded shape per kind of tile situation (the whole list of 16 takes the emulator 80 s):
REPRESENTATIVE = [
    (1, 1, 8, 8, 32, 3, 1, 1),       # the first conv: C*R*S = 9, one partial tile of the sum
    (1, 32, 8, 8, 1, 3, 1, 1),       # the last conv: K = 1, fifteen idle rows of each 16x16 tile
    (1, 32, 8, 8, 32, 3, 2, 1),      # the downsampling conv: stride 2
    (1, 64, 5, 5, 64, 2, 1, 0),      # the 2x2 conv of the upsampling path
    (1, 96, 8, 8, 32, 1, 1, 0),      # a 1x1 skip conv
    (1, 128, 4, 4, 64, 3, 1, 1),     # the longest sum: C*R*S = 1152 terms
]


def _conv_cases():
    recorded = unet_shapes()["conv"]
    assert set(REPRESENTATIVE) <= set(recorded), "the U-Net no longer uses these shapes: choose again"
    return REPRESENTATIVE


@pytest.mark.parametrize("shape", _conv_cases(), ids=lambda s: "x".join(map(str, s)))
def test_conv_at_unet_shapes(emulator, shape):
    N, C, H, W, K, R, stride, pad = shape
    inp = harness.make_inputs("conv2d_forward", shape, np.random.default_rng(sum(shape)))
    outs = {}
    for v in sorted({v for op in CONV_OUTPUTS for v in kernels.VERSIONS[op]}):
        ops, names = _conv_ops(v)
        y, cache = ops.conv2d_forward(inp["x"], inp["w"], inp["b"], stride, pad)
        dx, dw, db = ops.conv2d_backward(inp["dy"], cache)
        outs[v] = {n: a for n, a in {"y": y, "dx": dx, "dw": dw, "db": db}.items() if n in names}
    ref, tol = {}, {}
    for op in ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight"):
        ref.update(harness.reference(op, inp))
        tol.update(harness.tolerance(op, inp))
    for v, out in outs.items():
        for name in out:
            _check(f"v{v} {name}", out[name], ref[name], tol[name])
    first, *others = outs
    for v in others:                                       # the versions against each other
        for name in outs[v]:
            _check(f"v{v} - v{first} {name}", outs[v][name], np.asarray(outs[first][name], np.float64),
                   2 * tol[name])


@pytest.mark.parametrize("shape", unet_shapes()["attention"] + unet_shapes(**WIDER)["attention"] + [(2, 37, 64)]
                         + unet_shapes(**PROMPTS)["cross_attention"],
                         ids=lambda s: "x".join(map(str, s)))
def test_attention_at_unet_shapes(emulator, shape):
    inp = harness.make_inputs("attention_backward", shape, np.random.default_rng(sum(shape)))
    outs = {}
    for v in kernels.VERSIONS["attention_forward"]:
        ops = kernels.get_ops("emulate", version=v)
        o, cache = ops.attention_forward(inp["q"], inp["k"], inp["v"])
        dq, dk, dv = ops.attention_backward(inp["do"], cache)
        outs[v] = {"o": o, "dq": dq, "dk": dk, "dv": dv}
    ref = {**harness.reference("attention_forward", inp), **harness.reference("attention_backward", inp)}
    tol = {**harness.tolerance("attention_forward", inp), **harness.tolerance("attention_backward", inp)}
    for v, out in outs.items():
        for name in ref:
            _check(f"v{v} {name}", out[name], ref[name], tol[name])
    first, *others = outs
    for v in others:
        for name in ref:
            _check(f"v{v} - v{first} {name}", outs[v][name], np.asarray(outs[first][name], np.float64),
                   2 * tol[name])


def test_the_recorded_shapes_are_the_unets():
    """The recording is not empty and has what the issue lists: C from 32 to 128, D = 64 and 128, L = 16 and 64."""
    demo, wider = unet_shapes(), unet_shapes(**WIDER)
    channels = {s[1] for s in demo["conv"]}
    assert {32, 64, 96, 128} <= channels and 1 in channels
    assert {(1, 16, 64)} == set(demo["attention"]) and {(1, 64, 128)} == set(wider["attention"])
    assert set(REPRESENTATIVE) <= set(demo["conv"])
    # the prompt model (ddpm-ref train --prompts): 16 pixels of width 64 attend to 3 tokens, in 4 blocks
    from ddpm_ref.prompts import PROMPT_LENGTH, PROMPT_VOCAB

    assert PROMPTS["prompt_vocab"] == tuple(PROMPT_VOCAB) and PROMPTS["prompt_length"] == PROMPT_LENGTH
    assert {(1, 16, 3, 64)} == set(unet_shapes(**PROMPTS)["cross_attention"]) and not demo["cross_attention"]
