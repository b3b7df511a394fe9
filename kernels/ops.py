"""The ops object: ddpm_ref.nn's four layer functions, computed by the CUDA kernels.

``KernelOps`` has exactly the signatures of the NumPy reference (ddpm_ref.nn):

    y, cache = ops.conv2d_forward(x, w, b=None, stride=1, padding=0)
    dx, dw, db = ops.conv2d_backward(dy, cache)          # db is None when b was None
    o, cache = ops.attention_forward(q, k, v)            # softmax(q k^T / sqrt(D)) v
    dq, dk, dv = ops.attention_backward(do, cache)       # q (B, Lq, D); k, v (B, Lk, D): Lk may differ

Rules (checked before any launch, ValueError otherwise):
* dtype: the kernels are float32 only. float64 input raises (use ddpm_ref.nn for float64, e.g.
  for gradient checks); nothing is converted silently.
* layout: any memory layout is accepted and copied to C-contiguous first (the U-Net passes
  strided views, e.g. q = qkv[..., :C]). The kernels themselves take only C-contiguous arrays
  (their launch raises otherwise). Outputs are C-contiguous.
* shapes as in ddpm_ref.nn (attention: q (B, Lq, D), k and v (B, Lk, D), the lengths may differ, as in
  cross-attention); every array must have fewer than 2**31 elements (32-bit indices), and so must
  attention's (B, Lq, Lk) scores (version 1 stores them; every version indexes them).
* launch limits (threads, grid.y <= 65535, shared memory, registers): every launch is planned
  and checked first (kernels/launch.py, kernels/limits.py); a ValueError names the kernel, the
  tile and the limit, e.g. attention with a batch B > 65535 (B is grid.y).

The ``launch_*`` functions (kernels/launch.py, re-exported here) do one operation with one kernel
version: the tests and ``python -m kernels`` call them directly to try several block sizes.
"""

from __future__ import annotations

import math

import numpy as np

from ddpm_ref.nn.attention import check_qkv_shapes
from kernels.launch import (BIAS_THREADS, CONV_TILE, SHARED_LIMIT, attention_backward_plan,  # noqa: F401
                            attention_forward_plan, attention_tile, check_plan,
                            launch_attention_backward, launch_attention_forward, launch_conv2d_backward_data,
                            launch_conv2d_backward_weight, launch_conv2d_forward)

OPS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight",
       "attention_forward", "attention_backward")
# version 1: the direct port; version 3, the last: the fastest by design (not yet measured on a GPU)
VERSIONS = {op: (1, 2, 3) for op in OPS}
# What each attention_forward version saves for the backward pass: the two must agree.
ATTENTION_SAVES = {1: "P", 2: "logsumexp", 3: "logsumexp"}
INT32_LIMIT = 2**31


# ---------------------------------------------------------------------------------------------
# Input checks (before any launch).

def _check_array(name, a, ndim, array_type, kind):
    if not isinstance(a, array_type):
        raise ValueError(f"{name} must be a {kind} array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise ValueError(f"{name} has dtype {a.dtype}: the CUDA kernels are float32 only "
                         "(use ddpm_ref.nn, the NumPy reference, for float64)")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {tuple(a.shape)}")
    if a.size >= INT32_LIMIT:
        raise ValueError(f"{name} has {a.size} elements; the kernels index with 32-bit ints (< 2**31)")


def _check_int(name, v, lowest):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lowest:
        raise ValueError(f"{name} must be an integer >= {lowest}, got {v!r}")
    return int(v)


class KernelOps:
    """The four layer functions of ddpm_ref.nn, run by the CUDA kernels (see the module docstring).

    Made by ``kernels.get_ops``; ``versions`` maps each of OPS to the kernel version it uses,
    ``backend`` is "emulate" or "cuda".
    """

    def __init__(self, backend: str, versions: dict, modules, xp, array_type, kind: str):
        self.backend, self.versions = backend, dict(versions)
        self._modules, self._xp, self._array_type, self._kind = modules, xp, array_type, kind

    def __repr__(self):
        return f"KernelOps(backend={self.backend!r}, versions={self.versions})"

    def _input(self, name, a, ndim):
        _check_array(name, a, ndim, self._array_type, self._kind)
        return self._xp.ascontiguousarray(a)

    def _empty(self, shape):
        return self._xp.empty(shape, dtype=np.float32)

    def _check_cache(self, cache, op):
        if cache is None:
            raise ValueError(f"{op}_backward: no cache (the forward pass ran without keeping one)")
        if not isinstance(cache, dict) or cache.get("op") != f"{op}_kernels" or cache.get("ops") is not self:
            raise ValueError(f"{op}_backward: the cache did not come from this ops object's {op}_forward")

    # -- convolution --------------------------------------------------------------------------

    def conv2d_forward(self, x, w, b=None, stride=1, padding=0):
        """y = conv2d(x, w) + b (see kernels/conv2d_forward.cu). Returns ``(y, cache)``."""
        x, w = self._input("x", x, 4), self._input("w", w, 4)
        stride, padding = _check_int("stride", stride, 1), _check_int("padding", padding, 0)
        N, C, H, W = x.shape
        K, Cw, R, S = w.shape
        if Cw != C:
            raise ValueError(f"x has {C} channels (shape {tuple(x.shape)}) but w expects {Cw} "
                             f"(w shape (K, C, R, S) = {tuple(w.shape)})")
        if b is not None:
            b = self._input("b", b, 1)
            if b.shape != (K,):
                raise ValueError(f"b must have shape ({K},) to match w {tuple(w.shape)}, got {tuple(b.shape)}")
        if H + 2 * padding < R or W + 2 * padding < S:
            raise ValueError(f"the {R}x{S} kernel does not fit in the {H}x{W} input with padding {padding}")
        P, Q = (H + 2 * padding - R) // stride + 1, (W + 2 * padding - S) // stride + 1
        if N * K * P * Q >= INT32_LIMIT:
            raise ValueError("the output would have >= 2**31 elements; the kernels index with 32-bit ints")
        bias = b if b is not None else self._xp.zeros(K, dtype=np.float32)
        y = self._empty((N, K, P, Q))
        launch_conv2d_forward(self._modules("conv2d_forward"), self.versions["conv2d_forward"],
                              x, w, bias, y, stride, padding)
        cache = {"op": "conv2d_kernels", "ops": self, "x": x, "w": w, "has_bias": b is not None,
                 "stride": stride, "padding": padding}
        return y, cache

    def conv2d_backward(self, dy, cache):
        """Returns ``(dx, dw, db)``; db is None when the forward pass had no bias."""
        self._check_cache(cache, "conv2d")
        x, w, stride, padding = cache["x"], cache["w"], cache["stride"], cache["padding"]
        N, C, H, W = x.shape
        K, _, R, S = w.shape
        P, Q = (H + 2 * padding - R) // stride + 1, (W + 2 * padding - S) // stride + 1
        dy = self._input("dy", dy, 4)
        if dy.shape != (N, K, P, Q):
            raise ValueError(f"dy must have the output's shape {(N, K, P, Q)}, got {tuple(dy.shape)}")
        dx, dw = self._empty(x.shape), self._empty(w.shape)
        db = self._empty((K,)) if cache["has_bias"] else None
        launch_conv2d_backward_data(self._modules("conv2d_backward_data"), self.versions["conv2d_backward_data"],
                                    dy, w, dx, stride, padding)
        launch_conv2d_backward_weight(self._modules("conv2d_backward_weight"),
                                      self.versions["conv2d_backward_weight"], x, dy, dw, db, stride, padding)
        return dx, dw, db

    # -- attention ----------------------------------------------------------------------------

    def attention_forward(self, q, k, v):
        """o = softmax(q k^T / sqrt(D)) v (see kernels/attention_forward.cu). q (B, Lq, D), k and v
        (B, Lk, D): Lq = Lk for self-attention, not for cross-attention. Returns ``(o (B, Lq, D), cache)``."""
        q, k, v = self._input("q", q, 3), self._input("k", k, 3), self._input("v", v, 3)
        check_qkv_shapes(q, k, v)                          # the NumPy reference's own shape check
        B, Lq, D = q.shape
        Lk = k.shape[1]
        if D == 0:
            raise ValueError(f"q, k, v need at least one feature (D >= 1), got shape {tuple(q.shape)}")
        if Lk == 0 and Lq > 0:
            raise ValueError(f"k and v need at least one key (Lk >= 1) for the {Lq} queries of q: a softmax "
                             f"over no keys is undefined; got k {tuple(k.shape)}")
        if B * Lq * Lk >= INT32_LIMIT:
            raise ValueError(f"B*Lq*Lk = {B * Lq * Lk} scores must be < 2**31 (32-bit indices)")
        scale = 1.0 / math.sqrt(D)
        o = self._empty(q.shape)
        version = self.versions["attention_forward"]
        # the backward pass's launches too, so that a shape it cannot run fails here, not after the forward
        check_plan(attention_forward_plan(version, B, Lq, Lk, D)
                   + attention_backward_plan(self.versions["attention_backward"], B, Lq, Lk, D))
        saved = launch_attention_forward(self._modules("attention_forward"), version, q, k, v, o, scale, self._xp)
        cache = {"op": "attention_kernels", "ops": self, "version": version, "q": q, "k": k, "v": v, "o": o,
                 "saved": saved, "scale": scale}
        return o, cache

    def attention_backward(self, do, cache):
        """Returns ``(dq (B, Lq, D), dk (B, Lk, D), dv (B, Lk, D))``."""
        self._check_cache(cache, "attention")
        q, k = cache["q"], cache["k"]
        do = self._input("do", do, 3)
        if do.shape != q.shape:
            raise ValueError(f"do must have the output's shape {tuple(q.shape)}, got {tuple(do.shape)}")
        dq, dk, dv = self._empty(q.shape), self._empty(k.shape), self._empty(k.shape)
        launch_attention_backward(self._modules("attention_backward"), self.versions["attention_backward"],
                                  cache["saved"],
                                  q, cache["k"], cache["v"], cache["o"], do, dq, dk, dv, cache["scale"], self._xp)
        return dq, dk, dv
