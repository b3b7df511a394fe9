r"""Training: Algorithm 1 of Ho et al. 2020 with L_simple, Adam, clipping, warm-up, EMA, checkpoints.

One training step (``train_step``), with every random draw from the run's single Generator in a
fixed order (batch indices, t, ε, label dropout, then the network's dropout):

.. math::

    x_0 \sim q(x_0),\quad t \sim U\{1..T\},\quad ε \sim N(0, I), \qquad
    L_\text{simple} = \big\| ε − ε_θ(\sqrt{\bar α_t}\, x_0 + \sqrt{1 − \bar α_t}\, ε,\ t) \big\|^2

(Algorithm 1; ``q_sample`` and ``loss_simple`` from ``ddpm_ref.diffusion``), then
``net.backward(∂L/∂ε_θ)``, global-norm clipping, Adam with a linearly warmed-up learning rate,
and an EMA of the weights (``ddpm_ref.optim``).

**Classifier-free guidance training** (Ho & Salimans 2021): with a class-conditional model each
label is replaced by the null label (``num_classes``) with probability ``p_uncond``, so one
network learns both ε_θ(x_t, t, y) and ε_θ(x_t, t, ∅).

**Checkpoints and resume.** ``train`` saves ``checkpoint.npz`` (+ ``config.json``) every
``checkpoint_every`` steps, at the end, and when interrupted (Ctrl-C is deferred to the end of
the current step, so the saved state is always a whole number of steps). The checkpoint holds
everything the next step depends on — weights, Adam's moments and step, the EMA, the step count
and the Generator's state — so ``resume=True`` continues **bit-identically**: k steps + resume to
2k gives exactly the arrays of 2k uninterrupted steps (tested).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_choice, check_positive_int
from ddpm_ref.checkpoint import load_checkpoint, save_checkpoint, split_prefix
from ddpm_ref.runs import CHECKPOINT_NAME, build_model, checkpoint_path, load_model, restore_arrays
from ddpm_ref.data import DATASET_NAMES, Dataset, load_dataset
from ddpm_ref.diffusion import loss_simple, loss_simple_grad, q_sample
from ddpm_ref.optim import EMA, Adam, clip_grad_norm, warmup_lr
from ddpm_ref.schedules import SCHEDULE_NAMES, make_schedule

__all__ = [
    "TrainConfig", "TrainState", "default_model_config", "train", "train_step",
    "save_state", "load_state", "load_or_train_demo", "DEMO_CONFIG", "DEMO_MODEL",
    "QUICK_CONFIG", "QUICK_MODEL",
]

@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run besides the model's architecture.

    ``data``: "digits", "moons", "swissroll", "gmm" or a path (IDX/.npz). ``steps``: the total
    number of optimiser steps. ``cond``: train a class-conditional model (labels required) with
    label dropout ``p_uncond``. ``schedule``/``T``: the noise schedule (``make_schedule``).
    ``checkpoint_every``: save every that many steps (0: only at the end / on interrupt).
    """

    data: str = "digits"
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    schedule: str = "linear"
    T: int = 1000
    cond: bool = True
    p_uncond: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    n_points: int = 10000
    device: str = "cpu"
    workers: int = 2              # U-Net threads sharing a batch on the CPU (ddpm_ref.models.parallel)

    def validate(self) -> "TrainConfig":
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("T", self.T)
        check_positive_int("n_points", self.n_points)
        check_positive_int("workers", self.workers)
        check_choice("schedule", self.schedule, SCHEDULE_NAMES)
        check_choice("device", self.device, ("cpu", "cuda"))
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1), got {self.p_uncond}")
        if self.warmup < 0 or self.checkpoint_every < 0 or self.grad_clip < 0:
            raise ValueError("warmup, checkpoint_every and grad_clip must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.data not in DATASET_NAMES and not os.path.isfile(self.data):
            raise ValueError(f"--data {self.data!r} is neither a known data set "
                             f"({', '.join(DATASET_NAMES)}) nor an existing file")
        return self


# The demo: a class-conditional U-Net on the 8×8 digits. 2500 steps take about 3.5 minutes on 2 idle
# cores (~12 steps/s) and reach L_simple ≈ 0.075; measured 7 minutes with the cores shared.
DEMO_MODEL = dict(base_channels=32, channel_mults=(1, 2), num_res_blocks=1,
                  attention_resolutions=(4,), groups=8, dropout=0.0)
DEMO_CONFIG = TrainConfig(data="digits", steps=2500, batch_size=64, lr=1e-3, warmup=100,
                          schedule="linear", T=1000, cond=True, p_uncond=0.1, seed=0,
                          checkpoint_every=500)
# quick=True for lessons and tests: a tiny model and a few hundred steps (well under 30 s).
QUICK_MODEL = dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                   attention_resolutions=(), groups=4, dropout=0.0)
QUICK_CONFIG = dataclasses.replace(DEMO_CONFIG, steps=300, batch_size=32, warmup=20,
                                   ema_decay=0.99, checkpoint_every=0)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def default_model_config(data: Dataset, cond: bool, seed: int = 0, unet: dict | None = None) -> tuple[str, dict]:
    """``(kind, config)``: a U-Net for image data (``DEMO_MODEL`` unless ``unet`` is given), an MLP for points."""
    num_classes = data.num_classes if cond else None
    if cond and data.num_classes is None:
        raise ValueError(f"--cond needs labels, but the data set {data.name!r} has none")
    if not data.is_image:
        return "mlp", {"dim": int(data.x.shape[1]), "hidden": 128, "depth": 3, "emb_dim": 32,
                       "num_classes": num_classes, "dtype": "float32", "seed": seed}
    n, c, h, w = data.x.shape
    if h != w:
        raise ValueError(f"the U-Net takes square images; the data has {h}×{w}")
    cfg = dict(DEMO_MODEL if unet is None else unet)
    levels = len(cfg["channel_mults"])
    if h % (2 ** (levels - 1)):
        raise ValueError(f"image size {h} is not divisible by 2^{levels - 1} "
                         f"(the U-Net downsamples {levels - 1} time(s))")
    cfg.update(in_channels=int(c), image_size=int(h), num_classes=num_classes, dtype="float32", seed=seed)
    return "unet", cfg


# --------------------------------------------------------------------------------------------
# State, one step, save/load
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainState:
    """Everything that changes during training (and is saved in the checkpoint)."""

    model: object
    adam: Adam
    ema: EMA
    rng: np.random.Generator
    step: int = 0
    losses: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0          # wall time of the last ``train`` call


def new_state(model, config: TrainConfig) -> TrainState:
    return TrainState(model=model, adam=Adam(model.params), ema=EMA(model.params, config.ema_decay),
                      rng=np.random.default_rng(config.seed))


def train_step(state: TrainState, data: Dataset, sched, config: TrainConfig, device=None) -> float:
    """One step of Algorithm 1 + the optimiser. Returns the batch's L_simple (before the update)."""
    g, model = state.rng, state.model
    dtype = np.dtype(model.config.get("dtype", "float32"))
    idx = g.integers(0, data.x.shape[0], size=config.batch_size)        # x_0 ~ q(x_0)
    x0 = data.x[idx].astype(dtype, copy=False)
    t = g.integers(1, sched.T + 1, size=config.batch_size)              # t ~ Uniform({1, ..., T})
    eps = g.standard_normal(x0.shape, dtype=dtype)                       # ε ~ N(0, I)
    xt = q_sample(sched, x0, t, eps)                                    # √ᾱ_t x_0 + √(1−ᾱ_t) ε
    y = None
    if model.config.get("num_classes") is not None:
        y = data.y[idx]
        drop = g.random(config.batch_size) < config.p_uncond             # label dropout for CFG
        y = np.where(drop, model.config["num_classes"], y).astype(np.int64)
    put, get = device if device is not None else (lambda a: a, lambda a: a)
    eps_pred = get(model.forward(put(xt), put(t), None if y is None else put(y), keep_cache=True, rng=g))
    loss = loss_simple(eps, eps_pred)                                    # ‖ε − ε_θ(x_t, t)‖² (mean)
    grads = model.backward(put(loss_simple_grad(eps, eps_pred)))
    clip_grad_norm(grads, config.grad_clip)
    state.step += 1
    state.adam.update(model.params, grads, warmup_lr(state.step, config.lr, config.warmup))
    state.ema.update(model.params)
    state.losses.append(loss)
    return loss


def save_state(state: TrainState, config: TrainConfig, run_dir: str) -> str:
    """Write ``run_dir/checkpoint.npz`` (+ ``config.json``) atomically; returns the path."""
    arrays = {f"param/{k}": v for k, v in state.model.params.items()}
    arrays.update({f"ema/{k}": v for k, v in state.ema.params.items()})
    arrays.update(state.adam.state_arrays())
    arrays["history/loss"] = np.asarray(state.losses, dtype=np.float64)
    meta = {
        "model": {"kind": state.model.kind, "config": state.model.config},
        "train": dataclasses.asdict(config),
        "step": state.step,
        "adam": {"step": state.adam.step, **state.adam.hyperparameters()},
        "ema": {"step": state.ema.step, "decay": state.ema.decay, "warmup": state.ema.warmup},
        "rng": state.rng.bit_generator.state,
    }
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    save_checkpoint(path, arrays, meta)
    return path


def load_state(run_dir: str, ops=None) -> tuple[TrainState, TrainConfig]:
    """The ``TrainState`` and ``TrainConfig`` saved in ``run_dir`` (or a ``.npz`` path)."""
    path = checkpoint_path(run_dir)
    arrays, meta = load_checkpoint(path)
    try:
        config = TrainConfig(**meta["train"])
        model = build_model(meta["model"]["kind"], meta["model"]["config"], ops=ops)
        state = new_state(model, config)
        state.step = int(meta["step"])
        state.adam.step, state.ema.step = int(meta["adam"]["step"]), int(meta["ema"]["step"])
        state.rng.bit_generator.state = meta["rng"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: the checkpoint's description is incomplete ({err!r})") from None
    restore_arrays(model.params, split_prefix(arrays, "param"), "weights", path)
    restore_arrays(state.ema.params, split_prefix(arrays, "ema"), "EMA weights", path)
    restore_arrays(state.adam.m, split_prefix(arrays, "adam_m"), "Adam moments m", path)
    restore_arrays(state.adam.v, split_prefix(arrays, "adam_v"), "Adam moments v", path)
    state.losses = [float(v) for v in arrays.get("history/loss", np.zeros(0))]
    return state, config


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _deferred_interrupt():
    """Turn Ctrl-C into a flag checked between steps (a second Ctrl-C interrupts at once)."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train(config: TrainConfig, run_dir: str | None, *, resume: bool = False, model_kind_config=None,
          progress: bool = True, device_ops=None, device=None, data: Dataset | None = None) -> TrainState:
    """Train (or with ``resume=True`` continue) a run; returns the final ``TrainState``.

    ``run_dir``: where ``checkpoint.npz``, ``config.json`` go (None: save nothing). On resume the
    saved run's configuration is used, except ``steps`` (the new total) and ``checkpoint_every``
    from ``config``. ``model_kind_config``: ``(kind, config)`` to override the default model.
    ``device``: optional ``(to_device, to_host)`` functions and ``device_ops`` the ops object, for
    the CUDA path (see ``ddpm_ref.commands.train``). ``data``: train on this ``Dataset`` instead of
    ``config.data`` (the latents of a latent run, ``ddpm_ref.latent``; pass it again to resume).
    """
    config.validate()
    if resume:
        if run_dir is None or not os.path.isfile(checkpoint_path(run_dir)):
            raise ValueError(f"--resume: no checkpoint in {run_dir!r} to resume from")
        state, saved = load_state(run_dir, ops=device_ops)
        if state.step > config.steps:
            raise ValueError(f"the run is already at step {state.step}, past --steps {config.steps}")
        config = dataclasses.replace(saved, steps=config.steps, checkpoint_every=config.checkpoint_every,
                                     device=config.device)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    if not resume:
        kind, mcfg = model_kind_config or default_model_config(data, config.cond, config.seed)
        state = new_state(build_model(kind, mcfg, ops=device_ops), config)
    if device is not None:
        _move_state(state, device[0])
    elif hasattr(state.model, "workers"):
        state.model.workers = config.workers      # batch-sharded threads (same count on resume)
    sched = make_schedule(config.schedule, config.T)
    _check_model_fits(state.model, data)
    bar = tqdm(total=config.steps, initial=state.step, desc=f"training on {data.name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    avg, t0 = None, time.perf_counter()
    with _deferred_interrupt() as interrupted:
        try:
            while state.step < config.steps:
                loss = train_step(state, data, sched, config, device)
                avg = loss if avg is None else 0.98 * avg + 0.02 * loss
                bar.update(1)
                bar.set_postfix(loss=f"{avg:.4f}", lr=f"{warmup_lr(state.step, config.lr, config.warmup):.1e}",
                                refresh=False)
                if interrupted["hit"]:
                    raise KeyboardInterrupt
                if run_dir and config.checkpoint_every and state.step % config.checkpoint_every == 0:
                    save_state(state, config, run_dir)
        except KeyboardInterrupt:
            bar.close()
            if run_dir:
                path = save_state(state, config, run_dir)
                print(f"interrupted at step {state.step}; saved {path} (continue with --resume)")
            raise
    bar.close()
    if run_dir:
        save_state(state, config, run_dir)
    state.seconds = time.perf_counter() - t0
    return state


def _move_state(state: TrainState, to_device) -> None:
    for d in (state.model.params, state.adam.m, state.adam.v, state.ema.params):
        for k in d:
            d[k] = to_device(d[k])


def _check_model_fits(model, data: Dataset) -> None:
    cfg = model.config
    if data.is_image:
        want = (cfg.get("in_channels"), cfg.get("image_size"), cfg.get("image_size"))
        if model.kind != "unet" or data.x.shape[1:] != want:
            raise ValueError(f"the model takes inputs of shape (N, {want[0]}, {want[1]}, {want[2]}), "
                             f"the data has {data.x.shape}")
    elif model.kind != "mlp" or data.x.shape[1] != cfg.get("dim"):
        raise ValueError(f"the model ({model.kind}) cannot take points of shape {data.x.shape}")
    if cfg.get("num_classes") is not None:
        if data.y is None:
            raise ValueError("the model is class-conditional but the data has no labels")
        if data.y.max() >= cfg["num_classes"]:
            raise ValueError(f"the data has labels up to {data.y.max()}, the model {cfg['num_classes']} classes")


# --------------------------------------------------------------------------------------------
# For the lessons
# --------------------------------------------------------------------------------------------

def load_or_train_demo(run_dir: str = "runs/demo", quick: bool = False, progress: bool = True):
    """The demo's model with its EMA weights: loaded from ``run_dir`` if it has a checkpoint,
    otherwise trained (``DEMO_CONFIG``, 4-7 min on 2 cores; ``quick=True``: ``QUICK_CONFIG``, a
    tiny model in well under 30 s) and saved there first. Returns the model.
    """
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.isfile(path):
        model, meta = load_model(run_dir)
        if meta["step"] >= meta["train"]["steps"]:
            return model
        print(f"{path} is an unfinished run (step {meta['step']}); continuing it")
        train(TrainConfig(**meta["train"]), run_dir, resume=True, progress=progress)
        return load_model(run_dir)[0]
    config, unet = (QUICK_CONFIG, QUICK_MODEL) if quick else (DEMO_CONFIG, DEMO_MODEL)
    data = load_dataset(config.data, seed=config.seed)
    train(config, run_dir, model_kind_config=default_model_config(data, config.cond, config.seed, unet),
          progress=progress)
    return load_model(run_dir)[0]
