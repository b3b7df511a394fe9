"""The held-out stroke-word benchmark (ddpm_ref/bench/prompt_holdout.py) and lesson 17's reading of its committed run."""

import json
from pathlib import Path

import numpy as np
import pytest

from ddpm_ref.bench.prompt_holdout import format_report, holdout_dataset, main, stroke_gaps
from ddpm_ref.data import load_dataset
from ddpm_ref.prompts import DIGIT_WORDS, training_tokens

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "figures" / "prompt_holdout.json"


def test_the_held_out_digit_never_gets_a_stroke_word():
    full, held = load_dataset("digits"), holdout_dataset(4)
    assert not held.thickness[held.y == 4].any()
    np.testing.assert_array_equal(held.thickness[held.y != 4], full.thickness[full.y != 4])     # the others unchanged
    np.testing.assert_array_equal(held.x, full.x)
    tokens = training_tokens(held.y, held.thickness, np.random.default_rng(0), p_uncond=0.1)
    assert not tokens[held.y == 4, 1].any()                       # no "thick"/"thin" beside a four, ever
    assert tokens[held.y != 4, 1].any()
    with pytest.raises(ValueError, match="held_out must be a digit 0..9"):
        holdout_dataset(10)


def test_stroke_gaps_by_hand():
    """Images of constant grey: ink = (x + 1)/2 exactly, so the gap and its standard error are known."""
    samples = {}
    for c, d in enumerate(DIGIT_WORDS):
        samples[f"thick {d}"] = np.full((2, 1, 8, 8), 0.0) + np.array([0.0, 0.2])[:, None, None, None]   # ink .5, .6
        samples[f"thin {d}"] = np.full((2, 1, 8, 8), -0.5)                                                 # ink .25
    rows = stroke_gaps(samples)
    assert [r[0] for r in rows] == list(DIGIT_WORDS)
    d, gap, se = rows[3]
    assert gap == pytest.approx(0.55 - 0.25) and se == pytest.approx(np.std([0.5, 0.6], ddof=1) / np.sqrt(2))


def test_bad_options_exit_2(capsys):
    assert main(["--held-out", "12", "--steps", "1"]) == 2
    assert main(["--samples", "1", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "held_out must be a digit" in err and "samples must be at least 2" in err


def test_committed_run_and_what_lesson_17_says_of_it():
    """The committed run is a whole run of the default settings, and the claims of lesson 17's reading hold in it."""
    res = json.loads(COMMITTED.read_text())
    assert res["steps"] == 3000 and res["held_out_digit"] == 4 and len(res["rows"]) == 10
    assert [r["held_out"] for r in res["rows"]] == [c == 4 for c in range(10)]
    report = format_report(res)
    assert "never captioned thick/thin" in report.splitlines()[3 + 4]                    # the row of "four"
    four = res["rows"][4]
    seen = [r for r in res["rows"] if not r["held_out"]]
    # lesson 17: "the four's gap is positive, many standard errors from 0, without guidance and with it"
    assert four["gap_w0"] > 5 * four["se_w0"] and four["gap_w1"] > 5 * four["se_w1"]
    # "the four's ratio (gap / its training gap) lies within the seen digits' range, with and without guidance"
    for w in ("w0", "w1"):
        ratios = [r[f"gap_{w}"] / r["training_gap"] for r in seen]
        assert min(ratios) <= four[f"gap_{w}"] / four["training_gap"] <= max(ratios)
    # "the fours' own training gap is the smallest of the ten"
    assert four["training_gap"] == min(r["training_gap"] for r in res["rows"])
    # guidance widens it, for the four as for the others
    assert four["gap_w1"] > four["gap_w0"] and np.mean([r["gap_w1"] for r in seen]) > np.mean([r["gap_w0"] for r in seen])
    nb = json.loads((ROOT / "lessons" / "17_latent_diffusion.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in nb["cells"])
    assert "figures/prompt_holdout.json" in text and "python -m ddpm_ref.bench.prompt_holdout" in text
