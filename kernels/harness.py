"""Validate one kernel version against the NumPy reference, the way llm.c's dev/cuda files do.

Used by ``python -m kernels``, by the tests (tests/cuda_kernels/) and by the GPU benchmark. The
reference is ddpm_ref.nn computed in float64 from the same float32 inputs: the exact answer up to
float64 rounding, so every difference seen is the kernel's float32 rounding (or a bug).

Tolerance: |got - ref| <= atol + rtol * |ref|, elementwise. A float32 sum of n terms carries a
rounding error of about sqrt(n) * 6e-8 * (sum of |terms|), in the worst case n * 6e-8 * ...; with
the sums here (n up to a few thousand terms of size ~1) that is < 1e-5 relative, so rtol = 1e-4
leaves a margin of 10x or more. atol covers outputs that are near zero only because their terms
cancel (there the relative error is meaningless): 1e-5 times the scale of the terms. A wrong
index or a missing tile gives errors of order 1, far above both.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import ops as K

# (N, C, H, W, K, R, stride, pad) for the convolutions, (B, L, D) for attention
DEFAULT_SHAPES = {
    "emulate": {"conv": (2, 3, 9, 7, 5, 3, 1, 1), "attention": (2, 37, 8)},
    "cuda": {"conv": (32, 64, 32, 32, 64, 3, 1, 1), "attention": (32, 256, 64)},
}
BLOCK_SIZES = {1: (32, 64, 128, 256), 2: (None,)}          # conv version 2 has a fixed 16x16 tile
ATTENTION_TILES = (1, 4, 8, 16, 32)                         # attention version 2: T threads per block
ATOL, RTOL = 1e-5, 1e-4


def kind(op: str) -> str:
    return "attention" if op.startswith("attention") else "conv"


def block_sizes(op: str, version: int):
    if version == 2 and kind(op) == "attention":
        return ATTENTION_TILES
    return BLOCK_SIZES[version]


def make_inputs(op: str, shape, rng) -> dict:
    """Random float32 inputs (standard normal) for one operation at one shape."""
    def randn(*s):
        return rng.standard_normal(s).astype(np.float32)
    if kind(op) == "attention":
        B, L, D = shape
        return {"q": randn(B, L, D), "k": randn(B, L, D), "v": randn(B, L, D), "do": randn(B, L, D)}
    N, C, H, W, Kc, R, stride, pad = shape
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - R) // stride + 1
    return {"x": randn(N, C, H, W), "w": randn(Kc, C, R, R), "b": randn(Kc), "dy": randn(N, Kc, P, Q),
            "stride": stride, "pad": pad}


def reference(op: str, inp: dict) -> dict:
    """The expected outputs, from ddpm_ref.nn in float64."""
    from ddpm_ref import nn

    f64 = {k: v.astype(np.float64) for k, v in inp.items() if isinstance(v, np.ndarray)}
    if kind(op) == "attention":
        o, cache = nn.attention_forward(f64["q"], f64["k"], f64["v"])
        if op == "attention_forward":
            return {"o": o}
        dq, dk, dv = nn.attention_backward(f64["do"], cache)
        return {"dq": dq, "dk": dk, "dv": dv}
    y, cache = nn.conv2d_forward(f64["x"], f64["w"], f64["b"], inp["stride"], inp["pad"])
    if op == "conv2d_forward":
        return {"y": np.ascontiguousarray(y)}
    dx, dw, db = nn.conv2d_backward(f64["dy"], cache)
    return {"dx": np.ascontiguousarray(dx)} if op == "conv2d_backward_data" else {"dw": dw, "db": db}


def run(op: str, version: int, modules, inp: dict, xp=np, block_size=None) -> dict:
    """Run one version of one operation. ``modules(op)`` gives the compiled module of an op's file."""
    def dev(name):
        return xp.asarray(inp[name])
    def empty(*shape):
        return xp.empty(shape, dtype=np.float32)
    bs = {} if block_size is None else {"block_size": block_size}
    if kind(op) == "attention":
        q, k, v = dev("q"), dev("k"), dev("v")
        B, L, D = q.shape
        o = empty(B, L, D)
        scale = 1.0 / math.sqrt(D)
        fwd_bs = bs if op == "attention_forward" else {}
        saved = K.launch_attention_forward(modules("attention_forward"), version, q, k, v, o, scale, xp, **fwd_bs)
        if op == "attention_forward":
            return {"o": o}
        dq, dk, dv = empty(B, L, D), empty(B, L, D), empty(B, L, D)
        K.launch_attention_backward(modules("attention_backward"), version, saved, q, k, v, o, dev("do"),
                                    dq, dk, dv, scale, xp, **bs)
        return {"dq": dq, "dk": dk, "dv": dv}
    x, w, dy = dev("x"), dev("w"), dev("dy")
    stride, pad = inp["stride"], inp["pad"]
    if op == "conv2d_forward":
        y = empty(*dy.shape)
        K.launch_conv2d_forward(modules(op), version, x, w, dev("b"), y, stride, pad, **bs)
        return {"y": y}
    if op == "conv2d_backward_data":
        dx = empty(*x.shape)
        K.launch_conv2d_backward_data(modules(op), version, dy, w, dx, stride, pad, **bs)
        return {"dx": dx}
    dw, db = empty(*w.shape), empty(w.shape[0])
    K.launch_conv2d_backward_weight(modules(op), version, x, dy, dw, db, stride, pad, **bs)
    return {"dw": dw, "db": db}


def compare(name: str, got, ref, atol=ATOL, rtol=RTOL, max_report=5) -> list[str]:
    """Mismatches |got - ref| > atol + rtol*|ref| as messages (the first `max_report`), [] if none.

    NaN in `got` (an element the kernel never wrote: outputs start as NaN in the emulator) counts.
    """
    got = np.asarray(got.get() if hasattr(got, "get") else got, dtype=np.float64)
    if got.shape != ref.shape:
        return [f"{name}: shape {got.shape}, expected {ref.shape}"]
    bad = ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    idx = np.argwhere(bad)
    msgs = [f"{name}{tuple(int(i) for i in j)}: got {float(got[tuple(j)])!r}, expected {float(ref[tuple(j)])!r}"
            for j in idx[:max_report]]
    if len(idx) > max_report:
        msgs.append(f"{name}: ... {len(idx)} mismatches of {got.size} elements in all")
    return msgs


def validate(op: str, version: int, modules, inp: dict, xp=np, block_size=None) -> list[str]:
    """All mismatches of one run against the reference (an empty list means it passed)."""
    out = run(op, version, modules, inp, xp, block_size)
    ref = reference(op, inp)
    return [m for name in ref for m in compare(name, out[name], ref[name])]
