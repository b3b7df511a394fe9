r"""Training loops for the two helper networks of issue 12: the noisy classifier and the autoencoder.

Layer: loop. It imports the models, the data, the math (``q_sample``, schedules), the optimiser and
the checkpoint format, nothing above. Both loops are the same small loop (``_fit``): Adam, an EMA
of the weights, a progress bar, a checkpoint every ``checkpoint_every`` steps, at the end and on
Ctrl-C (deferred to the end of the current step, so the saved state is a whole number of steps).
The run directory then loads like any other (``ddpm_ref.runs.load_run``; the EMA weights by
default), the model's ``kind`` naming its class.

* **Noisy classifier** p_φ(y | x_t, t) (Dhariwal & Nichol 2021, sec. 4.1): each step draws digits,
  t ~ U{1..T} and ε, noises them with the *diffusion model's* schedule,
  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho et al. eq. 4), and minimises the cross-entropy of the labels.
  The schedule and T are stored in the run; guidance refuses a diffusion model with another one.
* **Autoencoder** (Rombach et al. 2022, sec. 3.1): MSE + w·KL on the digits, then the scale factor
  1/std(latents) fitted on the encoded training digits and stored in the run's description
  (``meta["scale_factor"]``), the number latent diffusion multiplies its latents by.

Neither loop resumes: an interrupted run is saved (and loads), but training starts afresh.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_choice, check_positive_int
from ddpm_ref.checkpoint import save_checkpoint
from ddpm_ref.data.digits import load_digits_images
from ddpm_ref.diffusion import q_sample
from ddpm_ref.models.autoencoder import Autoencoder, fit_scale_factor
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.optim import EMA, Adam
from ddpm_ref.schedules import SCHEDULE_NAMES, make_schedule

__all__ = ["train_classifier", "train_autoencoder", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.npz"


def _check_common(run_dir, steps, batch_size, lr, checkpoint_every):
    if not run_dir:
        raise ValueError("a run directory is required")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")


def _save(run_dir, model, ema, adam, step, losses, train_meta, extra):
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays.update({f"ema/{k}": v for k, v in ema.params.items()})
    arrays.update(adam.state_arrays())
    arrays["history/loss"] = np.asarray(losses, dtype=np.float64)
    meta = {"model": {"kind": model.kind, "config": model.config}, "train": train_meta, "step": step,
            "adam": {"step": adam.step, **adam.hyperparameters()},
            "ema": {"step": ema.step, "decay": ema.decay, "warmup": ema.warmup}, **extra}
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    save_checkpoint(path, arrays, meta)
    return path


def _fit(model, step_fn, run_dir, train_meta, *, steps, lr, ema_decay, checkpoint_every, progress, desc):
    """The loop: ``loss, grads = step_fn(step)``, Adam, EMA; saves as the module docstring says.

    Returns ``(ema, adam, losses, seconds)``; raises KeyboardInterrupt after saving on Ctrl-C.
    """
    adam, ema, losses = Adam(model.params), EMA(model.params, ema_decay), []
    save = lambda: _save(run_dir, model, ema, adam, len(losses), losses, train_meta, {})  # noqa: E731
    flag, previous = {"hit": False}, None
    if threading.current_thread() is threading.main_thread():
        def handler(signum, frame):
            if flag["hit"]:
                raise KeyboardInterrupt
            flag["hit"] = True
        previous = signal.signal(signal.SIGINT, handler)
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        for step in range(steps):
            loss, grads = step_fn(step)
            adam.update(model.params, grads, lr)
            ema.update(model.params)
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if flag["hit"]:
                raise KeyboardInterrupt
            if checkpoint_every and (step + 1) % checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted at step {len(losses)}; saved {save()}")
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    bar.close()
    return ema, adam, losses, time.perf_counter() - t0


def train_classifier(run_dir: str, *, steps: int = 1500, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0, base_channels: int = 16, channel_mults=(1, 2), groups: int = 4,
                     schedule: str = "linear", T: int = 1000, ema_decay: float = 0.999,
                     checkpoint_every: int = 500, progress: bool = True):
    """Train p_φ(y | x_t, t) on noised digits (module docstring); saves ``run_dir``. Returns
    ``(model with EMA weights, final mean loss of the last ≤100 steps, seconds)``."""
    _check_common(run_dir, steps, batch_size, lr, checkpoint_every)
    check_choice("schedule", schedule, SCHEDULE_NAMES)
    sched = make_schedule(schedule, check_positive_int("T", T))
    x, y = load_digits_images("train", seed=seed)
    net = NoisyClassifier(in_channels=x.shape[1], image_size=x.shape[2], base_channels=base_channels,
                          channel_mults=channel_mults, groups=groups, num_classes=int(y.max()) + 1,
                          dtype="float32", seed=seed)
    g = np.random.default_rng(seed)

    def step_fn(step):
        idx = g.integers(0, len(x), batch_size)                              # x_0, y ~ the digits
        t = g.integers(1, sched.T + 1, batch_size)                           # t ~ U{1..T}
        xt = q_sample(sched, x[idx], t, g.standard_normal(x[idx].shape, dtype=np.float32))   # eq. 4
        loss, grads, _ = net.loss_and_grads(xt, t, y[idx])                   # cross-entropy
        return loss, grads

    meta = {"data": "digits", "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "schedule": schedule, "T": sched.T, "ema_decay": ema_decay}
    ema, adam, losses, sec = _fit(net, step_fn, run_dir, meta, steps=steps, lr=lr, ema_decay=ema_decay,
                                  checkpoint_every=checkpoint_every, progress=progress,
                                  desc="training the noisy classifier")
    _save(run_dir, net, ema, adam, len(losses), losses, meta, {})
    net.params = {k: v.copy() for k, v in ema.params.items()}
    return net, float(np.mean(losses[-100:])), sec


def train_autoencoder(run_dir: str, *, steps: int = 1500, batch_size: int = 64, lr: float = 2e-3,
                      seed: int = 0, hidden_channels: int = 32, latent_channels: int = 2,
                      kl_weight: float = 1e-4, ema_decay: float = 0.999, checkpoint_every: int = 500,
                      progress: bool = True):
    """Train the autoencoder on the digits and fit its scale factor (module docstring); saves
    ``run_dir``. Returns ``(model with EMA weights, scale_factor, test MSE, seconds)``."""
    _check_common(run_dir, steps, batch_size, lr, checkpoint_every)
    x, _ = load_digits_images("train", seed=seed)
    ae = Autoencoder(in_channels=x.shape[1], hidden_channels=hidden_channels, latent_channels=latent_channels,
                     kl_weight=kl_weight, dtype="float32", seed=seed)
    g = np.random.default_rng(seed)
    sample = kl_weight > 0                                    # the plain AE (w = 0) encodes z = μ

    def step_fn(step):
        idx = g.integers(0, len(x), batch_size)
        loss, _, grads, _ = ae.loss_and_grads(x[idx], rng=g, sample=sample)
        return loss, grads

    meta = {"data": "digits", "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "ema_decay": ema_decay}
    ema, adam, losses, sec = _fit(ae, step_fn, run_dir, meta, steps=steps, lr=lr, ema_decay=ema_decay,
                                  checkpoint_every=checkpoint_every, progress=progress,
                                  desc="training the autoencoder")
    trained = Autoencoder(**ae.config)
    trained.params = {k: v.copy() for k, v in ema.params.items()}
    scale = fit_scale_factor(trained.encode(x))               # 1 / std of the training latents
    xte, _ = load_digits_images("test", seed=seed)
    mse = float(np.mean((trained.decode(trained.encode(xte)) - xte) ** 2))
    _save(run_dir, ae, ema, adam, len(losses), losses, meta, {"scale_factor": scale, "test_mse": mse})
    return trained, scale, mse, sec
