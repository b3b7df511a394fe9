"""How each operation launches its kernels: a plan from the shapes alone, checked, then run.

    plan = conv2d_forward_plan(version, dims, block_size)   # [Launch(kernel, grid, block, shared_mem, tile)]
    check_plan(plan)                                          # ValueError naming kernel, tile, limit
    launch_conv2d_forward(mod, version, x, w, b, y, stride, pad, block_size)   # checks, then launches

Every launch of an operation is planned and checked before the first one starts, so that a
ValueError never leaves half an operation done. Attention plans take both lengths, Lq queries and
Lk keys (equal for self-attention, different for cross-attention): a kernel that owns query rows
has its grid and tile from Lq, one that owns key rows (dk, dv) from Lk, and key tiles follow Lk.
``tile_fits`` answers "would this block size work at this shape?" without running anything: the
harness and the CLI use it to try only the tiles that fit (attention version 2 at D = 64 cannot
use T = 32 in its backward pass: 50,176 bytes of shared memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.limits import REGISTERS, SHARED_DEFAULT, STATIC_SHARED, check_launch_limits

CONV_TILE = 16                               # must match CONV_TILE in the conv .cu files
BIAS_THREADS = 256                           # must match BIAS_THREADS in conv2d_backward_weight.cu
V3_BM, V3_BN, V3_THREADS = 64, 64, 256       # version 3's block tile and threads: must match the .cu files
SHARED_LIMIT = SHARED_DEFAULT


@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: tuple
    block: tuple
    shared_mem: int = 0
    tile: str = ""

    def check(self):
        check_launch_limits(self.kernel, self.tile or "x".join(map(str, self.block)), self.grid, self.block,
                            self.shared_mem, static_shared=STATIC_SHARED.get(self.kernel, 0),
                            registers=REGISTERS.get(self.kernel))


def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def _i32(*values):
    return tuple(np.int32(v) for v in values)


def _l(kernel, grid, block, shared_mem=0, tile=""):
    g = tuple(grid) + (1,) * (3 - len(grid))
    b = tuple(block) + (1,) * (3 - len(block))
    return Launch(kernel, g, b, int(shared_mem), tile)


def check_plan(plan) -> None:
    """Check every launch of a plan (empty grids are skipped: nothing is launched for them)."""
    for launch in plan:
        if min(launch.grid) > 0:
            launch.check()


def _run(mod, plan, args) -> None:
    """Check the whole plan, then launch each kernel with its arguments (skipping empty grids:
    CUDA, like the emulator, rejects a grid with a zero dimension)."""
    check_plan(plan)
    for launch, a in zip(plan, args):
        if min(launch.grid) > 0:
            mod.get_function(launch.kernel)(launch.grid, launch.block, a, shared_mem=launch.shared_mem)


# ---------------------------------------------------------------------------------------------
# Plans: shapes in, launches out. `dims` = (N, C, H, W, K, R, S, P, Q) for the convolutions.

def conv2d_forward_plan(version, dims, block_size=None):
    N, C, H, W, K, R, S, P, Q = dims
    if version == 1:
        bs = block_size or 256
        return [_l("conv2d_forward_kernel1", (_cdiv(N * K * P * Q, bs),), (bs,), tile=f"{bs} threads")]
    if version == 3:
        return [_l("conv2d_forward_kernel3", (_cdiv(N * P * Q, V3_BN), _cdiv(K, V3_BM)), (V3_THREADS,),
                   tile="64x64, 4x4 per thread")]
    return [_l("conv2d_forward_kernel2", (_cdiv(N * P * Q, CONV_TILE), _cdiv(K, CONV_TILE)),
               (CONV_TILE, CONV_TILE), tile="16x16")]


def conv2d_backward_data_plan(version, dims, block_size=None):
    N, C, H, W, K, R, S, P, Q = dims
    if version == 1:
        bs = block_size or 256
        return [_l("conv2d_backward_data_kernel1", (_cdiv(N * C * H * W, bs),), (bs,), tile=f"{bs} threads")]
    if version == 3:
        return [_l("conv2d_backward_data_kernel3", (_cdiv(N * H * W, V3_BN), _cdiv(C, V3_BM)), (V3_THREADS,),
                   tile="64x64, 4x4 per thread")]
    return [_l("conv2d_backward_data_kernel2", (_cdiv(N * H * W, CONV_TILE), _cdiv(C, CONV_TILE)),
               (CONV_TILE, CONV_TILE), tile="16x16")]


def conv2d_backward_weight_plan(version, dims, block_size=None, bias=True):
    N, C, H, W, K, R, S, P, Q = dims
    if version == 1:
        bs = block_size or 256
        plan = [_l("conv2d_backward_weight_kernel1", (_cdiv(K * C * R * S, bs),), (bs,), tile=f"{bs} threads")]
        if bias:
            plan.append(_l("conv2d_backward_bias_kernel1", (_cdiv(K, bs),), (bs,), tile=f"{bs} threads"))
        return plan
    if version == 3:
        splits, splits_b = weight_splits(dims)
        plan = [_l("conv2d_backward_weight_kernel3", (_cdiv(C * R * S, V3_BN), _cdiv(K, V3_BM), splits),
                   (V3_THREADS,), tile=f"64x64, 4x4 per thread, {splits} slices"),
                _l("conv2d_backward_reduce_kernel3", (_cdiv(K * C * R * S, 256),), (256,), tile="256 threads")]
        if bias:
            plan += [_l("conv2d_backward_bias_kernel3", (K, splits_b), (BIAS_THREADS,),
                        tile=f"{BIAS_THREADS} threads, {splits_b} slices"),
                     _l("conv2d_backward_reduce_kernel3", (_cdiv(K, 256),), (256,), tile="256 threads")]
        return plan
    plan = [_l("conv2d_backward_weight_kernel2", (_cdiv(C * R * S, CONV_TILE), _cdiv(K, CONV_TILE)),
               (CONV_TILE, CONV_TILE), tile="16x16")]
    if bias:
        plan.append(_l("conv2d_backward_bias_kernel2", (K,), (BIAS_THREADS,), tile=f"{BIAS_THREADS} threads"))
    return plan


TARGET_BLOCKS = 264                          # two blocks per SM of an H100 (132 SMs)


def weight_splits(dims) -> tuple[int, int]:
    """Version 3's number of slices of the N*P*Q pixels for dW and for db (split-K): enough blocks to
    fill the GPU, each slice at least 256 pixels long (1024 for db)."""
    N, C, H, W, K, R, S, P, Q = dims
    npq = N * P * Q
    tiles = _cdiv(C * R * S, V3_BN) * _cdiv(K, V3_BM)
    splits = max(1, min(_cdiv(TARGET_BLOCKS, tiles), _cdiv(npq, 256)))
    splits_b = max(1, min(_cdiv(TARGET_BLOCKS, max(K, 1)), _cdiv(npq, 1024)))
    return splits, splits_b


def attention_tile(L: int, D: int, floats_per_tile, largest: int = 64) -> int:
    """The tile T of version 2: the largest power of 2 <= `largest` whose shared memory fits in 48 KiB
    and that is not much longer than the L rows its threads own (no block of mostly idle threads):
    L = Lq for the forward and dq kernels (a thread per query), Lk for dkdv (a thread per key)."""
    T = largest
    while T > 1 and (T >= 2 * L or 4 * floats_per_tile(T, D) > SHARED_LIMIT):
        T //= 2
    if 4 * floats_per_tile(T, D) > SHARED_LIMIT:
        raise ValueError(f"attention version 2: D={D} is too large for 48 KiB of shared memory even with "
                         f"a tile of T=1 query ({4 * floats_per_tile(1, D)} bytes); use version 1")
    return T


def _forward_floats(T, D):
    return 4 * T * (D + 1) + T * (T + 1)


def _dkdv_floats(T, D):
    return 6 * T * (D + 1) + 2 * T


def _dq_floats(T, D):
    return 5 * T * (D + 1)


V3_ATTENTION_ROWS, V3_ATTENTION_THREADS, V3_ATTENTION_MAX_D = 32, 128, 128   # must match attention_forward.cu


def _forward3_floats(bkv, D):
    return V3_ATTENTION_ROWS * (D + 1) + 2 * bkv * (D + 1) + V3_ATTENTION_ROWS * (bkv + 1) + 3 * V3_ATTENTION_ROWS


def attention_key_tile(Lk: int, D: int) -> int:
    """Version 3's key tile: the largest of 32, 16, ... 1 that fits 48 KiB and is not much longer than Lk."""
    return _v3_tile(Lk, D, _forward3_floats)


def _dkdv3_floats(bq, D):
    return 2 * V3_ATTENTION_ROWS * (D + 1) + 2 * bq * (D + 1) + 2 * bq + 2 * V3_ATTENTION_ROWS * (bq + 1)


def _dq3_floats(bkv, D):
    return 2 * V3_ATTENTION_ROWS * (D + 1) + 2 * bkv * (D + 1) + 2 * V3_ATTENTION_ROWS + V3_ATTENTION_ROWS * (bkv + 1)


def _v3_tile(L, D, floats):
    if D > V3_ATTENTION_MAX_D:
        raise ValueError(f"attention version 3 holds at most {V3_ATTENTION_MAX_D} features per row in registers "
                         f"(4 per lane), got D={D}; use version 2")
    tile = 32
    while tile > 1 and (tile >= 2 * L or 4 * floats(tile, D) > SHARED_LIMIT):
        tile //= 2
    return tile


def attention_forward_plan(version, B, Lq, Lk, D, block_size=None):
    """q (B, Lq, D) against k, v (B, Lk, D): the grid follows the queries, the key tile the keys."""
    if version == 1:
        bs = block_size or 256
        t = f"{bs} threads"
        return [_l("attention_scores_kernel1", (_cdiv(B * Lq * Lk, bs),), (bs,), tile=t),
                _l("attention_softmax_kernel1", (_cdiv(B * Lq, bs),), (bs,), tile=t),
                _l("attention_value_kernel1", (_cdiv(B * Lq * D, bs),), (bs,), tile=t)]
    if version == 3:
        bkv = block_size or attention_key_tile(Lk, D)
        return [_l("attention_forward_kernel3", (_cdiv(Lq, V3_ATTENTION_ROWS), B), (V3_ATTENTION_THREADS,),
                   4 * _forward3_floats(bkv, D), f"32 queries x {bkv} keys")]
    T = block_size or attention_tile(Lq, D, _forward_floats)
    return [_l("attention_forward_kernel2", (_cdiv(Lq, T), B), (T,), 4 * _forward_floats(T, D), f"T={T}")]


def attention_backward_plan(version, B, Lq, Lk, D, block_size=None):
    """dq (B, Lq, D) from blocks of query rows, dk and dv (B, Lk, D) from blocks of key rows."""
    if version == 1:
        bs = block_size or 256
        t = f"{bs} threads"
        return [_l("attention_dv_kernel1", (_cdiv(B * Lk * D, bs),), (bs,), tile=t),
                _l("attention_dp_kernel1", (_cdiv(B * Lq * Lk, bs),), (bs,), tile=t),
                _l("attention_softmax_backward_kernel1", (_cdiv(B * Lq, bs),), (bs,), tile=t),
                _l("attention_dq_kernel1", (_cdiv(B * Lq * D, bs),), (bs,), tile=t),
                _l("attention_dk_kernel1", (_cdiv(B * Lk * D, bs),), (bs,), tile=t)]
    if version == 3:
        bq, bkv = _v3_backward_tiles(Lq, Lk, D, block_size)
        return [_l("attention_backward_preprocess_kernel2", (_cdiv(B * Lq, 256),), (256,), tile="256 threads"),
                _l("attention_backward_dkdv_kernel3", (_cdiv(Lk, V3_ATTENTION_ROWS), B), (V3_ATTENTION_THREADS,),
                   4 * _dkdv3_floats(bq, D), f"32 keys x {bq} queries"),
                _l("attention_backward_dq_kernel3", (_cdiv(Lq, V3_ATTENTION_ROWS), B), (V3_ATTENTION_THREADS,),
                   4 * _dq3_floats(bkv, D), f"32 queries x {bkv} keys")]
    T1 = block_size or attention_tile(Lk, D, _dkdv_floats)          # a thread per key row
    T2 = block_size or attention_tile(Lq, D, _dq_floats)            # a thread per query row
    return [_l("attention_backward_preprocess_kernel2", (_cdiv(B * Lq, 256),), (256,), tile="256 threads"),
            _l("attention_backward_dkdv_kernel2", (_cdiv(Lk, T1), B), (T1,), 4 * _dkdv_floats(T1, D), f"T={T1}"),
            _l("attention_backward_dq_kernel2", (_cdiv(Lq, T2), B), (T2,), 4 * _dq_floats(T2, D), f"T={T2}")]


def _v3_backward_tiles(Lq, Lk, D, block_size=None):
    """Version 3's backward tiles: (bq, the query tile of dkdv; bkv, the key tile of dq)."""
    return block_size or _v3_tile(Lq, D, _dkdv3_floats), block_size or _v3_tile(Lk, D, _dq3_floats)


def attention_dims(shape):
    """A harness attention shape, (B, L, D) for self-attention or (B, Lq, Lk, D), as (B, Lq, Lk, D)."""
    if len(shape) == 3:
        B, L, D = shape
        return B, L, L, D
    B, Lq, Lk, D = shape
    return B, Lq, Lk, D


def conv_dims(shape):
    """(N, C, H, W, K, R, stride, pad) -> (N, C, H, W, K, R, S, P, Q) for a square R x R filter."""
    N, C, H, W, K, R, stride, pad = shape
    return N, C, H, W, K, R, R, (H + 2 * pad - R) // stride + 1, (W + 2 * pad - R) // stride + 1


def plan(op: str, version: int, shape, block_size=None):
    """The launches of one operation at one harness shape ((N, C, H, W, K, R, stride, pad), or
    (B, L, D) or (B, Lq, Lk, D) for attention)."""
    if op.startswith("attention"):
        dims = attention_dims(shape)
        if op == "attention_forward":
            return attention_forward_plan(version, *dims, block_size)
        return attention_backward_plan(version, *dims, block_size)
    dims = conv_dims(shape)
    return {"conv2d_forward": conv2d_forward_plan, "conv2d_backward_data": conv2d_backward_data_plan,
            "conv2d_backward_weight": conv2d_backward_weight_plan}[op](version, dims, block_size)


def tile_fits(op: str, version: int, shape, block_size) -> str:
    """'' if every launch of `op` at `shape` with this block size is within CUDA's limits, else why not."""
    try:
        p = plan(op, version, shape, block_size)
        if op == "attention_backward":          # its forward pass runs at the tile the ops would choose
            p = plan("attention_forward", version, shape, None) + p
        check_plan(p)
    except ValueError as err:
        return str(err)
    return ""


# ---------------------------------------------------------------------------------------------
# One operation, one version. `mod` is the module (EmulatedModule or CudaModule) of the op's file;
# outputs are preallocated, C-contiguous float32.

def launch_conv2d_forward(mod, version, x, w, b, y, stride, pad, block_size=None):
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = y.shape[2], y.shape[3]
    p = conv2d_forward_plan(version, (N, C, H, W, K, R, S, P, Q), block_size)
    _run(mod, p, [(x, w, b, y) + _i32(N, C, H, W, K, R, S, P, Q, stride, pad)])


def launch_conv2d_backward_data(mod, version, dy, w, dx, stride, pad, block_size=None):
    N, C, H, W = dx.shape
    K, _, R, S = w.shape
    P, Q = dy.shape[2], dy.shape[3]
    p = conv2d_backward_data_plan(version, (N, C, H, W, K, R, S, P, Q), block_size)
    _run(mod, p, [(dy, w, dx) + _i32(N, C, H, W, K, R, S, P, Q, stride, pad)])


def launch_conv2d_backward_weight(mod, version, x, dy, dw, db, stride, pad, block_size=None):
    """dw, and db unless it is None."""
    N, C, H, W = x.shape
    K, _, R, S = dw.shape
    P, Q = dy.shape[2], dy.shape[3]
    p = conv2d_backward_weight_plan(version, (N, C, H, W, K, R, S, P, Q), block_size, bias=db is not None)
    dims = _i32(N, C, H, W, K, R, S, P, Q, stride, pad)
    if version == 3:                     # split-K: partial sums in workspaces, then reduced
        check_plan(p)
        splits = p[0].grid[2]
        new = type(dw)                   # numpy.ndarray or cupy.ndarray: both take (shape, dtype)
        partial = new((splits, K * C * R * S), dtype=np.float32)
        args = [(x, dy, partial) + dims, (partial, dw) + _i32(splits, K * C * R * S)]
        if db is not None:
            splits_b = p[2].grid[1]
            partial_b = new((splits_b, K), dtype=np.float32)
            args += [(dy, partial_b) + _i32(N, K, P, Q), (partial_b, db) + _i32(splits_b, K)]
        _run(mod, p, args)
        return
    args = [(x, dy, dw) + dims]
    if db is not None:
        args.append((dy, db) + _i32(N, K, P, Q))
    _run(mod, p, args)


def launch_attention_forward(mod, version, q, k, v, o, scale, xp, block_size=None):
    """q, o (B, Lq, D); k, v (B, Lk, D). Returns what the backward pass of the same version needs:
    P (B, Lq, Lk) (version 1) or the logsumexp (B, Lq) (versions 2 and 3)."""
    B, Lq, D = q.shape
    Lk = k.shape[1]
    scale = np.float32(scale)
    p = attention_forward_plan(version, B, Lq, Lk, D, block_size)
    check_plan(p)
    if version == 1:
        s = xp.empty((B, Lq, Lk), dtype=np.float32)
        probs = xp.empty((B, Lq, Lk), dtype=np.float32)
        _run(mod, p, [(q, k, s) + _i32(B, Lq, Lk, D) + (scale,), (s, probs) + _i32(B, Lq, Lk),
                      (probs, v, o) + _i32(B, Lq, Lk, D)])
        return probs
    lse = xp.empty((B, Lq), dtype=np.float32)
    extra = _i32(block_size or attention_key_tile(Lk, D)) if version == 3 else ()
    _run(mod, p, [(q, k, v, o, lse) + _i32(B, Lq, Lk, D) + (scale,) + extra])
    return lse


def launch_attention_backward(mod, version, saved, q, k, v, o, dout, dq, dk, dv, scale, xp, block_size=None):
    """`saved` is what launch_attention_forward returned for the same version. q, o, dout, dq
    (B, Lq, D); k, v, dk, dv (B, Lk, D)."""
    B, Lq, D = q.shape
    Lk = k.shape[1]
    scale = np.float32(scale)
    p = attention_backward_plan(version, B, Lq, Lk, D, block_size)
    check_plan(p)
    if version == 1:
        probs = saved
        dp = xp.empty((B, Lq, Lk), dtype=np.float32)
        ds = xp.empty((B, Lq, Lk), dtype=np.float32)
        dims = _i32(B, Lq, Lk, D)
        _run(mod, p, [(probs, dout, dv) + dims, (dout, v, dp) + dims,
                      (probs, dp, ds) + _i32(B, Lq, Lk) + (scale,), (ds, k, dq) + dims, (ds, q, dk) + dims])
        return
    lse = saved
    delta = xp.empty((B, Lq), dtype=np.float32)
    tail = _i32(B, Lq, Lk, D) + (scale,)
    tail1 = tail2 = tail
    if version == 3:
        bq, bkv = _v3_backward_tiles(Lq, Lk, D, block_size)
        tail1, tail2 = tail + _i32(bq), tail + _i32(bkv)
    _run(mod, p, [(o, dout, delta) + _i32(B, Lq, D), (q, k, v, dout, lse, delta, dk, dv) + tail1,
                  (q, k, v, dout, lse, delta, dq) + tail2])
