"""Sinusoidal timestep encoding: the formula entry by entry, its bounds, shifts as rotations, the layouts."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddpm_ref.embeddings import (
    embedding_frequencies,
    interleaved_to_halves,
    sinusoidal_embedding,
    sinusoidal_embedding_halves,
)


@pytest.mark.parametrize("d, n", [(2, 10000.0), (6, 10000.0), (32, 10000.0), (10, 100.0)])
def test_formula_entry_by_entry(d, n):
    k = np.array([0, 1, 2, 17, 500, 999, 1000])
    P = sinusoidal_embedding(k, d, n)
    assert P.shape == (k.size, d) and P.dtype == np.float64
    for r, kk in enumerate(k):
        for i in range(d // 2):
            angle = float(kk) / n ** (2 * i / d)
            assert P[r, 2 * i] == pytest.approx(math.sin(angle), abs=1e-12)       # P(k, 2i)
            assert P[r, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-12)   # P(k, 2i+1)


def test_bounded_and_pairs_on_the_unit_circle():
    P = sinusoidal_embedding(np.arange(1, 1001), 64)
    assert np.all(np.abs(P) <= 1.0)
    np.testing.assert_allclose(P[:, 0::2] ** 2 + P[:, 1::2] ** 2, 1.0, rtol=1e-14)
    assert np.array_equal(sinusoidal_embedding(np.array([0]), 8)[0], np.tile([0.0, 1.0], 4))


@pytest.mark.parametrize("delta", [1, 7, 250])
def test_a_shift_is_a_fixed_rotation_per_frequency(delta):
    """P(k + Δ) = M(Δ)·P(k) with M(Δ) block-diagonal, one 2×2 rotation per frequency, the same for every k."""
    d = 16
    omega = [10000.0 ** (-2 * i / d) for i in range(d // 2)]
    M = np.zeros((d, d))
    for i, w in enumerate(omega):
        c, s = math.cos(w * delta), math.sin(w * delta)
        # [sin(a + b), cos(a + b)] = [[cos b, sin b], [−sin b, cos b]] · [sin a, cos a]
        M[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, s], [-s, c]]
    k = np.array([0, 1, 5, 123, 900])
    np.testing.assert_allclose(sinusoidal_embedding(k + delta, d), sinusoidal_embedding(k, d) @ M.T, atol=1e-12)
    for i in range(d // 2):                            # each block is a rotation: orthogonal, det 1
        block = M[2 * i:2 * i + 2, 2 * i:2 * i + 2]
        np.testing.assert_allclose(block @ block.T, np.eye(2), atol=1e-14)
        assert np.linalg.det(block) == pytest.approx(1.0)


def test_halves_layouts_and_the_permutation():
    k = np.array([1, 2, 3, 50, 1000])
    d = 12
    inter = sinusoidal_embedding(k, d)
    p = interleaved_to_halves(d)
    assert list(p) == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]
    np.testing.assert_array_equal(inter[:, p], sinusoidal_embedding_halves(k, d))
    cs = sinusoidal_embedding_halves(k, d, order="cos_sin")
    np.testing.assert_array_equal(cs, np.concatenate([inter[:, 1::2], inter[:, 0::2]], axis=1))
    # Ho et al.'s TensorFlow spacing: ω_i = n^{−i/(d/2 − 1)}, the last one exactly 1/n
    w = embedding_frequencies(d, frequency_spacing="d/2-1")
    np.testing.assert_allclose(w, [10000.0 ** (-i / 5) for i in range(6)], rtol=1e-14)
    assert w[-1] == pytest.approx(1e-4, rel=1e-14)
    ho = sinusoidal_embedding_halves(k, d, frequency_spacing="d/2-1")
    np.testing.assert_allclose(ho[:, :6], np.sin(k[:, None] * w), rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(k=st.lists(st.integers(0, 5000), min_size=0, max_size=20), half_d=st.integers(1, 40),
       dtype=st.sampled_from(["float32", "float64"]), as_float=st.booleans())
def test_property_shapes_and_dtypes(k, half_d, dtype, as_float):
    k = np.array(k, dtype=np.float64 if as_float else np.int64)
    P = sinusoidal_embedding(k, 2 * half_d, dtype=dtype)
    assert P.shape == (k.size, 2 * half_d) and P.dtype == np.dtype(dtype)
    assert np.all(np.abs(P) <= 1.0)
    # the formula written out with NumPy (not the function under test); float32 rounds to 6e-8,
    # float64 may differ from this route by a few ulps of the angle (k up to 5000: ~1e-12)
    angles = k[:, None] * 10000.0 ** (-2.0 * np.arange(half_d) / (2 * half_d))
    ref = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(k.size, 2 * half_d)
    np.testing.assert_allclose(P, ref, atol=1e-6 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("kwargs, complaint", [
    ({"k": np.array([1, 2]), "d": 7}, "d must be an even integer >= 2"),
    ({"k": np.array([1, 2]), "d": 0}, "d must be an even integer >= 2"),
    ({"k": np.array([1, 2]), "d": 4.0}, "d must be an even integer >= 2"),
    ({"k": np.array([1, 2]), "d": 4, "n": 1.0}, "n must be a finite real number > 1"),
    ({"k": np.array([1, 2]), "d": 4, "n": float("inf")}, "n must be a finite real number > 1"),
    ({"k": np.array([[1, 2]]), "d": 4}, r"k must be a 1-D array of shape \(N,\)"),
    ({"k": np.array([1.0, np.nan]), "d": 4}, "k holds NaN or infinite values"),
    ({"k": np.array([1.0, np.inf]), "d": 4}, "k holds NaN or infinite values"),
    ({"k": np.array([True]), "d": 4}, "k must be a 1-D array of real numbers"),
    ({"k": np.array(["1"]), "d": 4}, "k must be a 1-D array of real numbers"),
    ({"k": np.array([1]), "d": 4, "dtype": "int32"}, "dtype must be float32 or float64"),
])
def test_bad_input(kwargs, complaint):
    with pytest.raises(ValueError, match=complaint):
        sinusoidal_embedding(**kwargs)


def test_bad_input_variants():
    with pytest.raises(ValueError, match=r"order='cos\|sin' is not known; choose one of 'sin_cos', 'cos_sin'"):
        sinusoidal_embedding_halves(np.array([1]), 4, order="cos|sin")
    with pytest.raises(ValueError, match="frequency_spacing='d-1' is not known; choose one of 'd', 'd/2-1'"):
        embedding_frequencies(4, frequency_spacing="d-1")
    with pytest.raises(ValueError, match=r"frequency_spacing='d/2-1' needs d >= 4"):
        embedding_frequencies(2, frequency_spacing="d/2-1")
