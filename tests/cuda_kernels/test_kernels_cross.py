"""The attention kernels with queries and keys of different lengths (cross-attention), in the emulator.

q (B, Lq, D) against k, v (B, Lk, D): every version, forward and backward, at every block size
that fits, against the float64 NumPy reference with the harness's tolerance (kernels/harness.py:
C_TOL * eps32 * M, M from the sizes of the terms); then through the ops object, in
ddpm_ref.nn.cross_attention and its U-Net block; then bad shapes. Shapes are small and odd (the
emulator costs about a millisecond per barrier), plus the U-Net's own: 16 pixels (4x4) or 4
(2x2) asking 4 context tokens with D = 32. The planted bugs (a kernel that uses Lq where it
should use Lk, and the reverse) are in test_kernels_tolerance.py with the others.
"""

import zlib

import numpy as np
import pytest

import kernels
from ddpm_ref import nn
from kernels import harness, load_module

# (B, Lq, Lk, D)
CROSS_SHAPES = [
    (2, 7, 3, 5),       # odd everywhere, fewer keys than queries
    (1, 1, 9, 4),       # one query, more keys
    (2, 5, 1, 3),       # one key: every P_ij = 1, dq = dk = 0
    (1, 5, 37, 8),      # 37 keys = a full key tile of 32 and a ragged one; few queries
    (1, 37, 3, 8),      # 37 queries = a full block of 32 rows and a ragged one; few keys
    (2, 16, 4, 32),     # the U-Net at 4x4: 16 pixels ask 4 tokens, D = 32
    (2, 4, 4, 32),      # ... at 2x2: 4 pixels, 4 tokens
    (1, 64, 3, 32),     # ... at 8x8: 64 pixels, 3 tokens
]
CASES = [(op, v, shape) for op in ("attention_forward", "attention_backward")
         for v in kernels.VERSIONS[op] for shape in CROSS_SHAPES]


def _id(case):
    op, v, shape = case
    return f"{op}-v{v}-{'x'.join(map(str, shape))}"


def _check(op, version, shape, modules, xp):
    inp = harness.make_inputs(op, shape, np.random.default_rng(zlib.crc32(repr((op, shape)).encode())))
    assert inp["q"].shape[1] != inp["k"].shape[1] or shape[1] == shape[2]
    sizes = harness.block_sizes(op, version, shape)
    assert sizes, f"no block size fits at {shape}"
    for bs in sizes:
        problems = harness.validate(op, version, modules, inp, xp, bs)
        assert not problems, f"block size {bs}:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_emulated_kernel_with_keys_of_another_length(emulator, case):
    op, version, shape = case
    _check(op, version, shape, lambda name: load_module("emulate", name, None), np)


@pytest.mark.parametrize("op, version", [(op, v) for op in ("attention_forward", "attention_backward")
                                         for v in kernels.VERSIONS[op]])
def test_cross_lengths_in_reverse_block_order_and_concurrently(emulator, op, version):
    """Blocks last to first, then 3 at a time: key blocks (Lk) and query blocks (Lq) both several."""
    shape = (2, 37, 35, 6)
    inp = harness.make_inputs(op, shape, np.random.default_rng(5))
    for reverse, concurrent in ((True, None), (False, 3)):
        problems = harness.validate(op, version, lambda name: load_module("emulate", name, None, reverse, concurrent),
                                    inp)
        assert not problems, "\n".join(problems)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_gpu_kernel_with_keys_of_another_length(gpu, case):
    import cupy

    op, version, shape = case
    _check(op, version, shape, lambda name: load_module("cuda", name), cupy)


# --------------------------------------------------------------------------- through the ops object

@pytest.mark.parametrize("version", [1, 2, 3])
def test_ops_with_keys_of_another_length(emulator, version):
    """get_ops(...).attention_forward/backward at the U-Net's cross shape, with the tiles the ops choose:
    shapes (dq like q, dk and dv like k) and values within the harness's tolerance."""
    shape = (2, 16, 4, 32)
    inp = harness.make_inputs("attention_backward", shape, np.random.default_rng(version))
    ops = kernels.get_ops("emulate", version=version)
    o, cache = ops.attention_forward(inp["q"], inp["k"], inp["v"])
    dq, dk, dv = ops.attention_backward(inp["do"], cache)
    assert o.shape == dq.shape == (2, 16, 32) and dk.shape == dv.shape == (2, 4, 32)
    got = {"o": o, "dq": dq, "dk": dk, "dv": dv}
    for op in ("attention_forward", "attention_backward"):
        ref, tol = harness.reference(op, inp), harness.tolerance(op, inp)
        for name in ref:
            problems = harness.compare(name, got[name], ref[name], tol[name])
            assert not problems, "\n".join(problems)


def _numpy_reference(q, k, v):
    return nn.attention_forward(q, k, v)


def _kernel_ops(q, k, v):
    return kernels.get_ops("emulate").attention_forward(q, k, v)


@pytest.mark.parametrize("forward", [_numpy_reference, _kernel_ops], ids=["numpy", "kernels"])
@pytest.mark.parametrize("k_shape, v_shape, match", [
    ((2, 4, 3), (2, 6, 3), r"k and v must have the same shape \(B, Lk, D\)"),       # one value per key
    ((2, 4, 2), (2, 4, 2), r"k, v \(B, Lk, D\) must have q's batch size B and feature count D"),
    ((1, 4, 3), (1, 4, 3), r"k, v \(B, Lk, D\) must have q's batch size B and feature count D"),
])
def test_bad_cross_shapes_raise_from_both(emulator, rng, forward, k_shape, v_shape, match):
    q = rng.standard_normal((2, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        forward(q, rng.standard_normal(k_shape).astype(np.float32), rng.standard_normal(v_shape).astype(np.float32))


def test_ops_refuse_queries_without_keys(emulator):
    """Lk = 0 with queries: a softmax over no keys (the kernels would divide by 0); Lq = Lk = 0 runs nothing."""
    ops = kernels.get_ops("emulate")
    with pytest.raises(ValueError, match=r"at least one key \(Lk >= 1\) for the 5 queries"):
        ops.attention_forward(np.ones((2, 5, 3), np.float32), *[np.ones((2, 0, 3), np.float32)] * 2)


# --------------------------------------------------------------------------- in cross-attention

def _normwise(got, ref):
    return np.max(np.abs(np.asarray(got, np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("heads", [1, 2])
def test_cross_attention_on_the_kernels_matches_numpy(emulator, rng, version, heads):
    """cross_attention_forward/backward with ops = the emulated kernels against ops = NumPy, both float32,
    at a U-Net-like shape (16 pixels, 4 tokens, C = D = 32, E = 16). Everything but the attention
    is the same NumPy code, so the difference is the kernels' float32 rounding against NumPy's:
    measured 1-3e-7 of the largest entry (a few eps32); 1e-5 leaves 30x. A dropped key or a wrong
    index is off by O(1) there."""
    from ddpm_ref.nn.cross_attention import cross_attention_backward, cross_attention_forward

    B, L, M, C, E, D = 2, 16, 4, 32, 16, 32
    args = [rng.standard_normal(s) for s in [(B, L, C), (B, M, E), (D, C), (D, E), (D, E), (C, D), (C,)]]
    args[2:6] = [w / np.sqrt(w.shape[1]) for w in args[2:6]]          # unit-sized projections
    args = [a.astype(np.float32) for a in args]
    dout = rng.standard_normal((B, L, C)).astype(np.float32)
    ops = kernels.get_ops("emulate", version=version)
    out, cache = cross_attention_forward(*args, heads=heads, ops=ops)
    out_ref, cache_ref = cross_attention_forward(*args, heads=heads)
    assert out.dtype == np.float32 and cache["ops"] is ops
    assert _normwise(out, out_ref) < 1e-5
    names = ("dx", "dctx", "dwq", "dwk", "dwv", "dwo", "dbo")
    for name, g, g_ref in zip(names, cross_attention_backward(dout, cache), cross_attention_backward(dout, cache_ref)):
        assert g.dtype == np.float32 and _normwise(g, g_ref) < 1e-5, name


def test_cross_attention_block_on_the_kernels(emulator, rng):
    """The U-Net block with ops passed through: the same check on a 4x4 feature map (16 pixels, 3 tokens)."""
    from ddpm_ref.models.cross_attention_block import (cross_attention_block_backward,
                                                       cross_attention_block_forward, init_cross_attention)

    p = {}
    init_cross_attention(p, "blk", 32, 16, rng, np.float32)
    p = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()}   # W_o = 0 hides all
    x, ctx = rng.standard_normal((2, 32, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 16)).astype(np.float32)
    out, cache = cross_attention_block_forward(p, "blk", x, ctx, groups=8, heads=2, ops=kernels.get_ops("emulate"))
    out_ref, cache_ref = cross_attention_block_forward(p, "blk", x, ctx, groups=8, heads=2)
    assert _normwise(out - x, out_ref - x) < 1e-5                       # the attention path, not the residual
    g, g_ref = {}, {}
    dx, dctx = cross_attention_block_backward(np.ones_like(out), cache, "blk", g)
    dx_ref, dctx_ref = cross_attention_block_backward(np.ones_like(out), cache_ref, "blk", g_ref)
    assert _normwise(dx, dx_ref) < 1e-5 and _normwise(dctx, dctx_ref) < 1e-5
    assert all(_normwise(g[k], g_ref[k]) < 1e-5 for k in g_ref), [k for k in g_ref if _normwise(g[k], g_ref[k]) >= 1e-5]


# --------------------------------------------------------------------------- the command line

def test_cli_takes_b_lq_lk_d(emulator, capsys):
    from kernels.__main__ import main

    assert main(["attention_backward", "3", "--shape", "2", "16", "4", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "attention_backward version 3, backend emulate, shape (2, 16, 4, 32)" in out
    assert "block size default: ok" in out and "All results match" in out
    with pytest.raises(SystemExit):
        main(["attention_forward", "2", "--shape", "2", "16", "4", "32", "1"])
    assert "B L D or B Lq Lk D" in capsys.readouterr().err
