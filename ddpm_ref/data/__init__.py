r"""Data sets for training and for showing what diffusion does, all scaled the way DDPM wants.

Every set here comes out in the form the rest of ddpm_ref expects:

* images as float NCHW arrays ``(N, C, H, W)`` scaled to [−1, 1] (Ho et al. 2020, section 3.3:
  "image data consists of integers in {0, 1, ..., 255} scaled linearly to [−1, 1]");
* 2-D point sets as float arrays ``(N, 2)`` of roughly unit scale;
* labels, where a set has them, as int64 arrays ``(N,)`` in 0..num_classes−1.

What is here:

* ``load_digits_images``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10
  classes, grey levels 0..16), split into train/test deterministically by a seed.
* ``make_moons`` / ``make_swiss_roll``: classic 2-D toy sets, drawn from a ``Generator``.
* ``GaussianMixture``: a mixture of isotropic Gaussians whose *optimal* ε-predictor for
  q(x_t) is known in closed form (``optimal_eps``), so the reverse process can be run before any
  network is trained — and a trained network can be compared with the best possible one.
* ``load_image_file``: MNIST-style IDX files (``*-idx3-ubyte``, gzip optional) or ``.npz``
  files from a path the user gives.
* ``load_dataset``: one name or path → a ``Dataset`` (what ``ddpm-ref train --data`` calls).

Layer: loop (data). The modules: ``digits.py``, ``toy2d.py``, ``gmm.py``, ``files.py``; this file
holds ``Dataset`` and ``load_dataset``, which ``ddpm-ref train --data`` calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref.data._common import check_seed
from ddpm_ref.data.digits import load_digits_images
from ddpm_ref.data.files import DATASET_NAMES, load_image_file, read_idx
from ddpm_ref.data.gmm import GaussianMixture, default_gmm
from ddpm_ref.data.toy2d import make_moons, make_swiss_roll
from ddpm_ref.prompts import thickness_classes

__all__ = [
    "Dataset",
    "load_digits_images",
    "make_moons",
    "make_swiss_roll",
    "GaussianMixture",
    "default_gmm",
    "load_image_file",
    "read_idx",
    "load_dataset",
    "DATASET_NAMES",
]


@dataclass
class Dataset:
    """Training data with what a model needs to know about it.

    ``x``: (N, C, H, W) images in [−1, 1] or (N, D) points. ``y``: (N,) int64 labels or None.
    ``num_classes``: the number of labels (None when unlabelled). ``name``: where it came from.
    ``thickness``: (N,) int64 in {−1, 0, +1}, the stroke of each digit among its class (thin, neither,
    thick: ``ddpm_ref.prompts.thickness_classes``), from which prompts are made; None for other data.
    """

    x: np.ndarray
    y: np.ndarray | None
    num_classes: int | None
    name: str
    thickness: np.ndarray | None = None

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


def load_dataset(name: str, seed: int = 0, n_points: int = 10000, dtype="float32") -> Dataset:
    """The training set behind ``ddpm-ref train --data NAME``.

    ``digits`` (train split), ``moons``, ``swissroll``, ``gmm`` (``default_gmm`` samples, labelled
    by component) or a path to an IDX/.npz file. 2-D sets get ``n_points`` points from ``seed``.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ValueError(f"name must be a data set name ({', '.join(DATASET_NAMES)}) or a path, got {name!r}")
    seed = check_seed("seed", seed)
    n_points = check_positive_int("n_points", n_points)
    if name == "digits":
        x, y = load_digits_images("train", seed=seed, dtype=dtype)
        return Dataset(x, y, 10, "digits", thickness=thickness_classes(x, y))
    if name == "moons":
        x, y = make_moons(n_points, rng=seed, dtype=dtype)
        return Dataset(x, y, 2, "moons")
    if name == "swissroll":
        x, _ = make_swiss_roll(n_points, rng=seed, dtype=dtype)
        return Dataset(x, None, None, "swissroll")
    if name == "gmm":
        gmm = default_gmm()
        x, y = gmm.sample(n_points, rng=seed, dtype=dtype)
        return Dataset(x, y, gmm.num_components, "gmm")
    x, y = load_image_file(name, dtype=dtype)
    return Dataset(x, y, None if y is None else int(y.max()) + 1, os.path.abspath(name))
