"""train_step with issue 11's options: prediction targets, learned variance (L_hybrid), zero terminal SNR.

Driven through ``train_step`` (not ``train``), with the schedule from ``TrainConfig.make_schedule``
and the model from ``default_model_config(..., learn_sigma=...)``.
"""

import dataclasses

import numpy as np
import pytest

from ddpm_ref import train as tr
from ddpm_ref.data import load_dataset
from ddpm_ref.runs import build_model

MOONS = tr.TrainConfig(data="moons", steps=300, batch_size=128, lr=3e-3, warmup=10, ema_decay=0.99,
                       n_points=2000, checkpoint_every=0, cond=False)
DIGITS = tr.TrainConfig(data="digits", steps=4, batch_size=8, warmup=2, T=50, checkpoint_every=0, cond=False,
                        workers=1)
SMALL_UNET = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(),
                  groups=4, dropout=0.0)


def _setup(config, unet=None):
    config = config.validate()
    data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    kind, cfg = tr.default_model_config(data, config.cond, config.seed, unet, learn_sigma=config.learn_sigma)
    if kind == "mlp":
        cfg.update(hidden=32, depth=2)
    return tr.new_state(build_model(kind, cfg), config), data, config.make_schedule()


def _held_out_loss(model, data, sched, prediction, n=4096):
    """The mean squared error against the target, written out here (not by training_target), on
    one fixed set of (x_0, t, ε)."""
    g = np.random.default_rng(123)
    x0 = data.x[g.integers(0, len(data.x), n)].astype(np.float64)
    t = g.integers(1, sched.T + 1, n)
    eps = g.standard_normal(x0.shape)
    a, s = np.sqrt(sched.alpha_bars[t])[:, None], np.sqrt(1 - sched.alpha_bars[t])[:, None]
    xt = a * x0 + s * eps
    target = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[prediction]
    out = model.forward(xt.astype(np.float32), t, keep_cache=False)
    return float(np.mean((out - target) ** 2))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_falls_on_two_moons_for_each_prediction(prediction):
    """300 steps of the small MLP, the held-out loss before and after. The bound (0.85) is loose on
    purpose: the x0 and v losses have a floor far above 0 (x_0 is uncertain given x_t at large t,
    and the untrained net's 0 is already near E[x_0]); measured after/before: eps 0.17,
    x0 0.82, v 0.81 (printed with -s; 600 steps give 0.81, 0.80: the floor). A wrong target or sign makes the held-out loss grow instead."""
    config = dataclasses.replace(MOONS, prediction=prediction)
    state, data, sched = _setup(config)
    before = _held_out_loss(state.model, data, sched, prediction)
    for _ in range(config.steps):
        loss = tr.train_step(state, data, sched, config)
        assert np.isfinite(loss)
    after = _held_out_loss(state.model, data, sched, prediction)
    print(f"{prediction}: held-out loss {before:.4f} -> {after:.4f} (ratio {after / before:.3f})")
    assert after < 0.85 * before


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_zero_terminal_snr_trains_with_v_and_x0(prediction):
    config = dataclasses.replace(MOONS, prediction=prediction, zero_terminal_snr=True, steps=100, T=100)
    state, data, sched = _setup(config)
    assert sched.alpha_bars[sched.T] == 0
    before = _held_out_loss(state.model, data, sched, prediction)
    for _ in range(config.steps):
        assert np.isfinite(tr.train_step(state, data, sched, config))
    assert _held_out_loss(state.model, data, sched, prediction) < before


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_learn_sigma_hybrid_loss_trains_both_halves(prediction):
    """A few steps of a tiny U-Net with learn_sigma on the digits: the loss is L_hybrid (finite, not the
    plain L_simple of the same output) and the head's v_σ half receives gradient, the λ·L_vlb part."""
    config = dataclasses.replace(DIGITS, prediction=prediction, learn_sigma=True, hybrid_lambda=0.001)
    state, data, sched = _setup(config, SMALL_UNET)
    w0 = state.model.params["out.conv.w"].copy()
    for _ in range(config.steps):
        assert np.isfinite(tr.train_step(state, data, sched, config))
    dw = state.model.params["out.conv.w"] - w0
    assert dw.shape[0] == 2 and np.abs(dw[0]).max() > 0 and np.abs(dw[1]).max() > 0
    assert state.model.config["learn_sigma"] is True


def test_bad_combinations_are_refused():
    with pytest.raises(ValueError, match="prediction"):
        dataclasses.replace(MOONS, prediction="noise").validate()
    with pytest.raises(ValueError, match="zero-terminal-snr"):
        dataclasses.replace(MOONS, zero_terminal_snr=True).validate()          # with eps
    with pytest.raises(ValueError, match="hybrid-lambda"):
        dataclasses.replace(MOONS, hybrid_lambda=-1.0).validate()
    state, data, sched = _setup(MOONS)
    with pytest.raises(ValueError, match="learn_sigma"):                      # config and model disagree
        tr.train_step(state, data, sched, dataclasses.replace(MOONS, learn_sigma=True))
    with pytest.raises(ValueError, match="make_schedule"):                    # a plain schedule for a zero-SNR run
        tr.train_step(state, data, sched, dataclasses.replace(MOONS, prediction="v", zero_terminal_snr=True))
