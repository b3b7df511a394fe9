"""The latent-vs-pixel benchmark of lesson 17: time to a target by hand, a tiny run, and the committed result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddpm_ref.bench.latent_vs_pixel import format_report, main, run_latent_vs_pixel, time_to_target

RESULT = Path(__file__).resolve().parents[1] / "figures" / "latent_vs_pixel.json"


def test_time_to_target_is_the_first_checkpoint_at_or_below():
    cps = [{"step": 250, "train_cpu": 10.0, "fdd": 3.0}, {"step": 500, "train_cpu": 21.0, "fdd": 1.2},
           {"step": 750, "train_cpu": 30.0, "fdd": 1.4}, {"step": 1000, "train_cpu": 41.0, "fdd": 0.9}]
    assert time_to_target(cps, 1.5) == (500, 21.0)
    assert time_to_target(cps, 1.2) == (500, 21.0)             # "at or below"
    assert time_to_target(cps, 1.0) == (1000, 41.0)
    assert time_to_target(cps, 0.5) == (None, None)


def test_tiny_run_has_both_models_side_by_side():
    res = run_latent_vs_pixel(steps=4, eval_every=2, samples=20, ddim_steps=2, ae_steps=2, progress=False)
    px, lt = res["runs"]["pixel"], res["runs"]["latent"]
    assert [c["step"] for c in px["checkpoints"]] == [2, 4] == [c["step"] for c in lt["checkpoints"]]
    assert px["input_shape"] == [1, 8, 8] and lt["input_shape"] == [2, 4, 4]
    assert px["checkpoints"][1]["train_cpu"] >= px["checkpoints"][0]["train_cpu"] > 0
    assert res["autoencoder"]["recon_fdd"] > 0 and res["settings"]["samples"] == 20
    text = format_report(res)
    assert "pixel/latent" in text and "parameters" in text


def test_bad_sizes_are_refused_naming_the_argument(capsys):
    with pytest.raises(ValueError, match="eval_every"):
        run_latent_vs_pixel(steps=10, eval_every=20)
    with pytest.raises(ValueError, match="samples"):
        run_latent_vs_pixel(samples=5)
    assert main(["--steps", "0"]) == 2 and "steps" in capsys.readouterr().err


def test_committed_result_reads_and_is_complete():
    """figures/latent_vs_pixel.json (lesson 17 prints it): one checkpoint list per model, every score in range."""
    res = json.loads(RESULT.read_text())
    st = res["settings"]
    assert res["command"].startswith("python -m ddpm_ref.bench.latent_vs_pixel") and res["date"] and res["machine"]
    for run in res["runs"].values():
        steps = [c["step"] for c in run["checkpoints"]]
        assert steps == list(range(st["eval_every"], st["steps"] + 1, st["eval_every"]))
        assert all(0 <= c["accuracy"] <= 1 and c["fdd"] > 0 for c in run["checkpoints"])
    assert "pixel/latent" in format_report(res)


def test_committed_result_backs_lesson_17s_reading():
    """What lesson 17's prose says of the committed run, checked against it."""
    from ddpm_ref.bench.latent_vs_pixel import time_to_target

    res = json.loads(RESULT.read_text())
    px, lt, ae = res["runs"]["pixel"], res["runs"]["latent"], res["autoencoder"]
    # the reconstructions' FDD is within a standard error of the held-out digits'
    assert abs(ae["recon_fdd"] - res["test_digits"]["fdd"]) < res["test_digits"]["fdd_se"]
    # the two FDDs stay within two (combined) standard errors at every checkpoint
    for a, b in zip(px["checkpoints"], lt["checkpoints"]):
        assert abs(a["fdd"] - b["fdd"]) < 2 * (a["fdd_se"] ** 2 + b["fdd_se"] ** 2) ** 0.5, a["step"]
    # a latent step costs less than half a pixel step's CPU time; sampling is several (> 2) times cheaper
    per_step = lambda r: r["train_cpu"] / r["checkpoints"][-1]["step"]       # noqa: E731
    assert per_step(px) > 2 * per_step(lt)
    assert px["checkpoints"][-1]["sample_cpu"] > 2 * lt["checkpoints"][-1]["sample_cpu"]
    both = []
    for target in res["targets"]:
        (ps, pc), (ls, lc) = time_to_target(px["checkpoints"], target), time_to_target(lt["checkpoints"], target)
        if ps is None or ls is None:
            continue
        both.append(target)
        assert ps <= ls <= ps + res["settings"]["eval_every"], target        # as many steps, or one checkpoint more
        if target <= 1.0:
            assert pc > 2 * lc and pc > lc + ae["train_cpu"], target          # < half the CPU; cheaper with the AE
    assert max(both) > 1.0 and (lambda t: time_to_target(px["checkpoints"], t)[1]
                                < time_to_target(lt["checkpoints"], t)[1] + ae["train_cpu"])(max(both))
    # the lowest target: reached by the pixel model only, at its last checkpoint; final FDDs within one s.e.
    low = min(res["targets"])
    assert time_to_target(px["checkpoints"], low)[0] == res["settings"]["steps"]
    assert time_to_target(lt["checkpoints"], low) == (None, None)
    a, b = px["checkpoints"][-1], lt["checkpoints"][-1]
    assert abs(a["fdd"] - b["fdd"]) < min(a["fdd_se"], b["fdd_se"])
