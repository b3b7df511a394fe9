r"""Classifier guidance beside classifier-free guidance at matched label accuracy (issue 12, lesson 15).

Both kinds of guidance trade diversity for samples that look more like their class, so comparing them
at one scale each says little: guiding harder raises a method's accuracy and moves its Fréchet digit
distance (FDD), first down (the classes stop mixing), then up (the samples crowd into the most typical
digits), so one setting of each compares two arbitrary points of two curves. The fair comparison is a **sweep**: each method over its own scale, the
curve of (label accuracy, FDD) it traces, and the FDD of the two curves read off at the *same* accuracy.

* Classifier guidance (Dhariwal & Nichol 2021, Algorithm 2): an unconditional ε-model (a
  class-conditional one asked with the null label) plus s·∇log p_φ(y | x_t) of a noisy classifier,
  ``ddpm_ref.guidance.sample_ddim_guided``; s = 0 is unguided.
* Classifier-free guidance (Ho & Salimans): ε̃ = (1 + w) ε(x_t, y) − w ε(x_t, ∅),
  ``ddpm_ref.sample.sample_ddim``. w = 0 is the plain conditional model, and w = −1 is ε(x_t, ∅)
  alone — the same unconditional model as s = 0, so both curves start from the same point (for the
  same seed the same samples); −1 < w < 0 interpolates between the unconditional and the conditional
  model, which is how classifier-free guidance reaches the lower accuracies that classifier guidance
  passes through.

Every setting samples the same ``n`` starting noises (one seed) with class-balanced labels
(``arange(n) % num_classes``), and is scored by the project's digit classifier
(``ddpm_ref.evaluation``): label accuracy and FDD to the training digits. Standard errors are a
**bootstrap over samples**: ``n_boot`` times, draw n sample indices with replacement, the *same*
indices for every setting of both methods (the settings share their starting noise, so the samples
are paired across settings), and recompute accuracy, FDD and the matched-accuracy values; the
standard error is the standard deviation over the replicates. (A bootstrap FDD is biased upwards — a
resample repeats samples — but its spread is what is used here.)

Layer: tooling (it imports the loop's samplers and the evaluation's digit classifier).
"""

from __future__ import annotations

import numbers
import time

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_positive_int
from ddpm_ref.evaluation.classifier import digit_classifier
from ddpm_ref.evaluation.metrics import _reference_stats, frechet_distance
from ddpm_ref.guidance import sample_ddim_guided
from ddpm_ref.sample import sample_ddim

__all__ = ["CLASSIFIER_SCALES", "FREE_SCALES", "MATCHED_ACCURACIES", "sweep_guidance", "fdd_at_accuracy",
           "matched_table", "format_sweep"]

#: Classifier-guidance scales s of the default sweep (s = 0: unguided, the unconditional model).
CLASSIFIER_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0)
#: Classifier-free scales w of the default sweep (w = −1: the unconditional model, w = 0: conditional).
FREE_SCALES = (-1.0, -0.8, -0.6, -0.4, -0.2, 0.0, 1.0)
#: Label accuracies at which the two curves are compared.
MATCHED_ACCURACIES = (0.3, 0.5, 0.7, 0.8, 0.9)
METHODS = ("classifier", "classifier-free")


def _check_scales(name, scales, low):
    try:
        arr = np.asarray(scales, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {scales!r}") from None
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)) or arr.min() < low or np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be at least two finite, increasing numbers >= {low:g}, got {scales!r}")
    return [float(v) for v in arr]


def fdd_at_accuracy(accuracy, fdd, target: float, scales=None):
    r"""The FDD (and, if ``scales`` is given, the scale) where a sweep's curve first reaches ``target`` accuracy.

    ``accuracy`` and ``fdd`` are one value per setting, in the order of increasing scale. The curve is
    followed from the first setting and the first segment [a_i, a_{i+1}] that contains the target is
    interpolated linearly in accuracy:

    .. math::  \mathrm{FDD}(a) = f_i + \frac{a - a_i}{a_{i+1} - a_i}\,(f_{i+1} - f_i)

    Returns ``nan`` (or ``(nan, nan)``) when the curve never reaches the target.
    """
    acc, f = np.asarray(accuracy, dtype=np.float64), np.asarray(fdd, dtype=np.float64)
    if acc.ndim != 1 or acc.shape != f.shape or acc.size < 2:
        raise ValueError(f"accuracy and fdd must be two 1-D sequences of the same length >= 2, got shapes "
                         f"{acc.shape} and {f.shape}")
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 <= target <= 1:
        raise ValueError(f"target must be an accuracy in [0, 1], got {target!r}")
    s = None if scales is None else np.asarray(scales, dtype=np.float64)
    if s is not None and s.shape != acc.shape:
        raise ValueError(f"scales must have one value per setting ({acc.size}), got shape {s.shape}")
    for i in range(acc.size - 1):
        lo, hi = acc[i], acc[i + 1]
        if min(lo, hi) <= target <= max(lo, hi):
            u = 0.0 if hi == lo else (target - lo) / (hi - lo)
            value = f[i] + u * (f[i + 1] - f[i])
            return value if s is None else (value, s[i] + u * (s[i + 1] - s[i]))
    return np.nan if s is None else (np.nan, np.nan)


def _sample(method, scale, eps_model, grad_log_prob, sched, shape, labels, steps, seed):
    if method == "classifier":
        return sample_ddim_guided(eps_model, grad_log_prob, sched, shape, labels, scale=scale, steps=steps, rng=seed)
    return sample_ddim(eps_model, sched, shape, steps=steps, rng=seed, y=labels, guidance=scale, progress=False)


def _fdd_from_features(f, ref):
    return frechet_distance(f.mean(axis=0), np.cov(f, rowvar=False), *ref)


def sweep_guidance(eps_model, grad_log_prob, sched, *, classifier_scales=CLASSIFIER_SCALES,
                   free_scales=FREE_SCALES, targets=MATCHED_ACCURACIES, n: int = 500, steps: int = 25,
                   image_shape=(1, 8, 8), num_classes: int = 10, seed: int = 0, n_boot: int = 200,
                   progress: bool = True) -> dict:
    """Sample every setting, score it, bootstrap it, and compare the methods at ``targets`` accuracies.

    ``eps_model(xt, t, y=None)``: a class-conditional ε-model (``ModelEps`` of the demo U-Net) that
    ``y=None`` asks unconditionally; ``grad_log_prob(xt, t, y)``: the noisy classifier's gradient.
    ``n`` samples per setting, DDIM with ``steps`` steps (η = 0). Returns a JSON-ready dict:
    ``{"settings": {...}, "curves": {method: {"scales", "accuracy", "accuracy_se", "fdd", "fdd_se",
    "seconds"}}, "matched": [one row per target]}`` (see ``matched_table``); the module docstring says
    how the standard errors are made.
    """
    scales = {"classifier": _check_scales("classifier_scales", classifier_scales, 0.0),
              "classifier-free": _check_scales("free_scales", free_scales, -1.0)}
    n, steps, n_boot = check_positive_int("n", n), check_positive_int("steps", steps), check_positive_int("n_boot", n_boot)
    num_classes = check_positive_int("num_classes", num_classes)
    if n < 2 * num_classes:
        raise ValueError(f"n must be at least 2·num_classes = {2 * num_classes} (class-balanced labels, an FDD), got {n}")
    targets = [float(a) for a in targets]
    if not targets or not all(0 <= a <= 1 for a in targets):
        raise ValueError(f"targets must be accuracies in [0, 1], got {targets!r}")
    labels = np.arange(n) % num_classes                                   # class-balanced
    shape = (n, *tuple(int(v) for v in image_shape))
    clf, ref = digit_classifier(), _reference_stats()
    feats, correct, seconds = {}, {}, {}
    todo = [(m, s) for m in METHODS for s in scales[m]]
    for method, s in tqdm(todo, desc="guidance sweep", unit="setting", disable=not progress):
        start = time.perf_counter()
        xs = np.clip(_sample(method, s, eps_model, grad_log_prob, sched, shape, labels, steps, seed), -1, 1)
        seconds[(method, s)] = time.perf_counter() - start
        feats[(method, s)] = clf.features(xs)
        correct[(method, s)] = clf.predict(xs) == labels
    curves = {m: {"scales": scales[m],
                  "accuracy": [float(correct[(m, s)].mean()) for s in scales[m]],
                  "fdd": [_fdd_from_features(feats[(m, s)], ref) for s in scales[m]],
                  "seconds": [seconds[(m, s)] for s in scales[m]]} for m in METHODS}
    boot = _bootstrap(feats, correct, scales, targets, ref, n, n_boot, seed)
    for m in METHODS:
        curves[m]["accuracy_se"] = [float(v) for v in boot["acc"][m].std(axis=0, ddof=1)]
        curves[m]["fdd_se"] = [float(v) for v in boot["fdd"][m].std(axis=0, ddof=1)]
    settings = {"n": n, "steps": steps, "eta": 0.0, "seed": seed, "n_boot": n_boot, "num_classes": num_classes,
                "labels": "arange(n) % num_classes", "standard_errors": "bootstrap over samples (paired indices)"}
    return {"settings": settings, "curves": curves, "matched": matched_table(curves, targets, boot["matched"])}


def _bootstrap(feats, correct, scales, targets, ref, n, n_boot, seed):
    """Replicates of every curve and of the matched FDDs, with the same resampled indices everywhere."""
    g = np.random.default_rng([seed, 2024])
    acc = {m: np.empty((n_boot, len(scales[m]))) for m in METHODS}
    fdd = {m: np.empty((n_boot, len(scales[m]))) for m in METHODS}
    matched = np.full((n_boot, len(targets), 2), np.nan)
    for b in range(n_boot):
        idx = g.integers(0, n, n)
        for m in METHODS:
            for j, s in enumerate(scales[m]):
                acc[m][b, j] = correct[(m, s)][idx].mean()
                fdd[m][b, j] = _fdd_from_features(feats[(m, s)][idx], ref)
        for k, a in enumerate(targets):
            matched[b, k] = [fdd_at_accuracy(acc[m][b], fdd[m][b], a) for m in METHODS]
    return {"acc": acc, "fdd": fdd, "matched": matched}


def matched_table(curves: dict, targets, replicates=None) -> list:
    """One row per target accuracy: each method's interpolated FDD and scale, and their difference.

    ``curves``: ``sweep_guidance``'s curves; ``replicates`` (n_boot, len(targets), 2): bootstrap
    replicates of the two FDDs, for the standard errors (the fraction of replicates in which a curve
    did not reach the target is reported as ``missing``). A target that one curve never reaches gives
    ``None`` values in its row.
    """
    rows = []
    for k, a in enumerate(targets):
        row = {"accuracy": float(a)}
        for m, key in zip(METHODS, ("classifier", "free")):
            c = curves[m]
            f, s = fdd_at_accuracy(c["accuracy"], c["fdd"], float(a), c["scales"])
            row[f"{key}_fdd"], row[f"{key}_scale"] = (None, None) if np.isnan(f) else (float(f), float(s))
        both = row["classifier_fdd"] is not None and row["free_fdd"] is not None
        row["difference"] = row["classifier_fdd"] - row["free_fdd"] if both else None
        if replicates is not None:
            r = replicates[:, k, :]
            ok = ~np.isnan(r).any(axis=1)
            row["missing"] = float(1 - ok.mean())
            if both and ok.sum() > 1:
                row["classifier_fdd_se"] = float(r[ok, 0].std(ddof=1))
                row["free_fdd_se"] = float(r[ok, 1].std(ddof=1))
                row["difference_se"] = float((r[ok, 0] - r[ok, 1]).std(ddof=1))
        rows.append(row)
    return rows


def format_sweep(result: dict) -> str:
    """The two tables of a sweep as text: every setting, then the FDDs at the matched accuracies."""
    st, out = result["settings"], []
    out.append(f"{st['n']} digits per setting (labels balanced), DDIM {st['steps']} steps, eta = 0; "
               f"± = bootstrap standard error ({st['n_boot']} resamples of the samples)")
    out.append(f"{'method':18s}{'scale':>7s}{'label accuracy':>20s}{'FDD':>16s}")
    for m, c in result["curves"].items():
        for s, a, ase, f, fse in zip(c["scales"], c["accuracy"], c["accuracy_se"], c["fdd"], c["fdd_se"]):
            out.append(f"{m:18s}{s:7g}{a:12.3f} ± {ase:.3f}{f:9.3f} ± {fse:.3f}")
    out.append("")
    out.append(f"{'accuracy':>8s} | {'classifier: s':>13s} {'FDD':>15s} | {'classifier-free: w':>18s} {'FDD':>15s} | "
               f"{'difference (clf - free)':>23s}")
    for r in result["matched"]:
        if r["difference"] is None:
            missing = [name for name, key in (("classifier guidance", "classifier_fdd"),
                                              ("classifier-free guidance", "free_fdd")) if r.get(key) is None]
            out.append(f"{r['accuracy']:8.2f} | not reached by " + " nor by ".join(missing))
            continue
        out.append(f"{r['accuracy']:8.2f} | {r['classifier_scale']:13.2f} {r['classifier_fdd']:7.3f} ± "
                   f"{r.get('classifier_fdd_se', float('nan')):.3f} | {r['free_scale']:18.2f} {r['free_fdd']:7.3f} ± "
                   f"{r.get('free_fdd_se', float('nan')):.3f} | {r['difference']:+15.3f} ± {r.get('difference_se', float('nan')):.3f}")
    return "\n".join(out)
