"""A small digit classifier, trained here in NumPy: the feature space of the Fréchet digit distance
and the judge of label accuracy.

Layer: tooling for ``ddpm-ref evaluate`` and the lessons (not part of the DDPM reference); it uses
``ddpm_ref.optim.Adam`` and the digits of ``ddpm_ref.data``.
"""

from __future__ import annotations

import functools

import numpy as np

from ddpm_ref.data import load_digits_images
from ddpm_ref.optim import Adam

__all__ = ["DigitClassifier", "digit_classifier"]


class DigitClassifier:
    """x (N, 1, 8, 8) in [−1, 1] → logits (N, 10) through h = tanh(W1 x + b1) (64 units)."""

    def __init__(self, hidden: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"w1": rng.standard_normal((64, hidden)) / 8.0, "b1": np.zeros(hidden),
                       "w2": rng.standard_normal((hidden, 10)) / np.sqrt(hidden), "b2": np.zeros(10)}

    def features(self, x) -> np.ndarray:
        """The hidden layer h (N, hidden), float64: the feature space of the FDD."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or x[0].size != 64:
            raise ValueError(f"the digit classifier takes 8×8 images (N, 1, 8, 8), got shape {x.shape}")
        return np.tanh(x.reshape(len(x), 64) @ self.params["w1"] + self.params["b1"])

    def logits(self, x) -> np.ndarray:
        return self.features(x) @ self.params["w2"] + self.params["b2"]

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def fit(self, x, y, steps: int = 300, lr: float = 0.01, weight_decay: float = 1e-4):
        """Full-batch Adam (``ddpm_ref.optim.Adam``) on softmax cross-entropy + L2 weight decay on
        the weights (deterministic: no sampling at all). The backward pass, written out:

        z = h W2 + b2, h = tanh(x W1 + b1), p = softmax(z); for the mean cross-entropy
        ∂/∂z = (p − onehot)/N, ∂/∂h = (∂/∂z) W2ᵀ, ∂/∂(xW1 + b1) = ∂/∂h ⊙ (1 − h²).
        """
        x = np.asarray(x, dtype=np.float64).reshape(len(x), 64)
        onehot = np.eye(10)[y]
        params = self.params
        adam = Adam(params)
        for _ in range(steps):
            h = np.tanh(x @ params["w1"] + params["b1"])
            z = h @ params["w2"] + params["b2"]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            dz = (p - onehot) / len(x)                          # ∂(mean cross-entropy)/∂z
            dh = (dz @ params["w2"].T) * (1.0 - h * h)          # through tanh
            grads = {"w1": x.T @ dh + weight_decay * params["w1"], "b1": dh.sum(0),
                     "w2": h.T @ dz + weight_decay * params["w2"], "b2": dz.sum(0)}
            adam.update(params, grads, lr)
        return self


@functools.lru_cache(maxsize=None)
def digit_classifier(seed: int = 0) -> DigitClassifier:
    """The classifier trained on the training digits (cached; the same every time for a seed)."""
    x, y = load_digits_images("train", seed=0, dtype="float64")
    return DigitClassifier(seed=seed).fit(x, y)
