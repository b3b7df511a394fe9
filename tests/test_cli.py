"""ddpm-ref train / sample / evaluate / demo: tiny runs end to end, and every bad input → one line, exit 2."""

import dataclasses
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddpm_ref import train as tr
from ddpm_ref.checkpoint import load_checkpoint, save_checkpoint
from ddpm_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]

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


def _bad_input_table(d, roll, tmp_path):
    """``{what the message must say: argv}``: seventy command lines a student might type.

    (A table, so longer than a function should be: one row per case reads better than helpers.)
    """
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    odd, wide, huge_labels = tmp_path / "odd.npz", tmp_path / "wide.npz", tmp_path / "labels.npz"
    np.savez(odd, x=np.zeros((10, 7, 7), np.uint8))                   # 7×7 cannot be halved
    np.savez(wide, x=np.zeros((10, 8, 6), np.uint8))
    np.savez(huge_labels, x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10) * 10 ** 8)   # labels up to 9e8
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    under = str(a_file / "inside")
    ckpt_dir = tmp_path / "ckpt_is_dir"
    (ckpt_dir / "checkpoint.npz").mkdir(parents=True)
    no_train = tmp_path / "no_train.npz"
    arrays, meta = load_checkpoint(os.path.join(d, "checkpoint.npz"))
    save_checkpoint(str(no_train), arrays, {k: v for k, v in meta.items() if k not in ("train", "format", "version")},
                    json_path="")
    new = lambda name: ["--run-dir", str(tmp_path / name)]          # noqa: E731
    return {
        # train: values
        "known data set": ["train", "--data", "imagenet", "--steps", "1"],
        "--steps": ["train", "--steps", "0", *new("a")],
        "--batch-size": ["train", "--batch-size", "-3", *new("a")],
        "--seed": ["train", "--seed", "-1", *new("a")],
        "--grad-clip": ["train", "--grad-clip", "nan", *new("a")],
        "--lr": ["train", "--lr", "inf", *new("a")],
        "--ema-decay": ["train", "--ema-decay", "1", *new("a")],
        "--p-uncond": ["train", "--p-uncond", "nan", *new("a")],
        "--dropout": ["train", "--dropout", "nan", *new("a")],
        "--warmup": ["train", "--warmup", "-1", *new("a")],
        "--workers": ["train", "--workers", "0", *new("a")],
        "--schedule": ["train", "--schedule", "zigzag", *new("a")],
        "whole number": ["train", "--steps", "2.5"],
        "expected comma-separated integers": ["train", "--channel-mults", "1,x"],
        "invalid choice": ["sample", "--sampler", "euler"],
        # train: sizes, refused up front with the estimate
        "--batch-size 1000000000000 needs about": ["train", *TINY, "--batch-size", "1e12", *new("b")],
        "--T 1000000000000 needs about": ["train", "--T", "1e12", *new("b")],
        "--n-points 1000000000000 needs about": ["train", "--data", "moons", "--n-points", "1e12", *new("b")],
        "label embedding": ["train", "--data", str(huge_labels), *TINY, *new("b")],
        # train: data that does not fit the model
        "divisible": ["train", "--data", str(odd), *TINY, *new("x")],
        "square": ["train", "--data", str(wide), *TINY, *new("y")],
        "labels": ["train", "--data", "swissroll", "--cond", "--steps", "1", *new("c")],
        # train: run directories
        "ends in .npz": ["train", *TINY, "--run-dir", str(tmp_path / "run.npz")],
        "is a file": ["train", *TINY, "--run-dir", str(a_file)],
        "cannot be created": ["train", *TINY, "--run-dir", under],
        "is a directory": ["train", *TINY, "--run-dir", str(ckpt_dir)],
        "already holds a run": ["train", *TINY, "--run-dir", d],
        # train --resume: only steps, checkpoint interval, lr, device, workers may change
        "no checkpoint": ["train", "--resume", *new("nothing")],
        "--data": ["train", "--resume", "--run-dir", d, "--data", "moons"],
        "--batch-size 9": ["train", "--resume", "--run-dir", d, "--batch-size", "9"],
        "--base-channels": ["train", "--resume", "--run-dir", d, "--base-channels", "16"],
        "--cond": ["train", "--resume", "--run-dir", d, "--uncond"],
        "--T 30": ["train", "--resume", "--run-dir", d, "--T", "30"],
        "already at step": ["train", "--resume", "--run-dir", d, "--steps", "1"],
        # sample
        "not a ddpm_ref checkpoint": ["sample", "--run-dir", str(garbage)],
        "exist": ["sample", "--run-dir", str(tmp_path / "missing")],
        "incomplete": ["sample", "--run-dir", str(no_train)],
        "guidance": ["sample", "--run-dir", roll, "--guidance", "1"],
        "--label": ["sample", "--run-dir", d, "--label", "10"],
        "--steps must": ["sample", "--run-dir", d, "--sampler", "ddim", "--steps", "0"],
        "--num": ["sample", "--run-dir", d, "-n", "0"],
        "T=": ["sample", "--run-dir", d, "--sampler", "ddim", "--steps", "21"],
        "--seed must": ["sample", "--run-dir", d, "--seed", "-1"],
        "--eta must": ["sample", "--run-dir", d, "--eta", "nan"],
        "--eta must be": ["sample", "--run-dir", d, "--eta", "2"],
        "--guidance must": ["sample", "--run-dir", d, "--guidance", "nan"],
        "-n 1000000000000 needs about": ["sample", "--run-dir", d, "-n", "1e12"],
        "--trajectory draws images": ["sample", "--run-dir", roll, "--trajectory", str(tmp_path / "t.png")],
        "--out": ["sample", "--run-dir", d, "--out", str(tmp_path)],
        "--npz": ["sample", "--run-dir", d, "--npz", under + ".npz"],
        "--trajectory": ["sample", "--run-dir", d, "--trajectory", under + ".png"],
        # evaluate
        "--num-t": ["evaluate", "--run-dir", d, "--num-t", "0"],
        "--num-t 21 is more than": ["evaluate", "--run-dir", d, "--num-t", "21"],
        "8×8": ["evaluate", "--run-dir", roll],
        "--json": ["evaluate", "--run-dir", d, "--json", under + ".json", "--num-t", "2"],
        "--guidance must be a finite": ["evaluate", "--run-dir", d, "--guidance", "inf", "--num-t", "2"],
        "--steps 5000 is more than": ["evaluate", "--run-dir", d, "--steps", "5000", "--num-t", "2"],
        "at least 2": ["evaluate", "--run-dir", d, "-n", "1", "--num-t", "2"],
        # demo: every option checked before training
        "--ddim-steps": ["demo", "--ddim-steps", "0", *new("z")],
        "--ddim-steps 5000": ["demo", "--ddim-steps", "5000", *new("z")],
        "--guidance must be a": ["demo", "--guidance", "nan", *new("z")],
        "MLP on points": ["demo", "--run-dir", roll, "--ddim-steps", "5"],
        "--run-dir": ["demo", "--run-dir", under],
        # figures
        "U-Net trained on the 8×8 digits": ["figures", "--only", "demo_loss", "--run-dir", roll,
                                            "--out", str(tmp_path / "figs")],
        "--out '": ["figures", "--only", "schedules", "--out", under],
        "unknown figure": ["figures", "--only", "nope"],
        # bench
        "--threads": ["bench", "--threads", "0"],
        "--warmup": ["bench", "--warmup", "-1"],
        "--batch 100000000 needs about": ["bench", "--batch", "1e8", "--no-torch"],
        "--json '": ["bench", "--json", under + ".json"],
    }


def test_bad_inputs_exit_2_with_one_line(runs, tmp_path, capsys):
    d, roll = str(runs / "digits"), str(runs / "roll")
    before = sorted(p.name for p in (runs / "digits").iterdir())
    for needle, argv in _bad_input_table(d, roll, tmp_path).items():
        try:
            status = main(argv)
        except SystemExit as exit:         # argparse's own errors
            status = exit.code
        err = capsys.readouterr().err.strip()
        assert status == 2, (needle, argv, err)
        assert err.count("\n") == 0 and "error:" in err, (needle, err)
        assert needle.lower() in err.lower(), (needle, err)
    assert sorted(p.name for p in (runs / "digits").iterdir()) == before     # nothing written there


def test_one_line_in_a_real_process(runs, tmp_path):
    """No traceback on the real stderr, for a check, an argparse error and an unwritable path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in (["sample", "--run-dir", str(runs / "digits"), "--eta", "nan"], ["train", "--steps", "x"],
                 ["train", "--run-dir", "/proc/ddpm_ref_cannot_be_here", *TINY]):
        r = subprocess.run([sys.executable, "-m", "ddpm_ref", *argv], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)
        assert "Traceback" not in r.stderr


def test_full_disk_and_out_of_memory_are_one_line_and_leave_no_file(runs, tmp_path, capsys, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", no_space)
    npz = tmp_path / "s.npz"
    argv = ["sample", "--run-dir", str(runs / "digits"), "-n", "2", "--out", str(tmp_path / "s.png"),
            "--npz", str(npz), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and str(npz) in err and "\n" not in err, err
    assert not npz.exists() and not list(tmp_path.glob(".tmp-*"))      # no truncated .npz
    monkeypatch.undo()

    def no_memory(*args, **kwargs):
        raise MemoryError

    import ddpm_ref.sample as sample_module

    monkeypatch.setattr(sample_module, "ddpm_step", no_memory)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "out of memory" in err and "\n" not in err, err


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


def test_sampling_uses_the_same_workers_on_any_machine(runs, tmp_path, monkeypatch):
    """A seed gives the same bits whatever the CPU count: the U-Net's batch is split over a fixed
    number of threads (1 vs 2 threads need not agree to the last bit)."""
    from ddpm_ref.runs import SAMPLING_WORKERS, load_run

    assert SAMPLING_WORKERS == 2
    drawn = []
    for cpus in (1, 16):
        monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
        assert load_run(str(runs / "digits"))[0].workers == 2
        npz = tmp_path / f"cpus{cpus}.npz"
        assert main(["sample", "--run-dir", str(runs / "digits"), "-n", "6", "--out", str(tmp_path / "s.png"),
                     "--npz", str(npz), "--no-progress"]) == 0
        with np.load(npz) as f:
            drawn.append(f["samples"])
    assert drawn[0].tobytes() == drawn[1].tobytes()
