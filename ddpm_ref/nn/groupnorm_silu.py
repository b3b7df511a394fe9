r"""Group norm followed by SiLU, in one forward/backward pair: the pattern every ResBlock opens with.

Layer: layers (imports NumPy, ddpm_ref.nn's helpers and the math layer; nothing above).

The function is exactly ``silu(groupnorm(x))`` (``groupnorm.py`` and ``activations.py`` remain
the definitions, and the tests check that this pair agrees with them, values and gradients):

.. math::

    z = \gamma\,\hat x + \beta, \qquad \hat x = (x - \mu)\cdot r, \quad r = 1/\sqrt{\sigma^2 + \epsilon},
    \qquad y = z\,\sigma(z) = \tfrac{z}{2}\bigl(1 + \tanh\tfrac{z}{2}\bigr)

Why fuse: every array-sized NumPy operation is a pass over memory and, when the batch runs in
two threads (``ddpm_ref.models.parallel``), a hand-off of the GIL. Written as two layers, the forward
pass makes 10 passes (group norm: x − μ, Σ(x − μ)², ·γr, +β; SiLU: ·½, tanh, +1, ·½, z·σ).
Here, knowing that SiLU only needs z/2, we compute h = z/2 directly (the ½ folded into the
per-channel scale γr/2 and shift β/2), then s = 1 + tanh(h) = 2σ(z) and y = h·s: 7 passes.
The backward pass makes 8 instead of 10.

Backward, with s = 2σ(z) and y from the cache:

.. math::

    \frac{dy}{dz} = \sigma + z\,\sigma(1 - \sigma) = \sigma + y\,(1 - \sigma)
                  = \tfrac12\bigl(s - y\,(s - 2)\bigr)

We compute g = 2·dL/dz = dy·(s − y(s − 2)) and keep the ½ in the per-channel factors of
the group norm backward (``groupnorm.py``: term 1 direct, term 2 through μ, term 3 through σ²):

.. math::

    dx = r\Bigl(\gamma\,dz - \overline{\gamma\,dz} - \hat x\;\overline{\gamma\,dz\,\hat x}\Bigr),
    \qquad d\gamma = \textstyle\sum dz\,\hat x, \qquad d\beta = \sum dz.
"""

from __future__ import annotations

from ddpm_ref.nn._validate import check_cache, check_float
from ddpm_ref.nn.backend import array_module
from ddpm_ref.nn.groupnorm import _channel_sums, _check_gn_args, _group_mean, _pixels_last

__all__ = ["groupnorm_silu_forward", "groupnorm_silu_backward"]


def groupnorm_silu_forward(x, gamma, beta, groups, eps=1e-5):
    """y = silu(γ · (x − μ_group) / √(σ²_group + ε) + β). Returns ``(y, cache)``.

    Same arguments and errors as ``groupnorm_forward``; y is channels-last in memory.
    """
    G = _check_gn_args(x, gamma, beta, groups, eps)
    xp = array_module(x)
    N, C, H, W = x.shape
    M = H * W * (C // G)                                       # numbers per group
    half = x.dtype.type(0.5)
    x3 = _pixels_last(x)                                       # (N, H·W, C)
    # group norm statistics, two passes as in groupnorm_forward (accurate when |μ| ≫ σ)
    mu = _group_mean(_channel_sums(x3), G, M)                  # μ, (N, 1, C)
    xc = x3 - mu                                               # x − μ            (pass 1)
    var = _group_mean(xp.einsum("nlc,nlc->nc", xc, xc)[:, None, :], G, M)   # σ²   (pass 2)
    rstd = 1 / xp.sqrt(var + x.dtype.type(eps))                # r = 1/√(σ² + ε), (N, 1, C)
    # h = z/2 = (x − μ)·(γr/2) + β/2: the group norm output, already halved for the tanh
    h = xc * (rstd * (gamma * half))                           #                  (pass 3)
    h += beta * half                                           #                  (pass 4)
    s = xp.tanh(h)                                             # tanh(z/2)        (pass 5)
    s += 1                                                     # s = 2σ(z)        (pass 6)
    y = h * s                                                  # y = z σ(z)       (pass 7)
    cache = {"op": "groupnorm_silu", "xc": xc, "rstd": rstd, "gamma": gamma, "G": G,
             "s": s, "y": y, "x_shape": (N, C, H, W)}
    return y.reshape(N, H, W, C).transpose(0, 3, 1, 2), cache


def groupnorm_silu_backward(dy, cache):
    """Returns ``(dx, dgamma, dbeta)`` for ``groupnorm_silu_forward``."""
    check_cache("groupnorm_silu_backward", cache, "groupnorm_silu", ("xc", "rstd", "gamma", "G", "s", "y", "x_shape"))
    xc, rstd, gamma, G = cache["xc"], cache["rstd"], cache["gamma"], cache["G"]
    s, y = cache["s"], cache["y"]
    N, C, H, W = cache["x_shape"]
    check_float("dy", dy, ndim=4, dtype=xc.dtype)
    if tuple(dy.shape) != (N, C, H, W):
        raise ValueError(f"dy must have the input's shape {(N, C, H, W)}, got {tuple(dy.shape)}")
    xp = array_module(dy)
    M = H * W * (C // G)
    half = xc.dtype.type(0.5)
    # SiLU: g = 2·dL/dz = dy · (s − y (s − 2)), with s = 2σ(z)
    g = s - 2
    g *= y
    xp.subtract(s, g, out=g)
    g *= _pixels_last(dy)
    # group norm, with dz = g/2: the ½ goes into the (N, 1, C) factors, never over the array
    sum_dz = half * _channel_sums(g)                                        # Σ_pixels dz
    sum_dz_xhat = (half * xp.einsum("nlc,nlc->nc", g, xc)[:, None, :]) * rstd   # Σ_pixels dz·x̂
    dbeta = sum_dz.sum(axis=(0, 1))                  # β is added to every pixel
    dgamma = sum_dz_xhat.sum(axis=(0, 1))            # γ scales x̂
    mean_dxhat = _group_mean(sum_dz * gamma, G, M)                          # term 2: through μ
    mean_dxhat_xhat = _group_mean(sum_dz_xhat * gamma, G, M)                # term 3: through σ²
    g *= rstd * (gamma * half)                                              # term 1: r γ dz
    corr = xc * (rstd * rstd * mean_dxhat_xhat)
    corr += rstd * mean_dxhat
    g -= corr
    return g.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta
