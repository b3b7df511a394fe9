"""A user's images and masks for ``ddpm-ref inpaint`` / ``ddpm-ref edit``: .npz or .png, checked.

Layer: loop (data). Images come out as (N, C, H, W) float64 in [−1, 1] with the model's C, H, W:

* ``.npz``: the keys ``load_image_file`` accepts (``x``, ``images``, ``x_train``, ``X``); integers
  0..255, floats in [0, 1] or [−1, 1];
* ``.png``: one image, grey or RGB(A) (alpha dropped), read with matplotlib as [0, 1].

Grey images are repeated to 3 channels for an RGB model, RGB is averaged to grey for a 1-channel
model. Images are never resized: a size that differs from the model's is refused (one ValueError
naming both), since a resized 8×8 digit is no longer the kind of image the model learnt.

Masks: 1 = known (kept), 0 = to fill in (``ddpm_ref.inpaint``'s convention). A named region
(``inpaint.MASKS``) or a file: ``.npz`` with key ``mask`` (H, W), or a ``.png`` (white = keep,
black = fill in; grey levels are thresholded at 0.5). A mask whose size differs from the image's
is refused.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ddpm_ref.data.files import load_image_file

__all__ = ["read_user_images", "read_mask"]


def _read_png(path: str) -> np.ndarray:
    import matplotlib.image

    try:
        img = np.asarray(matplotlib.image.imread(path), dtype=np.float64)
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable PNG ({err})") from None
    return img                                                  # PNGs come back as floats in [0, 1]


def read_user_images(path: str, channels: int, size: int) -> np.ndarray:
    """Images (N, channels, size, size) in [−1, 1] from ``path`` (module docstring)."""
    if not os.path.isfile(path):
        raise ValueError(f"--input {path!r} is not a file")
    if path.lower().endswith(".png"):
        img = _read_png(path)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2, keepdims=True) if channels == 1 else img[..., :3]
            img = img.transpose(2, 0, 1)
        else:
            img = img[None]
        x = img[None] * 2.0 - 1.0
    elif path.lower().endswith(".npz"):
        x, _ = load_image_file(path, dtype="float64")
    else:
        raise ValueError(f"--input {path!r}: give a .npz or a .png file")
    if x.shape[1] != channels:
        if x.shape[1] == 1 and channels == 3:
            x = np.repeat(x, 3, axis=1)
        elif x.shape[1] == 3 and channels == 1:
            x = x.mean(axis=1, keepdims=True)
    if x.shape[2:] != (size, size):
        raise ValueError(f"--input {path}: the images are {x.shape[2]}×{x.shape[3]}, the model takes "
                         f"{size}×{size} (images are not resized)")
    return np.ascontiguousarray(x, dtype=np.float64)


def read_mask(path: str, height: int, width: int) -> np.ndarray:
    """A (1, 1, H, W) mask of 0/1 from a .npz (key ``mask``) or .png file (module docstring)."""
    if not os.path.isfile(path):
        raise ValueError(f"--mask {path!r} is neither a region name nor a file")
    if path.lower().endswith(".png"):
        m = _read_png(path)
        m = m[..., :3].mean(axis=2) if m.ndim == 3 else m
        m = (m >= 0.5).astype(np.float64)
    elif path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                if "mask" not in f.files:
                    raise ValueError(f"--mask {path}: no 'mask' array (found {', '.join(f.files) or 'none'})")
                m = np.asarray(f["mask"], dtype=np.float64)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise ValueError(f"--mask {path}: not a readable .npz file ({err})") from None
        m = np.squeeze(m)
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"--mask {path}: a mask holds only 0 (fill in) and 1 (keep)")
    else:
        raise ValueError(f"--mask {path!r}: give a region name, a .npz or a .png file")
    if m.shape != (height, width):
        raise ValueError(f"--mask {path}: the mask is {'×'.join(map(str, m.shape))}, the images are "
                         f"{height}×{width}")
    return m[None, None]
