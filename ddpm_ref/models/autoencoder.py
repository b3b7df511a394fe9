r"""A small convolutional autoencoder for latent diffusion (Rombach et al. 2022, sec. 3.1), by hand.

Layer: model. It imports ``ddpm_ref.nn`` (conv, SiLU, nearest-upsample-then-conv) and nothing above.

Architecture (8×8 digits → a c × 4 × 4 latent with the defaults; f = 2 is the downsampling factor)::

    encoder: x ─ conv3×3 (C→ch) ─ SiLU ─ conv3×3 stride 2 (ch→ch) ─ SiLU ─ conv3×3 (ch→2c) = [μ | log σ²]
    decoder: z ─ conv3×3 (c→ch) ─ SiLU ─ upsample ×2 + conv3×3 (ch→ch) ─ SiLU ─ conv3×3 (ch→C) = x̂

**Which regulariser, and why: KL with a small weight** (Rombach et al.'s "KL-reg", weight 1e-6 in
their models), the latent drawn by reparameterisation z = μ + σ·ε during training and z = μ when
encoding for diffusion. A plain autoencoder leaves the latent's scale and offset free: nothing
stops the encoder from using ±50 in one channel and ±0.01 in another, and the diffusion model's
N(0, I) prior then fits some channels and drowns others. A fitted scale factor fixes the overall
scale only; the small KL term also pulls each channel towards zero mean and bounded variance while
costing (at 1e-6..1e-3) almost nothing in reconstruction. ``kl_weight=0`` with ``sample=False``
gives the plain autoencoder, so both are available for comparison. Either way the latent is then
multiplied by ``scale_factor = 1/std(latents)`` (``fit_scale_factor``), which is what Stable
Diffusion's 0.18215 is: one over the standard deviation of its KL-f8 latents on a first batch.

Loss, per batch of N images with P pixels and a latent of size Z per image:

.. math::

    L = \frac{1}{N P}\sum (x̂ − x)^2 \;+\; w\,\frac{1}{N}\sum_{n}\tfrac12\sum_{j}\big(μ^2 + σ^2 − 1 − \log σ^2\big)

Backward of the two latent-specific pieces (the rest is the layers' own backward):

* reparameterisation z = μ + e^{½ log σ²}·ε:  dμ = dz,  d(log σ²) = dz · ε · ½ e^{½ log σ²};
* KL: dμ += w·μ/N,  d(log σ²) += w·½(e^{log σ²} − 1)/N;
* x is both the encoder's input and the MSE's target: dx = (through the encoder) − 2(x̂ − x)/(N P).
"""

from __future__ import annotations

import numbers

import numpy as np

import ddpm_ref.nn as nn
from ddpm_ref._rng import as_generator

__all__ = ["Autoencoder", "fit_scale_factor"]


class Autoencoder:
    """``encode`` / ``decode`` / ``loss_and_grads``; parameters in ``params`` (a dict of arrays)."""

    kind = "autoencoder"               # the name a checkpoint gives this class (ddpm_ref.runs)

    def __init__(self, in_channels=1, hidden_channels=16, latent_channels=2, kl_weight=1e-4,
                 dtype="float32", seed=0):
        for name, v in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                        ("latent_channels", latent_channels)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, numbers.Real) or not kl_weight >= 0:
            raise ValueError(f"kl_weight must be a number >= 0, got {kl_weight!r}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.config = {"in_channels": int(in_channels), "hidden_channels": int(hidden_channels),
                       "latent_channels": int(latent_channels), "kl_weight": float(kl_weight),
                       "dtype": np.dtype(dtype).name, "seed": int(seed)}
        self.dtype, self.ops = np.dtype(dtype), nn.numpy_ops()
        self.params = self._init_params(np.random.default_rng(seed))

    def _init_params(self, rng):
        C, ch, c, dt = self.config["in_channels"], self.config["hidden_channels"], self.config["latent_channels"], self.dtype
        shapes = {"enc.conv0": (ch, C), "enc.down": (ch, ch), "enc.out": (2 * c, ch),
                  "dec.conv0": (ch, c), "dec.up": (ch, ch), "dec.out": (C, ch)}
        p = {}
        for name, (k_out, k_in) in shapes.items():
            p[f"{name}.w"] = nn.variance_scaling(rng, (k_out, k_in, 3, 3), 1.0, dt)
            p[f"{name}.b"] = np.zeros(k_out, dt)
        return p

    def _check_x(self, x, name="x", channels=None):
        c = self.config["in_channels"] if channels is None else channels
        if not hasattr(x, "shape") or x.ndim != 4 or x.shape[1] != c or min(x.shape) < 1:
            raise ValueError(f"{name} must have shape (N, {c}, H, W), got {tuple(getattr(x, 'shape', ()))}")
        if name == "x" and (x.shape[2] % 2 or x.shape[3] % 2):
            raise ValueError(f"x's height and width must be even (the encoder halves them), got {tuple(x.shape)}")
        return np.asarray(x, dtype=self.dtype)

    # ------------------------------------------------------------ the two halves
    def _encode(self, x):
        p, ops, c = self.params, self.ops, self.config["latent_channels"]
        h, c0 = ops.conv2d_forward(x, p["enc.conv0.w"], p["enc.conv0.b"], 1, 1)
        h, a0 = nn.silu_forward(h)
        h, c1 = ops.conv2d_forward(h, p["enc.down.w"], p["enc.down.b"], 2, 1)    # H → H/2
        h, a1 = nn.silu_forward(h)
        h, c2 = ops.conv2d_forward(h, p["enc.out.w"], p["enc.out.b"], 1, 1)
        return h[:, :c], h[:, c:], [("conv", "enc.conv0", c0), ("silu", a0), ("conv", "enc.down", c1),
                                    ("silu", a1), ("conv", "enc.out", c2)]

    def _decode(self, z):
        p, ops = self.params, self.ops
        h, c0 = ops.conv2d_forward(z, p["dec.conv0.w"], p["dec.conv0.b"], 1, 1)
        h, a0 = nn.silu_forward(h)
        h, c1 = nn.upsample_conv_forward(h, p["dec.up.w"], p["dec.up.b"], ops)    # H/2 → H
        h, a1 = nn.silu_forward(h)
        x_hat, c2 = ops.conv2d_forward(h, p["dec.out.w"], p["dec.out.b"], 1, 1)
        return x_hat, [("conv", "dec.conv0", c0), ("silu", a0), ("up", "dec.up", c1), ("silu", a1),
                       ("conv", "dec.out", c2)]

    def _back(self, dh, tape, g):
        """Walk a tape of the half that made it backwards; writes parameter grads into g; returns d(input)."""
        for entry in reversed(tape):
            if entry[0] == "silu":
                dh = nn.silu_backward(dh, entry[1])
            elif entry[0] == "conv":
                dh, g[f"{entry[1]}.w"], g[f"{entry[1]}.b"] = self.ops.conv2d_backward(dh, entry[2])
            else:
                dh, g[f"{entry[1]}.w"], g[f"{entry[1]}.b"] = nn.upsample_conv_backward(dh, entry[2])
        return dh

    # ------------------------------------------------------------ public
    def encode(self, x, scale_factor: float = 1.0):
        """The latent for diffusion: scale_factor · μ(x), shape (N, c, H/2, W/2) (no sampling)."""
        mu, _, _ = self._encode(self._check_x(x))
        return np.ascontiguousarray(mu) * self.dtype.type(scale_factor)

    def decode(self, z, scale_factor: float = 1.0):
        """x̂ = decoder(z / scale_factor), shape (N, C, 2h, 2w)."""
        z = self._check_x(z, "z", self.config["latent_channels"])
        return np.ascontiguousarray(self._decode(z / self.dtype.type(scale_factor))[0])

    def loss_and_grads(self, x, rng=0, sample: bool = True):
        """``(loss, parts, grads, dx)``: L = MSE + w·KL (module docstring), parts = {"mse", "kl"}.

        ``sample=True`` draws z = μ + σ ε (ε from ``rng``); ``sample=False`` uses z = μ (then the
        log σ² channels get only the KL's gradient).
        """
        x = self._check_x(x)
        n, w = x.shape[0], self.config["kl_weight"]
        mu, logvar, enc_tape = self._encode(x)
        std = np.exp(0.5 * logvar)
        eps = as_generator(rng).standard_normal(mu.shape).astype(self.dtype) if sample else np.zeros_like(mu)
        z = mu + std * eps                                                   # reparameterisation
        x_hat, dec_tape = self._decode(z)
        diff = x_hat - x
        mse = float(np.mean(diff.astype(np.float64) ** 2))
        kl = float(0.5 * np.sum(mu.astype(np.float64) ** 2 + np.exp(logvar) - 1 - logvar) / n)
        g = {}
        dz = self._back((2.0 / diff.size) * diff, dec_tape, g)               # ∂MSE/∂x̂ = 2(x̂ − x)/(N P)
        d_mu = dz + (w / n) * mu                                             # reparam: dμ = dz; KL: w μ/N
        d_logvar = dz * eps * (0.5 * std) + (w / n) * 0.5 * (np.exp(logvar) - 1)
        dx = self._back(np.concatenate([d_mu, d_logvar], axis=1).astype(self.dtype), enc_tape, g)
        dx -= (2.0 / diff.size) * diff                                       # x is also the MSE's target
        return mse + w * kl, {"mse": mse, "kl": kl}, {k: g[k] for k in self.params}, np.ascontiguousarray(dx)


def fit_scale_factor(latents) -> float:
    """1 / std of a batch of latents: multiply by it so that the diffusion model sees unit variance.

    Stable Diffusion's 0.18215 is this number for its KL-f8 autoencoder: Rombach et al. 2022 rescale
    the latents of their KL-regularised autoencoders by one over a standard deviation estimated on a
    first batch, so that the diffusion model's N(0, I) prior matches their spread.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.size < 2 or not np.all(np.isfinite(z)):
        raise ValueError(f"latents must hold at least 2 finite numbers, got shape {z.shape}")
    s = float(z.std())
    if s == 0:
        raise ValueError("latents have zero spread; a scale factor cannot make them unit-variance")
    return 1.0 / s
