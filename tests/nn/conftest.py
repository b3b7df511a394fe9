"""Helpers for the gradient tests of ddpm_ref.nn and the U-Net.

The finite-difference check
---------------------------
A layer's backward pass gives the gradient of a scalar. We make one from the layer's output with
a fixed random projection, L = Σ out ⊙ G (G standard normal), so that every output element
matters and one backward call with dout = G gives dL/d(every input). Each checked entry θ_i is
compared with the centred difference

    (L(θ + h e_i) − L(θ − h e_i)) / 2h,

whose error is O(h²) from truncation plus O(ε·|L|/h) from rounding. In float64 with h = 1e-6
both are ≈ 1e-10 relative, so a correct backward pass gives relative errors around 1e-9 and a
wrong term gives errors of order 1. The threshold, ``FD_TOL = 1e-6``, sits between with room to
spare. The relative error of a set of entries is ‖a − n‖ / max(‖a‖ + ‖n‖, 1e-12) (a: analytic,
n: numerical), reported in every assertion message.
"""

import numpy as np
import pytest

FD_TOL = 1e-6


def _pick(size, rng, max_entries):
    if size <= max_entries:
        return np.arange(size)
    return rng.choice(size, max_entries, replace=False)


def numerical_check(loss, arrays, grads, rng, h=1e-6, max_entries=40):
    """Compare ``grads[name]`` with centred differences of ``loss()`` over ``arrays[name]``.

    ``loss`` reads the arrays in ``arrays`` (perturbed in place, then restored). Checks every
    entry of small arrays, ``max_entries`` random entries of larger ones. Returns
    {name: relative error}.
    """
    errors = {}
    for name, arr in arrays.items():
        flat = arr.reshape(-1)                   # a view: arrays must be contiguous
        assert np.shares_memory(flat, arr), f"{name} must be C-contiguous for the check"
        idx = _pick(flat.size, rng, max_entries)
        num = np.empty(len(idx))
        for j, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + h
            up = loss()
            flat[i] = old - h
            down = loss()
            flat[i] = old
            num[j] = (up - down) / (2 * h)
        ana = np.asarray(grads[name], dtype=np.float64).reshape(-1)[idx]
        errors[name] = float(np.linalg.norm(ana - num) / max(np.linalg.norm(ana) + np.linalg.norm(num), 1e-12))
    return errors


@pytest.fixture
def fd_check():
    """fd_check(loss, arrays, grads, rng, ...) -> {name: rel error}; asserts each <= FD_TOL."""

    def check(loss, arrays, grads, rng, h=1e-6, max_entries=40, tol=FD_TOL):
        errors = numerical_check(loss, arrays, grads, rng, h=h, max_entries=max_entries)
        bad = {k: v for k, v in errors.items() if not v <= tol}
        worst = max(errors, key=errors.get)
        assert not bad, (f"finite-difference relative errors above {tol} in {len(bad)} of "
                         f"{len(errors)} arrays: {dict(list(bad.items())[:8])}")
        print(f"finite differences: worst relative error {errors[worst]:.1e} ({worst})")
        return errors

    return check


def channels_last(x):
    """The same NCHW array, stored channels-last (as the layers' outputs are)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.fixture
def to_channels_last():
    return channels_last
