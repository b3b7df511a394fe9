"""The U-Net cross-attention block and the token embedding: finite differences (float64), identity at init.

Every weight is redrawn at random before the gradient check (the initial W_o = 0 would hide every
term behind it). fd_check's step and tolerance: tests/nn/conftest.py.
"""

import numpy as np
import pytest

from ddpm_ref.models.cross_attention_block import (
    cross_attention_block_backward, cross_attention_block_forward, init_cross_attention,
    token_embedding_backward, token_embedding_forward,
)


def _setup(rng, heads=2, attn_dim=6):
    p = {}
    init_cross_attention(p, "blk", 4, 5, rng, np.float64, attn_dim=attn_dim)
    for k in p:
        p[k] = rng.standard_normal(p[k].shape) * 0.5 + (1.0 if k.endswith("gamma") else 0.0)
    table = rng.standard_normal((7, 5))                       # a vocabulary of 7 tokens, width 5
    tokens = np.array([[1, 3, 3], [0, 6, 2]])                 # token 3 repeated: its rows add up
    x = rng.standard_normal((2, 4, 3, 5))                     # H ≠ W
    return p, table, tokens, x


def test_block_and_tokens_match_finite_differences(rng, fd_check):
    p, table, tokens, x = _setup(rng)

    def forward():
        ctx, ct = token_embedding_forward(tokens, table)
        out, cb = cross_attention_block_forward(p, "blk", x, ctx, groups=2, heads=2)
        return out, ct, cb

    out, ct, cb = forward()
    G = rng.standard_normal(out.shape)
    g = {}
    dx, dctx = cross_attention_block_backward(G, cb, "blk", g)
    g["table"], g["x"] = token_embedding_backward(dctx, ct), dx
    fd_check(lambda: float(np.sum(forward()[0] * G)), dict(p, table=table, x=x), g, rng)


def test_block_starts_as_the_identity(rng):
    p = {}
    init_cross_attention(p, "blk", 4, 5, rng, np.float64)
    x, ctx = rng.standard_normal((2, 4, 2, 2)), rng.standard_normal((2, 3, 5))
    out, _ = cross_attention_block_forward(p, "blk", x, ctx, groups=2)
    np.testing.assert_array_equal(out, x)


def test_block_passes_ops_through(rng):
    """ops reaches the attention: the 3·5 = 15 pixels of each image ask the 3 tokens, in 2 heads of 3."""
    from test_cross_attention import SpyOps

    p, table, tokens, x = _setup(rng)
    ctx, _ = token_embedding_forward(tokens, table)
    spy = SpyOps()
    out, cache = cross_attention_block_forward(p, "blk", x, ctx, groups=2, heads=2, ops=spy)
    cross_attention_block_backward(np.ones_like(out), cache, "blk", {})
    assert spy.calls == [("forward", (4, 15, 3), (4, 3, 3), (4, 3, 3)), ("backward", (4, 15, 3), True)]
    np.testing.assert_array_equal(out, cross_attention_block_forward(p, "blk", x, ctx, groups=2, heads=2)[0])


def test_bad_context_names_it(rng):
    p, table, tokens, x = _setup(rng)
    with pytest.raises(ValueError, match="ctx must"):
        cross_attention_block_forward(p, "blk", x, np.zeros((3, 2, 5)), groups=2)
    with pytest.raises(ValueError, match="tokens must"):
        token_embedding_forward(np.array([1, 2]), table)
