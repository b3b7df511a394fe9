r"""Sinusoidal timestep encodings: how the U-Net is told which t it is denoising.

Layer: math (imports NumPy and other math modules only; nothing above).

The DDPM U-Net (Ho et al. 2020, Appendix B) gets the timestep through the Transformer's
sinusoidal position encoding (Vaswani et al. 2017, section 3.5). For a position k (here the
timestep t = 1..T, passed as is) and an even width d, column 2i holds a sine and column 2i + 1 a
cosine of the same frequency:

.. math::

    P(k, 2i)   = \sin\!\left(k / n^{2i/d}\right), \qquad
    P(k, 2i+1) = \cos\!\left(k / n^{2i/d}\right), \qquad i = 0, \dots, d/2 - 1,

with n = 10000. Low columns turn fast (wavelength 2π), high columns slowly (wavelength up to
2π·n), so nearby timesteps get similar rows and distant ones different rows.

Codebases disagree on the column order, and it matters when you load someone else's weights:

* ``sinusoidal_embedding`` (this project): interleaved, exactly the formula above.
* ``sinusoidal_embedding_halves(order="sin_cos")``: ``[sin | cos]`` halves with the same
  frequencies (diffusers' ``get_timestep_embedding`` with ``flip_sin_to_cos=False``).
* ``sinusoidal_embedding_halves(order="cos_sin")``: ``[cos | sin]`` (improved-diffusion's
  ``timestep_embedding``).
* Ho et al.'s own TensorFlow code uses ``[sin | cos]`` with frequencies n^{-i/(d/2 - 1)} instead
  of n^{-2i/d}: ``frequency_spacing="d/2-1"``.

All three layouts hold the same numbers up to a permutation of the columns (with the default
spacing); ``interleaved_to_halves`` gives that permutation.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_choice

__all__ = [
    "sinusoidal_embedding",
    "sinusoidal_embedding_halves",
    "embedding_frequencies",
    "interleaved_to_halves",
]


def embedding_frequencies(d: int, n: float = 10000.0, frequency_spacing: str = "d") -> np.ndarray:
    r"""The d/2 angular frequencies ω_i = n^{-2i/d}, i = 0..d/2-1 (float64).

    ``frequency_spacing="d/2-1"`` gives Ho et al.'s TensorFlow spacing ω_i = n^{-i/(d/2-1)}
    (which needs d >= 4), so that the last frequency is exactly 1/n.
    """
    d, n = _check_embedding_frequencies(d, n, frequency_spacing)
    i = np.arange(d // 2, dtype=np.float64)
    return n ** (-2.0 * i / d) if frequency_spacing == "d" else n ** (-i / (d // 2 - 1))


def sinusoidal_embedding(k, d: int, n: float = 10000.0, *, dtype="float64") -> np.ndarray:
    r"""Interleaved sinusoidal encoding of positions k, shape (len(k), d).

    .. math::

        P(k, 2i) = \sin(k / n^{2i/d}), \qquad P(k, 2i+1) = \cos(k / n^{2i/d})

    (Vaswani et al. 2017, sec. 3.5; used for t by Ho et al. 2020, App. B). Timesteps are passed
    as is, t = 1..T in this project's convention (codebases that index 0..T-1 feed t - 1).

    Args:
        k: 1-D array of N finite positions (int or float).
        d: even width >= 2.
        n: the base of the wavelengths (> 1), 10000 as in the Transformer.
        dtype: float64 (default) or float32 for the result; it is computed in float64.

    Raises:
        ValueError: k not 1-D, not numeric or not finite; d odd or < 2; n <= 1 or not finite.
    """
    k, d, n, dtype = _check_sinusoidal_embedding(k, d, n, dtype)
    angles = k[:, None] * embedding_frequencies(d, n)[None, :]    # (N, d/2): k / n^{2i/d}
    out = np.empty((k.shape[0], d), dtype=np.float64)
    out[:, 0::2] = np.sin(angles)                                # P(k, 2i)
    out[:, 1::2] = np.cos(angles)                                # P(k, 2i+1)
    return out.astype(dtype, copy=False)


def sinusoidal_embedding_halves(
    k, d: int, n: float = 10000.0, *, order: str = "sin_cos", frequency_spacing: str = "d",
    dtype="float64",
) -> np.ndarray:
    r"""The encoding as two halves, ``[sin | cos]`` or ``[cos | sin]``, shape (len(k), d).

    .. math::

        E(k, i) = \sin(\omega_i k), \quad E(k, d/2 + i) = \cos(\omega_i k) \quad (\text{order="sin\_cos"})

    with ω_i = n^{-2i/d} (default), or n^{-i/(d/2-1)} for ``frequency_spacing="d/2-1"`` (Ho et al.'s
    ``get_timestep_embedding``). ``order="cos_sin"`` matches improved-diffusion. Offered to compare
    with other codebases; this project's U-Net uses ``sinusoidal_embedding``.
    """
    k, d, n, dtype = _check_sinusoidal_embedding_halves(k, d, n, order, frequency_spacing, dtype)
    angles = k[:, None] * embedding_frequencies(d, n, frequency_spacing)[None, :]   # ω_i k
    s, c = np.sin(angles), np.cos(angles)
    return np.concatenate([s, c] if order == "sin_cos" else [c, s], axis=1).astype(dtype, copy=False)


def interleaved_to_halves(d: int) -> np.ndarray:
    """Column permutation p with ``sinusoidal_embedding(k, d)[:, p] == ..._halves(k, d)``.

    p = [0, 2, 4, ..., d-2, 1, 3, ..., d-1]: the sines first, then the cosines.
    """
    d, _ = _check_d_n(d, 10000.0)
    return np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])


# ------------------------------------------------------------------ argument checks, one per public function
def _check_k(k) -> np.ndarray:
    """k: a finite 1-D array of positions (ints or floats), returned as float64."""
    arr = np.asarray(k)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"k must be a 1-D array of real numbers (timesteps), got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"k must be a 1-D array of shape (N,), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("k holds NaN or infinite values; all positions must be finite")
    return arr


def _check_d_n(d, n) -> tuple[int, float]:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 2 or d % 2:
        raise ValueError(f"d must be an even integer >= 2 (sin and cos come in pairs), got {d!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not np.isfinite(n) or n <= 1:
        raise ValueError(f"n must be a finite real number > 1 (the longest wavelength scale), got {n!r}")
    return int(d), float(n)


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_embedding_frequencies(d, n, frequency_spacing):
    d, n = _check_d_n(d, n)
    check_choice("frequency_spacing", frequency_spacing, ("d", "d/2-1"))
    if frequency_spacing == "d/2-1" and d < 4:
        raise ValueError("frequency_spacing='d/2-1' needs d >= 4 (it divides by d/2 - 1)")
    return d, n


def _check_sinusoidal_embedding(k, d, n, dtype):
    return (_check_k(k), *_check_d_n(d, n), _check_dtype(dtype))


def _check_sinusoidal_embedding_halves(k, d, n, order, frequency_spacing, dtype):
    check_choice("order", order, ("sin_cos", "cos_sin"))
    k = _check_k(k)
    d, n = _check_embedding_frequencies(d, n, frequency_spacing)
    return k, d, n, _check_dtype(dtype)
