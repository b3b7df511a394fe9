"""Issue 12's commands end to end at tiny settings, and their bad inputs → one line, exit 2.

inpaint / edit on user images (.npz, .png), train-classifier + sample --classifier,
train-autoencoder + train --latent + sample of a latent run, train --prompts + sample --prompt
(in pixels and in latents: Stable Diffusion's shape in miniature).
"""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from ddpm_ref.checkpoint import save_checkpoint
from ddpm_ref.cli import main
from ddpm_ref.data import load_digits_images
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.runs import MODEL_CLASSES, load_run

UNET = ["--batch-size", "8", "--base-channels", "8", "--groups", "4", "--attention", "", "--T", "20",
        "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def _png(path, image):
    matplotlib.image.imsave(path, (np.asarray(image) + 1) / 2, cmap="gray", vmin=0.0, vmax=1.0)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A pixel run, a classifier, an autoencoder and a latent run (all tiny), plus input files."""
    r = tmp_path_factory.mktemp("issue12")
    assert main(["train", "--run-dir", str(r / "px"), "--steps", "3", *UNET]) == 0
    assert main(["train-classifier", "--run-dir", str(r / "clf"), "--steps", "3", "--batch-size", "8",
                 "--base-channels", "8", "--T", "20", "--no-progress"]) == 0
    assert main(["train-classifier", "--run-dir", str(r / "clf30"), "--steps", "1", "--batch-size", "4",
                 "--base-channels", "8", "--T", "30", "--no-progress"]) == 0
    assert main(["train-autoencoder", "--run-dir", str(r / "ae"), "--steps", "3", "--batch-size", "8",
                 "--hidden-channels", "8", "--no-progress"]) == 0
    assert main(["train", "--latent", "--autoencoder", str(r / "ae"), "--run-dir", str(r / "lat"),
                 "--steps", "3", *UNET]) == 0
    assert main(["train", "--prompts", "--run-dir", str(r / "prompt"), "--steps", "3", *UNET]) == 0
    assert main(["train", "--prompts", "--latent", "--autoencoder", str(r / "ae"), "--run-dir", str(r / "latprompt"),
                 "--steps", "3", *UNET]) == 0
    three = NoisyClassifier(base_channels=8, groups=4, num_classes=3)      # a classifier of 3 classes
    save_checkpoint(str(r / "clf3" / "checkpoint.npz"),
                    {**{f"param/{k}": v for k, v in three.params.items()},
                     **{f"ema/{k}": v for k, v in three.params.items()}},
                    {"model": {"kind": three.kind, "config": three.config},
                     "train": {"schedule": "linear", "T": 20}, "step": 0})
    x, _ = load_digits_images("test")
    np.savez(r / "digits.npz", x=x[:3])
    _png(r / "digit.png", x[0, 0])
    _png(r / "big.png", np.zeros((10, 10)))
    np.savez(r / "mask.npz", mask=np.ones((8, 8)) * (np.arange(8) < 4))
    np.savez(r / "mask4.npz", mask=np.ones((4, 4)))
    _png(r / "mask.png", np.where(np.arange(8)[:, None] < 4, 1.0, -1.0) * np.ones((8, 8)))
    return r


def _one_line_error(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    return err


def test_model_kinds_are_registered(runs):
    assert MODEL_CLASSES["noisy_classifier"] is NoisyClassifier
    assert load_run(str(runs / "clf"))[0].kind == "noisy_classifier"
    ae, meta = load_run(str(runs / "ae"))
    assert ae.kind == "autoencoder" and meta["scale_factor"] > 0


@pytest.mark.parametrize("mask", ["right", "mask.npz", "mask.png"])
def test_inpaint_keeps_the_known_region_and_is_deterministic(runs, tmp_path, mask):
    m = str(runs / mask) if mask.endswith(("npz", "png")) else mask
    outs = []
    for i in range(2):
        argv = ["inpaint", "--run-dir", str(runs / "px"), "--input", str(runs / "digits.npz"), "--mask", m,
                "--out", str(tmp_path / f"{i}.png"), "--npz", str(tmp_path / f"{i}.npz"), "--no-progress"]
        assert main(argv) == 0
        with np.load(tmp_path / f"{i}.npz") as f:
            outs.append((f["completions"], f["mask"]))
    (a, mask_arr), (b, _) = outs
    x = np.load(runs / "digits.npz")["x"]
    known = np.broadcast_to(mask_arr, x.shape) == 1
    assert 0 < known.mean() < 1
    np.testing.assert_allclose(a[known], x[known], atol=1e-5)      # the known pixels are the input's
    assert not np.allclose(a[~known], x[~known], atol=1e-3)          # the rest is the model's
    np.testing.assert_array_equal(a, b)                              # same seed, same completion
    assert (tmp_path / "0.png").stat().st_size > 0


def test_repaint_from_a_png(runs, tmp_path):
    out = tmp_path / "r.png"
    assert main(["inpaint", "--run-dir", str(runs / "px"), "--input", str(runs / "digit.png"), "--mask", "center",
                 "--method", "repaint", "--resample", "2", "--jump", "5", "--out", str(out), "--no-progress"]) == 0
    assert matplotlib.image.imread(out).shape[:2] == (4 * (8 + 1) * 4 + 4, (8 + 1) * 4 + 4)   # 4 rows × 1 column


def test_edit_strength_controls_how_much_is_kept(runs, tmp_path):
    res = {}
    for f in ("0.1", "1"):
        assert main(["edit", "--run-dir", str(runs / "px"), "--input", str(runs / "digits.npz"), "--strength", f,
                     "--out", str(tmp_path / "e.png"), "--npz", str(tmp_path / f"e{f}.npz"), "--no-progress"]) == 0
        res[f] = np.load(tmp_path / f"e{f}.npz")["edits"]
    x = np.load(runs / "digits.npz")["x"]
    assert np.abs(res["0.1"] - x).mean() < np.abs(res["1"] - x).mean()


def _samples(runs, tmp_path, name, *extra):
    assert main(["sample", "--run-dir", str(runs / "px"), "-n", "10", "--out", str(tmp_path / f"{name}.png"),
                 "--npz", str(tmp_path / f"{name}.npz"), "--no-progress", *extra]) == 0
    return np.load(tmp_path / f"{name}.npz")["samples"]


def test_classifier_guided_sampling(runs, tmp_path):
    clf = ["--classifier", str(runs / "clf")]
    plain = _samples(runs, tmp_path, "plain", "--sampler", "ddim", "--steps", "5")
    s0 = _samples(runs, tmp_path, "s0", "--sampler", "ddim", "--steps", "5", *clf, "--classifier-scale", "0")
    s5 = _samples(runs, tmp_path, "s5", "--sampler", "ddim", "--steps", "5", *clf, "--classifier-scale", "5")
    again = _samples(runs, tmp_path, "again", "--sampler", "ddim", "--steps", "5", *clf, "--classifier-scale", "5")
    np.testing.assert_allclose(s0, plain, atol=1e-3)     # s = 0: the model's own class-conditional samples
    assert not np.allclose(s5, s0, atol=1e-3)
    np.testing.assert_array_equal(s5, again)
    ddpm = _samples(runs, tmp_path, "ddpm", *clf, "--classifier-scale", "2", "--label", "3")
    assert ddpm.shape == (10, 1, 8, 8) and np.all(np.isfinite(ddpm))


def test_latent_run_trains_resumes_and_samples_decoded_images(runs, tmp_path, capsys):
    lat = runs / "lat"
    assert (lat / "autoencoder.npz").is_file() and (lat / "latent.json").is_file()
    model, meta = load_run(str(lat))
    assert (model.config["in_channels"], model.config["image_size"]) == (2, 4)      # c × h × w latents
    assert main(["train", "--run-dir", str(lat), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert "step 4" in capsys.readouterr().out
    assert main(["sample", "--run-dir", str(lat), "-n", "10", "--out", str(tmp_path / "l.png"), "--npz",
                 str(tmp_path / "l.npz"), "--no-progress", "--sampler", "ddim", "--steps", "5"]) == 0
    assert np.load(tmp_path / "l.npz")["samples"].shape == (10, 1, 8, 8)           # decoded


@pytest.mark.parametrize("run", ["prompt", "latprompt"])
def test_prompt_runs_sample_one_column_per_prompt(runs, tmp_path, run):
    """train --prompts (pixels, and latents with --latent: an autoencoder + a U-Net reading prompts)
    then sample --prompt twice with guidance: the saved labels index the prompts, the same seed gives
    the same samples, and --resume keeps the run's prompts."""
    model, meta = load_run(str(runs / run))
    assert model.config["prompt_vocab"][:2] == ["<pad>", "digit"] and meta["train"]["prompts"] is True
    assert meta["train"]["cond"] is False and model.config["num_classes"] is None
    argv = ["sample", "--run-dir", str(runs / run), "-n", "6", "--prompt", "thick seven", "--prompt", "two",
            "--guidance", "1", "--sampler", "ddim", "--steps", "3", "--no-progress"]
    outs = []
    for i in range(2):
        npz = tmp_path / f"s{i}.npz"
        assert main([*argv, "--out", str(tmp_path / f"s{i}.png"), "--npz", str(npz)]) == 0
        outs.append(np.load(npz))
    assert outs[0]["samples"].shape == (6, 1, 8, 8)                     # decoded for the latent run
    np.testing.assert_array_equal(outs[0]["labels"], [0, 1, 0, 1, 0, 1])
    assert list(outs[0]["prompts"]) == ["thick seven", "two"]
    np.testing.assert_array_equal(outs[0]["samples"], outs[1]["samples"])
    assert main(["train", "--run-dir", str(runs / run), "--resume", "--steps", "4", "--no-progress"]) == 0
    assert load_run(str(runs / run))[0].config["prompt_vocab"] == model.config["prompt_vocab"]


def _bad(runs, name):
    r = str(runs)
    px, lat, inp = f"{r}/px", f"{r}/lat", f"{r}/digits.npz"
    inpaint = ["inpaint", "--run-dir", px, "--input", inp, "--no-progress"]
    sample = ["sample", "--run-dir", px, "-n", "2", "--no-progress", "--sampler", "ddim", "--steps", "2"]
    return {
        "mask of the wrong size": ([*inpaint, "--mask", f"{r}/mask4.npz"], "4×4"),
        "unknown mask name": ([*inpaint, "--mask", "diagonal"], "region name"),
        "unknown method": ([*inpaint, "--mask", "left", "--method", "blend"], "replace or repaint"),
        "resample with replace": ([*inpaint, "--mask", "left", "--resample", "3"], "--method repaint"),
        "repaint resample 0": ([*inpaint, "--mask", "left", "--method", "repaint", "--resample", "0"], "--resample"),
        "input of another size": (["inpaint", "--run-dir", px, "--input", f"{r}/big.png", "--mask", "left"], "10×10"),
        "input not an image": (["edit", "--run-dir", px, "--input", f"{r}/px/config.json", "--strength", "0.5"], ".npz or a .png"),
        "input missing": (["edit", "--run-dir", px, "--input", f"{r}/nope.npz", "--strength", "0.5"], "not a file"),
        "inpaint a latent run": (["inpaint", "--run-dir", lat, "--input", inp, "--mask", "left"], "latent run"),
        "strength 0": (["edit", "--run-dir", px, "--input", inp, "--strength", "0"], "(0, 1]"),
        "strength above 1": (["edit", "--run-dir", px, "--input", inp, "--strength", "1.5"], "(0, 1]"),
        "strength rounding to t0 = 0": (["edit", "--run-dir", px, "--input", inp, "--strength", "0.01"], "t0"),
        "scale without classifier": ([*sample, "--classifier-scale", "2"], "--classifier CLASSIFIER_RUN"),
        "classifier is not a classifier": ([*sample, "--classifier", px], "not a noisy classifier"),
        "classifier classes mismatch": ([*sample, "--classifier", f"{r}/clf3"], "3 classes"),
        "classifier schedule mismatch": ([*sample, "--classifier", f"{r}/clf30"], "T=30"),
        "classifier with cfg guidance": ([*sample, "--classifier", f"{r}/clf", "--guidance", "1"], "--guidance"),
        "negative classifier scale": ([*sample, "--classifier", f"{r}/clf", "--classifier-scale", "-1"], ">= 0"),
        "sample a classifier run": (["sample", "--run-dir", f"{r}/clf", "--no-progress"], "not a diffusion model"),
        "classifier on a latent run": (["sample", "--run-dir", lat, "--classifier", f"{r}/clf", "--no-progress"], "latent"),
        "trajectory of a latent run": (["sample", "--run-dir", lat, "--trajectory", f"{r}/t.png"], "latent"),
        "latent without autoencoder": (["train", "--latent", "--run-dir", f"{r}/x1", *UNET], "--autoencoder"),
        "autoencoder that is not one": (["train", "--latent", "--autoencoder", px, "--run-dir", f"{r}/x2", *UNET], "not an autoencoder"),
        "latent on other data": (["train", "--latent", "--autoencoder", f"{r}/ae", "--data", "moons", "--run-dir", f"{r}/x3", *UNET], "digits"),
        "classifier steps 0": (["train-classifier", "--run-dir", f"{r}/x4", "--steps", "0"], "steps"),
        "classifier unknown schedule": (["train-classifier", "--run-dir", f"{r}/x5", "--schedule", "wavy"], "schedule"),
        "autoencoder negative kl": (["train-autoencoder", "--run-dir", f"{r}/x6", "--kl-weight", "-1"], "kl_weight"),
        "prompt for a model without cross-attention": ([*sample, "--prompt", "seven"], "reads no prompts"),
        "prompt with an unknown word": (["sample", "--run-dir", f"{r}/prompt", "--prompt", "a seven"], "unknown word(s) 'a'"),
        "prompt too long": (["sample", "--run-dir", f"{r}/prompt", "--prompt", "thick seven digit two"], "at most 3"),
        "label for a prompt model": (["sample", "--run-dir", f"{r}/prompt", "--label", "7"], "use --prompt"),
        "guidance without a prompt": (["sample", "--run-dir", f"{r}/prompt", "--guidance", "2"], "--guidance needs --prompt"),
        "classifier with a prompt model": (["sample", "--run-dir", f"{r}/prompt", "--classifier", f"{r}/clf"], "reads prompts"),
        "prompts with cond": (["train", "--prompts", "--cond", "--run-dir", f"{r}/x7", *UNET], "drop --cond"),
        "prompts on points": (["train", "--prompts", "--data", "moons", "--run-dir", f"{r}/x8", *UNET], "labels and strokes"),
        "prompts added on resume": (["train", "--resume", "--prompts", "--run-dir", f"{r}/px", "--no-progress"], "--prompts differs from the saved run"),
    }[name]


BAD = ["mask of the wrong size", "unknown mask name", "unknown method", "resample with replace",
       "repaint resample 0", "input of another size", "input not an image", "input missing", "inpaint a latent run",
       "strength 0", "strength above 1", "strength rounding to t0 = 0", "scale without classifier",
       "classifier is not a classifier", "classifier classes mismatch", "classifier schedule mismatch",
       "classifier with cfg guidance", "sample a classifier run", "negative classifier scale", "classifier on a latent run",
       "trajectory of a latent run", "latent without autoencoder", "autoencoder that is not one",
       "latent on other data", "classifier steps 0", "classifier unknown schedule", "autoencoder negative kl",
       "prompt for a model without cross-attention", "prompt with an unknown word", "prompt too long",
       "label for a prompt model", "guidance without a prompt", "classifier with a prompt model", "prompts with cond",
       "prompts on points", "prompts added on resume"]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_and_exit_2(runs, capsys, name):
    argv, expected = _bad(runs, name)
    err = _one_line_error(capsys, argv)
    assert expected in err, err


def test_bad_input_in_a_real_process(runs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "ddpm_ref", "inpaint", "--run-dir", str(runs / "px"), "--input",
                        str(runs / "digits.npz"), "--mask", str(runs / "mask4.npz")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("run", ["lat", "latprompt"])
def test_evaluate_a_latent_run_scores_its_decoded_samples(runs, tmp_path, capsys, run):
    """evaluate on a latent run: no bits/dim (said in one line), FDD and label accuracy of samples decoded to
    8×8 digits; a prompt model's samples are drawn for the digit words."""
    import json

    from ddpm_ref.commands.evaluate import evaluate_run

    out = tmp_path / "e.json"
    assert main(["evaluate", "--run-dir", str(runs / run), "-n", "10", "--steps", "2", "--no-progress",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "bits/dim: not reported for a latent run" in text and "decoded from latents" in text
    r = json.loads(out.read_text())
    assert r["decoded"] is True and "bpd" not in r and r["n_samples"] == 10 and 0 <= r["accuracy_samples"] <= 1
    assert ("prompts" in r) == (run == "latprompt")
    model, meta = load_run(str(runs / run))
    with pytest.raises(ValueError, match="bits/dim of a latent run"):
        evaluate_run(model, meta, n=4, steps=2, decode=lambda z: z, progress=False)
