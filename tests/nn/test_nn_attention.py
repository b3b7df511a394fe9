"""attention_forward / attention_backward: finite differences, PyTorch autograd, dtypes, bad input."""

import numpy as np
import pytest

from ddpm_ref.nn import attention_backward, attention_forward

SHAPES = [(2, 5, 3), (1, 16, 8), (3, 1, 4), (2, 7, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_finite_differences(shape, rng, fd_check):
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    o, cache = attention_forward(q, k, v)
    G = rng.standard_normal(o.shape)
    dq, dk, dv = attention_backward(G, cache)
    fd_check(lambda: float(np.sum(attention_forward(q, k, v)[0] * G)),
             {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv}, rng)


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_matches_torch(shape, rng):
    torch = pytest.importorskip("torch")
    q, k, v = (rng.standard_normal(shape) for _ in range(3))
    o, cache = attention_forward(q, k, v)
    G = rng.standard_normal(o.shape)
    grads = attention_backward(G, cache)
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    ot = torch.softmax(ts[0] @ ts[1].transpose(1, 2) / np.sqrt(shape[-1]), dim=-1) @ ts[2]
    ot.backward(torch.tensor(G))
    np.testing.assert_allclose(o, ot.detach().numpy(), rtol=1e-12, atol=1e-12)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-11, atol=1e-12)


# (B, Lq, Lk, D): queries and keys of different lengths, as in cross-attention (Lq image tokens,
# Lk context tokens), with one query, one key, more keys than queries and fewer
CROSS_SHAPES = [(2, 7, 3, 5), (1, 1, 9, 4), (2, 5, 1, 3), (1, 16, 4, 8)]


def _cross_inputs(shape, rng):
    B, Lq, Lk, D = shape
    return rng.standard_normal((B, Lq, D)), rng.standard_normal((B, Lk, D)), rng.standard_normal((B, Lk, D))


@pytest.mark.parametrize("shape", CROSS_SHAPES)
def test_cross_lengths_finite_differences(shape, rng, fd_check):
    q, k, v = _cross_inputs(shape, rng)
    o, cache = attention_forward(q, k, v)
    assert o.shape == q.shape
    G = rng.standard_normal(o.shape)
    dq, dk, dv = attention_backward(G, cache)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    fd_check(lambda: float(np.sum(attention_forward(q, k, v)[0] * G)),
             {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv}, rng)


@pytest.mark.parametrize("shape", CROSS_SHAPES)
def test_cross_lengths_match_torch(shape, rng):
    """PyTorch's own scaled_dot_product_attention, which takes keys of another length than the queries."""
    torch = pytest.importorskip("torch")
    q, k, v = _cross_inputs(shape, rng)
    o, cache = attention_forward(q, k, v)
    G = rng.standard_normal(o.shape)
    grads = attention_backward(G, cache)
    ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    ot = torch.nn.functional.scaled_dot_product_attention(*ts)
    ot.backward(torch.tensor(G))
    np.testing.assert_allclose(o, ot.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name, g, t in zip(("dq", "dk", "dv"), grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-11, atol=1e-12, err_msg=name)


def test_one_key_gives_every_query_its_value(rng):
    """Lk = 1: the softmax over one key is 1 whatever the score, so o_i = v for every query and no
    gradient reaches q or k."""
    q, k, v = _cross_inputs((2, 5, 1, 3), rng)
    o, cache = attention_forward(q, k, v)
    np.testing.assert_array_equal(o, np.broadcast_to(v, o.shape))
    dq, dk, dv = attention_backward(np.ones_like(o), cache)
    assert not dq.any() and not dk.any()
    np.testing.assert_allclose(dv, np.full(v.shape, 5.0), rtol=1e-15)     # the 5 queries' do, summed


def test_rows_are_convex_combinations_of_values(rng):
    """Each output row is a weighted mean of v's rows: it lies within their range."""
    q, k, v = (rng.standard_normal((2, 6, 3)) * 10 for _ in range(3))
    o, cache = attention_forward(q, k, v)
    assert np.allclose(cache["p"].sum(-1), 1)
    assert np.all(o <= v.max(axis=1, keepdims=True) + 1e-12)
    assert np.all(o >= v.min(axis=1, keepdims=True) - 1e-12)


def test_large_scores_do_not_overflow(rng):
    q = rng.standard_normal((1, 4, 2)).astype(np.float32) * 1e3
    o, _ = attention_forward(q, q, q)
    assert np.all(np.isfinite(o))


def test_float32_and_strided_views(rng):
    qkv = rng.standard_normal((2, 5, 9)).astype(np.float32)
    q, k, v = qkv[..., :3], qkv[..., 3:6], qkv[..., 6:]
    o, cache = attention_forward(q, k, v)
    grads = attention_backward(np.ones_like(o), cache)
    assert o.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    o64, _ = attention_forward(*(np.ascontiguousarray(a, dtype=np.float64) for a in (q, k, v)))
    np.testing.assert_allclose(o, o64, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise(rng):
    q = rng.standard_normal((2, 5, 3))
    with pytest.raises(ValueError, match="same shape"):
        attention_forward(q, q[:, :4], q)
    with pytest.raises(ValueError, match="axes"):
        attention_forward(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="dtype"):
        attention_forward(q, q.astype(np.float32), q)
    o, cache = attention_forward(q, q, q)
    with pytest.raises(ValueError, match="shape"):
        attention_backward(o[:, :2], cache)


@pytest.mark.parametrize("k_shape, v_shape, match", [
    ((2, 4, 3), (2, 6, 3), r"k and v must have the same shape \(B, Lk, D\)"),      # a value per key
    ((2, 4, 3), (2, 4, 2), r"k and v must have the same shape"),
    ((2, 4, 2), (2, 4, 2), r"k, v \(B, Lk, D\) must have q's batch size B and feature count D"),
    ((1, 4, 3), (1, 4, 3), r"k, v \(B, Lk, D\) must have q's batch size B"),
    ((2, 0, 3), (2, 0, 3), r"L >= 1 positions each \(Lq queries, Lk keys"),
])
def test_bad_cross_shapes_name_the_argument(k_shape, v_shape, match, rng):
    q = rng.standard_normal((2, 5, 3))
    with pytest.raises(ValueError, match=match):
        attention_forward(q, rng.standard_normal(k_shape), rng.standard_normal(v_shape))
    o, cache = attention_forward(q, *_cross_inputs((2, 5, 4, 3), rng)[1:])
    with pytest.raises(ValueError, match=r"do must have the output's shape \(2, 5, 3\)"):
        attention_backward(np.ones((2, 4, 3)), cache)             # the keys' length, not the queries'

