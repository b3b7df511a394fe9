"""Fused layers used by the U-Net for speed: each must equal the composition it replaces.

``groupnorm_silu`` = ``silu(groupnorm(x))``: values and all three gradients, float64 and float32,
channels-last input, an extreme input (no overflow), finite differences, and errors.
"""

import numpy as np
import pytest

import ddpm_ref.nn as nn


def _composition(x, gamma, beta, G, dy):
    h, c_gn = nn.groupnorm_forward(x, gamma, beta, G)
    y, c_act = nn.silu_forward(h)
    dx, dg, db = nn.groupnorm_backward(nn.silu_backward(dy, c_act), c_gn)
    return y, dx, dg, db


@pytest.mark.parametrize("shape,G", [((2, 6, 5, 3), 3), ((3, 4, 4, 4), 1), ((2, 8, 3, 3), 8), ((1, 8, 1, 1), 2)])
def test_groupnorm_silu_equals_composition_float64(shape, G, rng, fd_check, to_channels_last):
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y, cache = nn.groupnorm_silu_forward(x, gamma, beta, G)
    dy = rng.standard_normal(y.shape)
    dx, dg, db = nn.groupnorm_silu_backward(dy, cache)
    for got, ref in zip((y, dx, dg, db), _composition(x, gamma, beta, G, dy)):
        assert got.dtype == np.float64 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    fd_check(lambda: float(np.sum(nn.groupnorm_silu_forward(x, gamma, beta, G)[0] * dy)),
             {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dg, "beta": db}, rng)
    y2, c2 = nn.groupnorm_silu_forward(to_channels_last(x), gamma, beta, G)   # same numbers
    np.testing.assert_allclose(y2, y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(nn.groupnorm_silu_backward(to_channels_last(dy), c2)[0], dx, rtol=1e-12, atol=1e-12)


def test_groupnorm_silu_float32_matches_composition(rng):
    x = (rng.standard_normal((4, 16, 8, 8)) * 2 + 1).astype(np.float32)
    gamma = (1 + 0.3 * rng.standard_normal(16)).astype(np.float32)
    beta = (0.3 * rng.standard_normal(16)).astype(np.float32)
    y, cache = nn.groupnorm_silu_forward(x, gamma, beta, 4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = (y, *nn.groupnorm_silu_backward(dy, cache))
    for a, b in zip(got, _composition(x, gamma, beta, 4, dy)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))


def test_groupnorm_silu_extreme_scale_float32():
    """γ = 1e4 pushes z to ±1e4: no overflow warning, y and dy/dx stay finite (as for SiLU)."""
    x = np.linspace(-1, 1, 2 * 4 * 2 * 2, dtype=np.float32).reshape(2, 4, 2, 2)
    gamma = np.full(4, 1e4, np.float32)
    with np.errstate(all="raise"):
        y, cache = nn.groupnorm_silu_forward(x, gamma, np.zeros(4, np.float32), 2)
        dx, dg, db = nn.groupnorm_silu_backward(np.ones_like(x), cache)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)) and np.all(y >= -0.3)


def test_groupnorm_silu_errors(rng):
    x = rng.standard_normal((2, 6, 3, 3))
    with pytest.raises(ValueError, match="divide"):
        nn.groupnorm_silu_forward(x, np.ones(6), np.zeros(6), 4)
    y, cache = nn.groupnorm_silu_forward(x, np.ones(6), np.zeros(6), 3)
    with pytest.raises(ValueError, match="shape"):
        nn.groupnorm_silu_backward(np.ones((2, 6, 3, 2)), cache)
    with pytest.raises(ValueError):
        nn.groupnorm_silu_backward(y, {"op": "groupnorm"})
