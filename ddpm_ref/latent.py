r"""Latent diffusion in miniature (Rombach et al. 2022): the digits seen through a trained autoencoder.

Layer: loop. It imports the data, the checkpoint format and ``runs`` (to load the autoencoder),
nothing above. The diffusion machinery is untouched: a latent run is an ordinary U-Net run whose
"images" are the c × h × w latents z = s · μ_φ(x) (s the autoencoder run's fitted scale factor,
Stable Diffusion's 0.18215), and sampling decodes x̂ = D(z / s) before writing images.

**The latent run carries a copy of its autoencoder.** ``attach_autoencoder`` copies the
autoencoder's checkpoint into the latent run (``RUN/autoencoder.npz``) and writes ``RUN/latent.json``
with the scale factor and where the copy came from. A path alone would tie the run to a directory
that can be retrained, moved or deleted later; a U-Net trained on one encoder's latents is
meaningless with another decoder, and the copy costs a few hundred kilobytes. The scale factor is
read from the copy's description, so it always matches the weights it was fitted with.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ddpm_ref.checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from ddpm_ref.data import Dataset, load_digits_images
from ddpm_ref.prompts import thickness_classes
from ddpm_ref.runs import checkpoint_path, load_model

__all__ = ["AUTOENCODER_NAME", "LATENT_NAME", "load_autoencoder", "latent_dataset", "attach_autoencoder",
           "latent_info", "latent_run_data", "decode_latents"]

AUTOENCODER_NAME = "autoencoder.npz"
LATENT_NAME = "latent.json"


def load_autoencoder(ae_run: str):
    """``(autoencoder with EMA weights, scale factor)`` from an autoencoder run (or its copy)."""
    if not os.path.exists(ae_run):
        raise ValueError(f"--autoencoder {ae_run} does not exist (train one: ddpm-ref train-autoencoder)")
    model, meta = load_model(ae_run)
    if model.kind == "autoencoder" and "scale_factor" not in meta:      # interrupted: fitted at the end
        raise ValueError(f"{ae_run} is an unfinished autoencoder run (step {meta['step']} of "
                         f"{meta['train'].get('steps', '?')}, no scale factor yet); finish it with "
                         f"ddpm-ref train-autoencoder --resume --run-dir {ae_run}")
    if model.kind != "autoencoder":
        raise ValueError(f"{ae_run} is not an autoencoder run (its model is a {model.kind!r}; "
                         "train one with ddpm-ref train-autoencoder)")
    return model, float(meta["scale_factor"])


def latent_dataset(ae, scale: float, seed: int = 0) -> Dataset:
    """The training digits encoded: x = scale · μ(digits), (N, c, h, w), with their labels and
    their strokes in pixel space (``thickness``, for prompts)."""
    x, y = load_digits_images("train", seed=seed)
    z = ae.encode(x, scale)
    return Dataset(x=z.astype(np.float32), y=y, num_classes=int(y.max()) + 1, name="digits (latent)",
                   thickness=thickness_classes(x, y))


def attach_autoencoder(run_dir: str, ae_run: str, seed: int = 0) -> dict:
    """Copy ``ae_run``'s checkpoint into ``run_dir`` and write ``latent.json`` (with ``seed``, the
    digits' train/test split the latents are encoded from); returns its content."""
    load_autoencoder(ae_run)                                 # a clear error for a run of another kind
    arrays, meta = load_checkpoint(checkpoint_path(ae_run))
    os.makedirs(run_dir, exist_ok=True)
    save_checkpoint(os.path.join(run_dir, AUTOENCODER_NAME), arrays, meta, json_path="")
    info = {"autoencoder": AUTOENCODER_NAME, "copied_from": os.path.abspath(ae_run),
            "scale_factor": float(meta["scale_factor"]),
            "latent_channels": int(meta["model"]["config"]["latent_channels"]), "seed": int(seed)}
    write_json_atomic(os.path.join(run_dir, LATENT_NAME), info)
    return info


def _run_base(run_dir: str) -> str:
    """The run directory of ``run_dir`` (which may name the checkpoint file itself)."""
    return os.path.dirname(run_dir) if str(run_dir).endswith(".npz") else run_dir


def latent_info(run_dir: str):
    """``latent.json`` of a latent run as a dict, or None for a pixel-space run."""
    path = os.path.join(_run_base(run_dir), LATENT_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not readable ({err})") from None


def latent_run_data(run_dir: str) -> Dataset:
    """The training latents of the latent run ``run_dir``, encoded with its copy of the autoencoder."""
    info = latent_info(run_dir)
    if info is None:
        raise ValueError(f"{run_dir} is not a latent run (no {LATENT_NAME})")
    ae, scale = load_autoencoder(os.path.join(_run_base(run_dir), info["autoencoder"]))
    return latent_dataset(ae, scale, seed=int(info.get("seed", 0)))


def decode_latents(run_dir: str, z):
    """Images x̂ = D(z / s) (N, C, H, W) from latents z sampled by the latent run ``run_dir``."""
    info = latent_info(run_dir)
    if info is None:
        raise ValueError(f"{run_dir} is not a latent run (no {LATENT_NAME})")
    ae, scale = load_autoencoder(os.path.join(_run_base(run_dir), info["autoencoder"]))
    return ae.decode(np.asarray(z, dtype=np.float32), scale)
