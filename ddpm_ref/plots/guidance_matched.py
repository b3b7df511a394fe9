"""Lesson 15 on the digits: classifier guidance beside classifier-free guidance at matched label accuracy.

The figure needs the demo model (``needs="demo"``) and lesson 15's noisy classifier, cached by the
lesson in ``runs/noisy_classifier/classifier_300.npz`` beside the demo run (300 steps; running lesson 15
once in its default mode makes it). The sweep (``ddpm_ref.evaluation.guidance_sweep``) samples 500
digits for each of 14 settings with 25 DDIM steps (as lesson 15 samples): about 4 minutes on 2 quiet cores. The maker also
writes the numbers it plots as ``guidance_matched_accuracy.json``, which lesson 15 prints and
``tests/test_guidance_sweep.py`` checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ddpm_ref.plots import FigureUnavailable, new_figure, register, save

__all__ = ["CLASSIFIER_CACHE", "plot_guidance_matched", "run_guidance_sweep"]

CLASSIFIER_CACHE = Path("noisy_classifier") / "classifier_300.npz"   # relative to the demo run's parent folder
COLOURS = {"classifier": "tab:blue", "classifier-free": "tab:orange"}
NAMES = {"classifier": "classifier guidance, scale s", "classifier-free": "classifier-free guidance, scale w"}


def run_guidance_sweep(run_dir, seed: int = 0, progress: bool = True, **kwargs) -> dict:
    """``sweep_guidance`` on the demo model in ``run_dir`` guided by lesson 15's cached noisy classifier."""
    from ddpm_ref.evaluation.guidance_sweep import sweep_guidance
    from ddpm_ref.models.noisy_classifier import NoisyClassifier
    from ddpm_ref.runs import load_model
    from ddpm_ref.sample import ModelEps
    from ddpm_ref.schedules import make_schedule

    cache = Path(run_dir).resolve().parent / CLASSIFIER_CACHE
    if not cache.is_file():
        raise FigureUnavailable(f"the guidance sweep needs lesson 15's noisy classifier {cache}, which does not exist; "
                                "run lesson 15 once in its default mode (it trains and caches it in about a minute)")
    net, _ = load_model(str(run_dir))
    clf = NoisyClassifier(base_channels=16, channel_mults=(1, 2), groups=4, num_classes=10, dtype="float32")
    clf.params.update(dict(np.load(cache)))
    sched = make_schedule("linear", 1000)
    result = sweep_guidance(ModelEps(net), clf.grad_log_prob, sched, seed=seed, progress=progress, **kwargs)
    result["settings"]["classifier"] = str(CLASSIFIER_CACHE)
    return result


def plot_guidance_matched(result: dict):
    """FDD against label accuracy along both sweeps (error bars: bootstrap standard errors), and the two
    methods' FDD at the matched accuracies with their difference."""
    curves, rows, st = result["curves"], result["matched"], result["settings"]
    fig = new_figure(12, 4.4)
    a0, a1 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.4, 1]})
    for m, c in curves.items():
        a0.errorbar(c["accuracy"], c["fdd"], xerr=c["accuracy_se"], yerr=c["fdd_se"], fmt="o-", ms=4, capsize=2,
                    color=COLOURS[m], label=NAMES[m])
        for x, y, s in zip(c["accuracy"], c["fdd"], c["scales"]):
            a0.annotate(f"{s:g}", (x, y), textcoords="offset points", xytext=(4, 4 if m == "classifier" else -10),
                        fontsize=7, color=COLOURS[m])
    for row in rows:
        a0.axvline(row["accuracy"], color="0.85", lw=0.8, zorder=0)
    a0.set(xlabel="label accuracy (the digit classifier agrees with the requested label)",
           ylabel="Fréchet digit distance (lower is better)", xlim=(0, 1.02), ylim=(0, None),
           title="each method over its own scale (numbers: s or w; s = 0 and w = −1 are both unconditional)")
    a0.title.set_fontsize(9)
    a0.legend(fontsize=8, loc="upper left")
    ok = [r for r in rows if r["difference"] is not None]
    x = np.arange(len(ok))
    for k, (key, m) in enumerate((("classifier", "classifier"), ("free", "classifier-free"))):
        a1.errorbar(x + (k - 0.5) * 0.2, [r[f"{key}_fdd"] for r in ok], yerr=[r.get(f"{key}_fdd_se", 0) for r in ok],
                    fmt="o", capsize=3, color=COLOURS[m], label=m)
    for xi, r in zip(x, ok):
        a1.annotate(f"Δ = {r['difference']:+.2f}\n± {r.get('difference_se', np.nan):.2f}", (xi, 0.02),
                    xycoords=("data", "axes fraction"), ha="center", fontsize=7)
    a1.set(xticks=x, xticklabels=[f"{r['accuracy']:.0%}" for r in ok], xlabel="matched label accuracy",
           ylabel="FDD at that accuracy (interpolated)", ylim=(0, None),
           title="FDD at matched accuracy\nΔ = classifier − classifier-free, ± paired bootstrap s.e.")
    a1.title.set_fontsize(9)
    a1.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"the demo model guided by lesson 15's noisy classifier or by itself: {st['n']} digits per setting "
                 f"(labels balanced), DDIM {st['steps']} steps, η = 0; error bars: bootstrap over samples "
                 f"({st['n_boot']} resamples)", fontsize=9)
    return fig


@register("guidance_matched_accuracy", "classifier guidance (the demo model asked unconditionally + lesson 15's noisy "
          "classifier) beside classifier-free guidance over their scales: FDD against label accuracy with bootstrap "
          "error bars, and FDD at matched accuracies; also writes the numbers as JSON", lessons=("15",), needs="demo")
def _make_guidance_matched(out_dir, seed, run_dir):
    result = run_guidance_sweep(run_dir, seed=seed)
    path = Path(out_dir) / "guidance_matched_accuracy.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return [save(plot_guidance_matched(result), out_dir, "guidance_matched_accuracy"), path]
