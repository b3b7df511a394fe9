"""cross_attention_forward / _backward: finite differences, PyTorch autograd, invariants, the ops it calls, bad input.

Shapes are odd on purpose: image tokens L, context tokens M, widths C (image), E (context) and D
(attention) all differ, and D/heads is odd where it can be.
"""

import numpy as np
import pytest

from ddpm_ref.nn.cross_attention import cross_attention_backward, cross_attention_forward

# (B, L, M, C, E, D, heads)
CASES = [(2, 5, 3, 6, 7, 4, 1), (1, 16, 4, 8, 5, 6, 2), (3, 1, 7, 3, 2, 9, 3), (2, 4, 1, 5, 3, 2, 1)]


def _inputs(case, rng, bias=True):
    B, L, M, C, E, D, heads = case
    x, ctx = rng.standard_normal((B, L, C)), rng.standard_normal((B, M, E))
    wq, wk, wv = rng.standard_normal((D, C)), rng.standard_normal((D, E)), rng.standard_normal((D, E))
    wo, bo = rng.standard_normal((C, D)), (rng.standard_normal(C) if bias else None)
    return x, ctx, wq, wk, wv, wo, bo, heads


@pytest.mark.parametrize("case", CASES)
def test_cross_attention_finite_differences(case, rng, fd_check):
    x, ctx, wq, wk, wv, wo, bo, heads = _inputs(case, rng)
    out, cache = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads)
    G = rng.standard_normal(out.shape)
    grads = cross_attention_backward(G, cache)
    names = ["x", "ctx", "wq", "wk", "wv", "wo", "bo"]
    arrays = dict(zip(names, (x, ctx, wq, wk, wv, wo, bo)))
    fd_check(lambda: float(np.sum(cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads)[0] * G)),
             arrays, dict(zip(names, grads)), rng)


@pytest.mark.parametrize("case", CASES)
def test_cross_attention_matches_torch(case, rng):
    torch = pytest.importorskip("torch")
    x, ctx, wq, wk, wv, wo, bo, heads = _inputs(case, rng)
    out, cache = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads)
    G = rng.standard_normal(out.shape)
    grads = cross_attention_backward(G, cache)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, ctx, wq, wk, wv, wo, bo)]
    tx, tc, twq, twk, twv, two, tbo = ts
    B, L, M, D = x.shape[0], x.shape[1], ctx.shape[1], wq.shape[0]

    def heads_of(a, n):
        return a.reshape(B, n, heads, D // heads).transpose(1, 2)           # (B, H, n, d)

    q, k, v = heads_of(tx @ twq.T, L), heads_of(tc @ twk.T, M), heads_of(tc @ twv.T, M)
    o = torch.nn.functional.scaled_dot_product_attention(q, k, v)           # PyTorch's own softmax(QKᵀ/√d)V
    tout = o.transpose(1, 2).reshape(B, L, D) @ two.T + tbo
    tout.backward(torch.tensor(G))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name, g, t in zip(["x", "ctx", "wq", "wk", "wv", "wo", "bo"], grads, ts):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-11, err_msg=name)


def test_one_context_token_gives_every_query_its_value(rng):
    """M = 1: the softmax over one key is 1, so out = (c W_vᵀ) W_oᵀ + b_o for every image token."""
    x, ctx, wq, wk, wv, wo, bo, heads = _inputs((2, 4, 1, 5, 3, 2, 1), rng)
    out, _ = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads)
    want = ctx @ wv.T @ wo.T + bo
    np.testing.assert_allclose(out, np.broadcast_to(want, out.shape), rtol=1e-12, atol=1e-12)


def test_no_bias_float32_and_context_permutation(rng):
    x, ctx, wq, wk, wv, wo, _, _ = _inputs((2, 5, 3, 6, 7, 4, 2), rng, bias=False)
    out, cache = cross_attention_forward(x, ctx, wq, wk, wv, wo, None, 2)
    assert cross_attention_backward(np.ones_like(out), cache)[-1] is None
    # attention is a weighted *set* operation over the context tokens: their order does not matter
    out_perm, _ = cross_attention_forward(x, ctx[:, ::-1].copy(), wq, wk, wv, wo, None, 2)
    np.testing.assert_allclose(out, out_perm, rtol=1e-12, atol=1e-12)
    f32 = [a.astype(np.float32) for a in (x, ctx, wq, wk, wv, wo)]
    out32, c32 = cross_attention_forward(*f32, None, 2)
    assert out32.dtype == np.float32 and all(g is None or g.dtype == np.float32
                                             for g in cross_attention_backward(np.ones_like(out32), c32))
    np.testing.assert_allclose(out32, out, rtol=1e-4, atol=1e-4)


class SpyOps:
    """The NumPy reference ops, recording the shapes of each attention call and the caches it gave."""

    def __init__(self):
        from ddpm_ref.nn.backend import numpy_ops

        self.base, self.calls, self.caches = numpy_ops(), [], []

    def attention_forward(self, q, k, v):
        self.calls.append(("forward", q.shape, k.shape, v.shape))
        o, cache = self.base.attention_forward(q, k, v)
        self.caches.append(cache)
        return o, cache

    def attention_backward(self, do, cache):
        self.calls.append(("backward", do.shape, any(cache is c for c in self.caches)))
        return self.base.attention_backward(do, cache)


def test_heads_go_through_the_ops_attention(rng):
    """One ops.attention_forward call for all heads: (B·H, L, d) queries against (B·H, M, d) keys and
    values; the backward pass hands the same cache to ops.attention_backward; the results are those
    of the default (ops=None), to the bit."""
    x, ctx, wq, wk, wv, wo, bo, heads = _inputs((2, 5, 3, 6, 7, 4, 2), rng)
    spy = SpyOps()
    out, cache = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads, ops=spy)
    G = rng.standard_normal(out.shape)
    grads = cross_attention_backward(G, cache)
    assert spy.calls == [("forward", (4, 5, 2), (4, 3, 2), (4, 3, 2)), ("backward", (4, 5, 2), True)]
    out_ref, cache_ref = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads)
    np.testing.assert_array_equal(out, out_ref)
    for g, g_ref in zip(grads, cross_attention_backward(G, cache_ref)):
        np.testing.assert_array_equal(g, g_ref)
    assert cache_ref["p"].shape == (4, 5, 3)                   # P (B·H, L, M), kept for figures
    np.testing.assert_allclose(cache_ref["p"].sum(-1), 1.0, rtol=1e-14)


def test_bad_shapes_name_the_argument(rng):
    x, ctx, wq, wk, wv, wo, bo, _ = _inputs((2, 5, 3, 6, 7, 4, 1), rng)
    with pytest.raises(ValueError, match="ctx has 1 sequences"):
        cross_attention_forward(x, ctx[:1], wq, wk, wv, wo, bo)
    with pytest.raises(ValueError, match="wk must have shape"):
        cross_attention_forward(x, ctx, wq, wk[:, :3], wv, wo, bo)
    with pytest.raises(ValueError, match="heads=3"):
        cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads=3)
    with pytest.raises(ValueError, match="wo must"):
        cross_attention_forward(x, ctx, wq, wk, wv, wo.T, bo)
    out, cache = cross_attention_forward(x, ctx, wq, wk, wv, wo, bo)
    with pytest.raises(ValueError, match="dout must"):
        cross_attention_backward(out[:, :2], cache)
