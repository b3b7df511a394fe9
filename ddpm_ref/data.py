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
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from ddpm_ref._checks import check_positive_int

__all__ = [
    "Dataset",
    "load_digits_images",
    "make_moons",
    "make_swiss_roll",
    "GaussianMixture",
    "default_gmm",
    "load_image_file",
    "load_dataset",
    "DATASET_NAMES",
]

DATASET_NAMES = ("digits", "moons", "swissroll", "gmm")


@dataclass
class Dataset:
    """Training data with what a model needs to know about it.

    ``x``: (N, C, H, W) images in [−1, 1] or (N, D) points. ``y``: (N,) int64 labels or None.
    ``num_classes``: the number of labels (None when unlabelled). ``name``: where it came from.
    """

    x: np.ndarray
    y: np.ndarray | None
    num_classes: int | None
    name: str

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4


def _generator(rng) -> np.random.Generator:
    """A Generator from a Generator or an int seed (never the global state)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


# --------------------------------------------------------------------------------------------
# The 8×8 digits
# --------------------------------------------------------------------------------------------

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
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    dt = _check_dtype(dtype)
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


# --------------------------------------------------------------------------------------------
# 2-D toy sets
# --------------------------------------------------------------------------------------------

def make_moons(n: int, rng=0, noise: float = 0.05, dtype="float64"):
    """Two interleaving half circles, ``(x, y)``: x (n, 2), y (n,) the moon (0 or 1).

    Upper moon: (cos θ, sin θ); lower moon: (1 − cos θ, 1/2 − sin θ), θ ~ U[0, π], plus
    N(0, noise²) jitter; then centred at (1/2, 1/4) and scaled by 0.7, so that x lies in about
    [−1.1, 1.1] × [−0.6, 0.6]. ``rng``: a Generator or an int seed.
    """
    n = check_positive_int("n", n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = _generator(rng)
    y = (g.random(n) < 0.5).astype(np.int64)
    theta = g.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    lower = np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], axis=1)
    x = np.where(y[:, None] == 0, upper, lower) + noise * g.standard_normal((n, 2))
    x = (x - np.array([0.5, 0.25])) * 0.7
    return x.astype(_check_dtype(dtype)), y


def make_swiss_roll(n: int, rng=0, noise: float = 0.05, dtype="float64"):
    """A 2-D swiss roll (a spiral), ``(x, None)``: x (n, 2) in about [−0.9, 1.2]².

    Angle s = 1.5π(1 + 2u), u ~ U[0, 1]; point (s cos s, s sin s) / 12, plus N(0, noise²).
    Unlabelled: the second element is None.
    """
    n = check_positive_int("n", n)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    g = _generator(rng)
    s = 1.5 * np.pi * (1.0 + 2.0 * g.random(n))
    x = np.stack([s * np.cos(s), s * np.sin(s)], axis=1) / 12.0
    x = x + noise * g.standard_normal((n, 2))
    return x.astype(_check_dtype(dtype)), None


# --------------------------------------------------------------------------------------------
# A Gaussian mixture and its optimal denoiser
# --------------------------------------------------------------------------------------------

class GaussianMixture:
    r"""p(x_0) = Σ_k π_k N(x_0; μ_k, s_k² I) in D dimensions, with its optimal ε-predictor.

    Under the forward process x_t = a_t x_0 + σ_t ε with a_t = √ᾱ_t · b (b: the schedule's
    ``input_scale``, 1 for DDPM) and σ_t = √(1 − ᾱ_t), every component stays Gaussian:

    .. math::

        q(x_t \mid k) = N(x_t;\ a_t μ_k,\ v_{k,t} I), \qquad v_{k,t} = a_t^2 s_k^2 + σ_t^2 .

    The posterior over components is r_k(x_t) ∝ π_k N(x_t; a_t μ_k, v_{k,t} I) (computed with a
    log-sum-exp), each component's posterior mean of x_0 is Gaussian conditioning,

    .. math::

        E[x_0 \mid x_t, k] = μ_k + \frac{a_t s_k^2}{v_{k,t}} (x_t − a_t μ_k),

    and the minimiser of L_simple, E[ε | x_t] (Ho et al. eq. 14 at its optimum), follows from
    x_t = a_t x_0 + σ_t ε:

    .. math::

        E[ε \mid x_t] = \frac{x_t − a_t\, E[x_0 \mid x_t]}{σ_t}, \qquad
        E[x_0 \mid x_t] = Σ_k r_k(x_t)\, E[x_0 \mid x_t, k].

    Given a label y = k (conditional sampling) the posterior is that component alone.
    """

    def __init__(self, means, stds, weights=None):
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D) with K >= 1, got {means.shape}")
        k = means.shape[0]
        stds = np.broadcast_to(np.asarray(stds, dtype=np.float64), (k,)).copy()
        if not np.all(np.isfinite(means)) or not np.all(stds > 0):
            raise ValueError("means must be finite and stds > 0")
        weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (k,) or np.any(weights <= 0):
            raise ValueError(f"weights must be {k} positive numbers, got {weights}")
        self.means, self.stds, self.weights = means, stds, weights / weights.sum()

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng=0, dtype="float64"):
        """``(x, k)``: n draws x (n, D) and the component k (n,) each came from."""
        n = check_positive_int("n", n)
        g = _generator(rng)
        k = g.choice(self.num_components, size=n, p=self.weights).astype(np.int64)
        x = self.means[k] + self.stds[k, None] * g.standard_normal((n, self.dim))
        return x.astype(_check_dtype(dtype)), k

    def _coefficients(self, sched, t, n):
        """a_t and σ_t² per example, shape (n, 1), from the schedule."""
        t = np.broadcast_to(np.asarray(t), (n,)).astype(np.int64)
        if np.any(t < 1) or np.any(t > sched.T):
            raise ValueError(f"t must lie in 1..{sched.T} (timesteps follow the paper)")
        abar = np.asarray(sched.alpha_bars, dtype=np.float64)[t][:, None]
        b = float(getattr(sched, "input_scale", 1.0))
        return np.sqrt(abar) * b, 1.0 - abar

    def posterior_components(self, sched, xt, t):
        """r_k(x_t) = q(k | x_t), shape (N, K): the responsibilities of the components."""
        xt = np.asarray(xt, dtype=np.float64)
        a, var_noise = self._coefficients(sched, t, xt.shape[0])
        v = a**2 * self.stds[None, :] ** 2 + var_noise                            # (N, K)
        sq = ((xt[:, None, :] - a[:, :, None] * self.means[None]) ** 2).sum(-1)    # (N, K)
        logp = np.log(self.weights)[None] - 0.5 * sq / v - 0.5 * self.dim * np.log(2 * np.pi * v)
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        return r / r.sum(axis=1, keepdims=True)

    def optimal_x0(self, sched, xt, t, y=None):
        """E[x_0 | x_t] (or E[x_0 | x_t, k = y] when labels y are given), shape (N, D)."""
        xt = np.asarray(xt, dtype=np.float64)
        if xt.ndim != 2 or xt.shape[1] != self.dim:
            raise ValueError(f"xt must have shape (N, {self.dim}), got {xt.shape}")
        a, var_noise = self._coefficients(sched, t, xt.shape[0])
        v = a**2 * self.stds[None, :] ** 2 + var_noise                            # (N, K)
        gain = (a * self.stds[None, :] ** 2 / v)[:, :, None]                      # (N, K, 1)
        mean_k = self.means[None] + gain * (xt[:, None, :] - a[:, :, None] * self.means[None])
        if y is None:
            r = self.posterior_components(sched, xt, t)
        else:
            y = np.broadcast_to(np.asarray(y), (xt.shape[0],))
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.num_components:
                raise ValueError(f"y must be integers in 0..{self.num_components - 1}")
            r = np.eye(self.num_components)[y]
        return (r[:, :, None] * mean_k).sum(axis=1)

    def optimal_eps(self, sched, xt, t, y=None):
        """The optimal ε-predictor E[ε | x_t] (see the class docstring), same shape and dtype as xt."""
        x0 = self.optimal_x0(sched, xt, t, y)
        a, var_noise = self._coefficients(sched, t, x0.shape[0])
        eps = (np.asarray(xt, dtype=np.float64) - a * x0) / np.sqrt(var_noise)
        return eps.astype(np.asarray(xt).dtype if np.asarray(xt).dtype == np.float32 else np.float64)

    def eps_model(self, sched):
        """A callable ``eps_model(xt, t, y=None)`` for the samplers (ddpm_ref.sample)."""

        def eps(xt, t, y=None):
            return self.optimal_eps(sched, xt, t, y)

        eps.num_classes = self.num_components
        return eps


def default_gmm() -> GaussianMixture:
    """The mixture the lessons and ``--data gmm`` use: 3 unequal components in 2-D."""
    return GaussianMixture(means=[[-0.8, -0.4], [0.8, -0.4], [0.0, 0.8]],
                           stds=[0.12, 0.12, 0.12], weights=[0.5, 0.3, 0.2])


# --------------------------------------------------------------------------------------------
# Files from the user: IDX (MNIST's format) and .npz
# --------------------------------------------------------------------------------------------

# IDX type codes (the third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped when it starts with gzip's magic (1f 8b)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: a gzip file that cannot be decompressed ({err}); "
                             "is it truncated?") from None
    return raw


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (MNIST's format): magic 00 00 TT DD, DD big-endian int32 sizes, data.

    TT is the element type (08 unsigned byte, 09 signed byte, 0B int16, 0C int32, 0D float32,
    0E float64), DD the number of dimensions. Raises ValueError for a bad magic number, an
    unknown type or a file shorter (truncated) or longer than its header says.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02x}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    dt = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        what = "truncated" if len(body) < expected else "longer than its header says"
        raise ValueError(f"{path}: IDX file {what}: header shape {shape} needs {expected} bytes "
                         f"of data, found {len(body)}")
    return np.frombuffer(body, dtype=dt).reshape(shape)


def _to_nchw(images: np.ndarray, path: str) -> np.ndarray:
    """(N, H, W) -> (N, 1, H, W); (N, H, W, C) with C in 1, 3 -> NCHW; NCHW kept."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        if images.shape[1] in (1, 3):
            return images
        if images.shape[3] in (1, 3):
            return images.transpose(0, 3, 1, 2)
    raise ValueError(f"{path}: images must have shape (N, H, W), (N, C, H, W) or (N, H, W, C) "
                     f"with C = 1 or 3, got {images.shape}")


def _scale_images(images: np.ndarray, path: str) -> np.ndarray:
    """Integers 0..255 or floats in [0, 1] -> [−1, 1]; floats already in [−1, 1] are kept."""
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"{path}: integer images must lie in 0..255")
        return images.astype(np.float64) / 255.0 * 2.0 - 1.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{path}: images must be integers or floats, got dtype {images.dtype}")
    images = images.astype(np.float64)
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{path}: images hold NaN or infinite values")
    if images.min() >= 0.0 and images.max() <= 1.0:
        return images * 2.0 - 1.0
    if images.min() >= -1.0 and images.max() <= 1.0:
        return images
    raise ValueError(f"{path}: float images must lie in [0, 1] or [−1, 1], "
                     f"found [{images.min():.3g}, {images.max():.3g}]")


_NPZ_IMAGE_KEYS = ("x", "images", "x_train", "X")
_NPZ_LABEL_KEYS = ("y", "labels", "y_train", "Y")


def _load_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            xkey = next((k for k in _NPZ_IMAGE_KEYS if k in keys), None)
            if xkey is None:
                raise ValueError(f"{path}: no image array; expected one of the keys "
                                 f"{', '.join(_NPZ_IMAGE_KEYS)} (found {', '.join(keys) or 'none'})")
            ykey = next((k for k in _NPZ_LABEL_KEYS if k in keys), None)
            return f[xkey], (f[ykey] if ykey else None)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}); is it truncated?") from None


def load_image_file(path: str, labels_path: str | None = None, dtype="float32"):
    """Images (and labels) from a user's file, as ``(x, y)``: x NCHW in [−1, 1], y int64 or None.

    * IDX (``*-idx3-ubyte``, optionally ``.gz``): MNIST's format. Labels come from
      ``labels_path`` or, if not given, from the file beside it whose name has ``labels-idx1``
      in place of ``images-idx3`` (MNIST's naming), when that file exists.
    * ``.npz``: images under ``x``/``images``/``x_train``, labels (optional) under
      ``y``/``labels``/``y_train``; loaded with ``allow_pickle=False``.

    Integer images are taken as 0..255, float images as [0, 1] (or [−1, 1] if they have
    negative values). Any unreadable, truncated or ill-shaped file raises ValueError.
    """
    dt = _check_dtype(dtype)
    if not os.path.isfile(path):
        raise ValueError(f"--data {path!r} is neither a known data set "
                         f"({', '.join(DATASET_NAMES)}) nor an existing file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK" or path.endswith(".npz"):
        images, labels = _load_npz(path)
    else:
        images = read_idx(path)
        labels = None
        if labels_path is None:
            base = os.path.basename(path)
            if "images-idx3" in base:
                cand = os.path.join(os.path.dirname(path), base.replace("images-idx3", "labels-idx1"))
                labels_path = cand if os.path.isfile(cand) else None
        if labels_path is not None:
            labels = read_idx(labels_path)
    x = _scale_images(_to_nchw(np.asarray(images), path), path)
    y = None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != x.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{path}: labels must be {x.shape[0]} integers, got {labels.dtype} {labels.shape}")
        if labels.min() < 0:
            raise ValueError(f"{path}: labels must be >= 0")
        y = labels.astype(np.int64)
    return x.astype(dt), y


def load_dataset(name: str, seed: int = 0, n_points: int = 10000, dtype="float32") -> Dataset:
    """The training set behind ``ddpm-ref train --data NAME``.

    ``digits`` (train split), ``moons``, ``swissroll``, ``gmm`` (``default_gmm`` samples, labelled
    by component) or a path to an IDX/.npz file. 2-D sets get ``n_points`` points from ``seed``.
    """
    if name == "digits":
        x, y = load_digits_images("train", seed=seed, dtype=dtype)
        return Dataset(x, y, 10, "digits")
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
