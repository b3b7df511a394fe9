r"""A small MLP ε-model for 2-D (or any flat D-dimensional) data, with a hand-written backward pass.

Layer: model (imports ddpm_ref.nn and the math layer; nothing above).

It has the U-Net's interface (``params``, ``forward(x, t, y=None, keep_cache=...)``,
``backward``, ``config``, ``num_params``), so the same training loop, sampler and checkpoint
code serve both. Built only from ``ddpm_ref.nn``'s forward/backward pairs (linear, SiLU, the
time-embedding MLP on the sinusoidal code, the class-embedding table):

.. math::

    e &= W_{t2}\, \mathrm{silu}(W_{t1}\, P(t) + b_{t1}) + b_{t2} \;[+\; E[y]]
        && \text{time (and class) embedding, } P = \text{sinusoidal\_embedding} \\
    h_0 &= W_{in} x + b_{in} \\
    h_{l} &= h_{l-1} + W_l\, \mathrm{silu}(h_{l-1} + e) + b_l, \quad l = 1..L
        && \text{residual blocks, each told the time} \\
    \hat ε &= W_{out}\, \mathrm{silu}(h_L) + b_{out}
        && \text{(}2\cdot\text{dim outputs, } [\hat ε \,|\, v_σ]\text{, with learn\_sigma)}

``W_out`` starts at zero (as DDPM's last convolution does), so an untrained model predicts
ε̂ = 0 and its loss starts at E[ε²] = 1. Class labels y take values 0..num_classes; the value
``num_classes`` is the "null" label used for classifier-free guidance, and ``y=None`` means
all-null, exactly as for the U-Net.
"""

from __future__ import annotations

import numbers

import numpy as np

from ddpm_ref._checks import check_positive_int
from ddpm_ref.nn import (class_embedding_backward, class_embedding_forward, linear_backward,
                         linear_forward, silu_backward, silu_forward, time_mlp_backward,
                         time_mlp_forward)

__all__ = ["MLP"]


class MLP:
    """ε_θ(x_t, t[, y]) for points x of shape (N, dim). See the module docstring for the equations."""

    kind = "mlp"   # the name a checkpoint stores (ddpm_ref.runs)

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 32,
                 num_classes: int | None = None, dtype: str = "float64", seed: int = 0, learn_sigma: bool = False):
        self.dim = check_positive_int("dim", dim)
        self.hidden = check_positive_int("hidden", hidden)
        self.depth = check_positive_int("depth", depth)
        self.emb_dim = check_positive_int("emb_dim", emb_dim)
        if emb_dim % 2:
            raise ValueError(f"emb_dim must be even (sin/cos pairs), got {emb_dim}")
        if num_classes is not None:
            num_classes = check_positive_int("num_classes", num_classes)
        self.num_classes = num_classes
        if not isinstance(dtype, (str, np.dtype, type)) or dtype not in ("float32", "float64", np.float32,
                                                                         np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.dtype = np.dtype(dtype)
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        if not isinstance(learn_sigma, (bool, np.bool_)):
            raise ValueError(f"learn_sigma must be True or False, got {learn_sigma!r}")
        self.learn_sigma = bool(learn_sigma)
        self.out_dim = self.dim * (2 if self.learn_sigma else 1)     # [prediction | v_σ] with learn_sigma
        self.params = self._init_params(np.random.default_rng(seed))
        self._cache = None

    # ------------------------------------------------------------------ parameters
    def _init_params(self, rng) -> dict:
        """PyTorch's default: W, b ~ U(−1/√fan_in, 1/√fan_in); W_out = b_out = 0."""

        def lin(n_out, n_in):
            bound = 1.0 / np.sqrt(n_in)
            w = rng.uniform(-bound, bound, (n_out, n_in)).astype(self.dtype)
            b = rng.uniform(-bound, bound, n_out).astype(self.dtype)
            return w, b

        H, p = self.hidden, {}
        p["temb.w1"], p["temb.b1"] = lin(H, self.emb_dim)
        p["temb.w2"], p["temb.b2"] = lin(H, H)
        if self.num_classes is not None:
            p["class_emb"] = (rng.standard_normal((self.num_classes + 1, H)) * 0.1).astype(self.dtype)
        p["in.w"], p["in.b"] = lin(H, self.dim)
        for layer in range(self.depth):
            p[f"block{layer}.w"], p[f"block{layer}.b"] = lin(H, H)
        p["out.w"] = np.zeros((self.out_dim, H), dtype=self.dtype)
        p["out.b"] = np.zeros(self.out_dim, dtype=self.dtype)
        return p

    @property
    def config(self) -> dict:
        """JSON-able; ``MLP(**config)`` rebuilds the same shapes."""
        return {"dim": self.dim, "hidden": self.hidden, "depth": self.depth, "emb_dim": self.emb_dim,
                "num_classes": self.num_classes, "dtype": self.dtype.name, "seed": self.seed,
                "learn_sigma": self.learn_sigma}

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # ------------------------------------------------------------------ forward
    def _check_inputs(self, x, t, y):
        if not isinstance(x, np.ndarray) or x.dtype != self.dtype:
            raise ValueError(f"x must be a {self.dtype} array (the model's dtype), got "
                             f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():                    # once here, not in every layer (nn/_validate.py)
            raise ValueError("x must be finite; it holds NaN or ±inf")
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.integer) or t.shape != (x.shape[0],) or (t.size and t.min() < 0):
            raise ValueError(f"t must be an int array of shape ({x.shape[0]},) with t >= 0, got {t.dtype} {t.shape}")
        if y is not None:
            if self.num_classes is None:
                raise ValueError("y was given but this model has no classes (num_classes=None)")
            y = np.asarray(y)
            if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],) \
                    or (y.size and (y.min() < 0 or y.max() > self.num_classes)):
                raise ValueError(f"y must be ints in 0..{self.num_classes} (the last is 'null') of shape "
                                 f"({x.shape[0]},)")
        elif self.num_classes is not None:
            y = np.full(x.shape[0], self.num_classes, dtype=np.int64)      # all-null
        return t, y

    def forward(self, x, t, y=None, *, keep_cache: bool = True, rng=None):
        """ε̂ of shape (N, dim), or (N, 2·dim) = [prediction | v_σ] with learn_sigma. ``rng`` is accepted for the U-Net's signature (no dropout here)."""
        t, y = self._check_inputs(x, t, y)
        p = self.params
        e, c_time = time_mlp_forward(t, p["temb.w1"], p["temb.b1"], p["temb.w2"], p["temb.b2"])
        c_class = None
        if y is not None:
            e_y, c_class = class_embedding_forward(y, p["class_emb"])
            e = e + e_y
        h, c_in = linear_forward(x, p["in.w"], p["in.b"])
        blocks = []
        for layer in range(self.depth):
            s, c_s = silu_forward(h + e)
            dh, c_l = linear_forward(s, p[f"block{layer}.w"], p[f"block{layer}.b"])
            h = h + dh
            blocks.append((c_s, c_l))
        so, c_so = silu_forward(h)
        out, c_out = linear_forward(so, p["out.w"], p["out.b"])
        self._cache = (c_time, c_class, c_in, blocks, c_so, c_out) if keep_cache else None
        if not np.isfinite(out).all():                  # one pass over ε̂: x's size
            raise ValueError("ε̂ is not finite although x is: the parameters (net.params) hold NaN or "
                             "±inf (did training diverge?), or |x| is too large for the network")
        return out

    __call__ = forward

    # ------------------------------------------------------------------ backward
    def backward(self, d_out) -> dict:
        """Gradients of the loss for every parameter, given ∂L/∂ε̂; keys exactly those of params."""
        if self._cache is None:
            raise ValueError("backward needs a forward pass with keep_cache=True first")
        c_time, c_class, c_in, blocks, c_so, c_out = self._cache
        expected = (c_out["x_shape"][0], self.out_dim)
        if not isinstance(d_out, np.ndarray) or d_out.shape != expected or d_out.dtype.kind != "f":
            raise ValueError(f"d_out must be a float array of ε̂'s shape {expected}, got "
                             f"{getattr(d_out, 'dtype', type(d_out).__name__)} {getattr(d_out, 'shape', '')}")
        if not np.isfinite(d_out).all():
            raise ValueError("d_out must be finite; it holds NaN or ±inf")
        g = {}
        d_so, g["out.w"], g["out.b"] = linear_backward(d_out.astype(self.dtype, copy=False), c_out)
        dh = silu_backward(d_so, c_so)
        de = np.zeros_like(dh)
        for layer in reversed(range(self.depth)):
            c_s, c_l = blocks[layer]
            ds, g[f"block{layer}.w"], g[f"block{layer}.b"] = linear_backward(dh, c_l)
            d_pre = silu_backward(ds, c_s)      # ∂L/∂(h + e) for this block
            dh = dh + d_pre                     # term 1: the residual path; term 2: through the block
            de += d_pre                         # e enters every block
        _, g["in.w"], g["in.b"] = linear_backward(dh, c_in)
        if c_class is not None:
            g["class_emb"] = class_embedding_backward(de, c_class)
        g["temb.w1"], g["temb.b1"], g["temb.w2"], g["temb.b2"] = time_mlp_backward(de, c_time)
        self._cache = None
        return {k: g[k] for k in self.params}
