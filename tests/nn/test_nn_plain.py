"""The plain (loop) convolution and attention: against the fast versions, and against finite differences.

Two references for each fast layer that share no code with it: the plain loops of
``conv_plain.py`` / ``attention_plain.py`` (compared here in float64), and centred finite
differences of the plain forward (``fd_check`` from conftest.py). The last tests plant a wrong
answer and check that each comparison rejects it, so a pass here means something.

Tolerance of plain vs fast, float64: 1e-12 relative to the largest |reference| entry
----------------------------------------------------------------------------------------
Both compute the same sums of products; they differ only in the order of the additions (the
loops add one term at a time, BLAS in blocks) and, for attention, in a few correctly rounded
exp/divide operations. Summing m terms in any order has rounding error at most about
m·ε·Σ|terms| with ε = 1.1e-16; here m ≤ 36 (the longest sums: dw's over N·H_out·W_out, dx's
over K·R·S) and Σ|terms| is a few times the largest |entry|, so the bound is ~1e-14; measured
when these tests were written, the worst was about 1e-15. 1e-12 sits well above the bound; a wrong
term (a flipped kernel, a missing 1/√D, a missing softmax term) gives errors of order 1. The error is taken relative to the array's largest entry,
not entry by entry: an entry near zero by cancellation has a large relative error in any order.
"""

import math

import numpy as np
import pytest

from ddpm_ref.nn.attention import attention_backward, attention_forward
from ddpm_ref.nn.attention_plain import attention_backward_plain, attention_forward_plain
from ddpm_ref.nn.conv import conv2d_backward, conv2d_forward
from ddpm_ref.nn.conv_plain import conv2d_backward_plain, conv2d_forward_plain

RTOL_F64 = 1e-12   # see the module docstring
RTOL_F32 = 1e-5    # float32: ε = 6e-8, times the same ~100-term sums, with room to spare

# (N, C, H, W, K, R, S, stride, padding): batch 1 and 3, C != K, non-square images and kernels,
# stride 1 and 2, padding 0, 1 and 2, a 1x1 kernel, odd sizes everywhere
CONV_CASES = [
    (1, 2, 5, 5, 3, 3, 3, 1, 1),
    (3, 3, 7, 5, 2, 3, 3, 2, 1),
    (1, 2, 6, 7, 4, 3, 3, 2, 0),
    (3, 1, 4, 6, 2, 3, 2, 1, 0),
    (1, 4, 5, 3, 3, 1, 1, 1, 0),
    (2, 3, 5, 5, 2, 1, 1, 2, 1),
    (1, 2, 3, 4, 3, 3, 3, 1, 2),
]
# (B, L, D): L = 1 (softmax of one score), odd L, D = 1, B = 1 and 3
ATTN_SHAPES = [(1, 1, 3), (3, 5, 4), (2, 7, 1), (1, 4, 2), (3, 3, 5)]


def assert_close(name, got, ref, rtol=RTOL_F64):
    """max |got − ref| ≤ rtol · max |ref|; the message names the worst entry and both values."""
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} != {ref.dtype}"
    err = np.abs(np.asarray(got, np.float64) - np.asarray(ref, np.float64))
    scale = max(float(np.abs(ref).max()), 1e-300)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    rel = float(err[worst]) / scale
    assert rel <= rtol, (f"{name}: relative error {rel:.1e} > {rtol:.0e}; worst at index "
                         f"{tuple(int(i) for i in worst)}: got {got[worst]!r}, reference {ref[worst]!r}")
    return rel


def _conv_inputs(rng, case, bias=True, dtype=np.float64):
    N, C, H, W, K, R, S, stride, padding = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    return x, w, b, stride, padding


# ---- (1) plain vs fast ------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_plain_matches_fast(case, bias, rng):
    x, w, b, stride, padding = _conv_inputs(rng, case, bias)
    y_plain, cache_plain = conv2d_forward_plain(x, w, b, stride, padding)
    y_fast, cache_fast = conv2d_forward(x, w, b, stride, padding)
    N, _, H, W, K, R, S, _, _ = case
    assert y_plain.shape == (N, K, (H + 2 * padding - R) // stride + 1, (W + 2 * padding - S) // stride + 1)
    assert_close("y", y_plain, y_fast)
    dy = rng.standard_normal(y_plain.shape)
    plain, fast = conv2d_backward_plain(dy, cache_plain), conv2d_backward(dy, cache_fast)
    for name, g_plain, g_fast in zip(("dx", "dw"), plain, fast):
        assert_close(name, g_plain, g_fast)
    if bias:
        assert_close("db", plain[2], fast[2])
    else:
        assert plain[2] is None and fast[2] is None


@pytest.mark.parametrize("shape", ATTN_SHAPES)
def test_attention_plain_matches_fast(shape, rng):
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    o_plain, cache_plain = attention_forward_plain(q, k, v)
    o_fast, cache_fast = attention_forward(q, k, v)
    assert_close("o", o_plain, o_fast)
    assert_close("P", cache_plain["p"], cache_fast["p"])
    do = rng.standard_normal(shape)
    grads = zip(("dq", "dk", "dv"), attention_backward_plain(do, cache_plain), attention_backward(do, cache_fast))
    for name, g_plain, g_fast in grads:
        assert_close(name, g_plain, g_fast)


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 1, 6, 2), (2, 3, 1, 3)])
def test_attention_plain_matches_fast_with_keys_of_another_length(shape, rng):
    """(B, Lq, Lk, D): the loops run over Lq queries and Lk keys, as the matrix products do."""
    B, Lq, Lk, D = shape
    q, k, v = rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D)), rng.standard_normal((B, Lk, D))
    o_plain, cache_plain = attention_forward_plain(q, k, v)
    o_fast, cache_fast = attention_forward(q, k, v)
    assert_close("o", o_plain, o_fast)
    do = rng.standard_normal(q.shape)
    grads = zip(("dq", "dk", "dv"), attention_backward_plain(do, cache_plain), attention_backward(do, cache_fast))
    for name, g_plain, g_fast in grads:
        assert_close(name, g_plain, g_fast)


def test_float32_in_float32_out(rng):
    x, w, b, stride, padding = _conv_inputs(rng, CONV_CASES[1], True, np.float32)
    y, cache = conv2d_forward_plain(x, w, b, stride, padding)
    grads = conv2d_backward_plain(np.ones(y.shape, np.float32), cache)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert_close("y float32", y, conv2d_forward(x, w, b, stride, padding)[0], RTOL_F32)
    q, k, v = (rng.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(3))
    o, cache = attention_forward_plain(q, k, v)
    grads = attention_backward_plain(np.ones_like(o), cache)
    assert o.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert_close("o float32", o, attention_forward(q, k, v)[0], RTOL_F32)


# ---- (2) plain vs centred finite differences (float64) -----------------------------------

@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[1], CONV_CASES[3], CONV_CASES[6]])
def test_conv_plain_finite_differences(case, rng, fd_check):
    x, w, b, stride, padding = _conv_inputs(rng, case)
    y, cache = conv2d_forward_plain(x, w, b, stride, padding)
    G = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward_plain(G, cache)
    fd_check(lambda: float(np.sum(conv2d_forward_plain(x, w, b, stride, padding)[0] * G)),
             {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db}, rng)


@pytest.mark.parametrize("shape", ATTN_SHAPES)
def test_attention_plain_finite_differences(shape, rng, fd_check):
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    o, cache = attention_forward_plain(q, k, v)
    G = rng.standard_normal(o.shape)
    dq, dk, dv = attention_backward_plain(G, cache)
    fd_check(lambda: float(np.sum(attention_forward_plain(q, k, v)[0] * G)),
             {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv}, rng)


# ---- bad input: the plain versions refuse what the fast ones refuse ------------------------

@pytest.mark.parametrize("forward, backward", [(conv2d_forward, conv2d_backward),
                                               (conv2d_forward_plain, conv2d_backward_plain)])
def test_conv_bad_inputs_raise(forward, backward, rng):
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    for args, kwargs, match in [((x, w[:, :2]), {}, "channels"), ((x[0], w), {}, "axes"),
                                ((x, w.astype(np.float32)), {}, "dtype"),
                                ((x, w, np.zeros(3)), {}, "b must have shape"),
                                ((x, w), {"stride": 0}, "stride"), ((x, w), {"padding": -1}, "padding"),
                                ((x[:, :, :2, :2], w), {}, "does not fit")]:
        with pytest.raises(ValueError, match=match):
            forward(*args, **kwargs)
    y, cache = forward(x, w)
    with pytest.raises(ValueError, match="output's shape"):
        backward(y[:, :, :-1], cache)
    with pytest.raises(ValueError, match="cache did not come from"):
        backward(y, {"op": "linear"})


def test_caches_are_not_mixed(rng):
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3))
    y, fast_cache = conv2d_forward(x, w)
    with pytest.raises(ValueError, match="cache did not come from"):
        conv2d_backward_plain(y, fast_cache)
    q = rng.standard_normal((1, 3, 2))
    o, plain_cache = attention_forward_plain(q, q, q)
    with pytest.raises(ValueError, match="cache did not come from"):
        attention_backward(o, plain_cache)
    with pytest.raises(ValueError, match="output's shape"):
        attention_backward_plain(o[:, :2], plain_cache)
    with pytest.raises(ValueError, match="same shape"):
        attention_forward_plain(q, q[:, :2], q)


# ---- (3) each comparison can fail: planted wrong answers ----------------------------------

def test_flipped_kernel_is_caught(rng):
    """True convolution (kernel flipped) instead of cross-correlation: plain vs fast rejects it."""
    x, w, b, stride, padding = _conv_inputs(rng, CONV_CASES[1])
    y_plain, _ = conv2d_forward_plain(x, w, b, stride, padding)
    y_wrong, _ = conv2d_forward(x, np.ascontiguousarray(w[:, :, ::-1, ::-1]), b, stride, padding)
    with pytest.raises(AssertionError, match="y: relative error"):
        assert_close("y", y_wrong, y_plain)


def test_missing_sqrt_d_is_caught(rng):
    """softmax(q kᵀ) v without the 1/√D (D = 4): plain vs fast rejects it."""
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    o_plain, _ = attention_forward_plain(q, k, v)
    o_wrong, _ = attention_forward(q * math.sqrt(4), k, v)     # = softmax(q kᵀ) v
    with pytest.raises(AssertionError, match="o: relative error"):
        assert_close("o", o_wrong, o_plain)


def test_softmax_backward_without_row_sum_is_caught(rng, fd_check):
    """dS = P ⊙ dP (the − rowsum(dP ⊙ P) term dropped): both references reject the dq it gives."""
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    o, cache = attention_forward_plain(q, k, v)
    G = rng.standard_normal(o.shape)
    dq, dk, dv = attention_backward_plain(G, cache)
    ds_wrong = cache["p"] * (G @ v.transpose(0, 2, 1))
    dq_wrong = ds_wrong @ k / math.sqrt(4)
    with pytest.raises(AssertionError, match="dq: relative error"):
        assert_close("dq", dq_wrong, dq)
    with pytest.raises(AssertionError, match="finite-difference relative errors above"):
        fd_check(lambda: float(np.sum(attention_forward_plain(q, k, v)[0] * G)),
                 {"q": q, "k": k, "v": v}, {"q": dq_wrong, "k": dk, "v": dv}, rng)


def test_flipped_weight_gradient_is_caught(rng, fd_check):
    """dw with its kernel offsets reversed: both references reject it."""
    x, w, b, stride, padding = _conv_inputs(rng, CONV_CASES[0])
    y, cache = conv2d_forward_plain(x, w, b, stride, padding)
    G = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward_plain(G, cache)
    dw_wrong = np.ascontiguousarray(dw[:, :, ::-1, ::-1])
    with pytest.raises(AssertionError, match="dw: relative error"):
        assert_close("dw", dw_wrong, conv2d_backward(G, conv2d_forward(x, w, b, stride, padding)[1])[1])
    with pytest.raises(AssertionError, match="finite-difference relative errors above"):
        fd_check(lambda: float(np.sum(conv2d_forward_plain(x, w, b, stride, padding)[0] * G)),
                 {"x": x, "w": w, "b": b}, {"x": dx, "w": dw_wrong, "b": db}, rng)
