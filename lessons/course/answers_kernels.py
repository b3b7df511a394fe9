"""Checkers (and solutions) for the exercises of lesson 11: the CUDA kernels.

What these checks assume about kernels/ (stated in the lesson too): version 1 of conv2d_forward
runs one thread per output element of y, laid out (N, K, P, Q) in C order; version 2 tiles Y
(K rows, N·P·Q columns) with square blocks. Exercise 11.2 fixes the tile side at 16 in its text,
whatever CONV_TILE the .cu file uses today.
"""

from __future__ import annotations

import numpy as np

from course import compare, exercise
from course.answers_nn import NOT_ANSWERED

# ---- 11.1: thread → output element of conv2d_forward version 1 ----


def _my_thread_to_output(idx, N, K, P, Q):
    q = idx % Q
    p = (idx // Q) % P
    k = (idx // (Q * P)) % K
    n = idx // (Q * P * K)
    return n, k, p, q


def _thread_map_reference(idx, N, K, P, Q):
    """Where thread idx writes, by an independent route: number the elements of a C-order array
    y of shape (N, K, P, Q) and look idx up (y[((n*K + k)*P + p)*Q + q] in the kernel)."""
    flat = np.arange(N * K * P * Q).reshape(N, K, P, Q)
    where = {int(v): tuple(int(i) for i in np.argwhere(flat == v)[0]) for v in np.atleast_1d(idx)}
    return np.array([where[int(v)] for v in np.atleast_1d(idx)]).T


_MAP_MISTAKES = {
    "p and q swapped (the row index from % Q, the column from % P)":
        lambda i, N, K, P, Q: ((i // (Q * P * K)), (i // (Q * P)) % K, i % P, (i // P) % Q),
    "n and k swapped (image index where the channel belongs)":
        lambda i, N, K, P, Q: ((i // (Q * P)) % N, i // (Q * P * N), (i // Q) % P, i % Q),
    "the input's sizes: H·W (and C) where the output's P·Q (and K) belong":
        lambda i, N, K, P, Q: (i // ((Q + 2) * (P + 2) * K), (i // ((Q + 2) * (P + 2))) % K,
                               (i // (Q + 2)) % (P + 2), i % (Q + 2)),
}

# (N, K, P, Q): all different, odd, so that swapping any two is visible
_MAP_SHAPES = [(2, 3, 5, 7), (3, 4, 1, 6), (1, 5, 4, 3)]


def _as_tuple_of_arrays(result):
    return np.array([np.asarray(r) for r in result]) if isinstance(result, (tuple, list)) else np.asarray(result)


@exercise("11.1", solution=lambda: _my_thread_to_output,
          wrong={what: (lambda fn=fn: fn) for what, fn in _MAP_MISTAKES.items()},
          hints=("y is stored in C order with shape (N, K, P, Q): q changes fastest, then p, k, n. "
                 "Peel them off with % and //, innermost first.",
                 "q = idx % Q; p = (idx // Q) % P; k = (idx // (Q·P)) % K; n = idx // (Q·P·K)."))
def _ex_11_1(answer):
    if not callable(answer):
        return False, f"expected a function, got {type(answer).__name__}."
    for N, K, P, Q in _MAP_SHAPES:
        idx = np.arange(N * K * P * Q)
        got = answer(idx, N, K, P, Q)
        if got is None:
            return None, NOT_ANSWERED
        got = _as_tuple_of_arrays(got)
        ref = _thread_map_reference(idx, N, K, P, Q)
        if got.shape != ref.shape:
            return False, f"return four arrays (n, k, p, q), each of idx's shape; got shape {got.shape}."
        bad = np.flatnonzero(np.any(got != ref, axis=0))
        if bad.size:
            for what, fn in _MAP_MISTAKES.items():
                if np.array_equal(got, _as_tuple_of_arrays(fn(idx, N, K, P, Q))):
                    return False, f"this looks like {what} (N, K, P, Q = {N}, {K}, {P}, {Q})."

            i = int(bad[0])
            return False, (f"with (N, K, P, Q) = ({N}, {K}, {P}, {Q}), thread {i} writes y{tuple(ref[:, i])}, "
                           f"your map says y{tuple(int(v) for v in got[:, i])} ({bad.size} threads wrong).")
    return True, f"(every thread of {len(_MAP_SHAPES)} launches maps to the element the kernel writes)"


# ---- 11.2: the grid of version 2 ----
# The convolution of exercise 11.2: x (8, 32, 16, 16), 40 filters of 3×3, stride 1, padding 1;
# 16×16 tiles. K = 40 is not a multiple of 16, so the two grids differ.
_N, _C, _H, _W, _K = 8, 32, 16, 16, 40
_TILE = 16


def _out_size():
    from ddpm_ref.nn import conv2d_output_size

    return conv2d_output_size(_H, 3, 1, 1), conv2d_output_size(_W, 3, 1, 1)


def _blocks_v1(block=256):
    P, Q = _out_size()
    return -(-_N * _K * P * Q // block)


def _blocks_v2():
    P, Q = _out_size()
    return -(-_N * P * Q // _TILE) * -(-_K // _TILE)


def _blocks_v2_floor():
    P, Q = _out_size()
    return (_N * P * Q // _TILE) * (_K // _TILE)


@exercise("11.2", solution=_blocks_v2,
          wrong={"version 1's grid (one thread per output element, 256 per block)": _blocks_v1,
                 "tiles counted without rounding up (40 filters are 2.5 tiles)": _blocks_v2_floor},
          hints=("Y has K = 40 rows and N·P·Q columns; a block covers 16 × 16 of it, and a partial tile "
                 "still needs a whole block.",
                 "⌈N·P·Q / 16⌉ · ⌈K / 16⌉ blocks."))
def _ex_11_2(answer):
    return compare(answer, _blocks_v2(), atol=0,
                   mistakes={"version 1's block count, ⌈N·K·P·Q / 256⌉: version 2 tiles Y in 16×16 "
                             "squares, and a partial tile needs a whole block": _blocks_v1(),
                             "⌊K/16⌋: the last 8 filters need a block of their own too": _blocks_v2_floor()})


# ---- 11.3: the online softmax, one score at a time ----


def _online_softmax_update(m, l, a, s_j, v_j):
    m_new = max(m, s_j)
    scale = np.exp(m - m_new)                        # exp(−inf) = 0 on the first score
    l = l * scale + np.exp(s_j - m_new)
    a = a * scale + np.exp(s_j - m_new) * v_j
    return m_new, l, a


def _attention_row_reference(s, v):
    """o for one query row with scores s: attention_forward with q·k chosen to give exactly s."""
    from ddpm_ref.nn import attention_forward

    L, D = len(s), max(len(s), v.shape[1])
    q = np.zeros((1, L, D))
    q[0, :, 0] = 1.0                                                      # every query row is the same
    k = np.zeros((1, L, D))
    k[0, :, 0] = np.asarray(s, dtype=np.float64) * np.sqrt(D)            # q kᵀ/√D = s
    vv = np.zeros((1, L, D))
    vv[0, :, : v.shape[1]] = v
    o, _ = attention_forward(q, k, vv)
    return o[0, 0, : v.shape[1]]


def _inputs():
    g = np.random.default_rng(113)
    out = []
    for L, D, scale in [(5, 3, 1.0), (12, 4, 10.0), (7, 2, 100.0)]:
        s = g.standard_normal(L) * scale
        out.append((s, g.standard_normal((L, D))))
    out.append((np.array([-5.0, 40.0, 39.0, -1.0]), np.eye(4)[:, :3]))     # a new maximum arrives late
    return out


def _stream(update, s, v):
    """Drive the student's update over one row, one score at a time (the check owns the loop, so
    the update never sees the whole row)."""
    m, l, a = -np.inf, 0.0, np.zeros(v.shape[1])
    states = []
    for j in range(len(s)):
        out = update(m, l, a, float(s[j]), v[j].copy())
        if out is None:
            return None, states
        m, l, a = out
        states.append((float(m), float(l), np.array(a, dtype=np.float64)))
    return np.asarray(a) / l, states


_SOFTMAX_MISTAKES = {
    "a not rescaled when the maximum grows": lambda m, l, a, s, v: (
        max(m, s), l * np.exp(m - max(m, s)) + np.exp(s - max(m, s)), a + np.exp(s - max(m, s)) * v),
    "ℓ not rescaled when the maximum grows": lambda m, l, a, s, v: (
        max(m, s), l + np.exp(s - max(m, s)), a * np.exp(m - max(m, s)) + np.exp(s - max(m, s)) * v),
    "e^{s_j} without subtracting the running maximum (overflows for large scores)": lambda m, l, a, s, v: (
        max(m, s), l + np.exp(s), a + np.exp(s) * v),
}


@exercise("11.3", solution=lambda: _online_softmax_update,
          wrong={what: (lambda fn=fn: fn) for what, fn in _SOFTMAX_MISTAKES.items()},
          hints=("Keep m = the largest score so far, ℓ = Σ e^{s_i − m}, a = Σ e^{s_i − m} v_i. When a new "
                 "score raises m, everything summed so far must be multiplied by e^{m_old − m_new}.",
                 "m' = max(m, s_j); ℓ' = ℓ·e^(m−m') + e^(s_j−m'); a' = a·e^(m−m') + e^(s_j−m')·v_j."))
def _ex_11_3(answer):
    if not callable(answer):
        return False, f"expected a function, got {type(answer).__name__}."
    for s, v in _inputs():
        o, states = _stream(answer, s, v)
        if o is None and not states:
            return None, NOT_ANSWERED
        if o is None:
            return False, f"your update returned None after {len(states)} scores; return (m, l, a)."
        for j, (m, l, a) in enumerate(states):        # the running state must be the exact prefix softmax
            m_ref = float(np.max(s[: j + 1]))
            l_ref = float(np.sum(np.exp(s[: j + 1] - m_ref)))
            if not np.isclose(m, m_ref, rtol=1e-12):
                return False, f"after score {j} (s = {s[j]:.3g}) m = {m:.6g}, expected the running maximum {m_ref:.6g}."
            if not np.isclose(l, l_ref, rtol=1e-9):
                return False, (f"after score {j} ℓ = {l:.6g}, expected Σ e^(s_i − m) = {l_ref:.6g} over the scores "
                               "so far" + (" (the maximum just grew: rescale ℓ)" if j and s[j] > np.max(s[:j]) else "") + ".")
        ok, message = compare(o, _attention_row_reference(s, v), rtol=1e-9, atol=1e-12)
        if not ok:
            return False, f"m and ℓ are right, the output a/ℓ is not: {message}"
    return True, "(the running m, ℓ and the output agree with attention_forward on 4 rows, one score at a time)"
