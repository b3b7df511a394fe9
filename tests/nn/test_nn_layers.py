"""The other layers: linear, group norm, SiLU, upsample, add, concat, dropout, time MLP, class
embedding. Each against finite differences (float64) and PyTorch autograd, plus dtypes and errors."""

import numpy as np
import pytest

import ddpm_ref.nn as nn
from ddpm_ref.embeddings import sinusoidal_embedding


def _proj_loss(fn, G):
    return lambda: float(np.sum(fn() * G))


# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("x_shape", [(5, 3), (2, 4, 3), (3,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(x_shape, bias, rng, fd_check):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((4, 3))
    b = rng.standard_normal(4) if bias else None
    y, cache = nn.linear_forward(x, w, b)
    assert y.shape == (*x_shape[:-1], 4)
    G = rng.standard_normal(y.shape)
    dx, dw, db = nn.linear_backward(G, cache)
    arrays = {"x": x, "w": w} | ({"b": b} if bias else {})
    grads = {"x": dx, "w": dw} | ({"b": db} if bias else {})
    fd_check(_proj_loss(lambda: nn.linear_forward(x, w, b)[0], G), arrays, grads, rng)


@pytest.mark.parametrize("x_shape", [(5, 3), (2, 4, 3), (3,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(x_shape, bias, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((4, 3))
    b = rng.standard_normal(4) if bias else None
    y, cache = nn.linear_forward(x, w, b)
    G = rng.standard_normal(y.shape)
    dx, dw, db = nn.linear_backward(G, cache)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    torch.nn.functional.linear(xt, wt, bt).backward(torch.tensor(G))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_linear_errors(rng):
    with pytest.raises(ValueError, match="features"):
        nn.linear_forward(rng.standard_normal((2, 3)), rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="b must have shape"):
        nn.linear_forward(rng.standard_normal((2, 3)), rng.standard_normal((4, 3)), np.zeros(3))


# ---------------------------------------------------------------- group norm

@pytest.mark.parametrize("shape,G", [((2, 6, 5, 3), 3), ((3, 4, 4, 4), 1), ((2, 4, 3, 3), 4), ((1, 8, 1, 1), 2)])
def test_groupnorm(shape, G, rng, fd_check, to_channels_last):
    x = rng.standard_normal(shape) * 3 + 2            # far from zero mean, unit variance
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y, cache = nn.groupnorm_forward(x, gamma, beta, G)
    G_ = rng.standard_normal(y.shape)
    dx, dg, db = nn.groupnorm_backward(G_, cache)
    fd_check(_proj_loss(lambda: nn.groupnorm_forward(x, gamma, beta, G)[0], G_),
             {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dg, "beta": db}, rng)
    # channels-last input: same numbers
    y2, c2 = nn.groupnorm_forward(to_channels_last(x), gamma, beta, G)
    np.testing.assert_allclose(y, y2, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape,G", [((2, 6, 5, 3), 3), ((3, 4, 4, 4), 1), ((2, 4, 3, 3), 4), ((1, 8, 1, 1), 2)])
def test_groupnorm_matches_torch(shape, G, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y, cache = nn.groupnorm_forward(x, gamma, beta, G)
    G_ = rng.standard_normal(y.shape)
    dx, dg, db = nn.groupnorm_backward(G_, cache)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    yt = torch.nn.functional.group_norm(ts[0], G, ts[1], ts[2], eps=1e-5)
    yt.backward(torch.tensor(G_))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    for a, t in zip((dx, dg, db), ts):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-10, atol=1e-11)


def test_groupnorm_float32_with_large_mean(rng):
    """Two-pass statistics: a mean 1000x the spread still normalises correctly in float32."""
    x = (rng.standard_normal((2, 4, 4, 4)) + 1000.0).astype(np.float32)
    y, _ = nn.groupnorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32), 2)
    assert y.dtype == np.float32
    y64, _ = nn.groupnorm_forward(x.astype(np.float64), np.ones(4), np.zeros(4), 2)
    np.testing.assert_allclose(y, y64, atol=2e-3)


def test_groupnorm_errors(rng):
    x = rng.standard_normal((2, 6, 3, 3))
    with pytest.raises(ValueError, match="divide"):
        nn.groupnorm_forward(x, np.ones(6), np.zeros(6), 4)
    with pytest.raises(ValueError, match="gamma and beta"):
        nn.groupnorm_forward(x, np.ones(5), np.zeros(6), 3)
    with pytest.raises(ValueError, match="groups"):
        nn.groupnorm_forward(x, np.ones(6), np.zeros(6), 0)


# ---------------------------------------------------------------- SiLU

def test_silu(rng, fd_check):
    x = rng.standard_normal((3, 4, 2)) * 4
    y, cache = nn.silu_forward(x)
    G = rng.standard_normal(y.shape)
    dx = nn.silu_backward(G, cache)
    fd_check(_proj_loss(lambda: nn.silu_forward(x)[0], G), {"x": x}, {"x": dx}, rng)


def test_silu_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 2)) * 4
    y, cache = nn.silu_forward(x)
    G = rng.standard_normal(y.shape)
    dx = nn.silu_backward(G, cache)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.silu(xt)
    yt.backward(torch.tensor(G))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_silu_extremes_float32():
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    with np.errstate(all="raise"):
        y, cache = nn.silu_forward(x)
        dx = nn.silu_backward(np.ones_like(x), cache)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, [0, 0, 0, 100, 1e4], atol=1e-30)
    np.testing.assert_allclose(dx, [0, 0, 0.5, 1, 1], atol=1e-30)


# ---------------------------------------------------------------- upsample, add, concat

def test_upsample(rng, fd_check):
    x = rng.standard_normal((2, 3, 3, 2))
    y, cache = nn.upsample_forward(x)
    assert y.shape == (2, 3, 6, 4)
    np.testing.assert_array_equal(y[:, :, 2 * 1 + 1, 2 * 1], x[:, :, 1, 1])
    G = rng.standard_normal(y.shape)
    dx = nn.upsample_backward(G, cache)
    fd_check(_proj_loss(lambda: nn.upsample_forward(x)[0], G), {"x": x}, {"x": dx}, rng)


def test_upsample_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 3, 2))
    y, cache = nn.upsample_forward(x)
    G = rng.standard_normal(y.shape)
    dx = nn.upsample_backward(G, cache)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, scale_factor=2, mode="nearest")
    yt.backward(torch.tensor(G))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 1), (2, 4, 3, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_upsample_conv_is_upsample_then_conv(shape, bias, rng, fd_check):
    """The fused layer equals nearest 2x upsampling followed by a 3x3 conv, values and gradients."""
    x = rng.standard_normal(shape)
    w = rng.standard_normal((3, shape[1], 3, 3))
    b = rng.standard_normal(3) if bias else None
    y, cache = nn.upsample_conv_forward(x, w, b, nn)
    u, c_up = nn.upsample_forward(x)
    y_ref, c_conv = nn.conv2d_forward(u, w, b, 1, 1)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    G = rng.standard_normal(y.shape)
    dx, dw, db = nn.upsample_conv_backward(G, cache)
    du, dw_ref, db_ref = nn.conv2d_backward(G, c_conv)
    np.testing.assert_allclose(dx, nn.upsample_backward(du, c_up), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    assert (db is None) == (not bias)
    if bias:
        np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)
    arrays = {"x": x, "w": w} | ({"b": b} if bias else {})
    grads = {"x": dx, "w": dw} | ({"b": db} if bias else {})
    fd_check(_proj_loss(lambda: nn.upsample_conv_forward(x, w, b, nn)[0], G), arrays, grads, rng)
    y32, _ = nn.upsample_conv_forward(x.astype(np.float32), w.astype(np.float32), None, nn)
    assert y32.dtype == np.float32
    with pytest.raises(ValueError, match="3, 3"):
        nn.upsample_conv_forward(x, w[:, :, :2], b, nn)


def test_add_and_concat(rng, fd_check):
    a, b = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    y, cache = nn.add_forward(a, b)
    G = rng.standard_normal(y.shape)
    da, db = nn.add_backward(G, cache)
    fd_check(_proj_loss(lambda: nn.add_forward(a, b)[0], G), {"a": a, "b": b}, {"a": da, "b": db}, rng)
    c = rng.standard_normal((2, 5, 2, 2))
    y, cache = nn.concat_forward(a, c)
    assert y.shape == (2, 8, 2, 2)
    np.testing.assert_array_equal(y, np.concatenate([a, c], axis=1))
    G = rng.standard_normal(y.shape)
    da, dc = nn.concat_backward(G, cache)
    fd_check(_proj_loss(lambda: nn.concat_forward(a, c)[0], G), {"a": a, "c": c}, {"a": da, "c": dc}, rng)
    with pytest.raises(ValueError, match="same shape"):
        nn.add_forward(a, c)
    with pytest.raises(ValueError, match="agree"):
        nn.concat_forward(a, c[:1])


# ---------------------------------------------------------------- dropout

def test_dropout(rng, fd_check):
    x = rng.standard_normal((4, 3, 5, 5))
    y, cache = nn.dropout_forward(x, 0.3, np.random.default_rng(1))
    kept = y != 0
    assert 0.5 < kept.mean() < 0.9
    np.testing.assert_allclose(y[kept], x[kept] / 0.7)
    G = rng.standard_normal(y.shape)
    dx = nn.dropout_backward(G, cache)
    loss = _proj_loss(lambda: nn.dropout_forward(x, 0.3, np.random.default_rng(1))[0], G)
    fd_check(loss, {"x": x}, {"x": dx}, rng)
    y2, _ = nn.dropout_forward(x, 0.3, np.random.default_rng(1))
    np.testing.assert_array_equal(y, y2)                       # same seed, same mask
    y0, c0 = nn.dropout_forward(x, 0.0, np.random.default_rng(1))
    assert y0 is x and nn.dropout_backward(G, c0) is G         # p = 0: the identity
    assert nn.dropout_forward(x, 0.5, None)[0] is x            # no generator: evaluation
    with pytest.raises(ValueError, match="probability"):
        nn.dropout_forward(x, 1.0, rng)


# ---------------------------------------------------------------- time MLP, class embedding

def test_time_mlp(rng, fd_check):
    t = np.array([1, 7, 1000])
    w1, b1 = rng.standard_normal((12, 6)), rng.standard_normal(12)
    w2, b2 = rng.standard_normal((5, 12)), rng.standard_normal(5)
    e, cache = nn.time_mlp_forward(t, w1, b1, w2, b2)
    code = sinusoidal_embedding(t, 6)
    h = code @ w1.T + b1
    np.testing.assert_allclose(e, (h / (1 + np.exp(-h))) @ w2.T + b2, rtol=1e-12)
    G = rng.standard_normal(e.shape)
    grads = nn.time_mlp_backward(G, cache)
    fd_check(_proj_loss(lambda: nn.time_mlp_forward(t, w1, b1, w2, b2)[0], G),
             {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, dict(zip(("w1", "b1", "w2", "b2"), grads)), rng)
    e32, _ = nn.time_mlp_forward(t, *(a.astype(np.float32) for a in (w1, b1, w2, b2)))
    assert e32.dtype == np.float32
    with pytest.raises(ValueError, match="integer"):
        nn.time_mlp_forward(t.astype(float), w1, b1, w2, b2)


def test_class_embedding(rng, fd_check):
    table = rng.standard_normal((4, 3))                      # 3 classes + the null row
    y = np.array([0, 3, 0, 2])
    e, cache = nn.class_embedding_forward(y, table)
    np.testing.assert_array_equal(e, table[y])
    G = rng.standard_normal(e.shape)
    dtable = nn.class_embedding_backward(G, cache)
    np.testing.assert_allclose(dtable[0], G[0] + G[2])        # repeated labels add up
    assert not dtable[1].any()
    fd_check(_proj_loss(lambda: nn.class_embedding_forward(y, table)[0], G), {"table": table}, {"table": dtable}, rng)
    with pytest.raises(ValueError, match="labels must lie"):
        nn.class_embedding_forward(np.array([4]), table)


def test_class_embedding_matches_torch(rng):
    torch = pytest.importorskip("torch")
    table = rng.standard_normal((4, 3))
    y = np.array([0, 3, 0, 2])
    e, cache = nn.class_embedding_forward(y, table)
    G = rng.standard_normal(e.shape)
    dtable = nn.class_embedding_backward(G, cache)
    tt = torch.tensor(table, requires_grad=True)
    torch.nn.functional.embedding(torch.tensor(y), tt).backward(torch.tensor(G))
    np.testing.assert_allclose(dtable, tt.grad.numpy(), rtol=1e-14, atol=1e-14)


def test_module_is_an_ops_object():
    ops = nn.numpy_ops()
    assert ops is nn
    for name in ("conv2d_forward", "conv2d_backward", "attention_forward", "attention_backward"):
        assert callable(getattr(ops, name))
    assert nn.array_module(np.zeros(1)) is np


def test_variance_scaling_init(rng):
    w = nn.variance_scaling(rng, (64, 32, 3, 3), 1.0, "float32")
    limit = np.sqrt(3.0 / ((32 * 9 + 64 * 9) / 2))
    assert w.dtype == np.float32 and np.abs(w).max() <= limit
    assert abs(w.var() - limit ** 2 / 3) < 0.05 * limit ** 2 / 3
    assert not nn.variance_scaling(rng, (3, 3), 0.0).any()


# ---------------------------------------------------------------- issue 9: the wrong error, or silent NaN

_C = np.full((1, 4, 2, 2), 3.0)                 # a constant input: every group has σ² = 0


@pytest.mark.parametrize("call, match", [
    (lambda: nn.groupnorm_forward(_C, np.ones(4), np.zeros(4), 2, eps=0.0), "eps must be"),
    (lambda: nn.groupnorm_forward(_C, np.ones(4), np.zeros(4), 2, eps=-1e-5), "eps must be"),
    (lambda: nn.groupnorm_silu_forward(_C.astype(np.float32), np.ones(4, np.float32), np.zeros(4, np.float32), 2,
                                       eps=1e-300), "eps must be"),      # 0 once cast to float32
    (lambda: nn.groupnorm_forward(np.ones((1, 4, 0, 2)), np.ones(4), np.zeros(4), 2), "pixel"),
    (lambda: nn.attention_forward(*(np.ones((2, 3, 0)),) * 3), "D >= 1"),
    (lambda: nn.attention_forward(*(np.ones((2, 0, 3)),) * 3), "L >= 1"),
    (lambda: nn.conv2d_output_size(5, 3, 0), "stride"),
    (lambda: nn.conv2d_output_size(2, 5, 1, 1), "kernel=5"),
    (lambda: nn.sigmoid(None), "x must be"),
    (lambda: nn.softmax(None), "s must be"),
    (lambda: nn.softmax(np.arange(3)), "s must be float32 or float64"),
    (lambda: nn.softmax(np.ones((2, 0))), "s must have at least one entry"),
    (lambda: nn.softmax(np.ones(3), axis=1), "axis"),
    (lambda: nn.linear_forward(np.ones((0, 3)), np.ones((0, 3))), "w \\(out, in\\)"),
    (lambda: nn.linear_forward(np.ones((2, 0)), np.ones((4, 0))), "w \\(out, in\\)"),
    (lambda: nn.conv2d_backward(np.ones((1, 1, 1, 1)), {"op": "conv2d"}), "cache lacks xpad"),
    (lambda: nn.dropout_backward(None, nn.dropout_forward(np.ones(2), 0.0, None)[1]), "dy must be"),
    (lambda: nn.variance_scaling(np.random.default_rng(0), (3, 3), float("nan")), "scale"),
    (lambda: nn.class_embedding_forward(np.array([0]), np.ones((0, 3))), "table"),
])
def test_bad_arguments_raise_valueerror_naming_them(call, match):
    """The cases of issue 9: each gave NaN, ZeroDivisionError, AttributeError, UFuncTypeError,
    KeyError or NumPy's own message before."""
    with pytest.raises(ValueError, match=match):
        call()


def test_small_positive_eps_keeps_a_constant_group_finite():
    """The default eps on a constant input: y = β exactly (x − μ = 0), and finite gradients."""
    y, cache = nn.groupnorm_forward(_C, np.ones(4), np.arange(4.0), 2)
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0)[None, :, None, None], _C.shape))
    assert all(np.isfinite(g).all() for g in nn.groupnorm_backward(np.ones_like(_C), cache))
