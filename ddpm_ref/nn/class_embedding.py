r"""Class-label embedding: a lookup table whose last row is the "null" label.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

``table`` has shape (num_classes + 1, E). Labels 0..num_classes−1 pick their row; the label
``num_classes`` picks the null row, used for the unconditional half of classifier-free guidance
(Ho & Salimans 2022): training replaces a random fraction of labels by it.

The lookup is written as a one-hot matrix product, e = onehot(y) · table, so the backward pass is
the transposed product dtable = onehot(y)ᵀ · de (rows of repeated labels add up).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module

__all__ = ["class_embedding_forward", "class_embedding_backward"]


def class_embedding_forward(y, table):
    """e = table[y]. y int (N,) in 0..num_classes (num_classes = null); table (num_classes+1, E)."""
    check_float("table", table, ndim=2)
    xp = array_module(table)
    y_np = np.asarray(y.get() if hasattr(y, "get") else y)
    if y_np.ndim != 1 or not np.issubdtype(y_np.dtype, np.integer):
        raise ValueError(f"y must be a 1-D integer array of labels, got {y_np.dtype} shape {y_np.shape}")
    rows = table.shape[0]
    if rows < 1:
        raise ValueError(f"table must have at least one row (the null label's), got shape {tuple(table.shape)}")
    if y_np.size and (y_np.min() < 0 or y_np.max() >= rows):
        raise ValueError(f"y: labels must lie in 0..{rows - 1} ({rows - 1} is the null label), "
                         f"got values in {y_np.min()}..{y_np.max()}")
    onehot = xp.zeros((y_np.shape[0], rows), dtype=table.dtype)
    onehot[xp.arange(y_np.shape[0]), xp.asarray(y_np)] = 1
    return onehot @ table, {"op": "class_embedding", "onehot": onehot}


def class_embedding_backward(de, cache):
    """Returns ``dtable`` (num_classes + 1, E)."""
    check_cache("class_embedding_backward", cache, "class_embedding", ("onehot",))
    onehot = cache["onehot"]
    check_float("de", de, ndim=2, dtype=onehot.dtype)
    if de.shape[0] != onehot.shape[0]:
        raise ValueError(f"de must have {onehot.shape[0]} rows, got shape {tuple(de.shape)}")
    return onehot.T @ de
