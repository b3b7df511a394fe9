r"""Do the prompt model's words combine? A digit's stroke words held out of every training caption.

Lesson 17's prompt model is asked only for prompts it saw in training ("thick four" among them). Here
the same model (``PROMPT_CONFIG``: the demo's U-Net reading prompts, 3000 steps) is trained from
scratch on captions in which one digit, ``held_out`` (default 4), never gets a stroke word: its
``thickness`` is set to 0 ("middle third") for every training image of that digit, so neither
"thick four" nor "thin four" nor "thick digit" with a four behind it ever occurs. "thick" and "thin"
are still learned, from the other nine digits. Then, for every digit d, samples of "thick d" and
"thin d" are drawn (DDIM, η = 0, without guidance and with w = 1) and the gap in ink between the two
is compared with the gap between the thick and the thin training digits of class d (those of the
held-out digit measured on its true strokes, which the model never saw).

If the held-out digit's gap is positive, the network has combined "thick" with "four" without ever
seeing the two together; how close it comes to the seen digits' gaps says how well.

    python -m ddpm_ref.bench.prompt_holdout --json figures/prompt_holdout.json      # the committed run
    python -m ddpm_ref.bench.prompt_holdout --steps 300 --samples 8                  # a quick look

Layer: tooling beside the stack (it trains through the loop layer, ``ddpm_ref.train.train``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref.bench.committed_run import run_and_report

__all__ = ["holdout_dataset", "stroke_gaps", "run_prompt_holdout", "format_report", "main"]


def holdout_dataset(held_out: int):
    """The training digits with no stroke word for digit ``held_out`` (its thickness set to 0)."""
    from ddpm_ref.data import load_dataset

    if isinstance(held_out, bool) or not isinstance(held_out, (int, np.integer)) or not 0 <= held_out <= 9:
        raise ValueError(f"held_out must be a digit 0..9, got {held_out!r}")
    data = load_dataset("digits")
    thickness = data.thickness.copy()
    thickness[data.y == held_out] = 0
    return dataclasses.replace(data, thickness=thickness, name=f"digits without stroke words for {held_out}")


def stroke_gaps(samples: dict) -> list:
    """[(d, gap, standard error)] for d in the digit words: mean ink of "thick d" minus that of "thin d"."""
    from ddpm_ref.prompts import DIGIT_WORDS, ink

    rows = []
    for d in DIGIT_WORDS:
        thick, thin = ink(samples[f"thick {d}"]), ink(samples[f"thin {d}"])
        se = float(np.hypot(thick.std(ddof=1), thin.std(ddof=1)) / np.sqrt(len(thick)))
        rows.append((d, float(thick.mean() - thin.mean()), se))
    return rows


def run_prompt_holdout(steps: int = 3000, held_out: int = 4, samples: int = 40, ddim_steps: int = 25,
                       seed: int = 0, progress: bool = True) -> dict:
    """Train the held-out model, sample every "thick d" / "thin d" at w = 0 and 1; the results as a dict."""
    from ddpm_ref.data import load_dataset
    from ddpm_ref.prompts import DIGIT_WORDS, ink, sample_prompts
    from ddpm_ref.train import PROMPT_CONFIG, train

    steps, samples = check_positive_int("steps", steps), check_positive_int("samples", samples)
    if samples < 2:
        raise ValueError(f"samples must be at least 2 (a standard error needs two), got {samples}")
    ddim_steps = check_positive_int("ddim_steps", ddim_steps)
    data = holdout_dataset(held_out)
    config = dataclasses.replace(PROMPT_CONFIG, steps=steps, seed=seed, checkpoint_every=0)
    wall, cpu = time.perf_counter(), time.process_time()
    state = train(config, None, data=data, progress=progress, message=lambda *a: None)
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    net = state.model
    net.load_params(state.ema.params)                       # sample with the EMA weights, as every run does
    prompts = [f"{s} {d}" for d in DIGIT_WORDS for s in ("thin", "thick")]
    gaps = {}
    for w in (0.0, 1.0):
        out = sample_prompts(net, config.make_schedule(), prompts, samples, steps=ddim_steps, guidance=w, rng=seed + 1)
        gaps[w] = stroke_gaps(out)
    full = load_dataset("digits")                           # the true strokes, the held-out digit's included
    amount = ink(full.x)
    data_gap = [float(amount[(full.y == c) & (full.thickness > 0)].mean() - amount[(full.y == c) & (full.thickness < 0)].mean())
                for c in range(10)]
    rows = [{"digit": d, "held_out": c == held_out, "training_gap": data_gap[c],
             "gap_w0": gaps[0.0][c][1], "se_w0": gaps[0.0][c][2], "gap_w1": gaps[1.0][c][1], "se_w1": gaps[1.0][c][2]}
            for c, d in enumerate(DIGIT_WORDS)]
    return {"held_out_digit": held_out, "steps": steps, "samples_per_prompt": samples, "ddim_steps": ddim_steps,
            "seed": seed, "final_loss": float(np.mean(state.losses[-100:])), "train_wall_s": train_wall,
            "train_cpu_s": train_cpu, "rows": rows,
            "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"}


def format_report(res: dict) -> str:
    """The table of ``run_prompt_holdout``'s result, one row per digit, the held-out one marked."""
    h = res["held_out_digit"]
    lines = [f"stroke words held out for digit {h}: {res['steps']} training steps (loss {res['final_loss']:.4f}, "
             f"{res['train_cpu_s']:.0f} s CPU), {res['samples_per_prompt']} samples per prompt, DDIM {res['ddim_steps']}",
             'ink of "thick d" minus ink of "thin d" (± standard error), beside the training digits\' own gap:',
             f"{'d':>8s}{'training digits':>17s}{'samples, w = 0':>19s}{'samples, w = 1':>19s}"]
    for r in res["rows"]:
        lines.append(f"{r['digit']:>8s}{r['training_gap']:17.3f}{r['gap_w0']:12.3f} ± {r['se_w0']:.3f}"
                     f"{r['gap_w1']:12.3f} ± {r['se_w1']:.3f}" + ("   <- never captioned thick/thin" if r["held_out"] else ""))
    seen = [r for r in res["rows"] if not r["held_out"]]
    lines.append(f"the nine seen digits, mean: training {np.mean([r['training_gap'] for r in seen]):.3f}, "
                 f"w = 0 {np.mean([r['gap_w0'] for r in seen]):.3f}, w = 1 {np.mean([r['gap_w1'] for r in seen]):.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm_ref.bench.prompt_holdout", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="training steps (default: 3000, the prompt model's)")
    p.add_argument("--held-out", type=int, default=4, help="the digit whose stroke words are held out (default: 4)")
    p.add_argument("--samples", type=int, default=40, help="samples per prompt (default: 40)")
    p.add_argument("--ddim-steps", type=int, default=25, help="DDIM steps (default: 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results (with the command) as JSON")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    return run_and_report("ddpm_ref.bench.prompt_holdout", argv, args.json, report=format_report,
                          run=lambda: run_prompt_holdout(args.steps, args.held_out, args.samples, args.ddim_steps,
                                                         args.seed, progress=not args.no_progress))

if __name__ == "__main__":
    sys.exit(main())
