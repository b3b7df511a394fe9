"""Classic 2-D toy sets drawn from a Generator: two moons and a swiss roll.

Layer: loop (data).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.data._common import check_finite_result, check_noise, float_dtype

__all__ = ["make_moons", "make_swiss_roll"]


def make_moons(n: int, rng=0, noise: float = 0.05, dtype="float64"):
    """Two interleaving half circles, ``(x, y)``: x (n, 2), y (n,) the moon (0 or 1).

    Upper moon: (cos θ, sin θ); lower moon: (1 − cos θ, 1/2 − sin θ), θ ~ U[0, π], plus
    N(0, noise²) jitter; then centred at (1/2, 1/4) and scaled by 0.7, so that x lies in about
    [−1.1, 1.1] × [−0.6, 0.6]. ``rng``: a Generator or an int seed.
    """
    n, noise, dt = check_positive_int("n", n), check_noise(noise), float_dtype(dtype)
    g = as_generator(rng)
    y = (g.random(n) < 0.5).astype(np.int64)
    theta = g.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    lower = np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):       # a huge noise is refused just below
        x = np.where(y[:, None] == 0, upper, lower) + noise * g.standard_normal((n, 2))
        x = ((x - np.array([0.5, 0.25])) * 0.7).astype(dt)
    return check_finite_result(x, "noise"), y


def make_swiss_roll(n: int, rng=0, noise: float = 0.05, dtype="float64"):
    """A 2-D swiss roll (a spiral), ``(x, None)``: x (n, 2) in about [−0.9, 1.2]².

    Angle s = 1.5π(1 + 2u), u ~ U[0, 1]; point (s cos s, s sin s) / 12, plus N(0, noise²).
    Unlabelled: the second element is None.
    """
    n, noise, dt = check_positive_int("n", n), check_noise(noise), float_dtype(dtype)
    g = as_generator(rng)
    s = 1.5 * np.pi * (1.0 + 2.0 * g.random(n))
    x = np.stack([s * np.cos(s), s * np.sin(s)], axis=1) / 12.0
    with np.errstate(over="ignore", invalid="ignore"):       # a huge noise is refused just below
        x = (x + noise * g.standard_normal((n, 2))).astype(dt)
    return check_finite_result(x, "noise"), None

