"""ddpm_ref.train: Algorithm 1 learns, label dropout has its rate, resume is bit-identical, Ctrl-C saves."""

import dataclasses
import os
import signal

import numpy as np
import pytest

from ddpm_ref import train as tr
from ddpm_ref.interrupts import Aborted, Interrupted
from ddpm_ref.runs import build_model, load_model
from ddpm_ref.data import load_dataset
from ddpm_ref.schedules import make_schedule

MOONS = tr.TrainConfig(data="moons", steps=300, batch_size=128, lr=3e-3, warmup=10, ema_decay=0.99,
                       n_points=2000, checkpoint_every=0, cond=False)
TINY_UNET = ("unet", dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2),
                          num_res_blocks=1, attention_resolutions=(4,), groups=4, dropout=0.1,
                          num_classes=10, dtype="float32", seed=0))
DIGITS = tr.TrainConfig(data="digits", steps=6, batch_size=8, warmup=2, T=50, checkpoint_every=0,
                        p_uncond=0.2, workers=2)


def _mlp(config):
    data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    kind, cfg = tr.default_model_config(data, config.cond, config.seed)
    cfg.update(hidden=32, depth=2)
    return kind, cfg


def test_loss_decreases_on_two_moons():
    state = tr.train(MOONS, None, model_kind_config=_mlp(MOONS), progress=False)
    losses = np.asarray(state.losses)
    assert losses[:5].mean() > 0.9                       # ε̂ = 0 at the start: loss ≈ E[ε²] = 1
    assert losses[-50:].mean() < 0.5 * losses[:5].mean()


def _state_arrays(state):
    out = {f"p/{k}": v for k, v in state.model.params.items()}
    out.update({f"e/{k}": v for k, v in state.ema.params.items()})
    out.update(state.adam.state_arrays())
    return out


def _assert_identical(a, b):
    assert a.step == b.step and a.adam.step == b.adam.step and a.ema.step == b.ema.step
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert np.array_equal(np.asarray(a.losses), np.asarray(b.losses))
    sa, sb = _state_arrays(a), _state_arrays(b)
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]), k


@pytest.mark.parametrize("which", ["mlp", "unet"])
def test_resume_is_bit_identical(tmp_path, which):
    if which == "mlp":
        config, model = dataclasses.replace(MOONS, steps=40, cond=True, p_uncond=0.3), None
        model = _mlp(config)
    else:
        config, model = DIGITS, TINY_UNET           # dropout on, labels dropped, 2 worker threads
    whole = tr.train(config, str(tmp_path / "whole"), model_kind_config=model, progress=False)
    half = dataclasses.replace(config, steps=config.steps // 2)
    tr.train(half, str(tmp_path / "split"), model_kind_config=model, progress=False)
    resumed = tr.train(config, str(tmp_path / "split"), resume=True, progress=False)
    _assert_identical(whole, resumed)
    loaded, _ = tr.load_state(str(tmp_path / "split"))          # and what was saved is that state
    _assert_identical(whole, loaded)


def test_ctrl_c_saves_a_checkpoint_that_resumes_identically(tmp_path, monkeypatch):
    config, model = dataclasses.replace(MOONS, steps=12), _mlp(MOONS)
    whole = tr.train(config, None, model_kind_config=model, progress=False)
    real_step = tr.train_step

    def step_with_ctrl_c(state, *args, **kwargs):
        if state.step == 4:                                  # SIGINT arrives during step 5
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(state, *args, **kwargs)

    monkeypatch.setattr(tr, "train_step", step_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        tr.train(config, str(tmp_path), model_kind_config=model, progress=False)
    monkeypatch.setattr(tr, "train_step", real_step)
    saved, _ = tr.load_state(str(tmp_path))
    assert saved.step == 5                                    # the step in flight was finished
    resumed = tr.train(config, str(tmp_path), resume=True, progress=False)
    _assert_identical(whole, resumed)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_like_ctrl_c(tmp_path, monkeypatch, signum):
    config, model = dataclasses.replace(MOONS, steps=8), _mlp(MOONS)
    whole = tr.train(config, None, model_kind_config=model, progress=False)
    real_step = tr.train_step

    def step_with_signal(state, *args, **kwargs):
        if state.step == 2:
            os.kill(os.getpid(), getattr(signal, signum))
        return real_step(state, *args, **kwargs)

    monkeypatch.setattr(tr, "train_step", step_with_signal)
    with pytest.raises(Interrupted) as stopped:
        tr.train(config, str(tmp_path), model_kind_config=model, progress=False)
    assert stopped.value.signum == getattr(signal, signum) and stopped.value.step == 3
    assert not (tmp_path / ".lock").exists()
    monkeypatch.setattr(tr, "train_step", real_step)
    assert tr.load_state(str(tmp_path))[0].step == 3
    _assert_identical(whole, tr.train(config, str(tmp_path), resume=True, progress=False))


def test_a_signal_during_setup_stops_before_the_first_step(tmp_path, monkeypatch):
    real_load = tr.load_dataset

    def load_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)              # while the data set loads
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tr, "load_dataset", load_then_sigterm)
    with pytest.raises(Interrupted, match="stopped after step 0; no checkpoint has been written"):
        tr.train(MOONS, str(tmp_path), model_kind_config=_mlp(MOONS), progress=False)
    assert os.listdir(tmp_path) == []                      # no checkpoint, no lock


def test_second_ctrl_c_inside_a_step_writes_nothing(tmp_path, monkeypatch):
    """Both Ctrl-C's inside step 5 (after its gradient, before its update): the checkpoint on disk
    stays the last whole one (step 3), and resuming it gives the uninterrupted run."""
    config, model = dataclasses.replace(MOONS, steps=8, checkpoint_every=3), _mlp(MOONS)
    whole = tr.train(config, None, model_kind_config=model, progress=False)
    real_clip, calls = tr.clip_grad_norm, []

    def clip_with_two_ctrl_c(grads, max_norm):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)           # the handler raises Aborted here
        return real_clip(grads, max_norm)

    monkeypatch.setattr(tr, "clip_grad_norm", clip_with_two_ctrl_c)
    with pytest.raises(Aborted, match="without saving.*checkpoint.npz \\(step 3\\)"):
        tr.train(config, str(tmp_path), model_kind_config=model, progress=False)
    monkeypatch.setattr(tr, "clip_grad_norm", real_clip)
    assert tr.load_state(str(tmp_path))[0].step == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json"]     # no lock, no temporary
    _assert_identical(whole, tr.train(config, str(tmp_path), resume=True, progress=False))


def test_label_dropout_rate():
    config = tr.TrainConfig(data="gmm", batch_size=4000, p_uncond=0.25, n_points=4000, cond=True)
    data = load_dataset("gmm", n_points=4000)
    kind, cfg = tr.default_model_config(data, True)
    state = tr.new_state(build_model(kind, cfg), config)
    seen = []
    real_forward = state.model.forward

    def forward(x, t, y=None, **kw):
        seen.append(np.array(y))
        return real_forward(x, t, y, **kw)

    state.model.forward = forward
    tr.train_step(state, data, make_schedule("linear", 1000), config)
    y = seen[0]
    null = y == data.num_classes
    assert abs(null.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)
    assert y[~null].max() < data.num_classes


def test_bad_checkpoints_give_clear_errors(tmp_path):
    tr.train(dataclasses.replace(MOONS, steps=2), str(tmp_path), model_kind_config=_mlp(MOONS), progress=False)
    path = tmp_path / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])                       # truncated
    with pytest.raises(ValueError, match="checkpoint"):
        load_model(str(tmp_path))
    np.savez(path, weights=np.zeros(3))                             # someone else's .npz
    with pytest.raises(ValueError):
        tr.load_state(str(tmp_path))
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError):
        load_model(str(tmp_path))
    with pytest.raises(ValueError, match="resume"):
        tr.train(MOONS, str(tmp_path / "empty"), resume=True, progress=False)


def test_config_validation():
    for bad in (dict(steps=0), dict(batch_size=-1), dict(lr=0.0), dict(p_uncond=1.0), dict(data="nope"),
                dict(schedule="nope"), dict(device="tpu"), dict(workers=0)):
        with pytest.raises(ValueError):
            dataclasses.replace(tr.TrainConfig(), **bad).validate()
    with pytest.raises(ValueError, match="labels"):
        tr.default_model_config(load_dataset("swissroll", n_points=10), cond=True)


def test_load_or_train_demo_quick(tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "QUICK_CONFIG", dataclasses.replace(tr.QUICK_CONFIG, steps=5))
    model = tr.load_or_train_demo(str(tmp_path), quick=True, progress=False)
    assert type(model).__name__ == "UNet" and model.config["num_classes"] == 10
    again = tr.load_or_train_demo(str(tmp_path), quick=True, progress=False)      # loaded, not retrained
    for k in model.params:
        assert np.array_equal(model.params[k], again.params[k])


def test_device_path_with_pass_through_functions_matches_the_cpu(tmp_path):
    """The --device cuda plumbing (ops object, to_device/to_host, state moved) with NumPy stand-ins."""
    import ddpm_ref.nn as nn

    config = dataclasses.replace(DIGITS, workers=1)
    cpu = tr.train(config, None, model_kind_config=TINY_UNET, progress=False)
    dev = tr.train(dataclasses.replace(config, device="cuda"), str(tmp_path), model_kind_config=TINY_UNET,
                   progress=False, device_ops=nn.numpy_ops(), device=(np.asarray, np.asarray))
    _assert_identical(cpu, dev)
