r"""Training loops for the two helper networks of issue 12: the noisy classifier and the autoencoder.

Layer: loop. It imports the models, the data, the math (``q_sample``, schedules), the optimiser,
the checkpoint format and the run helpers (``runlock``, ``interrupts``, ``run_checks``), nothing
above. Both loops are the same small loop (``_loop``): Adam, an EMA of the weights, a progress bar,
a checkpoint every ``checkpoint_every`` steps and at the end. The run directory then loads like any
other (``ddpm_ref.runs.load_run``; the EMA weights by default), the model's ``kind`` naming its class.

* **Noisy classifier** p_φ(y | x_t, t) (Dhariwal & Nichol 2021, sec. 4.1): each step draws digits,
  t ~ U{1..T} and ε, noises them with the *diffusion model's* schedule,
  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho et al. eq. 4), and minimises the cross-entropy of the labels.
  The schedule and T are stored in the run; guidance refuses a diffusion model with another one.
* **Autoencoder** (Rombach et al. 2022, sec. 3.1): MSE + w·KL on the digits, then the scale factor
  1/std(latents) fitted on the encoded training digits and stored in the run's description
  (``meta["scale_factor"]``), the number latent diffusion multiplies its latents by. It is fitted
  at the end of every run that reaches its ``steps`` (a resumed one too), never at an interruption.

**Checkpoints and resume** (as ``ddpm_ref.train``). The checkpoint holds everything the next step
depends on: the weights, the EMA, Adam's moments and step, the step count, the Generator's state
(every draw of a step comes from it, in a fixed order) and the losses so far; its ``train`` entry
holds the options the run was started with. ``resume=True`` continues the run to ``steps``
**bit-identically**: k steps + resume to 2k gives exactly the arrays of 2k uninterrupted steps.
A resumed run may change only ``CHANGEABLE_ON_RESUME`` (each change printed); any other option
that differs from the saved one is refused, naming it (``ddpm_ref.run_checks.resume_config``).
A directory that already holds a run is refused unless ``resume`` or ``overwrite``. Runs saved
before these loops could resume (no Generator state) still load for guidance and latent
diffusion; resuming one is refused.

**Signals** (``ddpm_ref.interrupts``): the first Ctrl-C, SIGTERM or SIGHUP finishes the step in
flight, saves it and raises ``Interrupted``; a second one raises ``Aborted`` at once and writes
nothing. **One writer** (``ddpm_ref.runlock``): the run directory is locked while a loop runs.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import time

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_choice, check_positive_int
from ddpm_ref.checkpoint import load_checkpoint, save_checkpoint
from ddpm_ref.data.digits import load_digits_images
from ddpm_ref.diffusion import q_sample
from ddpm_ref.interrupts import Interrupted, stop_requests
from ddpm_ref.models.autoencoder import Autoencoder, fit_scale_factor
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.optim import EMA, Adam
from ddpm_ref.run_checks import resume_config
from ddpm_ref.runlock import RunLock, check_run_dir, remove_stale_temporaries
from ddpm_ref.runs import build_model, check_description, restore_training_arrays
from ddpm_ref.schedules import SCHEDULE_NAMES, make_schedule

__all__ = ["train_classifier", "train_autoencoder", "options_from_flags", "saved_options", "CHECKPOINT_NAME", "CHANGEABLE_ON_RESUME"]

CHECKPOINT_NAME = "checkpoint.npz"

#: The options a resumed run may change: the total steps, the checkpoint interval, the learning rate.
#: The others (architecture, batch size, seed, EMA, the classifier's schedule and T, the KL weight)
#: define the run.
CHANGEABLE_ON_RESUME = ("steps", "checkpoint_every", "lr")


@dataclasses.dataclass
class _State:
    """Everything that changes during training, all of it saved in the checkpoint."""

    model: object
    adam: Adam
    ema: EMA
    rng: np.random.Generator
    step: int = 0
    losses: list = dataclasses.field(default_factory=list)


def _check_common(run_dir, steps, batch_size, lr, seed, ema_decay, checkpoint_every) -> dict:
    """The options every run has, checked before the run directory is touched, as JSON numbers."""
    if not run_dir:
        raise ValueError("a run directory is required")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    for name, value in (("seed", seed), ("checkpoint_every", checkpoint_every)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if isinstance(ema_decay, bool) or not isinstance(ema_decay, numbers.Real) or not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must be a number in [0, 1), got {ema_decay!r}")
    return {"data": "digits", "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr), "seed": int(seed),
            "ema_decay": float(ema_decay), "checkpoint_every": int(checkpoint_every)}


# --------------------------------------------------------------------------------------------
# Saving and loading the state
# --------------------------------------------------------------------------------------------

def _save(run_dir, state, options, extra, stop) -> str:
    """Write ``run_dir/checkpoint.npz`` (+ ``config.json``) atomically; tell ``stop`` it is the last good one."""
    arrays = {f"param/{k}": v for k, v in state.model.params.items()}
    arrays.update({f"ema/{k}": v for k, v in state.ema.params.items()})
    arrays.update(state.adam.state_arrays())
    arrays["history/loss"] = np.asarray(state.losses, dtype=np.float64)
    meta = {"model": {"kind": state.model.kind, "config": state.model.config}, "train": options,
            "step": state.step, "adam": {"step": state.adam.step, **state.adam.hyperparameters()},
            "ema": {"step": state.ema.step, "decay": state.ema.decay, "warmup": state.ema.warmup},
            "rng": state.rng.bit_generator.state, **extra}
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    save_checkpoint(path, arrays, meta)
    stop.last_good = f"the last good checkpoint is {path} (step {state.step})"
    return path


def _read_resumable(path: str, kind: str):
    """``(arrays, meta)`` of a checkpoint that a ``kind`` run can resume; a one-line ValueError otherwise."""
    arrays, meta = load_checkpoint(path)
    check_description(meta, path)
    if meta["model"]["kind"] != kind:
        raise ValueError(f"--resume: {path} holds a {meta['model']['kind']!r} run, not a {kind!r} run; "
                         "a run is continued by the command that started it")
    if "rng" not in meta:
        raise ValueError(f"--resume: {path} was saved before {kind} runs could be resumed (it has no "
                         "generator state); it still loads for sampling, but to train further start a new run "
                         "(--overwrite, or another --run-dir)")
    return arrays, meta


def _load(path: str, kind: str):
    """``(state, saved options)`` of the run saved in ``path``."""
    arrays, meta = _read_resumable(path, kind)
    try:
        model = build_model(kind, meta["model"]["config"])
        state = _State(model, Adam(model.params), EMA(model.params, meta["ema"]["decay"], meta["ema"]["warmup"]),
                       np.random.default_rng(), step=int(meta["step"]))
        state.rng.bit_generator.state = meta["rng"]
        state.adam.step, state.ema.step = int(meta["adam"]["step"]), int(meta["ema"]["step"])
        options = dict(meta["train"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the checkpoint's description is incomplete ({err!r})") from None
    restore_training_arrays(state, arrays, path)     # weights, EMA, Adam's moments, losses
    return state, options


def options_from_flags(args, names, kind: str) -> dict:
    """The ``train_*`` options given on the command line (``args.<name>`` not None, for each of ``names``);
    with ``args.resume``, laid over the saved run's options (``saved_options``)."""
    given = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    return {**saved_options(args.run_dir, kind), **given} if args.resume else given


def saved_options(run_dir: str, kind: str) -> dict:
    """The options the ``kind`` run in ``run_dir`` was trained with, as keyword arguments of its
    ``train_*`` function: what ``--resume`` starts from before applying the flags that were given."""
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise ValueError(f"--resume: no checkpoint in {run_dir!r} to resume from")
    _, meta = _read_resumable(path, kind)
    return {k: v for k, v in meta["train"].items() if k != "data"}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def _train(run_dir, model, options, step_fn, finish, *, resume, overwrite, progress, desc):
    """Lock ``run_dir``, start a run with ``model`` (or resume the saved one), train it to
    ``options["steps"]`` and save it with the entries ``finish(state)`` returns.
    Returns ``(state, finish's entries, seconds)``."""
    check_run_dir(run_dir)
    with RunLock(run_dir), stop_requests() as stop:      # a signal during setup: no step
        removed = remove_stale_temporaries(run_dir)
        if removed:
            print(f"removed {len(removed)} temporary file(s) left by an interrupted write in {run_dir}")
        state, options = _start(run_dir, model, options, resume, overwrite)
        seconds = _loop(state, step_fn, run_dir, options, stop, progress, desc)
        extra = finish(state)
        _save(run_dir, state, options, extra, stop)
    return state, extra, seconds


def _start(run_dir, model, options, resume, overwrite):
    """The state to train from, new or loaded, and the run's options (the saved ones on resume)."""
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if resume:
        if not os.path.isfile(path):
            raise ValueError(f"--resume: no checkpoint in {run_dir!r} to resume from")
        state, saved = _load(path, model.kind)
        options, notes = resume_config(saved, options, CHANGEABLE_ON_RESUME)
        for line in notes:
            print(line)
        if state.step > options["steps"]:
            raise ValueError(f"--steps {options['steps']}: the run is already at step {state.step}")
        return state, options
    if os.path.isfile(path) and not overwrite:
        raise ValueError(f"--run-dir {run_dir!r} already holds a run; continue it with --resume, "
                         "or choose another --run-dir")
    ema = EMA(model.params, options["ema_decay"])
    return _State(model, Adam(model.params), ema, np.random.default_rng(options["seed"])), options


def _loop(state, step_fn, run_dir, options, stop, progress, desc) -> float:
    """``loss, grads = step_fn(model, rng)``, Adam, EMA, until ``options["steps"]``; saves every
    ``checkpoint_every`` steps, and when ``stop`` rises (always between two steps: then it raises
    ``Interrupted``). Returns the seconds it took."""
    steps, lr, every = options["steps"], options["lr"], options["checkpoint_every"]
    saved_step = state.step                     # what is on disk already (or nothing, at step 0)
    if state.step:
        stop.last_good = f"the last good checkpoint is {os.path.join(run_dir, CHECKPOINT_NAME)} (step {state.step})"
    bar = tqdm(total=steps, initial=state.step, desc=desc, unit="step", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        while state.step < steps and not stop:
            loss, grads = step_fn(state.model, state.rng)
            state.adam.update(state.model.params, grads, lr)
            state.ema.update(state.model.params)
            state.step += 1
            state.losses.append(float(loss))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if every and state.step % every == 0:
                _save(run_dir, state, options, {}, stop)
                saved_step = state.step
    finally:
        bar.close()
    if stop and state.step < steps:
        if state.step != saved_step:
            _save(run_dir, state, options, {}, stop)
        raise Interrupted(stop.signum, state.step, stop.last_good + ("; continue with --resume" if state.step else ""))
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# The two networks
# --------------------------------------------------------------------------------------------

def train_classifier(run_dir: str, *, steps: int = 1500, batch_size: int = 64, lr: float = 2e-3,
                     seed: int = 0, base_channels: int = 16, channel_mults=(1, 2), groups: int = 4,
                     schedule: str = "linear", T: int = 1000, ema_decay: float = 0.999,
                     checkpoint_every: int = 500, resume: bool = False, overwrite: bool = False,
                     progress: bool = True):
    """Train p_φ(y | x_t, t) on noised digits (module docstring) in ``run_dir``, or with ``resume=True``
    continue the run saved there to ``steps`` (the options other than ``CHANGEABLE_ON_RESUME`` must be
    the saved ones: ``saved_options``). ``overwrite=True`` starts again in a directory that holds a run.
    Returns ``(model with EMA weights, mean loss of the last ≤100 steps, seconds)``."""
    options = _check_common(run_dir, steps, batch_size, lr, seed, ema_decay, checkpoint_every)
    check_choice("schedule", schedule, SCHEDULE_NAMES)
    sched = make_schedule(schedule, check_positive_int("T", T))
    x, y = load_digits_images("train", seed=seed)
    net = NoisyClassifier(in_channels=x.shape[1], image_size=x.shape[2], base_channels=base_channels,
                          channel_mults=channel_mults, groups=groups, num_classes=int(y.max()) + 1,
                          dtype="float32", seed=seed)
    options.update(base_channels=net.config["base_channels"], channel_mults=net.config["channel_mults"],
                   groups=net.config["groups"], schedule=schedule, T=sched.T)

    def step_fn(model, g):
        idx = g.integers(0, len(x), batch_size)                              # x_0, y ~ the digits
        t = g.integers(1, sched.T + 1, batch_size)                           # t ~ U{1..T}
        xt = q_sample(sched, x[idx], t, g.standard_normal(x[idx].shape, dtype=np.float32))   # eq. 4
        loss, grads, _ = model.loss_and_grads(xt, t, y[idx])                 # cross-entropy
        return loss, grads

    state, _, sec = _train(run_dir, net, options, step_fn, lambda state: {}, resume=resume, overwrite=overwrite,
                           progress=progress, desc="training the noisy classifier")
    net = state.model
    net.params = {k: v.copy() for k, v in state.ema.params.items()}
    return net, float(np.mean(state.losses[-100:])), sec


def train_autoencoder(run_dir: str, *, steps: int = 1500, batch_size: int = 64, lr: float = 2e-3,
                      seed: int = 0, hidden_channels: int = 32, latent_channels: int = 2,
                      kl_weight: float = 1e-4, ema_decay: float = 0.999, checkpoint_every: int = 500,
                      resume: bool = False, overwrite: bool = False, progress: bool = True):
    """Train the autoencoder on the digits and fit its scale factor (module docstring) in ``run_dir``,
    or with ``resume=True`` continue the run saved there to ``steps`` (as ``train_classifier``).
    Returns ``(model with EMA weights, scale_factor, test MSE, seconds)``."""
    options = _check_common(run_dir, steps, batch_size, lr, seed, ema_decay, checkpoint_every)
    x, _ = load_digits_images("train", seed=seed)
    ae = Autoencoder(in_channels=x.shape[1], hidden_channels=hidden_channels, latent_channels=latent_channels,
                     kl_weight=kl_weight, dtype="float32", seed=seed)
    options.update({k: ae.config[k] for k in ("hidden_channels", "latent_channels", "kl_weight")})
    sample = kl_weight > 0                                    # the plain AE (w = 0) encodes z = μ

    def step_fn(model, g):
        idx = g.integers(0, len(x), batch_size)
        loss, _, grads, _ = model.loss_and_grads(x[idx], rng=g, sample=sample)
        return loss, grads

    def with_ema_weights(state):
        trained = Autoencoder(**state.model.config)
        trained.params = {k: v.copy() for k, v in state.ema.params.items()}
        return trained

    def fit_scale(state):                                     # at the end of the run, on the EMA weights
        trained = with_ema_weights(state)
        scale = fit_scale_factor(trained.encode(x))           # 1 / std of the training latents
        xte, _ = load_digits_images("test", seed=seed)
        mse = float(np.mean((trained.decode(trained.encode(xte)) - xte) ** 2))
        return {"scale_factor": scale, "test_mse": mse}

    state, fitted, sec = _train(run_dir, ae, options, step_fn, fit_scale, resume=resume, overwrite=overwrite,
                                progress=progress, desc="training the autoencoder")
    return with_ema_weights(state), fitted["scale_factor"], fitted["test_mse"], sec
