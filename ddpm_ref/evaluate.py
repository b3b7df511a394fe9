r"""Evaluation: bits/dim from the bound on held-out digits, and a sample-quality score with baselines.

**Bits/dim.** ``bits_per_dim`` estimates the variational bound (eq. 5 of Ho et al.,
``ddpm_ref.elbo.vlb_estimate``) on held-out images: L_T + (T/m) Σ_{t∈S} L_{t−1} over m timesteps
drawn uniformly (unbiased for the full sum; m = T is the exact one-sample bound). The decoder
L_0 is the discretised Gaussian of the paper with 256 bins on [−1, 1]. (The digits have only 17
grey levels, so a model could in principle do much better than an 8-bit bound suggests; the
number is for comparing models, as in the paper.)

**Fréchet digit distance (FDD).** The idea of FID (Heusel et al. 2017) at 8×8: a small digit
classifier is trained here, in NumPy, deterministically (fixed seed, full-batch Adam, fixed step
count) on the training digits; its hidden layer (64 tanh units) is the feature space. The score
of a set of images is the Fréchet distance between Gaussians fitted to their features and to the
features of the training digits:

.. math::  d^2 = \|μ_1 − μ_2\|^2 + \mathrm{Tr}\big(Σ_1 + Σ_2 − 2 (Σ_1^{1/2} Σ_2 Σ_1^{1/2})^{1/2}\big)

Lower is better. It is reported with two **baselines**: the held-out test digits (what a perfect
model scores, limited by sample size) and pure noise (uniform on [−1, 1]). The classifier also
gives a **label accuracy** for class-conditional samples: the fraction it classifies as the class
they were asked for.
"""

from __future__ import annotations

import functools

import numpy as np

from ddpm_ref._checks import check_positive_int

__all__ = ["DigitClassifier", "digit_classifier", "frechet_distance", "fdd", "bits_per_dim",
           "baselines", "label_accuracy"]


class DigitClassifier:
    """x (N, 1, 8, 8) in [−1, 1] → logits (N, 10) through h = tanh(W1 x + b1) (64 units)."""

    def __init__(self, hidden: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.w1 = rng.standard_normal((64, hidden)) / 8.0
        self.b1 = np.zeros(hidden)
        self.w2 = rng.standard_normal((hidden, 10)) / np.sqrt(hidden)
        self.b2 = np.zeros(10)

    def features(self, x) -> np.ndarray:
        """The hidden layer h (N, hidden), float64: the feature space of the FDD."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 2 or x[0].size != 64:
            raise ValueError(f"the digit classifier takes 8×8 images (N, 1, 8, 8), got shape {x.shape}")
        return np.tanh(x.reshape(len(x), 64) @ self.w1 + self.b1)

    def logits(self, x) -> np.ndarray:
        return self.features(x) @ self.w2 + self.b2

    def predict(self, x) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def fit(self, x, y, steps: int = 300, lr: float = 0.01, weight_decay: float = 1e-4):
        """Full-batch Adam on softmax cross-entropy (deterministic: no sampling at all)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), 64)
        onehot = np.eye(10)[y]
        params = [self.w1, self.b1, self.w2, self.b2]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        for s in range(1, steps + 1):
            h = np.tanh(x @ self.w1 + self.b1)
            z = h @ self.w2 + self.b2
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            dz = (p - onehot) / len(x)                      # ∂(mean cross-entropy)/∂z
            dh = (dz @ self.w2.T) * (1.0 - h * h)           # through tanh
            grads = [x.T @ dh + weight_decay * self.w1, dh.sum(0), h.T @ dz + weight_decay * self.w2, dz.sum(0)]
            for i, (prm, g) in enumerate(zip(params, grads)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                prm -= lr * (m[i] / (1 - 0.9 ** s)) / (np.sqrt(v[i] / (1 - 0.999 ** s)) + 1e-8)
        return self


@functools.lru_cache(maxsize=None)
def digit_classifier(seed: int = 0) -> DigitClassifier:
    """The classifier trained on the training digits (cached; the same every time for a seed)."""
    from ddpm_ref.data import load_digits_images

    x, y = load_digits_images("train", seed=0, dtype="float64")
    return DigitClassifier(seed=seed).fit(x, y)


@functools.lru_cache(maxsize=None)
def _reference_stats(seed: int = 0):
    from ddpm_ref.data import load_digits_images

    x, _ = load_digits_images("train", seed=0, dtype="float64")
    f = digit_classifier(seed).features(x)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    r"""d² between N(μ1, Σ1) and N(μ2, Σ2); the matrix square root through symmetric eigenproblems."""
    w, q = np.linalg.eigh(cov1)
    s1 = (q * np.sqrt(np.clip(w, 0, None))) @ q.T                 # Σ1^{1/2}
    inner = np.linalg.eigvalsh(s1 @ cov2 @ s1)                   # eigenvalues of Σ1^½ Σ2 Σ1^½
    tr_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def fdd(images, seed: int = 0) -> float:
    """Fréchet digit distance of images (N, 1, 8, 8) in [−1, 1] to the training digits (N ≥ 2)."""
    images = np.asarray(images)
    if images.shape[0] < 2 or not np.all(np.isfinite(images)):
        raise ValueError("fdd needs at least 2 finite images")
    f = digit_classifier(seed).features(np.clip(images, -1, 1))
    mu, cov = _reference_stats(seed)
    return frechet_distance(f.mean(axis=0), np.cov(f, rowvar=False), mu, cov)


def label_accuracy(images, labels, seed: int = 0) -> float:
    """Fraction of images the digit classifier assigns to the class in ``labels``."""
    return float(np.mean(digit_classifier(seed).predict(np.clip(images, -1, 1)) == np.asarray(labels)))


def baselines(n: int | None = None, seed: int = 0) -> dict:
    """FDD of the held-out test digits (the best a model can hope for at that sample size) and of
    uniform noise on [−1, 1] (``n`` images; default: as many as the test split), plus the
    classifier's accuracy on the test digits."""
    from ddpm_ref.data import load_digits_images

    x, y = load_digits_images("test", seed=0, dtype="float64")
    if n is not None:
        n = check_positive_int("n", n)
        x, y = x[:n], y[:n]
    noise = np.random.default_rng(seed).uniform(-1, 1, x.shape)
    return {"fdd_test_digits": fdd(x), "fdd_noise": fdd(noise),
            "accuracy_test_digits": label_accuracy(x, y), "n": int(len(x))}


def bits_per_dim(eps_model, sched, x0, *, num_t: int = 100, rng=0, variance: str = "fixed_small",
                 batch_size: int = 200, progress: bool = True) -> dict:
    """The bound in bits/dim on images ``x0`` (N, C, H, W): mean and standard error over examples.

    ``num_t`` timesteps per batch (``vlb_estimate``; ``num_t = T``: the full sum).
    """
    from tqdm import tqdm

    from ddpm_ref.elbo import vlb_estimate

    g = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    batch_size = check_positive_int("batch_size", batch_size)
    out = []
    bar = tqdm(range(0, len(x0), batch_size), desc=f"bits/dim ({num_t} timesteps per batch)",
               unit="batch", disable=not progress, leave=False)
    for i in bar:
        out.append(vlb_estimate(sched, eps_model, x0[i:i + batch_size], g, num_t, variance=variance))
        bar.set_postfix(bpd=f"{np.concatenate(out).mean():.3f}")
    bpd = np.concatenate(out)
    return {"bpd": float(bpd.mean()), "bpd_stderr": float(bpd.std(ddof=1) / np.sqrt(len(bpd))) if len(bpd) > 1
            else float("nan"), "num_t": int(num_t), "n": int(len(bpd))}
