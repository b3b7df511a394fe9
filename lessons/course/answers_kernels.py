"""Checkers (and solutions) for the exercises of lesson 11: the CUDA kernels."""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise

# The convolution of exercises 11.1 and 11.2: x (8, 32, 16, 16), w (64, 32, 3, 3), stride 1, padding 1.
_N, _C, _H, _W, _K = 8, 32, 16, 16, 64
_TILE = 16


def _out_size():
    from ddpm_ref.nn import conv2d_output_size

    return conv2d_output_size(_H, 3, 1, 1), conv2d_output_size(_W, 3, 1, 1)


def _threads_v1():
    P, Q = _out_size()
    return _N * _K * P * Q


@exercise("11.1", solution=_threads_v1)
def _ex_11_1(answer):
    return compare(answer, _threads_v1(), atol=0,
                   hint="Output shape (N, K, P, Q) with P = (16 + 2·1 − 3)//1 + 1 = 16.")


def _blocks_v2():
    P, Q = _out_size()
    return -(-_N * P * Q // _TILE) * -(-_K // _TILE)


@exercise("11.2", solution=_blocks_v2)
def _ex_11_2(answer):
    return compare(answer, _blocks_v2(), atol=0,
                   hint="ceil(N·P·Q / 16) tiles along the pixels times ceil(K / 16) along the filters.")


def _online_softmax_row(s, v):
    m, l, a = -np.inf, 0.0, np.zeros(v.shape[1])
    for j in range(len(s)):
        m_new = max(m, s[j])
        scale = np.exp(m - m_new)
        l = l * scale + np.exp(s[j] - m_new)
        a = a * scale + np.exp(s[j] - m_new) * v[j]
        m = m_new
    return a / l


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


@exercise("11.3", solution=lambda: _online_softmax_row)
def _ex_11_3(answer):
    return compare_function(answer, _attention_row_reference, _inputs(), rtol=1e-9, atol=1e-12,
                            hint="m' = max(m, s_j); ℓ' = ℓ·e^(m−m') + e^(s_j−m'); a' = a·e^(m−m') + e^(s_j−m')·v_j.")
