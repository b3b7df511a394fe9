"""scikit-learn's bundled 8×8 handwritten digits, scaled to [−1, 1] and split deterministically.

Layer: loop (data). Imports NumPy and scikit-learn (only for the data it ships) and nothing of ddpm_ref
above ``ddpm_ref.data``.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref.data._common import check_seed, float_dtype

__all__ = ["load_digits_images"]


def load_digits_images(split: str = "train", seed: int = 0, test_fraction: float = 0.2,
                       dtype="float32"):
    """scikit-learn's 8×8 digits as ``(x, y)``: x (N, 1, 8, 8) in [−1, 1], y (N,) int64 labels.

    The grey levels 0..16 are scaled linearly, ``x = level / 16 · 2 − 1``, so that 0 (white
    paper in the original scans, drawn black by ``save_grid_png``) becomes −1.

    The split is stratified and deterministic: within each class the images are shuffled by
    ``numpy.random.default_rng(seed)`` and the first ``round(test_fraction · n_class)`` go to
    ``"test"``, the rest to ``"train"``. ``split="all"`` returns every image in the original order.
    The same seed always gives the same split; train and test never share an image.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r} is not known; choose one of 'train', 'test', 'all'")
    if (isinstance(test_fraction, (bool, np.bool_)) or not isinstance(test_fraction, numbers.Real)
            or not 0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    seed = check_seed("seed", seed)
    dt = float_dtype(dtype)
    from sklearn.datasets import load_digits  # only here: scikit-learn is just the data's home

    bunch = load_digits()
    images = bunch.images.astype(np.float64)  # (1797, 8, 8), levels 0..16
    labels = bunch.target.astype(np.int64)
    x = (images / 16.0 * 2.0 - 1.0)[:, None, :, :]
    if split == "all":
        return x.astype(dt), labels
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        test_idx.append(members[: int(round(test_fraction * len(members)))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    keep = is_test if split == "test" else ~is_test
    return x[keep].astype(dt), labels[keep]

