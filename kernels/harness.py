"""Validate one kernel version against the NumPy reference, the way llm.c's dev/cuda files do.

Used by ``python -m kernels``, by the tests (tests/cuda_kernels/), by the GPU benchmark and by
``python -m kernels.gpu_day``. The reference is ddpm_ref.nn computed in float64 from the same
float32 inputs: the exact answer up to float64 rounding, so every difference seen is the kernel's
float32 rounding (or a bug).

Tolerance, from the sizes of the terms (not a flat atol):

    |got - ref| <= C_TOL * eps32 * M        elementwise,  eps32 = 2**-23 (float32's machine epsilon)

where M is what the same formula gives on the magnitudes of its terms, computed by the reference:
for a sum y = sum_i a_i b_i, M = sum_i |a_i| |b_i| (conv forward: conv(|x|, |w|) + |b|; the
backward passes likewise with |dy|). A float32 sum of n products, added in any order, is off by
at most about n * eps32/2 * M (Higham's bound), and in practice by a few eps32 * M at most: the
rounding errors are those of partial sums that are random walks, much smaller than M. Attention
multiplies each term's weight P_ij by a relative error of e_i = 1 + max_j scale*|q_i|.|k_j| +
sqrt(Lk) units of eps32 (the rounding of the scores, which exp() turns into a relative error, plus
the sum of the softmax denominator, Lk terms: one per key); the bounds of o, dv, dS, dq, dk carry
that factor (``attention_bounds``). Queries and keys may differ in number (cross-attention: q
(B, Lq, D), k and v (B, Lk, D)); the same M then sums o and dq over the Lk keys, dk and dv over the
Lq queries.

C_TOL = 16. Measured in the emulator on every convolution and attention shape of the demo U-Net
(and attention at B, L, D = 2, 64, 128), versions 1 and 2: the worst error was 2.3 eps32 * M
(a 2x2 convolution's dx), 0.35 eps32 * M for attention, so correct kernels pass with a margin of
7x or more. A missing term, a wrong index or a missing tile is off by about |a_i b_i| ~ M/n, i.e.
by 50 to 10^4 times the tolerance; tests/cuda_kernels/test_kernels_tolerance.py plants such bugs
(and a softmax scale 0.1% off) at the U-Net's shapes and checks that each one fails.
The flat atol = 1e-5 used before called correct kernels wrong (a 576-term sum near zero is off
by 1-2e-5) while letting through errors of 1e-5 on outputs whose terms are all of size 1e-3.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import launch as K

# (N, C, H, W, K, R, stride, pad) for the convolutions; for attention (B, L, D) (self-attention:
# Lq = Lk = L) or (B, Lq, Lk, D) (queries and keys of different lengths, as in cross-attention)
DEFAULT_SHAPES = {
    "emulate": {"conv": (2, 3, 9, 7, 5, 3, 1, 1), "attention": (2, 37, 8)},
    "cuda": {"conv": (32, 64, 32, 32, 64, 3, 1, 1), "attention": (32, 256, 64)},
}
BLOCK_SIZES = {1: (32, 64, 128, 256), 2: (None,)}          # conv version 2 has a fixed 16x16 tile
ATTENTION_TILES = (1, 4, 8, 16, 32, 64)                     # attention version 2: T threads per block
EPS32 = float(np.finfo(np.float32).eps)                     # 2**-23
C_TOL = 16.0


def kind(op: str) -> str:
    return "attention" if op.startswith("attention") else "conv"


def candidate_block_sizes(op: str, version: int):
    """Every block size a version supports (None: the one the ops choose), fitting or not."""
    if version == 2 and kind(op) == "attention":
        return (None,) + ATTENTION_TILES
    if version == 3 and kind(op) == "attention":
        return (None, 32, 16, 8, 1)                         # the key (query) tile of version 3
    return BLOCK_SIZES.get(version, (None,))


def block_sizes(op: str, version: int, shape=None):
    """The block sizes to try at `shape`: only those whose launches fit CUDA's limits there."""
    if shape is None:
        return candidate_block_sizes(op, version)
    return tuple(bs for bs in candidate_block_sizes(op, version) if not K.tile_fits(op, version, shape, bs))


def skipped_block_sizes(op: str, version: int, shape):
    """[(block size, why it does not fit)] at `shape`."""
    return [(bs, why) for bs in candidate_block_sizes(op, version) if (why := K.tile_fits(op, version, shape, bs))]


def make_inputs(op: str, shape, rng) -> dict:
    """Random float32 inputs (standard normal) for one operation at one shape."""
    def randn(*s):
        return rng.standard_normal(s).astype(np.float32)
    if kind(op) == "attention":
        B, Lq, Lk, D = K.attention_dims(shape)
        return {"q": randn(B, Lq, D), "k": randn(B, Lk, D), "v": randn(B, Lk, D), "do": randn(B, Lq, D)}
    N, C, H, W, Kc, R, stride, pad = shape
    P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - R) // stride + 1
    return {"x": randn(N, C, H, W), "w": randn(Kc, C, R, R), "b": randn(Kc), "dy": randn(N, Kc, P, Q),
            "stride": stride, "pad": pad}


def _conv_reference(op, f64, stride, pad):
    from ddpm_ref import nn

    y, cache = nn.conv2d_forward(f64["x"], f64["w"], f64["b"], stride, pad)
    if op == "conv2d_forward":
        return {"y": np.ascontiguousarray(y)}
    dx, dw, db = nn.conv2d_backward(f64["dy"], cache)
    return {"dx": np.ascontiguousarray(dx)} if op == "conv2d_backward_data" else {"dw": dw, "db": db}


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
    return _conv_reference(op, f64, inp["stride"], inp["pad"])


def attention_bounds(q, k, v, do):
    """M for o, dq (q's shape (B, Lq, D)) and dk, dv (k's shape (B, Lk, D)), float64: the sizes of the
    terms, see the module docstring."""
    D, Lk = q.shape[2], k.shape[1]
    scale = 1.0 / math.sqrt(D)
    s = scale * q @ k.transpose(0, 2, 1)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    a = scale * np.abs(q) @ np.abs(k).transpose(0, 2, 1)                  # term sizes of each score
    e = 1.0 + a.max(axis=-1, keepdims=True) + math.sqrt(Lk)              # (B, Lq, 1) relative error units
    pv = p @ np.abs(v)                                                    # sum_j P_ij |v_j|
    bound_o = e * pv
    bound_dv = p.transpose(0, 2, 1) @ (e * np.abs(do))
    g = np.abs(do) @ np.abs(v).transpose(0, 2, 1)                         # term sizes of dP_ij = do_i . v_j
    delta_size = np.sum(np.abs(do) * pv, axis=-1, keepdims=True)          # ... of delta_i = do_i . o_i
    dp_minus_delta = do @ v.transpose(0, 2, 1) - np.sum(do * (p @ v), axis=-1, keepdims=True)
    bound_ds = scale * p * e * (g + delta_size + np.abs(dp_minus_delta))
    return {"o": bound_o, "dv": bound_dv, "dq": bound_ds @ np.abs(k),
            "dk": bound_ds.transpose(0, 2, 1) @ np.abs(q)}


def bounds(op: str, inp: dict) -> dict:
    """M of every output of `op` (see the module docstring): what the reference gives on magnitudes."""
    mag = {k: np.abs(v.astype(np.float64)) for k, v in inp.items() if isinstance(v, np.ndarray)}
    if kind(op) == "attention":
        f64 = {k: v.astype(np.float64) for k, v in inp.items()}
        m = attention_bounds(f64["q"], f64["k"], f64["v"], f64["do"])
        return {"o": m["o"]} if op == "attention_forward" else {n: m[n] for n in ("dq", "dk", "dv")}
    return _conv_reference(op, mag, inp["stride"], inp["pad"])


def tolerance(op: str, inp: dict) -> dict:
    """The elementwise tolerance C_TOL * eps32 * M of every output (plus float32's smallest normal, so
    that an output whose terms are all exactly 0 still compares)."""
    tiny = float(np.finfo(np.float32).tiny)
    return {name: C_TOL * EPS32 * m + tiny for name, m in bounds(op, inp).items()}


def _outputs(op, inp, xp):
    def empty(*shape):
        return xp.empty(shape, dtype=np.float32)
    if kind(op) == "attention":
        if op == "attention_forward":
            return {"o": empty(*inp["q"].shape)}
        return {"dq": empty(*inp["q"].shape), "dk": empty(*inp["k"].shape), "dv": empty(*inp["k"].shape)}
    if op == "conv2d_forward":
        return {"y": empty(*inp["dy"].shape)}
    if op == "conv2d_backward_data":
        return {"dx": empty(*inp["x"].shape)}
    return {"dw": empty(*inp["w"].shape), "db": empty(inp["w"].shape[0])}


def prepare(op: str, version: int, modules, inp: dict, xp=np, block_size=None):
    """(call, outputs): `call()` launches only the kernels of `op`, on inputs copied to the device and
    outputs allocated once, here. For attention_backward the forward pass runs once, here, at the
    tile the ops would choose; the timed call is the backward kernels alone."""
    d = {k: xp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in inp.items()}
    out = _outputs(op, inp, xp)
    if kind(op) == "attention":
        q, k, v = d["q"], d["k"], d["v"]
        scale = 1.0 / math.sqrt(q.shape[-1])
        fwd = modules("attention_forward")
        if op == "attention_forward":
            return (lambda: K.launch_attention_forward(fwd, version, q, k, v, out["o"], scale, xp, block_size)), out
        o = xp.empty(q.shape, dtype=np.float32)
        saved = K.launch_attention_forward(fwd, version, q, k, v, o, scale, xp)
        bwd = modules("attention_backward")
        return (lambda: K.launch_attention_backward(bwd, version, saved, q, k, v, o, d["do"], out["dq"], out["dk"],
                                                    out["dv"], scale, xp, block_size)), out
    mod, stride, pad = modules(op), d["stride"], d["pad"]
    if op == "conv2d_forward":
        return (lambda: K.launch_conv2d_forward(mod, version, d["x"], d["w"], d["b"], out["y"], stride, pad,
                                                block_size)), out
    if op == "conv2d_backward_data":
        return (lambda: K.launch_conv2d_backward_data(mod, version, d["dy"], d["w"], out["dx"], stride, pad,
                                                      block_size)), out
    return (lambda: K.launch_conv2d_backward_weight(mod, version, d["x"], d["dy"], out["dw"], out["db"], stride, pad,
                                                    block_size)), out


def run(op: str, version: int, modules, inp: dict, xp=np, block_size=None) -> dict:
    """Run one version of one operation. ``modules(op)`` gives the compiled module of an op's file."""
    call, out = prepare(op, version, modules, inp, xp, block_size)
    call()
    return out


def compare(name: str, got, ref, tol, max_report=5) -> list[str]:
    """Mismatches |got - ref| > tol as messages (the first `max_report`), [] if none.

    NaN in `got` (an element the kernel never wrote: outputs start as NaN in the emulator) counts.
    """
    got = np.asarray(got.get() if hasattr(got, "get") else got, dtype=np.float64)
    if got.shape != ref.shape:
        return [f"{name}: shape {got.shape}, expected {ref.shape}"]
    tol = np.broadcast_to(tol, ref.shape)
    bad = ~(np.abs(got - ref) <= tol)
    idx = np.argwhere(bad)
    msgs = [f"{name}{tuple(int(i) for i in j)}: got {float(got[tuple(j)])!r}, expected {float(ref[tuple(j)])!r} "
            f"(tolerance {float(tol[tuple(j)]):.3g})" for j in idx[:max_report]]
    if len(idx) > max_report:
        msgs.append(f"{name}: ... {len(idx)} mismatches of {got.size} elements in all")
    return msgs


def worst_ratio(op: str, out: dict, inp: dict) -> float:
    """max |got - ref| / (eps32 * M) over all outputs: the error in the units of the tolerance's C_TOL."""
    ref, m = reference(op, inp), bounds(op, inp)
    worst = 0.0
    for name in ref:
        got = out[name].get() if hasattr(out[name], "get") else out[name]
        err = np.abs(np.asarray(got, np.float64) - ref[name]) / (EPS32 * m[name] + float(np.finfo(np.float32).tiny))
        worst = max(worst, float(np.nan_to_num(err, nan=np.inf).max(initial=0.0)))
    return worst


def validate(op: str, version: int, modules, inp: dict, xp=np, block_size=None) -> list[str]:
    """All mismatches of one run against the reference (an empty list means it passed)."""
    out = run(op, version, modules, inp, xp, block_size)
    ref, tol = reference(op, inp), tolerance(op, inp)
    return [m for name in ref for m in compare(name, out[name], ref[name], tol[name])]
