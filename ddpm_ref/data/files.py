"""Images from a user's file: MNIST's IDX format (gzip optional) and ``.npz``.

Layer: loop (data).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from ddpm_ref.data._common import float_dtype

__all__ = ["read_idx", "load_image_file"]

#: What ``--data`` accepts by name (a path to a file is the other choice).
DATASET_NAMES = ("digits", "moons", "swissroll", "gmm")

# IDX type codes (the third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _check_path(name: str, path) -> None:
    """ValueError naming ``name`` unless ``path`` names an existing file."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name} must be a path to a file, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"{name} {os.fspath(path)!r} is not an existing file")


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
    _check_path("path", path)
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
    expected = math.prod(shape) * dt.itemsize             # Python ints: no overflow for any header
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
    if images.size == 0:
        raise ValueError(f"{path}: holds no images (shape {images.shape})")
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
    except ValueError as err:              # NumPy's: object arrays (allow_pickle=False), bad headers
        if str(err).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: an array in this .npz file cannot be read ({err})") from None


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
    dt = float_dtype(dtype)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a path to a file, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"--data {path!r} is neither a known data set "
                         f"({', '.join(DATASET_NAMES)}) nor an existing file")
    if labels_path is not None:
        _check_path("labels_path", labels_path)
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

