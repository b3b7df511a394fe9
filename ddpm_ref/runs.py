"""A run directory: the model, its configuration and its checkpoint, saved and loaded.

Layer: loop. Training (``ddpm_ref.train``), sampling, evaluation, plotting and the lessons all read
a trained model through this module, so none of them imports the training loop to do so.

A run directory holds ``checkpoint.npz`` (every array, with a JSON description under one key, no
pickle; see ``ddpm_ref.checkpoint``) and ``config.json`` (the same description, for people).
The description's ``model`` entry is ``{"kind": "unet" | "mlp", "config": {...}}``: the keyword
arguments of the model's class, from which ``build_model`` makes it again.
"""

from __future__ import annotations

import os

import numpy as np

from ddpm_ref._checks import check_choice
from ddpm_ref.checkpoint import load_checkpoint, split_prefix
from ddpm_ref.models.autoencoder import Autoencoder
from ddpm_ref.models.mlp import MLP
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.models.unet import UNet

__all__ = ["CHECKPOINT_NAME", "MODEL_CLASSES", "SAMPLING_WORKERS", "build_model", "checkpoint_path",
           "check_description", "check_digits_run", "restore_arrays", "restore_training_arrays", "load_model",
           "load_run"]

CHECKPOINT_NAME = "checkpoint.npz"

#: The U-Net's batch-sharding threads when sampling from a loaded run: a fixed number, not the
#: machine's CPU count, so that a seed gives the same bits on every machine (1 vs 2 workers differ
#: by ~1e-6: the BLAS calls see other shapes). Two threads on one core are merely slower.
SAMPLING_WORKERS = 2

#: The model kinds a checkpoint can name, and their classes (each class says its ``kind``).
MODEL_CLASSES = {UNet.kind: UNet, MLP.kind: MLP, NoisyClassifier.kind: NoisyClassifier,
                 Autoencoder.kind: Autoencoder}


def build_model(kind: str, config: dict, ops=None):
    """A fresh ``UNet`` or ``MLP`` from its ``config`` (as stored in a checkpoint).

    ``ops``: the U-Net's ops object (``kernels.get_ops(...)``); the MLP takes none.
    """
    check_choice("model kind", kind, tuple(MODEL_CLASSES))
    config = dict(config)
    for key in ("channel_mults", "attention_resolutions"):     # JSON has lists, the U-Net tuples
        if isinstance(config.get(key), list):
            config[key] = tuple(config[key])
    if ops is not None and kind == UNet.kind:
        config["ops"] = ops
    return MODEL_CLASSES[kind](**config)


def checkpoint_path(run_dir: str) -> str:
    """``run_dir/checkpoint.npz``, or ``run_dir`` itself when it names a ``.npz`` file."""
    return run_dir if str(run_dir).endswith(".npz") else os.path.join(run_dir, CHECKPOINT_NAME)


def check_description(meta: dict, path: str) -> None:
    """Raise ValueError unless a checkpoint's description has what loading and sampling read:
    ``model`` (``kind``, ``config``), ``train`` (``schedule``, ``T``, ``steps`` for a diffusion model)
    and ``step``."""
    need = {"model": ("kind", "config"), "train": ("schedule", "T", "steps")}
    if isinstance(meta.get("model"), dict) and meta["model"].get("kind") not in (UNet.kind, MLP.kind):
        need = {"model": ("kind", "config"), "train": ()}   # a classifier or autoencoder run: no sampler reads it
    for key, inner in need.items():
        if not isinstance(meta.get(key), dict) or any(k not in meta[key] for k in inner):
            raise ValueError(f"{path}: the checkpoint's description is incomplete (its {key!r} entry "
                             f"needs {', '.join(map(repr, inner))})")
    if isinstance(meta.get("step"), bool) or not isinstance(meta.get("step"), int):
        raise ValueError(f"{path}: the checkpoint's description is incomplete (no integer 'step')")


def check_digits_run(meta: dict, path: str, needed_by: str) -> None:
    """ValueError unless the run is a U-Net on 8×8 grey-scale images (the digits), as ``needed_by``
    (the demo's figures, ``evaluate``) requires; the message says what the run is instead."""
    kind, cfg = meta["model"]["kind"], meta["model"]["config"]
    if kind != "unet" or cfg.get("image_size") != 8 or cfg.get("in_channels") != 1:
        what = f"an {kind.upper()} on points" if kind == "mlp" else \
            f"a U-Net on {cfg.get('in_channels')}×{cfg.get('image_size')}×{cfg.get('image_size')} images"
        raise ValueError(f"{path} holds {what} (--data {meta['train'].get('data')!r}); {needed_by} needs a "
                         "U-Net trained on the 8×8 digits")


def restore_arrays(target: dict, saved: dict, what: str, path: str) -> None:
    """Copy saved arrays into ``target``'s arrays in place, checking names, shapes and dtypes."""
    if set(saved) != set(target):
        missing, extra = sorted(set(target) - set(saved)), sorted(set(saved) - set(target))
        raise ValueError(f"{path}: {what} do not match the model (missing {missing[:3]}, extra {extra[:3]})")
    for k, a in target.items():
        if saved[k].shape != a.shape or saved[k].dtype != a.dtype:
            raise ValueError(f"{path}: {what} {k!r} has shape {saved[k].shape} {saved[k].dtype}, "
                             f"the model needs {a.shape} {a.dtype}")
        a[...] = saved[k]


def restore_training_arrays(state, arrays: dict, path: str) -> None:
    """A checkpoint's training arrays into ``state`` in place (``state.model``, ``.ema``, ``.adam``, ``.losses``):
    weights, EMA weights, Adam's moments and the loss history, each checked by ``restore_arrays``."""
    restore_arrays(state.model.params, split_prefix(arrays, "param"), "weights", path)
    restore_arrays(state.ema.params, split_prefix(arrays, "ema"), "EMA weights", path)
    restore_arrays(state.adam.m, split_prefix(arrays, "adam_m"), "Adam moments m", path)
    restore_arrays(state.adam.v, split_prefix(arrays, "adam_v"), "Adam moments v", path)
    state.losses = [float(v) for v in arrays.get("history/loss", ())]


def load_model(run_dir: str, ema: bool = True, ops=None):
    """``(model, meta)``: the model of a run, with its EMA weights (``ema=True``) or raw weights.

    ``meta`` is the checkpoint's description (``model``, ``train``, ``step``, ...) plus
    ``meta["losses"]``, the training loss of every step.
    """
    path = checkpoint_path(run_dir)
    arrays, meta = load_checkpoint(path)
    check_description(meta, path)
    try:
        model = build_model(meta["model"]["kind"], meta["model"]["config"], ops=ops)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: the checkpoint's description is incomplete ({err!r})") from None
    restore_arrays(model.params, split_prefix(arrays, "ema" if ema else "param"),
                   "EMA weights" if ema else "weights", path)
    meta["losses"] = arrays.get("history/loss", np.zeros(0))
    return model, meta


def load_run(run_dir: str, raw: bool = False, workers: int = SAMPLING_WORKERS):
    """``load_model`` for the commands: a clear error when ``run_dir`` is missing, and the U-Net's
    batch-sharding threads set to ``workers`` (default ``SAMPLING_WORKERS``, whatever the CPU count)."""
    if not os.path.exists(run_dir):
        raise ValueError(f"{run_dir} does not exist (train first: ddpm-ref train / ddpm-ref demo)")
    model, meta = load_model(run_dir, ema=not raw)
    if hasattr(model, "workers"):
        model.workers = workers
    return model, meta
