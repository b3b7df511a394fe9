"""ddpm-ref train / sample / evaluate / demo: tiny runs end to end, and every bad input → one line, exit 2."""

import dataclasses

import numpy as np
import pytest

from ddpm_ref import train as tr
from ddpm_ref.cli import main

TINY = ["--steps", "3", "--batch-size", "8", "--base-channels", "8", "--groups", "4", "--attention", "",
        "--T", "20", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny digits run and a tiny unconditional swiss-roll run, trained through the CLI."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "--run-dir", str(root / "digits"), *TINY]) == 0
    assert main(["train", "--data", "swissroll", "--n-points", "200", "--run-dir", str(root / "roll"),
                 *TINY]) == 0
    return root


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    return err


def test_train_resume_sample_evaluate(runs, tmp_path, capsys):
    d = str(runs / "digits")
    assert main(["train", "--run-dir", d, "--resume", "--steps", "4", "--no-progress"]) == 0
    assert "step 4" in capsys.readouterr().out
    out = tmp_path / "s.png"
    assert main(["sample", "--run-dir", d, "-n", "10", "--out", str(out), "--no-progress",
                 "--trajectory", str(tmp_path / "traj.png"), "--npz", str(tmp_path / "s.npz")]) == 0
    assert out.stat().st_size > 0 and (tmp_path / "traj.png").exists()
    with np.load(tmp_path / "s.npz") as f:
        assert f["samples"].shape == (10, 1, 8, 8) and list(f["labels"]) == list(range(10))
    assert main(["sample", "--run-dir", d, "-n", "4", "--sampler", "ddim", "--steps", "5", "--eta", "0.5",
                 "--guidance", "2", "--label", "7", "--out", str(out), "--no-progress"]) == 0
    assert main(["evaluate", "--run-dir", d, "--num-t", "2", "-n", "12", "--steps", "3", "--no-progress",
                 "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    assert "bits/dim" in text and "untrained" in text and "held-out digits" in text and "uniform noise" in text
    assert main(["sample", "--run-dir", str(runs / "roll"), "-n", "20", "--out", str(tmp_path / "r.png"),
                 "--no-progress"]) == 0


def test_demo_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tr, "QUICK_CONFIG", dataclasses.replace(tr.QUICK_CONFIG, steps=3, T=20))
    run = tmp_path / "demo"
    assert main(["demo", "--quick", "--run-dir", str(run), "--ddim-steps", "5", "--no-progress"]) == 0
    for name in ("checkpoint.npz", "config.json", "loss.png", "samples_ddpm.png", "samples_ddim.png",
                 "trajectory.png"):
        assert (run / name).stat().st_size > 0, name
    assert "loss.png" in capsys.readouterr().out
    assert main(["demo", "--quick", "--run-dir", str(run), "--ddim-steps", "5", "--no-progress"]) == 0
    assert "reusing" in capsys.readouterr().out


def test_bad_inputs_exit_2_with_one_line(runs, tmp_path, capsys):
    d, roll = str(runs / "digits"), str(runs / "roll")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=np.zeros((10, 7, 7), np.uint8))                   # 7×7 cannot be halved
    wide = tmp_path / "wide.npz"
    np.savez(wide, x=np.zeros((10, 8, 6), np.uint8))
    cases = {
        "known data set": ["train", "--data", "imagenet", "--steps", "1"],
        "steps": ["train", "--steps", "0"],
        "batch_size": ["train", "--batch-size", "-3"],
        "divisible": ["train", "--data", str(odd), *TINY, "--run-dir", str(tmp_path / "x")],
        "square": ["train", "--data", str(wide), *TINY, "--run-dir", str(tmp_path / "y")],
        "resume": ["train", "--resume", "--run-dir", str(tmp_path / "nothing")],
        "garbage": ["sample", "--run-dir", str(garbage)],
        "exist": ["sample", "--run-dir", str(tmp_path / "missing")],
        "guidance": ["sample", "--run-dir", roll, "--guidance", "1"],
        "--label": ["sample", "--run-dir", d, "--label", "10"],
        "--steps": ["sample", "--run-dir", d, "--sampler", "ddim", "--steps", "0"],
        "--num": ["sample", "--run-dir", d, "-n", "0"],
        "T=": ["sample", "--run-dir", d, "--sampler", "ddim", "--steps", "21"],
        "--num-t": ["evaluate", "--run-dir", d, "--num-t", "0"],
        "8×8": ["evaluate", "--run-dir", roll],
        "--ddim-steps": ["demo", "--ddim-steps", "0", "--run-dir", str(tmp_path / "z")],
    }
    for needle, argv in cases.items():
        err = _one_line_error(capsys, argv)
        assert needle.lower() in err.lower(), (needle, err)


def test_cuda_without_a_gpu_is_one_line(capsys):
    import kernels

    if kernels.cuda_available()[0]:
        pytest.skip("a GPU is present")
    err = _one_line_error(capsys, ["train", "--device", "cuda", "--steps", "1"])
    assert "cuda" in err.lower()


def test_alias_spellings(runs, tmp_path, capsys):
    """The spellings of the issue: train --out/--cond, sample --run/--method/--n."""
    out = tmp_path / "m"
    assert main(["train", "--data", "moons", "--n-points", "100", "--cond", "--out", str(out), *TINY]) == 0
    assert (out / "checkpoint.npz").exists()
    png = tmp_path / "a.png"
    assert main(["sample", "--run", str(runs / "digits"), "--method", "ddim", "--steps", "3", "--n", "5",
                 "--out", str(png), "--no-progress"]) == 0
    assert png.stat().st_size > 0
    err = _one_line_error(capsys, ["train", "--data", "swissroll", "--cond", "--steps", "1",
                                   "--out", str(tmp_path / "r")])
    assert "labels" in err
