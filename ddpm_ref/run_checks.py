"""What a training run checks before its first step: the model takes the data, the sizes fit in
memory, and a resumed run changes only what may change.

Layer: loop (used by ``ddpm_ref.train``, whose ``TrainConfig`` these functions read, and by
``ddpm_ref.train_extra``, whose runs' options are a dict: ``resume_config`` takes either).
"""

from __future__ import annotations

import dataclasses
import json

from ddpm_ref.memory import check_fits

__all__ = ["CHANGEABLE_ON_RESUME", "flag", "resume_config", "same_model", "check_sizes", "check_model_fits"]

#: Fields of ``ddpm_ref.train.TrainConfig`` a resumed run may change (applied and printed): the
#: total steps, the checkpoint interval, the learning rate (e.g. to lower it for the last steps),
#: where and on how many threads it runs. Every other field defines the run (data, batch, noise,
#: optimiser, label dropout, seed); ``--resume`` refuses to change it, naming the flag.
CHANGEABLE_ON_RESUME = ("steps", "checkpoint_every", "lr", "device", "workers")


def flag(field: str) -> str:
    """The command-line spelling of a ``TrainConfig`` field (``batch_size`` → ``--batch-size``)."""
    return "--T" if field == "T" else "--" + field.replace("_", "-")


def resume_config(saved, config, changeable=CHANGEABLE_ON_RESUME) -> tuple:
    """The configuration of a resumed run: ``saved``, with the fields of ``changeable`` taken from
    ``config``. Returns it and one line per change; ValueError names any other field that ``config``
    would change. ``saved`` and ``config`` are two ``TrainConfig``s, or two dicts of options (the
    classifier's and the autoencoder's runs, ``ddpm_ref.train_extra``: JSON values, lists not tuples)."""
    as_dict = isinstance(saved, dict)
    old, new = (saved, config) if as_dict else (dataclasses.asdict(saved), dataclasses.asdict(config))
    for name in {**old, **new}:
        if name not in changeable and old.get(name) != new.get(name):
            raise ValueError(f"--resume: {flag(name)} {new.get(name)!r} differs from the saved run's "
                             f"{old.get(name)!r}; a resumed run keeps its data, model and optimiser (start "
                             "another --run-dir to change them)")
    changes = {k: new[k] for k in changeable}
    notes = [f"resuming with {flag(k)} {v!r} (the saved run had {old[k]!r})"
             for k, v in changes.items() if v != old[k]]
    if "workers" in changes and changes["workers"] != old["workers"]:
        notes.append("  (bits equal to an uninterrupted run need the same --workers: see README, determinism)")
    return ({**saved, **changes} if as_dict else dataclasses.replace(saved, **changes)), notes


def same_model(kind_config, saved: dict) -> bool:
    """Whether ``(kind, config)`` describes the saved model (compared as the checkpoint stores it)."""
    kind, cfg = kind_config
    as_json = json.loads(json.dumps({"kind": kind, "config": cfg}))
    return as_json == {"kind": saved["kind"], "config": saved["config"]}


def check_sizes(config) -> None:
    """Refuse sizes that cannot fit, before allocating them (see ``ddpm_ref.memory``)."""
    check_fits(f"--T {config.T}", 2 * 120 * (config.T + 1))      # ~15 float64 schedule arrays, twice
    if config.data in ("moons", "swissroll", "gmm"):
        check_fits(f"--n-points {config.n_points}", 64 * config.n_points)


def check_model_fits(model, data) -> None:
    """ValueError unless ``model`` takes ``data``'s examples (shape, kind) and labels."""
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
