"""The guidance sweep of lesson 15: matched-accuracy interpolation by hand, and a small sweep on a stub
model whose classifier is exact (a mixture of the ten class-mean digits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ddpm_ref.data.digits import load_digits_images
from ddpm_ref.data.gmm import GaussianMixture
from ddpm_ref.data.gmm_exact import exact_classifier
from ddpm_ref.evaluation.guidance_sweep import fdd_at_accuracy, matched_table, sweep_guidance
from ddpm_ref.schedules import make_schedule

RESULT = Path(__file__).resolve().parents[1] / "figures" / "guidance_matched_accuracy.json"


def test_fdd_at_accuracy_interpolates_the_first_crossing():
    acc, fdd, scales = [0.1, 0.5, 0.9], [1.0, 2.0, 4.0], [0.0, 1.0, 3.0]
    assert fdd_at_accuracy(acc, fdd, 0.7) == pytest.approx(3.0)               # halfway along [0.5, 0.9]
    assert fdd_at_accuracy(acc, fdd, 0.7, scales) == pytest.approx((3.0, 2.0))
    assert fdd_at_accuracy(acc, fdd, 0.5) == pytest.approx(2.0)
    assert np.isnan(fdd_at_accuracy(acc, fdd, 0.95))                          # never reached
    # a curve that overshoots and comes back: the first crossing counts (0.1 -> 0.6: 0.8 of the way)
    assert fdd_at_accuracy([0.1, 0.6, 0.4, 0.9], [1.0, 2.0, 5.0, 6.0], 0.5) == pytest.approx(1.8)
    with pytest.raises(ValueError, match="target"):
        fdd_at_accuracy(acc, fdd, 1.5)
    with pytest.raises(ValueError, match="accuracy and fdd"):
        fdd_at_accuracy(acc, fdd[:2], 0.5)


def test_matched_table_rows():
    curves = {"classifier": {"scales": [0, 1, 2], "accuracy": [0.1, 0.5, 0.9], "fdd": [1.0, 2.0, 4.0]},
              "classifier-free": {"scales": [-1, 0, 1], "accuracy": [0.1, 0.7, 0.95], "fdd": [1.0, 1.0, 1.5]}}
    rows = matched_table(curves, [0.7, 0.93])
    assert rows[0]["classifier_fdd"] == pytest.approx(3.0) and rows[0]["free_fdd"] == pytest.approx(1.0)
    assert rows[0]["difference"] == pytest.approx(2.0) and rows[0]["free_scale"] == pytest.approx(0.0)
    assert rows[1]["classifier_fdd"] is None and rows[1]["difference"] is None


class _MeanDigits:
    """A stub ε-model: the exact ε of a mixture of the ten class-mean digits (std 0.15), with y its component."""

    num_classes, dtype = 10, np.float64

    def __init__(self, sched):
        x, y = load_digits_images("train", dtype="float64")
        means = np.stack([x[y == k].mean(0).ravel() for k in range(10)])
        self.gmm, self.sched = GaussianMixture(means, np.full(10, 0.15)), sched
        grad = exact_classifier(self.gmm, sched, np.arange(10))
        self.grad_log_prob = lambda xt, t, y: grad(xt.reshape(len(xt), -1), t, y).reshape(xt.shape)

    def __call__(self, xt, t, y=None):
        return self.gmm.optimal_eps(self.sched, xt.reshape(len(xt), -1), t, y).reshape(xt.shape)


def test_sweep_accuracy_rises_with_scale_and_both_start_unconditional():
    sched = make_schedule("linear", 1000)
    model = _MeanDigits(sched)
    res = sweep_guidance(model, model.grad_log_prob, sched, classifier_scales=(0.0, 0.3, 1.0),
                         free_scales=(-1.0, -0.5, 0.0), targets=(0.5,), n=60, steps=10, n_boot=20, progress=False)
    clf, free = res["curves"]["classifier"], res["curves"]["classifier-free"]
    assert clf["accuracy"][0] < 0.4 and clf["accuracy"][-1] > 0.9, clf["accuracy"]
    assert free["accuracy"][-1] > 0.9, free["accuracy"]
    assert np.all(np.diff(clf["accuracy"]) >= 0) and np.all(np.diff(free["accuracy"]) >= 0)
    # s = 0 and w = -1 are both ε(x_t, ∅) from the same noise: the same samples, the same scores
    assert clf["accuracy"][0] == free["accuracy"][0]
    assert clf["fdd"][0] == pytest.approx(free["fdd"][0], rel=1e-6)
    assert all(se > 0 for se in clf["fdd_se"]) and res["matched"][0]["classifier_fdd"] is not None
    assert res["settings"]["n"] == 60 and len(res["matched"]) == 1


def test_sweep_rejects_bad_arguments():
    sched = make_schedule("linear", 100)
    model = _MeanDigits(sched)
    with pytest.raises(ValueError, match="free_scales"):
        sweep_guidance(model, model.grad_log_prob, sched, free_scales=(-2.0, 0.0), n=20)
    with pytest.raises(ValueError, match="classifier_scales"):
        sweep_guidance(model, model.grad_log_prob, sched, classifier_scales=(1.0, 0.0), n=20)
    with pytest.raises(ValueError, match="n must be"):
        sweep_guidance(model, model.grad_log_prob, sched, n=10)


def test_committed_result_is_consistent():
    """figures/guidance_matched_accuracy.json (lesson 15 prints it): its matched rows are what its curves give."""
    res = json.loads(RESULT.read_text())
    targets = [row["accuracy"] for row in res["matched"]]
    again = matched_table(res["curves"], targets)
    for row, new in zip(res["matched"], again):
        for key in ("classifier_fdd", "free_fdd", "difference", "classifier_scale", "free_scale"):
            assert (row[key] is None) == (new[key] is None), key
            if new[key] is not None:
                assert row[key] == pytest.approx(new[key]), key
    assert res["settings"]["n"] >= 500 and res["settings"]["n_boot"] >= 100


def test_committed_result_backs_lesson_15s_reading():
    """What lesson 15's prose says of the committed sweep: the curves start together, classifier-free guidance is
    ahead from 50 % accuracy on, the classifier's FDD is lowest at s = 3 and climbs after, and w = 0 is more
    accurate than any classifier-guided setting."""
    res = json.loads(RESULT.read_text())
    clf, free = res["curves"]["classifier"], res["curves"]["classifier-free"]
    assert clf["scales"][0] == 0 and free["scales"][0] == -1
    assert clf["accuracy"][0] == free["accuracy"][0] and clf["fdd"][0] == pytest.approx(free["fdd"][0], rel=1e-6)
    assert all(r["difference"] > 0 for r in res["matched"] if r["accuracy"] >= 0.5)
    assert all(r["difference"] < 2 * r["difference_se"] for r in res["matched"] if r["classifier_scale"] <= 3)
    best = int(np.argmin(clf["fdd"]))
    assert clf["scales"][best] == 3 and np.all(np.diff(clf["fdd"][best:]) > 0)
    assert free["accuracy"][free["scales"].index(0.0)] > max(clf["accuracy"])


def test_figure_without_lesson_15s_classifier_says_how_to_make_it(tmp_path):
    from ddpm_ref import plots

    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "checkpoint.npz").write_bytes(b"")         # the demo run "exists"; no classifier beside it
    with pytest.raises(plots.FigureUnavailable, match="lesson 15"):
        plots.make("guidance_matched_accuracy", tmp_path / "out", run_dir=tmp_path / "demo")
