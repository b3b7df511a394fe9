"""ddpm_ref.train_extra and ddpm_ref.latent: the classifier/autoencoder loops save what they claim,
resume bit-identically (also after Ctrl-C / SIGTERM), and refuse what would spoil a run."""

import json
import os
import signal
import socket

import numpy as np
import pytest

from ddpm_ref import train_extra
from ddpm_ref.checkpoint import load_checkpoint, save_checkpoint
from ddpm_ref.cli import main
from ddpm_ref.interrupts import Aborted, Interrupted
from ddpm_ref.models.autoencoder import Autoencoder
from ddpm_ref.optim import Adam
from ddpm_ref.data import load_digits_images
from ddpm_ref.latent import attach_autoencoder, decode_latents, latent_run_data
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.runs import load_model


def test_classifier_run_is_deterministic_and_loads_its_ema(tmp_path):
    kw = dict(steps=3, batch_size=4, base_channels=8, T=10, progress=False)
    a, _, _ = train_extra.train_classifier(str(tmp_path / "a"), **kw)
    b, _, _ = train_extra.train_classifier(str(tmp_path / "b"), **kw)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    loaded, meta = load_model(str(tmp_path / "a"))
    assert meta["step"] == 3 and meta["train"]["T"] == 10 and len(meta["losses"]) == 3
    for k in a.params:
        np.testing.assert_array_equal(loaded.params[k], a.params[k])


def test_autoencoder_scale_factor_and_latent_run(tmp_path):
    ae, scale, mse, _ = train_extra.train_autoencoder(str(tmp_path / "ae"), steps=3, batch_size=8,
                                                      hidden_channels=8, progress=False)
    x, _ = load_digits_images("train")
    assert scale == pytest.approx(1 / ae.encode(x).astype(np.float64).std(), rel=1e-5)
    info = attach_autoencoder(str(tmp_path / "lat"), str(tmp_path / "ae"), seed=0)
    assert json.loads((tmp_path / "lat" / "latent.json").read_text())["scale_factor"] == info["scale_factor"] == scale
    data = latent_run_data(str(tmp_path / "lat"))
    assert data.x.shape == (len(x), 2, 4, 4) and data.x.std() == pytest.approx(1.0, rel=1e-4)   # unit variance
    np.testing.assert_allclose(decode_latents(str(tmp_path / "lat"), data.x[:5]), ae.decode(ae.encode(x[:5])),
                               atol=1e-5)                                                   # D(z/s) = D(μ)
    with pytest.raises(ValueError, match="no checkpoint"):              # a latent run is not an autoencoder run
        attach_autoencoder(str(tmp_path / "lat2"), str(tmp_path / "lat"))


# --------------------------------------------------------------------------------------------
# Resume
# --------------------------------------------------------------------------------------------

CLF = dict(batch_size=4, base_channels=8, T=10, checkpoint_every=0, progress=False)
AE = dict(batch_size=8, hidden_channels=8, checkpoint_every=0, progress=False)
TRAIN = {"classifier": train_extra.train_classifier, "autoencoder": train_extra.train_autoencoder}
KW = {"classifier": CLF, "autoencoder": AE}


def _assert_same_run(a_dir, b_dir):
    """Every array of the two checkpoints and every entry of their descriptions (weights, EMA, Adam's
    moments and step, the losses, the step, the Generator, the options, the scale factor) are equal."""
    a, meta_a = load_checkpoint(str(a_dir / "checkpoint.npz"))
    b, meta_b = load_checkpoint(str(b_dir / "checkpoint.npz"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert meta_a == meta_b


@pytest.mark.parametrize("which", ["classifier", "autoencoder"])
def test_k_steps_then_resume_to_2k_is_bit_identical(tmp_path, which, capsys):
    train, kw = TRAIN[which], KW[which]
    whole = train(str(tmp_path / "whole"), steps=6, **kw)
    train(str(tmp_path / "split"), steps=3, **kw)
    resumed = train(str(tmp_path / "split"), steps=6, resume=True, **kw)
    assert "resuming with --steps 6 (the saved run had 3)" in capsys.readouterr().out
    _assert_same_run(tmp_path / "whole", tmp_path / "split")
    for k in whole[0].params:                                     # the returned EMA models too
        np.testing.assert_array_equal(whole[0].params[k], resumed[0].params[k])
    assert whole[1:-1] == resumed[1:-1]                           # loss, or scale factor and test MSE
    _, meta = load_checkpoint(str(tmp_path / "split" / "checkpoint.npz"))
    assert meta["step"] == 6 and len(meta["rng"]["state"]) and meta["adam"]["step"] == 6


@pytest.mark.parametrize("which, signum", [("classifier", signal.SIGINT), ("autoencoder", signal.SIGTERM)])
def test_a_signal_saves_the_step_in_flight_and_resume_is_bit_identical(tmp_path, monkeypatch, which, signum):
    model = {"classifier": NoisyClassifier, "autoencoder": Autoencoder}[which]
    train, kw = TRAIN[which], dict(KW[which], checkpoint_every=2)
    train(str(tmp_path / "whole"), steps=7, **kw)
    real, calls = model.loss_and_grads, []

    def signal_during_step_3(self, *args, **kwargs):     # after the checkpoint of step 2
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signum)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(model, "loss_and_grads", signal_during_step_3)
    with pytest.raises(Interrupted, match="stopped after step 3.*continue with --resume") as stopped:
        train(str(tmp_path / "split"), steps=7, **kw)
    assert stopped.value.signum == signum
    monkeypatch.setattr(model, "loss_and_grads", real)
    _, meta = load_checkpoint(str(tmp_path / "split" / "checkpoint.npz"))
    assert meta["step"] == 3 and "scale_factor" not in meta            # the step in flight, finished
    assert sorted(os.listdir(tmp_path / "split")) == ["checkpoint.npz", "config.json"]   # no lock left
    train(str(tmp_path / "split"), steps=7, resume=True, **kw)
    _assert_same_run(tmp_path / "whole", tmp_path / "split")


def test_second_ctrl_c_writes_nothing_and_the_last_checkpoint_resumes(tmp_path, monkeypatch):
    kw = dict(CLF, checkpoint_every=3)
    train_extra.train_classifier(str(tmp_path / "whole"), steps=7, **kw)
    real, calls = Adam.update, []

    def two_ctrl_c_inside_step_5(self, *args):
        calls.append(1)
        if len(calls) == 5:                       # after step 5's gradient, before its update
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)   # the handler raises Aborted here
        return real(self, *args)

    monkeypatch.setattr(Adam, "update", two_ctrl_c_inside_step_5)
    with pytest.raises(Aborted, match="without saving.*checkpoint.npz \\(step 3\\)"):
        train_extra.train_classifier(str(tmp_path / "split"), steps=7, **kw)
    monkeypatch.setattr(Adam, "update", real)
    assert load_checkpoint(str(tmp_path / "split" / "checkpoint.npz"))[1]["step"] == 3
    train_extra.train_classifier(str(tmp_path / "split"), steps=7, resume=True, **kw)
    _assert_same_run(tmp_path / "whole", tmp_path / "split")


def test_cli_resume_keeps_the_saved_flags_and_may_change_lr(tmp_path, capsys):
    d = str(tmp_path / "ae")
    assert main(["train-autoencoder", "--run-dir", d, "--steps", "2", "--batch-size", "4",
                 "--hidden-channels", "8", "--kl-weight", "0.01", "--no-progress"]) == 0
    assert main(["train-autoencoder", "--run-dir", d, "--resume", "--steps", "3", "--lr", "1e-3",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming with --lr 0.001 (the saved run had 0.002)" in out and "step 3:" in out
    _, meta = load_checkpoint(os.path.join(d, "checkpoint.npz"))
    assert meta["step"] == 3 and meta["train"]["lr"] == 1e-3
    assert meta["model"]["config"]["hidden_channels"] == 8 and meta["model"]["config"]["kl_weight"] == 0.01


def _refusal(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_refusals_are_one_line_and_exit_2(tmp_path, capsys):
    r = tmp_path
    clf = ["train-classifier", "--run-dir", str(r / "clf"), "--batch-size", "4", "--base-channels", "8",
           "--T", "10", "--no-progress"]
    ae = ["train-autoencoder", "--run-dir", str(r / "ae"), "--batch-size", "4", "--hidden-channels", "8",
          "--no-progress"]
    assert main([*clf, "--steps", "2"]) == 0 and main([*ae, "--steps", "2"]) == 0
    cases = {
        "a run is there": ([*clf, "--steps", "2"], "already holds a run; continue it with --resume"),
        "autoencoder run is there": ([*ae, "--steps", "2"], "already holds a run"),
        "classifier T": ([*clf, "--resume", "--T", "20"], "--resume: --T 20 differs from the saved run's 10"),
        "classifier schedule": ([*clf, "--resume", "--schedule", "cosine"], "--schedule 'cosine' differs"),
        "classifier batch": ([*clf, "--resume", "--batch-size", "8"], "--batch-size 8 differs"),
        "classifier width": ([*clf, "--resume", "--base-channels", "16"], "--base-channels 16 differs"),
        "autoencoder kl weight": ([*ae, "--resume", "--kl-weight", "0.5"], "--kl-weight 0.5 differs"),
        "autoencoder seed": ([*ae, "--resume", "--seed", "1"], "--seed 1 differs"),
        "autoencoder latents": ([*ae, "--resume", "--latent-channels", "3"], "--latent-channels 3 differs"),
        "fewer steps than done": ([*ae, "--resume", "--steps", "1"], "already at step 2"),
        "nothing to resume": (["train-classifier", "--run-dir", str(r / "none"), "--resume"], "no checkpoint"),
        "another command's run": (["train-autoencoder", "--run-dir", str(r / "clf"), "--resume"],
                                  "holds a 'noisy_classifier' run"),
    }
    for name, (argv, expected) in cases.items():
        assert expected in _refusal(capsys, argv), name
    (r / "ae" / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert "in use by another training run" in _refusal(capsys, [*ae, "--resume", "--steps", "3"])
    os.unlink(r / "ae" / ".lock")
    assert main([*clf, "--steps", "1", "--overwrite"]) == 0                     # --overwrite starts again
    assert load_checkpoint(str(r / "clf" / "checkpoint.npz"))[1]["step"] == 1


def _old_format_run(run_dir, model, train, extra):
    """A run as train_extra saved it before it could resume: the same arrays, no Generator state, and
    ``train`` without the model's options."""
    adam = Adam(model.params)
    arrays = {**{f"param/{k}": v for k, v in model.params.items()}, **{f"ema/{k}": v for k, v in model.params.items()},
              **adam.state_arrays(), "history/loss": np.ones(3)}
    meta = {"model": {"kind": model.kind, "config": model.config}, "train": train, "step": 3,
            "adam": {"step": 3, **adam.hyperparameters()}, "ema": {"step": 3, "decay": 0.999, "warmup": True}, **extra}
    save_checkpoint(str(run_dir / "checkpoint.npz"), arrays, meta)


def test_old_checkpoints_load_but_refuse_to_resume(tmp_path, capsys):
    from ddpm_ref.latent import load_autoencoder
    from ddpm_ref.runs import load_run

    clf, ae = NoisyClassifier(base_channels=8), Autoencoder(hidden_channels=8)
    _old_format_run(tmp_path / "clf", clf, {"data": "digits", "steps": 3, "batch_size": 4, "lr": 2e-3, "seed": 0,
                                            "schedule": "linear", "T": 10, "ema_decay": 0.999}, {})
    _old_format_run(tmp_path / "ae", ae, {"data": "digits", "steps": 3, "batch_size": 4, "lr": 2e-3, "seed": 0,
                                          "ema_decay": 0.999}, {"scale_factor": 1.5, "test_mse": 0.1})
    model, meta = load_run(str(tmp_path / "clf"))                          # loads for guidance
    assert model.kind == "noisy_classifier" and meta["train"]["T"] == 10
    assert load_autoencoder(str(tmp_path / "ae"))[1] == 1.5                # and for latent diffusion
    with pytest.raises(ValueError, match="saved before noisy_classifier runs could be resumed"):
        train_extra.train_classifier(str(tmp_path / "clf"), steps=6, resume=True, **CLF)
    err = _refusal(capsys, ["train-autoencoder", "--run-dir", str(tmp_path / "ae"), "--resume", "--no-progress"])
    assert "saved before autoencoder runs could be resumed" in err and "--overwrite" in err


def test_an_interrupted_autoencoder_run_is_not_used_for_latent_diffusion(tmp_path, monkeypatch):
    from ddpm_ref.latent import load_autoencoder

    real = Autoencoder.loss_and_grads

    def ctrl_c_in_step_2(self, *args, **kwargs):
        if self.__dict__.setdefault("_calls", 0) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        self._calls += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Autoencoder, "loss_and_grads", ctrl_c_in_step_2)
    with pytest.raises(Interrupted):
        train_extra.train_autoencoder(str(tmp_path / "ae"), steps=5, **AE)
    with pytest.raises(ValueError, match="unfinished autoencoder run \\(step 2 of 5.*--resume"):
        load_autoencoder(str(tmp_path / "ae"))
