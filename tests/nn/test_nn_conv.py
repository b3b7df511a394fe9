"""conv2d_forward / conv2d_backward: finite differences, PyTorch autograd, dtypes, bad input."""

import numpy as np
import pytest

from ddpm_ref.nn import conv2d_backward, conv2d_forward, conv2d_output_size

# (N, C, H, W, K, R, S, stride, padding): odd sizes, both strides, both paddings, 1x1, non-square
CASES = [
    (2, 3, 7, 5, 4, 3, 3, 1, 1),
    (2, 3, 7, 6, 4, 3, 3, 2, 1),
    (1, 2, 6, 6, 3, 3, 3, 1, 0),
    (2, 2, 7, 7, 3, 3, 3, 2, 0),
    (2, 5, 4, 3, 3, 1, 1, 1, 0),
    (1, 2, 5, 6, 3, 3, 2, 1, 1),
    (1, 3, 5, 5, 2, 1, 1, 2, 0),
    (1, 2, 3, 3, 2, 3, 3, 1, 2),     # padding R - 1: the widest the transposed-conv dx allows
    (1, 2, 3, 4, 2, 1, 1, 1, 1),     # padding > R - 1: dx by col2im at stride 1
]


def _inputs(rng, case, bias=True, dtype=np.float64):
    N, C, H, W, K, R, S, stride, padding = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype) if bias else None
    return x, w, b, stride, padding


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_finite_differences(case, bias, rng, fd_check):
    x, w, b, stride, padding = _inputs(rng, case, bias)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    G = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(G, cache)
    assert (db is None) == (b is None)
    arrays = {"x": x, "w": w} | ({"b": b} if bias else {})
    grads = {"x": dx, "w": dw} | ({"b": db} if bias else {})
    fd_check(lambda: float(np.sum(conv2d_forward(x, w, b, stride, padding)[0] * G)), arrays, grads, rng)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_torch(case, bias, rng):
    torch = pytest.importorskip("torch")
    x, w, b, stride, padding = _inputs(rng, case, bias)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    G = rng.standard_normal(y.shape)
    dx, dw, db = conv2d_backward(G, cache)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    yt.backward(torch.tensor(G))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_output_size_formula():
    assert conv2d_output_size(8, 3, 1, 1) == 8
    assert conv2d_output_size(8, 3, 2, 1) == 4
    assert conv2d_output_size(7, 3, 2, 0) == 3


@pytest.mark.parametrize("case", CASES[:3])
def test_float32_in_float32_out(case, rng):
    x, w, b, stride, padding = _inputs(rng, case, True, np.float32)
    y, cache = conv2d_forward(x, w, b, stride, padding)
    dx, dw, db = conv2d_backward(np.ones(y.shape, np.float32), cache)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == np.float32
    y64, _ = conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding)
    np.testing.assert_allclose(y, y64, rtol=1e-4, atol=1e-4)


def test_memory_layout_does_not_matter(rng, to_channels_last):
    """NCHW-contiguous, channels-last and sliced inputs give the same numbers."""
    x, w, b, stride, padding = _inputs(rng, CASES[0])
    y1, c1 = conv2d_forward(x, w, b, stride, padding)
    y2, c2 = conv2d_forward(to_channels_last(x), w, b, stride, padding)
    big = np.concatenate([x, x], axis=1)
    y3, _ = conv2d_forward(big[:, : x.shape[1]], w, b, stride, padding)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)
    G = rng.standard_normal(y1.shape)
    for a, b_ in zip(conv2d_backward(G, c1), conv2d_backward(to_channels_last(G), c2)):
        np.testing.assert_allclose(a, b_, rtol=1e-13, atol=1e-13)


def test_bad_inputs_raise(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    with pytest.raises(ValueError, match="channels"):
        conv2d_forward(x, rng.standard_normal((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="axes"):
        conv2d_forward(x[0], w)
    with pytest.raises(ValueError, match="dtype"):
        conv2d_forward(x, w.astype(np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        conv2d_forward(x.astype(np.int64), w)
    with pytest.raises(ValueError, match="b must have shape"):
        conv2d_forward(x, w, np.zeros(3))
    with pytest.raises(ValueError, match="stride"):
        conv2d_forward(x, w, None, stride=0)
    with pytest.raises(ValueError, match="padding"):
        conv2d_forward(x, w, None, padding=-1)
    with pytest.raises(ValueError, match="does not fit"):
        conv2d_forward(x[:, :, :2, :2], w)
    y, cache = conv2d_forward(x, w)
    with pytest.raises(ValueError, match="shape"):
        conv2d_backward(y[:, :, :-1], cache)
    with pytest.raises(ValueError, match="cache"):
        conv2d_backward(y, {"op": "linear"})
