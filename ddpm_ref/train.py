r"""Training: Algorithm 1 of Ho et al. 2020 with L_simple, Adam, clipping, warm-up, EMA, checkpoints.

Layer: loop (imports the model, layers and math; never the command line).

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

**Prompts** (``prompts=True``, Stable Diffusion's conditioning in miniature): the U-Net reads a
prompt through cross-attention instead of a label; each example's prompt is drawn from its label and
stroke (``ddpm_ref.prompts.training_tokens``), the whole prompt dropped with probability ``p_uncond``.

**Checkpoints and resume.** ``train`` saves ``checkpoint.npz`` (+ ``config.json``) every
``checkpoint_every`` steps, at the end, and when stopped by a signal. The checkpoint holds
everything the next step depends on — weights, Adam's moments and step, the EMA, the step count
and the Generator's state — so ``resume=True`` continues **bit-identically**: k steps + resume to
2k gives exactly the arrays of 2k uninterrupted steps (tested, also after SIGINT, SIGTERM and
``kill -9`` of a real training process: ``tests/test_interrupts.py``). A resumed run may change
only ``CHANGEABLE_ON_RESUME`` (``ddpm_ref.run_checks``).

**Signals** (``ddpm_ref.interrupts``): the first Ctrl-C, SIGTERM or SIGHUP finishes the step in
flight, saves it and raises ``Interrupted``; a second one raises ``Aborted`` at once and writes
nothing. **One writer** (``ddpm_ref.runlock``): the run directory is locked while ``train`` runs.

Why over 400 lines: the configuration, one step of Algorithm 1 (with its issue-11 targets, the
hybrid loss and issue 12's prompts), saving and loading the state and the loop belong together;
Ctrl-C, the run lock and the resume checks already live in ``interrupts.py``, ``runlock.py`` and
``run_checks.py``.
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
from ddpm_ref.data import DATASET_NAMES, Dataset, load_dataset
from ddpm_ref.diffusion import PREDICTIONS, loss_simple, loss_simple_grad, q_sample, training_target
from ddpm_ref.interrupts import Interrupted, stop_requests
from ddpm_ref.learned_variance import HYBRID_LAMBDA, hybrid_loss
from ddpm_ref.memory import check_fits, measure_step_bytes
from ddpm_ref.optim import EMA, Adam, clip_grad_norm, warmup_lr
from ddpm_ref.prompts import PROMPT_LENGTH, PROMPT_VOCAB, has_prompts, training_tokens
from ddpm_ref.runlock import RunLock, check_run_dir, remove_stale_temporaries
from ddpm_ref.run_checks import (CHANGEABLE_ON_RESUME, check_model_fits, check_sizes, flag, resume_config,
                                 same_model)
from ddpm_ref.runs import (CHECKPOINT_NAME, build_model, check_description, check_digits_run, checkpoint_path,
                           load_model, restore_training_arrays)
from ddpm_ref.schedules import SCHEDULE_NAMES, make_schedule, rescale_zero_terminal_snr

__all__ = [
    "TrainConfig", "TrainState", "default_model_config", "train", "train_step",
    "save_state", "load_state", "load_or_train_demo", "DEMO_CONFIG", "DEMO_MODEL",
    "QUICK_CONFIG", "QUICK_MODEL", "PROMPT_CONFIG", "CHANGEABLE_ON_RESUME", "resume_config",
]

@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run besides the model's architecture.

    ``data``: "digits", "moons", "swissroll", "gmm" or a path (IDX/.npz). ``steps``: the total
    number of optimiser steps. ``cond``: train a class-conditional model (labels required) with
    label dropout ``p_uncond``. ``schedule``/``T``: the noise schedule (``make_schedule``).
    ``checkpoint_every``: save every that many steps (0: only at the end / on interrupt).

    Beyond Ho et al. (issue 11): ``prediction`` — what the network learns, "eps" (default), "x0"
    or "v" (``training_target``); ``learn_sigma`` — the model outputs [prediction | v_σ] and the
    loss is L_hybrid = L_simple + ``hybrid_lambda``·L_vlb (Nichol & Dhariwal 2021; the model's
    config must have learn_sigma too: ``default_model_config(..., learn_sigma=True)``);
    ``zero_terminal_snr`` — the schedule rescaled to ᾱ_T = 0 (Lin et al. 2024; build it with
    ``config.make_schedule()``; needs prediction "x0" or "v").

    Beyond (issue 12): ``prompts`` — the U-Net reads prompts made from the digits' labels and strokes
    through cross-attention (``ddpm_ref.prompts``), with prompt dropout ``p_uncond``; needs
    ``cond=False`` (it replaces the label embedding) and the digits (or their latents).
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
    prediction: str = "eps"       # "eps" | "x0" | "v": the network's target (ddpm_ref.prediction)
    learn_sigma: bool = False     # learned variances, trained with the hybrid loss
    hybrid_lambda: float = HYBRID_LAMBDA   # λ of L_hybrid = L_simple + λ·L_vlb (used with learn_sigma)
    zero_terminal_snr: bool = False        # rescale the schedule to ᾱ_T = 0 (Lin et al. 2024)
    prompts: bool = False                  # condition on prompts via cross-attention (ddpm_ref.prompts)

    def make_schedule(self):
        """The run's noise schedule: ``make_schedule(schedule, T)``, rescaled to ᾱ_T = 0 if zero_terminal_snr."""
        sched = make_schedule(self.schedule, self.T)
        return rescale_zero_terminal_snr(sched) if self.zero_terminal_snr else sched

    def validate(self) -> "TrainConfig":
        """Check every field (finite, in range) before any work; ValueError names the field."""
        for name in ("steps", "batch_size", "T", "n_points", "workers"):
            check_positive_int(flag(name), getattr(self, name))
        for name in ("warmup", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{flag(name)} must be an integer >= 0, got {value!r}")
        check_choice("--schedule", self.schedule, SCHEDULE_NAMES)
        check_choice("--device", self.device, ("cpu", "cuda"))
        for name, lo, hi, text in (("lr", 0.0, None, "a finite number > 0"),
                                   ("grad_clip", 0.0, None, "a finite number >= 0 (0: off)"),
                                   ("ema_decay", 0.0, 1.0, "a number in [0, 1)"),
                                   ("p_uncond", 0.0, 1.0, "a number in [0, 1)")):
            value = getattr(self, name)
            ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
                  and value >= lo and (hi is None or value < hi) and (name != "lr" or value > 0))
            if not ok:
                raise ValueError(f"{flag(name)} must be {text}, got {value!r}")
        check_choice("--prediction", self.prediction, PREDICTIONS)
        for name in ("learn_sigma", "zero_terminal_snr", "prompts"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{flag(name)} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.hybrid_lambda, bool) or not isinstance(self.hybrid_lambda, numbers.Real) \
                or not np.isfinite(self.hybrid_lambda) or self.hybrid_lambda < 0:
            raise ValueError(f"{flag('hybrid_lambda')} must be a finite number >= 0, got {self.hybrid_lambda!r}")
        if self.zero_terminal_snr and self.prediction == "eps":
            raise ValueError("--zero-terminal-snr needs --prediction v or x0: at t = T (alpha_bar_T = 0) x_T is "
                             "pure noise, an eps-prediction cannot give x_0 there and sampling would fail")
        if self.prompts and self.cond:
            raise ValueError("--prompts conditions the model on prompts instead of class labels: drop --cond "
                             "(in Python: TrainConfig(prompts=True, cond=False))")
        if self.zero_terminal_snr and self.T < 2:
            raise ValueError("--zero-terminal-snr needs --T >= 2")
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
# The prompt model (issue 12): the demo's U-Net and settings, reading prompts by cross-attention, for
# 3000 steps (the prompts' words split the data finer than the labels do); what
# `ddpm-ref train --prompts --run-dir runs/prompts` trains.
PROMPT_CONFIG = dataclasses.replace(DEMO_CONFIG, prompts=True, cond=False, steps=3000)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

def default_model_config(data: Dataset, cond: bool, seed: int = 0, unet: dict | None = None,
                         learn_sigma: bool = False, prompts: bool = False) -> tuple[str, dict]:
    """``(kind, config)``: a U-Net for image data (``DEMO_MODEL`` unless ``unet`` is given), an MLP for points.

    ``learn_sigma``: the model outputs [prediction | v_σ] (2·C channels); match ``TrainConfig.learn_sigma``.
    ``prompts``: a U-Net that reads prompts (``PROMPT_VOCAB``, ``PROMPT_LENGTH`` tokens, embeddings of
    width base_channels) through cross-attention; match ``TrainConfig.prompts``.
    """
    if prompts and (data.thickness is None or data.y is None):
        raise ValueError(f"--prompts makes its prompts from the digits' labels and strokes; the data set "
                         f"{data.name!r} has none (use --data digits, or --latent)")
    num_classes = data.num_classes if cond else None
    if cond and data.num_classes is None:
        raise ValueError(f"--cond needs labels, but the data set {data.name!r} has none")
    if num_classes is not None:      # the label embedding (float32), its gradient, Adam's moments, EMA
        width = 4 * (DEMO_MODEL if unet is None else unet)["base_channels"] if data.is_image else 32
        check_fits(f"a label embedding for {num_classes} classes (the labels go up to {num_classes - 1})",
                   5 * 4 * (num_classes + 1) * width)
    if not data.is_image:
        return "mlp", {"dim": int(data.x.shape[1]), "hidden": 128, "depth": 3, "emb_dim": 32,
                       "num_classes": num_classes, "dtype": "float32", "seed": seed, "learn_sigma": bool(learn_sigma)}
    n, c, h, w = data.x.shape
    if h != w:
        raise ValueError(f"the U-Net takes square images; the data has {h}×{w}")
    cfg = dict(DEMO_MODEL if unet is None else unet)
    levels = len(cfg["channel_mults"])
    if h % (2 ** (levels - 1)):
        raise ValueError(f"image size {h} is not divisible by 2^{levels - 1} "
                         f"(the U-Net downsamples {levels - 1} time(s))")
    cfg.update(in_channels=int(c), image_size=int(h), num_classes=num_classes, dtype="float32", seed=seed,
               learn_sigma=bool(learn_sigma))
    if prompts:
        cfg.update(num_classes=None, prompt_vocab=list(PROMPT_VOCAB), prompt_length=PROMPT_LENGTH,
                   context_dim=cfg["base_channels"])
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
    config: TrainConfig | None = None     # the configuration ``train`` ran with
    saved_model: dict | None = None       # ``{"kind", "config"}`` as the checkpoint stored it (load_state)


def new_state(model, config: TrainConfig) -> TrainState:
    return TrainState(model=model, adam=Adam(model.params), ema=EMA(model.params, config.ema_decay),
                      rng=np.random.default_rng(config.seed))


def train_step(state: TrainState, data: Dataset, sched, config: TrainConfig, device=None) -> float:
    """One step of Algorithm 1 + the optimiser. Returns the batch's loss (before the update).

    The loss is L_simple against ``training_target`` (ε, x_0 or v, by ``config.prediction``); with
    ``config.learn_sigma`` it is L_hybrid = L_simple + λ·L_vlb (``hybrid_loss``: L_simple trains the
    prediction half, λ·L_vlb only the v_σ half — the stop-gradient on the mean).
    """
    _check_train_step(state.model, data, sched, config)
    g, model = state.rng, state.model
    dtype = np.dtype(model.config.get("dtype", "float32"))
    idx = g.integers(0, data.x.shape[0], size=config.batch_size)        # x_0 ~ q(x_0)
    x0 = data.x[idx].astype(dtype, copy=False)
    t = g.integers(1, sched.T + 1, size=config.batch_size)              # t ~ Uniform({1, ..., T})
    eps = g.standard_normal(x0.shape, dtype=dtype)                       # ε ~ N(0, I)
    xt = q_sample(sched, x0, t, eps)                                    # √ᾱ_t x_0 + √(1−ᾱ_t) ε
    y = tokens = None
    if model.config.get("num_classes") is not None:
        y = data.y[idx]
        drop = g.random(config.batch_size) < config.p_uncond             # label dropout for CFG
        y = np.where(drop, model.config["num_classes"], y).astype(np.int64)
    if has_prompts(model.config):                                        # prompts, with prompt dropout
        tokens = training_tokens(data.y[idx], data.thickness[idx], g, config.p_uncond,
                                 model.config["prompt_vocab"], model.config["prompt_length"])
    put, get = device if device is not None else (lambda a: a, lambda a: a)
    kw = {} if tokens is None else {"tokens": tokens}
    out = get(model.forward(put(xt), put(t), None if y is None else put(y), keep_cache=True, rng=g, **kw))
    if config.learn_sigma:                                               # out = [prediction | v_σ]
        c = x0.shape[1]
        h = hybrid_loss(sched, x0, xt, t, eps, out[:, :c], out[:, c:], config.prediction, lam=config.hybrid_lambda)
        loss = h["loss"]                                                 # L_simple + λ·L_vlb
        d_out = np.concatenate([h["d_pred"], h["d_v_sigma"]], axis=1).astype(out.dtype, copy=False)
    else:
        target = training_target(sched, x0, t, eps, config.prediction)   # ε, x_0 or v
        loss = loss_simple(target, out)                                  # ‖target − output‖² (mean)
        d_out = loss_simple_grad(target, out)
    grads = model.backward(put(d_out))
    clip_grad_norm(grads, config.grad_clip)
    state.step += 1
    state.adam.update(model.params, grads, warmup_lr(state.step, config.lr, config.warmup))
    state.ema.update(model.params)
    state.losses.append(loss)
    return loss


def _check_train_step(model, data, sched, config) -> None:
    """The model, the schedule and the config must agree on learn_sigma and zero terminal SNR."""
    if has_prompts(model.config) != bool(config.prompts):
        raise ValueError(f"prompts={config.prompts} in the training config but the model "
                         f"{'reads' if has_prompts(model.config) else 'reads no'} prompts: build it with "
                         "default_model_config(..., prompts=...)")
    if config.prompts and (data.thickness is None or data.y is None):
        raise ValueError(f"prompts are made from the digits' labels and strokes; the data set {data.name!r} has none")
    if config.learn_sigma and not data.is_image:
        raise ValueError("learn_sigma needs image data in [-1, 1]: L_vlb's term at t = 1 is the discretized "
                         f"decoder likelihood of 8-bit images, which the points of {data.name!r} are not")
    if bool(model.config.get("learn_sigma", False)) != bool(config.learn_sigma):
        raise ValueError(f"learn_sigma={config.learn_sigma} in the training config but {model.config.get('learn_sigma', False)} "
                         "in the model's config: build the model with default_model_config(..., learn_sigma=...)")
    if bool(config.zero_terminal_snr) != bool(sched.alpha_bars[sched.T] == 0):
        raise ValueError(f"zero_terminal_snr={config.zero_terminal_snr} but the schedule has alpha_bar_T = "
                         f"{sched.alpha_bars[sched.T]:.3g}: build it with config.make_schedule()")


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
    check_description(meta, path)
    try:
        config = TrainConfig(**meta["train"])
        model = build_model(meta["model"]["kind"], meta["model"]["config"], ops=ops)
        state = new_state(model, config)
        state.step = int(meta["step"])
        state.adam.step, state.ema.step = int(meta["adam"]["step"]), int(meta["ema"]["step"])
        state.rng.bit_generator.state = meta["rng"]
        state.saved_model = meta["model"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: the checkpoint's description is incomplete ({err!r})") from None
    restore_training_arrays(state, arrays, path)     # weights, EMA, Adam's moments, losses
    return state, config


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

def train(config: TrainConfig, run_dir: str | None, *, resume: bool = False, overwrite: bool = False,
          model_kind_config=None, progress: bool = True, device_ops=None, device=None,
          message=print, data: Dataset | None = None) -> TrainState:
    """Train (or with ``resume=True`` continue) a run; returns the final ``TrainState``.

    ``run_dir``: the run directory for ``checkpoint.npz``, ``config.json`` (None: save nothing).
    It is checked, created and locked (``ddpm_ref.runlock``) before any work. A directory that
    already holds a run is refused unless ``resume`` (continue it) or ``overwrite`` (start again).
    On resume the saved configuration is used, with the fields of ``CHANGEABLE_ON_RESUME`` from
    ``config`` (each change printed); ``config`` must not differ in any other field, nor
    ``model_kind_config`` (``(kind, config)``, default: ``default_model_config``) from the saved model.
    ``device``: optional ``(to_device, to_host)`` functions and ``device_ops`` the ops object, for
    the CUDA path (see ``ddpm_ref.commands.train``). ``data``: train on this ``Dataset`` instead of
    ``config.data`` (the latents of a latent run, ``ddpm_ref.latent``; pass it again to resume).

    Signals (``ddpm_ref.interrupts``): a first Ctrl-C/SIGTERM/SIGHUP finishes the current step,
    saves it and raises ``Interrupted``; a second raises ``Aborted`` at once, writing nothing.
    """
    config.validate()
    if resume and run_dir is None:
        raise ValueError("resume=True needs a run directory")
    if run_dir is None:
        with stop_requests() as stop:
            state, data, sched = _start(config, None, False, False, model_kind_config, device_ops, message, data)
            return _loop(state, data, sched, config, None, progress, device, stop)
    check_run_dir(run_dir)
    with RunLock(run_dir, message=message), stop_requests() as stop:   # a signal during setup: no step
        removed = remove_stale_temporaries(run_dir)
        if removed:
            message(f"removed {len(removed)} temporary file(s) left by an interrupted write in {run_dir}")
        state, data, sched = _start(config, run_dir, resume, overwrite, model_kind_config, device_ops, message,
                                    data)
        return _loop(state, data, sched, state.config, run_dir, progress, device, stop)


def _start(config, run_dir, resume, overwrite, model_kind_config, device_ops, message, data=None):
    """The state to train from (new or loaded), the data set and the schedule, all checked."""
    path = None if run_dir is None else os.path.join(run_dir, CHECKPOINT_NAME)
    if resume:
        if not os.path.isfile(path):
            raise ValueError(f"--resume: no checkpoint in {run_dir!r} to resume from")
        state, saved = load_state(run_dir, ops=device_ops)
        config, notes = resume_config(saved, config)
        for line in notes:
            message(line)
        if model_kind_config is not None and not same_model(model_kind_config, state.saved_model):
            raise ValueError("--resume: the model options differ from the saved run's model "
                             f"({state.saved_model['kind']} {state.saved_model['config']})")
        if state.step > config.steps:
            raise ValueError(f"--steps {config.steps}: the run is already at step {state.step}")
    elif path is not None and os.path.isfile(path) and not overwrite:
        raise ValueError(f"--run-dir {run_dir!r} already holds a run; continue it with --resume, "
                         "or choose another --run-dir")
    check_sizes(config)
    if data is None:
        data = load_dataset(config.data, seed=config.seed, n_points=config.n_points)
    if not resume:
        kind, mcfg = model_kind_config or default_model_config(data, config.cond, config.seed,
                                                               learn_sigma=config.learn_sigma, prompts=config.prompts)
        state = new_state(build_model(kind, mcfg, ops=device_ops), config)
    state.config = config
    check_model_fits(state.model, data)
    if device_ops is None:
        fixed, per_example = measure_step_bytes(state.model, data.x.shape[1:])
        check_fits(f"--batch-size {config.batch_size}", fixed + config.batch_size * per_example)
    return state, data, config.make_schedule()


def _save(state: TrainState, config: TrainConfig, run_dir: str, stop) -> None:
    path = save_state(state, config, run_dir)
    stop.last_good = f"the last good checkpoint is {path} (step {state.step})"


def _loop(state, data, sched, config, run_dir, progress, device, stop) -> TrainState:
    """Algorithm 1 until ``config.steps``, saving every ``checkpoint_every`` steps, at the end, and
    when ``stop`` (``ddpm_ref.interrupts.StopRequest``) rises — always between two steps."""
    if device is not None:
        _move_state(state, device[0])
    elif hasattr(state.model, "workers"):
        state.model.workers = config.workers      # batch-sharded threads
    saved_step = state.step                       # what is on disk already (or nothing, at step 0)
    if run_dir and state.step:
        stop.last_good = f"the last good checkpoint is {checkpoint_path(run_dir)} (step {state.step})"
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, initial=state.step, desc=f"training on {data.name}", unit="step",
               disable=not progress, dynamic_ncols=True)
    avg = None
    try:
        while state.step < config.steps and not stop:
            loss = train_step(state, data, sched, config, device)
            avg = loss if avg is None else 0.98 * avg + 0.02 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{avg:.4f}", lr=f"{warmup_lr(state.step, config.lr, config.warmup):.1e}",
                            refresh=False)
            if run_dir and config.checkpoint_every and state.step % config.checkpoint_every == 0:
                _save(state, config, run_dir, stop)
                saved_step = state.step
    finally:
        bar.close()
    if run_dir and state.step != saved_step:
        _save(state, config, run_dir, stop)
    if stop and state.step < config.steps:
        where = "nothing saved (no run directory)" if not run_dir else \
            stop.last_good + ("; continue with --resume" if state.step else "")
        raise Interrupted(stop.signum, state.step, where)
    state.seconds = time.perf_counter() - t0
    return state


def _move_state(state: TrainState, to_device) -> None:
    for d in (state.model.params, state.adam.m, state.adam.v, state.ema.params):
        for k in d:
            d[k] = to_device(d[k])


# --------------------------------------------------------------------------------------------
# For the lessons
# --------------------------------------------------------------------------------------------

def load_or_train_demo(run_dir: str = "runs/demo", quick: bool = False, progress: bool = True,
                       prompts: bool = False):
    """The demo's model with its EMA weights: loaded from ``run_dir`` if it has a checkpoint,
    otherwise trained (``DEMO_CONFIG``, 4-7 min on 2 cores; ``quick=True``: ``QUICK_CONFIG``, a
    tiny model in well under 30 s) and saved there first. Returns the model.

    ``prompts=True``: the demo's U-Net reading prompts instead of labels (``PROMPT_CONFIG``, what
    ``ddpm-ref train --prompts --run-dir runs/prompts`` trains; ``quick``: ``QUICK_CONFIG``'s tiny model).
    """
    path = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.isfile(path):
        model, meta = load_model(run_dir)
        check_digits_run(meta, path, "load_or_train_demo")
        if has_prompts(model.config) != prompts:
            raise ValueError(f"{path} holds a model that reads {'prompts' if has_prompts(model.config) else 'labels'}; "
                             f"a model that reads {'prompts' if prompts else 'labels'} was asked for")
        if meta["step"] >= meta["train"]["steps"]:
            return model
        print(f"{path} is an unfinished run (step {meta['step']}); continuing it")
        train(TrainConfig(**meta["train"]), run_dir, resume=True, progress=progress)
        return load_model(run_dir)[0]
    config, unet = (QUICK_CONFIG, QUICK_MODEL) if quick else (DEMO_CONFIG, DEMO_MODEL)
    if prompts:
        config = dataclasses.replace(config, prompts=True, cond=False, steps=config.steps if quick else PROMPT_CONFIG.steps)
    data = load_dataset(config.data, seed=config.seed)
    kind_config = default_model_config(data, config.cond, config.seed, unet, learn_sigma=config.learn_sigma,
                                       prompts=config.prompts)
    train(config, run_dir, model_kind_config=kind_config, progress=progress)
    return load_model(run_dir)[0]
