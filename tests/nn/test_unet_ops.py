"""The U-Net with another ops object: that one is really used, the kernels' emulated ops plug in
and agree, and every output the blocks write into in place is a new array (unet_blocks.py)."""

import numpy as np
import pytest

from ddpm_ref.models.unet import UNet

from test_unet import TINY, _batch


def _emulated_ops():
    """``kernels.get_ops("emulate")``: part of this repository, so never skipped for being absent;
    skipped only without a C++ compiler outside CI (the rule of tests/cuda_kernels/conftest.py)."""
    import os

    import kernels
    from kernels.emulator import find_compiler

    try:
        find_compiler()
    except RuntimeError:
        if os.environ.get("CI"):
            pytest.fail("CI must run the emulator tests, and no C++ compiler was found")
        pytest.skip("no C++ compiler: the emulate backend needs g++ (see kernels/README.md)")
    return kernels.get_ops("emulate")


def test_ops_object_is_used(rng):
    import ddpm_ref.nn as nn

    calls = []

    class CountingOps:
        def conv2d_forward(self, *a):
            calls.append("conv")
            return nn.conv2d_forward(*a)

        conv2d_backward = staticmethod(nn.conv2d_backward)

        def attention_forward(self, *a):
            calls.append("attention")
            return nn.attention_forward(*a)

        attention_backward = staticmethod(nn.attention_backward)

    net = UNet(**TINY, ops=CountingOps())
    net.forward(*_batch(rng))
    assert "conv" in calls and "attention" in calls
    with pytest.raises(ValueError, match="ops must provide"):
        UNet(**TINY, ops=object())


@pytest.mark.parametrize("prompts", [False, True], ids=["labels", "prompts"])
def test_kernels_emulator_ops_plug_in(rng, prompts):
    """The U-Net runs through ``kernels.get_ops("emulate")`` (the CUDA kernels' source on the
    CPU) and agrees with the NumPy reference to float32 rounding, forward and gradients; a U-Net
    that reads prompts runs its cross-attention (16 pixels attending to 3 tokens) on the same kernels."""
    from ddpm_ref.prompts import PROMPT_VOCAB, tokenize

    cfg = TINY | {"dtype": "float32", "attention_resolutions": (4,)}
    kw = {}
    if prompts:
        cfg |= {"num_classes": None, "prompt_vocab": list(PROMPT_VOCAB), "prompt_length": 3, "context_dim": 8}
        kw = {"tokens": tokenize("thick seven")[None]}
    ref, emu = UNet(**cfg), UNet(**cfg, ops=_emulated_ops())
    for v in ref.params.values():
        v += (0.3 * rng.standard_normal(v.shape)).astype(np.float32)
    emu.load_params(ref.params)
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    t, y = np.array([500]), None if prompts else np.array([2])
    a, b = ref.forward(x, t, y, **kw), emu.forward(x, t, y, **kw)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
    G = rng.standard_normal(a.shape).astype(np.float32)
    ga, gb = ref.backward(G), emu.backward(G)
    for k in ga:
        np.testing.assert_allclose(gb[k], ga[k], rtol=1e-3, atol=1e-4 * np.abs(ga[k]).max(), err_msg=k)


def _arrays_in(obj):
    """Every NumPy array inside a (nested) cache."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays_in(v)


def _assert_new_array(out, cache, *inputs):
    """``out`` shares no memory with the inputs or with any array its cache holds."""
    for a in (*inputs, *_arrays_in(cache)):
        assert not np.shares_memory(out, a), f"output shares memory with an array of shape {a.shape}"


@pytest.mark.parametrize("backend", ["numpy", "emulate"])
def test_ops_outputs_written_in_place_are_new_arrays(backend, rng):
    """The blocks add into conv2d_forward's y (forward) and into the norm layers' dx (backward) in
    place (unet_blocks.py): each must be a new array that no cache and no input holds, for
    every convolution the U-Net runs (3x3 padding 1 at stride 1 and 2, 1x1 padding 0)."""
    import ddpm_ref.nn as nn

    ops = nn if backend == "numpy" else _emulated_ops()
    x = channels_last_f32(rng.standard_normal((2, 8, 4, 4)))
    for k, stride, padding in [(3, 1, 1), (3, 2, 1), (1, 1, 0)]:
        w = rng.standard_normal((8, 8, k, k)).astype(np.float32)
        b = rng.standard_normal(8).astype(np.float32)
        y, cache = ops.conv2d_forward(x, w, b, stride, padding)
        _assert_new_array(y, cache, x, w, b)
    gamma, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    dy = channels_last_f32(rng.standard_normal(x.shape))
    for forward, backward in [(nn.groupnorm_forward, nn.groupnorm_backward),
                              (nn.groupnorm_silu_forward, nn.groupnorm_silu_backward)]:
        _, cache = forward(x, gamma, beta, 4)
        dx = backward(dy, cache)[0]
        _assert_new_array(dx, cache, dy, x)


def test_new_array_check_can_fail(rng):
    """The check above rejects the layers that do return cached arrays (so it can fail)."""
    import ddpm_ref.nn as nn

    x = rng.standard_normal((2, 4, 3, 3))
    y, cache = nn.silu_forward(x)
    with pytest.raises(AssertionError, match="shares memory"):
        _assert_new_array(y, cache)
    y, cache = nn.dropout_forward(x, 0.0, None)
    with pytest.raises(AssertionError, match="shares memory"):
        _assert_new_array(y, cache, x)


def channels_last_f32(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2).astype(np.float32)
