"""The heaviest single layers of the demo U-Net, timed alone by ``ddpm-ref bench``.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

import ddpm_ref.nn as nn

__all__ = ["LAYERS", "layer_calls"]


LAYERS = [
    # name, kind, shape args
    ("conv3x3 96->32 @8x8", "conv", (96, 32, 8)),
    ("conv3x3 64->64 @8x8", "conv", (64, 64, 8)),
    ("conv3x3 64->64 @4x4", "conv", (64, 64, 4)),
    ("groupnorm 96ch @8x8", "groupnorm", (96, 8)),
    ("groupnorm+silu 96ch @8x8", "groupnorm_silu", (96, 8)),
    ("attention L=16 D=64", "attention", (16, 64)),
]


def layer_calls(kind, args, batch, rng, torch):
    """(numpy fwd, numpy fwd+bwd, torch fwd, torch fwd+bwd) callables for one layer."""
    f32 = np.float32
    if kind == "conv":
        c, k, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, (0.05 * rng.standard_normal((k, c, 3, 3))).astype(f32), np.zeros(k, f32)]
        fwd = lambda: nn.conv2d_forward(*arrays, 1, 1)             # noqa: E731
        bwd = nn.conv2d_backward
        tfn = lambda a, w, b: torch.nn.functional.conv2d(a, w, b, padding=1)   # noqa: E731
    elif kind == "groupnorm":
        c, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, np.ones(c, f32), np.zeros(c, f32)]
        fwd = lambda: nn.groupnorm_forward(*arrays, 8)             # noqa: E731
        bwd = nn.groupnorm_backward
        tfn = lambda a, g, b: torch.nn.functional.group_norm(a, 8, g, b)   # noqa: E731
    elif kind == "groupnorm_silu":                                 # the fused pair of the ResBlocks
        c, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, np.ones(c, f32), np.zeros(c, f32)]
        fwd = lambda: nn.groupnorm_silu_forward(*arrays, 8)        # noqa: E731
        bwd = nn.groupnorm_silu_backward
        tfn = lambda a, g, b: torch.nn.functional.silu(torch.nn.functional.group_norm(a, 8, g, b))  # noqa: E731
    else:
        length, d = args
        arrays = [rng.standard_normal((batch, length, d)).astype(f32) for _ in range(3)]
        fwd = lambda: nn.attention_forward(*arrays)                # noqa: E731
        bwd = nn.attention_backward
        tfn = lambda q, k_, v: torch.nn.functional.scaled_dot_product_attention(q, k_, v)  # noqa: E731
    out, _ = fwd()
    dout = np.ascontiguousarray(rng.standard_normal(out.shape).astype(f32))

    def np_train():
        o, cache = fwd()
        bwd(dout, cache)

    calls = [fwd, np_train, None, None]
    if torch is not None:
        targs = [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True) for a in arrays]
        tdout = torch.from_numpy(dout)

        def t_fwd():
            with torch.no_grad():
                tfn(*targs)

        def t_train():
            tfn(*targs).backward(tdout)

        calls[2:] = [t_fwd, t_train]
    return calls
