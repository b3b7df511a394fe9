"""Sample-quality and likelihood scores: the Fréchet digit distance, label accuracy, baselines and
bits/dim from the bound.

Layer: tooling for ``ddpm-ref evaluate`` and the lessons.
"""

from __future__ import annotations

import functools

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.data import load_digits_images
from ddpm_ref.diffusion import p_mean_variance, q_sample
from ddpm_ref.elbo import prior_bpd, vlb_estimate
from ddpm_ref.learned_variance import vlb_term_learned_forward
from ddpm_ref.evaluation.classifier import digit_classifier

__all__ = ["frechet_distance", "fdd", "label_accuracy", "baselines", "bits_per_dim"]


@functools.lru_cache(maxsize=None)
def _reference_stats(seed: int = 0):
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
    x, y = load_digits_images("test", seed=0, dtype="float64")
    if n is not None:
        n = check_positive_int("n", n)
        x, y = x[:n], y[:n]
    noise = np.random.default_rng(seed).uniform(-1, 1, x.shape)
    return {"fdd_test_digits": fdd(x), "fdd_noise": fdd(noise),
            "accuracy_test_digits": label_accuracy(x, y), "n": int(len(x))}


def bits_per_dim(eps_model, sched, x0, *, num_t: int = 100, rng=0, variance: str = "fixed_small",
                 batch_size: int = 200, progress: bool = True, prediction: str = "eps",
                 learn_sigma: bool | None = None) -> dict:
    """The bound in bits/dim on images ``x0`` (N, C, H, W): mean and standard error over examples.

    ``num_t`` timesteps per batch (``vlb_estimate``; ``num_t = T``: the full sum). ``prediction``:
    what the model outputs ("eps", "x0" or "v"). A model with learned variances (``learn_sigma``,
    default: the model's own ``learn_sigma`` attribute, as ``ModelEps`` sets it) outputs
    [prediction | v_σ]; its terms use Σ_θ of Nichol & Dhariwal's eq. 15 (``_vlb_estimate_learned``).
    """
    g = as_generator(rng)
    batch_size = check_positive_int("batch_size", batch_size)
    if learn_sigma is None:
        learn_sigma = bool(getattr(eps_model, "learn_sigma", False))
    out = []
    bar = tqdm(range(0, len(x0), batch_size), desc=f"bits/dim ({num_t} timesteps per batch)",
               unit="batch", disable=not progress, leave=False)
    for i in bar:
        batch = x0[i:i + batch_size]
        if learn_sigma:
            out.append(_vlb_estimate_learned(sched, eps_model, batch, g, num_t, prediction))
        else:
            out.append(vlb_estimate(sched, eps_model, batch, g, num_t, variance=variance, prediction=prediction))
        bar.set_postfix(bpd=f"{np.concatenate(out).mean():.3f}")
    bpd = np.concatenate(out)
    return {"bpd": float(bpd.mean()), "bpd_stderr": float(bpd.std(ddof=1) / np.sqrt(len(bpd))) if len(bpd) > 1
            else float("nan"), "num_t": int(num_t), "n": int(len(bpd))}


def _vlb_estimate_learned(sched, model, x0, rng, num_t: int, prediction: str) -> np.ndarray:
    r"""The unbiased estimate L_T + (T/m) Σ_{t∈S} L_{t−1} of ``ddpm_ref.elbo.vlb_estimate``, for a
    model whose output is [prediction | v_σ]: each L_{t−1} is ``vlb_term_learned_forward`` with
    μ_θ from the prediction (``p_mean_variance``) and Σ_θ = exp(v log β_t + (1 − v) log β̃_t)."""
    num_t = check_positive_int("num_t", num_t)
    if num_t > sched.T:
        raise ValueError(f"num_t must be at most T = {sched.T}, got {num_t}")
    ts = np.sort(rng.choice(sched.T, size=num_t, replace=False)) + 1                 # S, in 1..T
    total = prior_bpd(sched, x0)
    c = x0.shape[1]
    for t in ts:
        xt = q_sample(sched, x0, int(t), rng.standard_normal(x0.shape).astype(x0.dtype))
        out = model(xt, np.full(x0.shape[0], t, dtype=np.int64))
        pred, v_sigma = out[:, :c], out[:, c:]
        mean, _ = p_mean_variance(sched, xt, int(t), pred, prediction=prediction)
        term, _ = vlb_term_learned_forward(sched, x0, xt, int(t), mean, v_sigma)
        total = total + (sched.T / num_t) * term
    return total
