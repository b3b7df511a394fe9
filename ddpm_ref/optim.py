r"""The optimiser and its helpers, written out: Adam, gradient clipping, warm-up, EMA.

Layer: loop (imports the model, layers and math; never the command line).

Ho et al. 2020 (Appendix B) train with Adam, learning rate 2·10⁻⁴ (10⁻⁴ at 256²), a linear
warm-up over the first 5000 steps, gradient clipping at global norm 1, and sample from an
exponential moving average of the weights with decay 0.9999. Each piece is here, small enough
to check by hand against its equation.

Parameters and gradients are dicts ``{name: array}`` with the same keys (``net.params`` and
``net.backward(...)``). Everything updates arrays **in place**, so the model keeps using the same
arrays, and works on NumPy or CuPy arrays alike (only operators and ``array ** 0.5`` are used).
"""

from __future__ import annotations

import math

__all__ = ["Adam", "clip_grad_norm", "warmup_lr", "EMA"]


class Adam:
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with bias correction, updating parameters in place.

    For every parameter θ with gradient g at step s = 1, 2, ...:

    .. math::

        m_s = β_1 m_{s-1} + (1 − β_1) g, \qquad v_s = β_2 v_{s-1} + (1 − β_2) g^2,

        \hat m_s = m_s / (1 − β_1^s), \qquad \hat v_s = v_s / (1 − β_2^s),

        θ_s = θ_{s-1} − η\, \hat m_s / (\sqrt{\hat v_s} + ε).

    This is exactly ``torch.optim.Adam`` (ε added to √v̂, not inside the root). ``m``, ``v``
    (dicts like the parameters) and ``step`` (s) are the whole state; a checkpoint stores them.
    """

    def __init__(self, params: dict, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got ({beta1}, {beta2})")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.m = {k: p * 0 for k, p in params.items()}   # zeros of the same shape, dtype, device
        self.v = {k: p * 0 for k, p in params.items()}
        self.step = 0

    def update(self, params: dict, grads: dict, lr: float) -> None:
        """One Adam step: change every ``params[k]`` in place using ``grads[k]``."""
        if set(grads) != set(params):
            missing, extra = set(params) - set(grads), set(grads) - set(params)
            raise ValueError(f"grads must have exactly the keys of params "
                             f"(missing {sorted(missing)}, extra {sorted(extra)})")
        self.step += 1
        b1, b2 = self.beta1, self.beta2
        bias1 = 1.0 - b1 ** self.step          # 1 − β₁ˢ
        bias2 = 1.0 - b2 ** self.step          # 1 − β₂ˢ
        for k, p in params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g                 # m_s = β₁ m_{s−1} + (1 − β₁) g
            v *= b2
            v += (1.0 - b2) * (g * g)           # v_s = β₂ v_{s−1} + (1 − β₂) g²
            denom = (v / bias2) ** 0.5          # √v̂_s
            denom += self.eps
            p -= (lr / bias1) * m / denom       # θ −= η m̂_s / (√v̂_s + ε)

    def state_arrays(self) -> dict:
        """``{"adam_m/<name>": m, "adam_v/<name>": v}`` for a checkpoint."""
        out = {f"adam_m/{k}": a for k, a in self.m.items()}
        out.update({f"adam_v/{k}": a for k, a in self.v.items()})
        return out

    def hyperparameters(self) -> dict:
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


def global_norm(grads: dict) -> float:
    r"""‖g‖ = √(Σ_k Σ_i g_{k,i}²) over every gradient array, as a Python float."""
    return math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads.values()))


def clip_grad_norm(grads: dict, max_norm: float | None) -> float:
    r"""Scale all gradients in place so that their global norm is at most ``max_norm``.

    .. math::

        g \leftarrow g \cdot \min\!\left(1,\ \frac{c}{‖g‖ + 10^{-6}}\right), \qquad
        ‖g‖ = \sqrt{Σ_k ‖g_k‖^2}

    (the form of ``torch.nn.utils.clip_grad_norm_``). Returns the norm *before* clipping (for
    logging). ``max_norm=None`` or ``0`` only measures.
    """
    norm = global_norm(grads)
    if max_norm:
        if max_norm < 0:
            raise ValueError(f"max_norm must be >= 0, got {max_norm}")
        scale = max_norm / (norm + 1e-6)
        if scale < 1.0:
            for g in grads.values():
                g *= scale
    return norm


def warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float:
    r"""Linear warm-up: η_s = η · min(1, s / W) for step s = 1, 2, ... (W = ``warmup_steps``).

    ``warmup_steps=0`` means no warm-up (η_s = η from the first step).
    """
    if warmup_steps <= 0:
        return float(base_lr)
    return float(base_lr) * min(1.0, step / warmup_steps)


class EMA:
    r"""An exponential moving average of the weights, the ones DDPM samples with.

    .. math::

        \bar θ_s = d_s \bar θ_{s-1} + (1 − d_s) θ_s, \qquad
        d_s = \min\!\left(d,\ \frac{1 + s}{10 + s}\right) \text{ if warm-up is on, else } d.

    The warm-up (as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) lets a short
    run's average forget its random initialisation quickly; with d = 0.9999 and no warm-up the
    average would still be ~90 % the initial weights after 1000 steps. ``step`` (s) counts the
    updates; the average starts as a copy of the weights.
    """

    def __init__(self, params: dict, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must lie in [0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.params = {k: p.copy() for k, p in params.items()}
        self.step = 0

    def current_decay(self) -> float:
        """d_s for the next update (s = self.step + 1)."""
        s = self.step + 1
        return min(self.decay, (1.0 + s) / (10.0 + s)) if self.warmup else self.decay

    def update(self, params: dict) -> None:
        """θ̄ ← d_s θ̄ + (1 − d_s) θ, in place."""
        d = self.current_decay()
        self.step += 1
        for k, p in params.items():
            avg = self.params[k]
            avg *= d
            avg += (1.0 - d) * p
