"""Issue 11 on the command line: ``train --prediction/--learn-sigma/--hybrid-lambda/--zero-terminal-snr``
and ``sample --sampler .../--spacing/--steps-offset/--threshold/--clip-range``, end to end at tiny
sizes (moons MLPs and one 8×8 U-Net, T = 20, 3 steps), and every bad combination → one line, exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddpm_ref.cli import main
from ddpm_ref.runs import load_run
from ddpm_ref.sample import ModelEps, sample_ddim, sample_ddpm
from ddpm_ref.score import sample_probability_flow
from ddpm_ref.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
MOONS = ["--data", "moons", "--n-points", "200", "--steps", "3", "--batch-size", "8", "--T", "20", "--no-progress"]
UNET = ["--steps", "3", "--batch-size", "8", "--base-channels", "8", "--groups", "4", "--attention", "",
        "--T", "20", "--no-progress"]
SAMPLERS = ("ddpm", "ddim", "langevin", "sde", "ode-euler", "ode-heun")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four tiny runs trained through the CLI: ε, x_0, v with zero terminal SNR (moons), learned σ (digits)."""
    root = tmp_path_factory.mktemp("runs11")
    assert main(["train", *MOONS, "--run-dir", str(root / "eps")]) == 0
    assert main(["train", *MOONS, "--prediction", "x0", "--run-dir", str(root / "x0")]) == 0
    assert main(["train", *MOONS, "--prediction", "v", "--zero-terminal-snr", "--schedule", "cosine",
                 "--run-dir", str(root / "zsnr")]) == 0
    assert main(["train", *UNET, "--learn-sigma", "--hybrid-lambda", "0.01", "--run-dir", str(root / "sigma")]) == 0
    return root


def _saved(run_dir):
    return json.loads((Path(run_dir) / "config.json").read_text())


def _sample(run_dir, tmp_path, *flags, n=6):
    """Sample through the CLI into an .npz; returns the samples."""
    npz = tmp_path / f"s{len(list(tmp_path.iterdir()))}.npz"
    argv = ["sample", "--run-dir", str(run_dir), "-n", str(n), "--no-progress", "--out", str(tmp_path / "s.png"),
            "--npz", str(npz), *flags]
    assert main(argv) == 0, argv
    with np.load(npz) as f:
        return f["samples"]


def test_train_flags_are_saved_in_the_run(runs):
    train = _saved(runs / "zsnr")["train"]
    assert (train["prediction"], train["zero_terminal_snr"], train["schedule"]) == ("v", True, "cosine")
    assert TrainConfig(**train).make_schedule().alpha_bars[20] == 0
    assert _saved(runs / "x0")["train"]["prediction"] == "x0"
    sigma = _saved(runs / "sigma")
    assert sigma["train"]["learn_sigma"] is True and sigma["train"]["hybrid_lambda"] == 0.01
    assert sigma["model"]["kind"] == "unet" and sigma["model"]["config"]["learn_sigma"] is True
    eps = _saved(runs / "eps")
    assert (eps["train"]["prediction"], eps["train"]["learn_sigma"], eps["train"]["zero_terminal_snr"]) == \
        ("eps", False, False)


def test_resume_keeps_the_flags_that_define_the_run(runs, capsys):
    d = str(runs / "zsnr")
    for flags, name in ((["--prediction", "x0"], "--prediction"), (["--learn-sigma"], "--learn-sigma"),
                        (["--schedule", "linear"], "--schedule")):
        assert main(["train", "--run-dir", d, "--resume", "--steps", "4", "--no-progress", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--resume: {name}" in err, err
    s = str(runs / "sigma")
    assert main(["train", "--run-dir", s, "--resume", "--hybrid-lambda", "0.1", "--no-progress"]) == 2
    assert "--resume: --hybrid-lambda 0.1 differs" in capsys.readouterr().err
    e = str(runs / "eps")
    assert main(["train", "--run-dir", e, "--resume", "--zero-terminal-snr", "--prediction", "v", "--no-progress"]) == 2
    assert "--resume: --prediction" in capsys.readouterr().err
    # the same values again are no change: the run continues
    assert main(["train", "--run-dir", d, "--resume", "--steps", "4", "--prediction", "v", "--zero-terminal-snr",
                 "--no-progress"]) == 0
    assert "step 4" in capsys.readouterr().out and _saved(d)["train"]["prediction"] == "v"


def test_every_sampler_draws_finite_samples_deterministically(runs, tmp_path):
    for sampler in SAMPLERS:
        steps = [] if sampler == "ddpm" else ["--steps", "4"]
        a = _sample(runs / "x0", tmp_path, "--sampler", sampler, *steps, "--seed", "3")
        b = _sample(runs / "x0", tmp_path, "--sampler", sampler, *steps, "--seed", "3")
        c = _sample(runs / "x0", tmp_path, "--sampler", sampler, *steps, "--seed", "4")
        assert a.shape == (6, 2) and np.all(np.isfinite(a)), sampler
        assert np.array_equal(a, b), sampler
        assert not np.array_equal(a, c), sampler             # another seed, another x_T


def test_sample_uses_the_runs_schedule_and_prediction(runs, tmp_path):
    """The CLI's samples equal the library's, called with TrainConfig.make_schedule() and the saved prediction."""
    d = runs / "zsnr"
    model, meta = load_run(str(d))
    cfg = TrainConfig(**meta["train"])
    sched, y = cfg.make_schedule(), np.arange(6) % 2
    want = sample_ddpm(ModelEps(model), sched, (6, 2), rng=5, y=y, prediction="v", progress=False)
    assert np.array_equal(_sample(d, tmp_path, "--seed", "5"), want)
    want = sample_ddim(ModelEps(model), sched, (6, 2), steps=5, rng=5, y=y, prediction="v", spacing="trailing",
                       threshold="dynamic", percentile=0.9, progress=False)
    got = _sample(d, tmp_path, "--seed", "5", "--sampler", "ddim", "--steps", "5", "--spacing", "trailing",
                  "--threshold", "dynamic", "--threshold-percentile", "0.9")
    assert np.array_equal(got, want)
    want = sample_ddim(ModelEps(model), sched, (6, 2), steps=5, rng=5, y=y, prediction="v", spacing="leading",
                       steps_offset=1, clip_x0=True, clip_range=0.5, progress=False)
    got = _sample(d, tmp_path, "--seed", "5", "--sampler", "ddim", "--steps", "5", "--spacing", "leading",
                  "--steps-offset", "1", "--clip-range", "0.5")
    assert np.array_equal(got, want) and np.abs(got).max() <= 0.5 + 1e-6
    e = runs / "eps"                                       # an ε-run through the score sampler, unchanged
    model, meta = load_run(str(e))
    want = sample_probability_flow(ModelEps(model), TrainConfig(**meta["train"]).make_schedule(), (6, 2),
                                   steps=4, spacing="trailing", solver="heun", rng=5, y=y)
    got = _sample(e, tmp_path, "--seed", "5", "--sampler", "ode-heun", "--steps", "4", "--spacing", "trailing")
    assert np.array_equal(got, want)


def test_score_samplers_convert_an_x0_prediction_to_eps(runs, tmp_path):
    """Independent route: an Euler step of the probability-flow ODE in σ is a DDIM step with η = 0
    (ddpm_ref.score), so ode-euler on an x_0-run must match ddim on the same timesteps, which uses x̂_0 directly."""
    ode = _sample(runs / "x0", tmp_path, "--sampler", "ode-euler", "--steps", "6", "--spacing", "linspace")
    ddim = _sample(runs / "x0", tmp_path, "--sampler", "ddim", "--steps", "6", "--spacing", "linspace")
    np.testing.assert_allclose(ode, ddim, rtol=1e-4, atol=1e-4)


def test_learned_variance_unet(runs, tmp_path):
    d = runs / "sigma"
    small = _sample(d, tmp_path, "--variance", "fixed_small", "--label", "3", n=4)
    large = _sample(d, tmp_path, "--variance", "fixed_large", "--label", "3", n=4)
    assert small.shape == (4, 1, 8, 8) and np.all(np.isfinite(small))
    assert np.array_equal(small, large)            # the learned σ_t² replaces --variance
    ddim = _sample(d, tmp_path, "--sampler", "ddim", "--steps", "4", "--eta", "1", "--guidance", "1", n=4)
    assert ddim.shape == (4, 1, 8, 8) and np.all(np.isfinite(ddim))
    ode = _sample(d, tmp_path, "--sampler", "ode-heun", "--steps", "3", n=4)      # v_σ dropped for the score
    assert ode.shape == (4, 1, 8, 8) and np.all(np.isfinite(ode))


def _bad_combinations(runs, tmp_path):
    """``{what the one line must say: argv}``. Rows on a missing run show the check comes before loading it."""
    zsnr, sigma, x0 = str(runs / "zsnr"), str(runs / "sigma"), str(runs / "x0")
    missing = str(tmp_path / "no_such_run")
    new = lambda name: ["--run-dir", str(tmp_path / name), "--no-progress"]     # noqa: E731
    return {
        "--zero-terminal-snr needs --prediction v or x0": ["train", *MOONS, "--zero-terminal-snr", *new("a")],
        "needs --prediction v or x0": ["train", *MOONS, "--prediction", "eps", "--zero-terminal-snr", *new("b")],
        "--learn-sigma needs image data": ["train", *MOONS, "--learn-sigma", *new("c")],
        "--hybrid-lambda weighs": ["train", *MOONS, "--hybrid-lambda", "0.1", *new("d")],
        "--hybrid-lambda must be": ["train", *MOONS, "--learn-sigma", "--hybrid-lambda", "nan", *new("e")],
        "invalid choice: 'y'": ["train", "--prediction", "y"],
        "unused by deterministic DDIM": ["sample", "--run-dir", sigma, "--sampler", "ddim", "--steps", "3"],
        "--sampler sde steps in log alpha_bar": ["sample", "--run-dir", zsnr, "--sampler", "sde", "--steps", "5"],
        "--sampler ode-euler steps in": ["sample", "--run-dir", zsnr, "--sampler", "ode-euler", "--steps", "5"],
        "--sampler ode-heun steps in": ["sample", "--run-dir", zsnr, "--sampler", "ode-heun", "--steps", "5"],
        "--threshold dynamic and --clip-x0/--clip-range": ["sample", "--run-dir", missing, "--threshold",
                                                            "dynamic", "--clip-range", "2"],
        "both keep x̂_0 in range": ["sample", "--run-dir", missing, "--threshold", "dynamic", "--clip-x0"],
        "--spacing is for ddim": ["sample", "--run-dir", missing, "--spacing", "trailing"],
        "--steps is for ddim": ["sample", "--run-dir", missing, "--steps", "10"],
        "--steps-offset shifts --spacing leading": ["sample", "--run-dir", missing, "--sampler", "ddim",
                                                     "--steps-offset", "1"],
        "--spacing trailing": ["sample", "--run-dir", missing, "--sampler", "ddim", "--spacing", "trailing",
                               "--steps-offset", "1"],
        "--sampler langevin --spacing leading": ["sample", "--run-dir", missing, "--sampler", "langevin",
                                                 "--spacing", "leading", "--steps-offset", "1"],
        "--threshold-percentile needs --threshold": ["sample", "--run-dir", missing, "--threshold-percentile", "0.9"],
        "--threshold-percentile must be": ["sample", "--run-dir", missing, "--threshold", "dynamic",
                                           "--threshold-percentile", "1.5"],
        "--threshold-percentile must be in (0, 1]": ["sample", "--run-dir", missing, "--threshold", "dynamic",
                                                     "--threshold-percentile", "0"],
        "--clip-range must be > 0": ["sample", "--run-dir", missing, "--clip-range", "0"],
        "--clip-range must be a finite": ["sample", "--run-dir", missing, "--clip-range", "nan"],
        "--clip-x0 is for ddpm and ddim": ["sample", "--run-dir", missing, "--sampler", "sde", "--clip-x0"],
        "--threshold is for ddpm and ddim": ["sample", "--run-dir", missing, "--sampler", "ode-heun",
                                             "--threshold", "dynamic"],
        "--trajectory is for ddpm and ddim": ["sample", "--run-dir", missing, "--sampler", "langevin",
                                              "--trajectory", str(tmp_path / "t.png")],
        "--steps 21 is more than the run's T=20": ["sample", "--run-dir", x0, "--sampler", "langevin", "--steps", "21"],
        "moves the first timestep past T=20": ["sample", "--run-dir", x0, "--sampler", "ddim", "--steps", "5",
                                               "--spacing", "leading", "--steps-offset", "19"],
        "invalid choice: 'euler'": ["sample", "--run-dir", x0, "--sampler", "euler"],
    }


def test_bad_combinations_exit_2_with_one_line(runs, tmp_path, capsys):
    for expected, argv in _bad_combinations(runs, tmp_path).items():
        assert _status(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error:" in err and expected in err, (argv, err)
    assert not list(tmp_path.rglob("checkpoint.npz")) and not (tmp_path / "no_such_run").exists()


def _status(argv) -> int:
    """main's exit status, also for argparse's errors (which exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_one_line_in_a_real_process(runs, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["sample", "--run-dir", str(runs / "sigma"), "--sampler", "ddim", "--steps", "3"],
                 ["sample", "--run-dir", str(runs / "zsnr"), "--sampler", "ode-heun"],
                 ["train", *MOONS, "--learn-sigma", "--run-dir", str(tmp_path / "p")]):
        r = subprocess.run([sys.executable, "-m", "ddpm_ref", *argv], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=60)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (argv, r.stderr)
