"""Every version of every kernel against the NumPy reference (ddpm_ref.nn in float64).

Through the emulator always; through CuPy on a GPU when there is one. Shapes are small (each
emulated block costs about a millisecond) and odd: channel counts and sizes that are not
multiples of the 16-wide convolution tile, sequence lengths that are not multiples of the
attention tile, strides 1 and 2, padding 0 and 1. Each version is checked at every block size
it supports (kernels.harness.block_sizes). The tolerance is explained in
kernels/harness.py (C_TOL * eps32 * M, M from the sizes of the terms).
"""

import zlib

import numpy as np
import pytest

from kernels import OPS, VERSIONS, harness, load_module

# (N, C, H, W, K, R, stride, pad)
CONV_SHAPES = [
    (2, 3, 7, 5, 5, 3, 1, 1),       # odd sizes everywhere, C*R*S = 27 (not a multiple of 16)
    (1, 4, 9, 8, 17, 3, 2, 0),      # stride 2, no padding, K = 17 (two tiles, the second nearly empty)
    (2, 5, 6, 6, 3, 1, 1, 0),       # a 1x1 convolution
    (1, 3, 8, 7, 4, 3, 2, 1),       # stride 2 with padding
]
# (B, L, D)
ATTENTION_SHAPES = [
    (2, 5, 3),                      # shorter than any tile
    (1, 37, 8),                     # 37 = 32 + 5: a full tile and a ragged one
    (3, 16, 17),                    # odd feature count
]
CASES = [(op, v, shape)
         for op in OPS for v in VERSIONS[op]
         for shape in (ATTENTION_SHAPES if harness.kind(op) == "attention" else CONV_SHAPES)]


def _id(case):
    op, v, shape = case
    return f"{op}-v{v}-{'x'.join(map(str, shape))}"


def _check(op, version, shape, modules, xp):
    inp = harness.make_inputs(op, shape, np.random.default_rng(zlib.crc32(repr((op, shape)).encode())))
    for bs in harness.block_sizes(op, version, shape):
        problems = harness.validate(op, version, modules, inp, xp, bs)
        assert not problems, f"block size {bs}:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_emulated_kernel_matches_reference(emulator, case):
    op, version, shape = case
    _check(op, version, shape, lambda name: load_module("emulate", name, None), np)


@pytest.mark.parametrize("op, version", [(op, v) for op in OPS for v in VERSIONS[op]])
def test_emulated_kernel_in_reverse_block_order(emulator, op, version):
    """Blocks may run in any order on a GPU; running them last-to-first must change nothing."""
    shape = ATTENTION_SHAPES[1] if harness.kind(op) == "attention" else CONV_SHAPES[1]
    inp = harness.make_inputs(op, shape, np.random.default_rng(3))
    problems = harness.validate(op, version, lambda name: load_module("emulate", name, None, True), inp)
    assert not problems, "\n".join(problems)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_gpu_kernel_matches_reference(gpu, case):
    import cupy

    op, version, shape = case
    _check(op, version, shape, lambda name: load_module("cuda", name), cupy)


def test_compare_reports_index_and_values():
    ref = np.zeros((2, 3))
    got = ref.copy()
    got[1, 2] = 0.5
    got[0, 0] = np.nan
    msgs = harness.compare("y", got, ref, tol=np.full((2, 3), 0.25))
    assert msgs == ["y(0, 0): got nan, expected 0.0 (tolerance 0.25)", "y(1, 2): got 0.5, expected 0.0 (tolerance 0.25)"]


def test_weight_gradient_v3_with_several_slices(emulator):
    """Split-K: at 3 images of 20x20 the pixels are cut into 5 slices for dW and 2 for db (the odd
    shapes above all have one); run with 3 blocks at a time, as a GPU would."""
    from kernels import launch

    shape = (3, 2, 20, 20, 3, 3, 1, 1)
    plan = launch.plan("conv2d_backward_weight", 3, shape)
    assert plan[0].grid[2] == 5 and plan[2].grid[1] == 2
    inp = harness.make_inputs("conv2d_backward_weight", shape, np.random.default_rng(11))
    problems = harness.validate("conv2d_backward_weight", 3,
                                lambda name: load_module("emulate", name, None, False, 3), inp)
    assert not problems, "\n".join(problems)
