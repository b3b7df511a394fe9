"""The ops object from kernels.get_ops, end to end: against ddpm_ref.nn, on bad input, in the U-Net."""

import numpy as np
import pytest

import kernels
from ddpm_ref import nn

# A flat tolerance is enough at these small shapes (sums of at most ~100 terms of size ~1, float32
# errors ~1e-6); at the U-Net's shapes the tests use the derived one of kernels/harness.py.
ATOL, RTOL = 1e-5, 1e-4


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(got, ref, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(ref), atol=atol, rtol=rtol)


@pytest.fixture(params=[1, 2, 3], ids=["v1", "v2", "v3"])
def ops(request, emulator):
    return kernels.get_ops("emulate", version=request.param)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0), (2, 1)])
def test_conv2d_matches_numpy(ops, rng, bias, stride, padding):
    x, w = f32(rng, 2, 3, 7, 6), f32(rng, 5, 3, 3, 3)
    b = f32(rng, 5) if bias else None
    y, cache = ops.conv2d_forward(x, w, b, stride, padding)
    y_ref, cache_ref = nn.conv2d_forward(x.astype(np.float64), w.astype(np.float64),
                                         None if b is None else b.astype(np.float64), stride, padding)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    close(y, y_ref)
    dy = f32(rng, *y.shape)
    dx, dw, db = ops.conv2d_backward(dy, cache)
    dx_ref, dw_ref, db_ref = nn.conv2d_backward(dy.astype(np.float64), cache_ref)
    close(dx, dx_ref)
    close(dw, dw_ref)
    if bias:
        close(db, db_ref)
    else:
        assert db is None and db_ref is None


def test_attention_matches_numpy(ops, rng):
    q, k, v = f32(rng, 2, 19, 6), f32(rng, 2, 19, 6), f32(rng, 2, 19, 6)
    o, cache = ops.attention_forward(q, k, v)
    o_ref, cache_ref = nn.attention_forward(*(a.astype(np.float64) for a in (q, k, v)))
    close(o, o_ref)
    do = f32(rng, *o.shape)
    for got, ref in zip(ops.attention_backward(do, cache), nn.attention_backward(do.astype(np.float64), cache_ref)):
        close(got, ref)


def test_strided_inputs_are_accepted(ops, rng):
    """The U-Net passes views (q = qkv[..., :C], channels-last activations): they are copied."""
    qkv = f32(rng, 2, 10, 12)
    q, k, v = qkv[..., :4], qkv[..., 4:8], qkv[..., 8:]
    o, _ = ops.attention_forward(q, k, v)
    close(o, nn.attention_forward(*(a.astype(np.float64) for a in (q, k, v)))[0])
    x = f32(rng, 2, 5, 6, 3).transpose(0, 3, 1, 2)           # NCHW shape, channels-last memory
    w = f32(rng, 4, 3, 3, 3)
    y, _ = ops.conv2d_forward(x, w, None, 1, 1)
    close(y, nn.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, 1, 1)[0])


def test_empty_batch(ops, rng):
    """N = 0 (or L = 0): no launch at all (CUDA rejects an empty grid), right shapes, zero gradients."""
    w, b = f32(rng, 4, 3, 3, 3), f32(rng, 4)
    y, cache = ops.conv2d_forward(np.zeros((0, 3, 5, 5), np.float32), w, b, 1, 1)
    assert y.shape == (0, 4, 5, 5)
    dx, dw, db = ops.conv2d_backward(y, cache)
    assert dx.shape == (0, 3, 5, 5) and np.all(dw == 0) and np.all(db == 0)
    o, cache = ops.attention_forward(*[np.zeros((2, 0, 3), np.float32)] * 3)
    assert o.shape == (2, 0, 3) and all(g.shape == (2, 0, 3) for g in ops.attention_backward(o, cache))


def test_default_is_the_fastest_version(emulator):
    assert kernels.get_ops("emulate").versions == {op: kernels.VERSIONS[op][-1] for op in kernels.OPS}
    v3 = kernels.get_ops("emulate", version=3).versions
    assert set(v3.values()) == {3}
    mixed_attention = kernels.get_ops("emulate", version={"attention_forward": 3, "attention_backward": 2})
    assert mixed_attention.versions["attention_backward"] == 2           # both save/read the logsumexp
    mixed = kernels.get_ops("emulate", version={"conv2d_forward": 1})
    assert mixed.versions["conv2d_forward"] == 1 and mixed.versions["conv2d_backward_data"] == 3


# --------------------------------------------------------------------------- bad input

def test_bad_arguments_to_get_ops():
    with pytest.raises(ValueError, match="backend"):
        kernels.get_ops("opencl")
    with pytest.raises(ValueError, match="versions"):
        kernels.get_ops("emulate", version=7)
    with pytest.raises(ValueError, match="unknown ops"):
        kernels.get_ops("emulate", version={"conv3d_forward": 1})
    with pytest.raises(ValueError, match="choose versions that agree"):
        kernels.get_ops("emulate", version={"attention_forward": 1, "attention_backward": 2})
    with pytest.raises(ValueError, match="choose versions that agree"):
        kernels.get_ops("emulate", version={"attention_forward": 3, "attention_backward": 1})


@pytest.mark.parametrize("call, match", [
    (lambda o, r: o.conv2d_forward(f32(r, 1, 3, 5, 5).astype(np.float64), f32(r, 2, 3, 3, 3)), "float32 only"),
    (lambda o, r: o.conv2d_forward(f32(r, 1, 3, 5, 5), f32(r, 2, 4, 3, 3)), "channels"),
    (lambda o, r: o.conv2d_forward(f32(r, 1, 3, 5, 5), f32(r, 2, 3, 3, 3), f32(r, 3)), "b must have shape"),
    (lambda o, r: o.conv2d_forward(f32(r, 1, 3, 2, 2), f32(r, 2, 3, 3, 3)), "does not fit"),
    (lambda o, r: o.conv2d_forward(f32(r, 1, 3, 5, 5), f32(r, 2, 3, 3, 3), None, 0), "stride"),
    (lambda o, r: o.conv2d_forward(f32(r, 3, 5, 5), f32(r, 2, 3, 3, 3)), "4 axes"),
    (lambda o, r: o.conv2d_forward(np.ones((1, 3, 5, 5), np.int32), f32(r, 2, 3, 3, 3)), "float32 only"),
    (lambda o, r: o.attention_forward(f32(r, 2, 4, 3), f32(r, 2, 5, 3), f32(r, 2, 4, 3)), "same shape"),
    (lambda o, r: o.attention_forward(*[f32(r, 2, 4, 3).astype(np.float16)] * 3), "float32 only"),
    (lambda o, r: o.attention_backward(f32(r, 2, 4, 3), None), "no cache"),
    (lambda o, r: o.attention_forward(*[f32(r, 2, 4, 0)] * 3), "D >= 1"),
    (lambda o, r: o.conv2d_backward(f32(r, 1, 2, 3, 3), nn.conv2d_forward(f32(r, 1, 3, 5, 5), f32(r, 2, 3, 3, 3))[1]),
     "did not come from"),
    (lambda o, r: o.conv2d_backward(f32(r, 1, 2, 4, 4), o.conv2d_forward(f32(r, 1, 3, 5, 5), f32(r, 2, 3, 3, 3))[1]),
     "output's shape"),
])
def test_bad_input_raises_before_launch(emulator, rng, call, match):
    with pytest.raises(ValueError, match=match):
        call(kernels.get_ops("emulate"), rng)


def test_cuda_backend_without_a_gpu_says_so():
    ok, _ = kernels.cuda_available()
    if ok:
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="GPU"):
        kernels.get_ops("cuda")


# --------------------------------------------------------------------------- the U-Net

def test_unet_with_emulated_kernels_matches_numpy(emulator):
    """A tiny U-Net, forward and backward, with every convolution and attention run by the .cu kernels.

    The reference is the same network in float64 with ddpm_ref.nn; the kernel run is float32
    throughout (GroupNorm, linear layers... in NumPy float32), so the comparison is normwise:
    max |error| <= 1e-4 * max |reference| for the output and each gradient. float32 rounding
    through ~20 layers gives about 1e-6 (measured); a wrong kernel gives O(1).
    """
    from ddpm_ref.models.unet import UNet

    cfg = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(4,), groups=4, seed=0)
    ref = UNet(**cfg, dtype="float64")
    rng = np.random.default_rng(0)
    # nudge every parameter so that no path is trivially zero (the last conv starts at zero)
    ref.load_params({k: v + 0.05 * rng.standard_normal(v.shape) for k, v in ref.params.items()})
    net = UNet(**cfg, dtype="float32", ops=kernels.get_ops("emulate"))
    net.load_params(ref.params)
    x = rng.standard_normal((2, 1, 8, 8))
    t = np.array([3, 700])
    d_eps = rng.standard_normal((2, 1, 8, 8))

    eps_ref, eps = ref.forward(x, t), net.forward(x.astype(np.float32), t)
    grads_ref, grads = ref.backward(d_eps), net.backward(d_eps.astype(np.float32))

    def normwise(a, b):
        return np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30)

    assert normwise(eps, eps_ref) < 1e-4
    assert grads.keys() == grads_ref.keys()
    worst = max(grads, key=lambda k: normwise(grads[k], grads_ref[k]))
    assert normwise(grads[worst], grads_ref[worst]) < 1e-4, worst


# --------------------------------------------------------------------------- the cuda backend's glue

def test_cuda_backend_glue_with_a_stand_in_for_cupy(emulator, monkeypatch, rng):
    """Without a GPU, run get_ops("cuda")'s Python code with a stand-in "cupy": NumPy arrays, and a
    RawModule that is the emulator. This checks everything of the cuda path but CuPy itself."""
    import types

    from kernels import cuda_backend
    from kernels.emulator import EmulatedModule

    names = {kernels.source_path(op).read_text(): kernels.source_path(op).name for op in kernels.OPS}

    class RawModule:
        def __init__(self, code, options=()):
            assert "--std=c++17" in options
            self._mod = EmulatedModule(code=code, name=names[code], sanitize=None)

        def get_function(self, name):
            kernel = self._mod.get_function(name)
            return lambda grid, block, args, shared_mem=0: kernel(grid, block, args, shared_mem=shared_mem)

    fake = types.SimpleNamespace(ndarray=np.ndarray, RawModule=RawModule, empty=np.empty, zeros=np.zeros,
                                 ascontiguousarray=np.ascontiguousarray)
    monkeypatch.setattr(cuda_backend, "import_cupy", lambda: fake)
    monkeypatch.setattr(kernels, "cuda_available", lambda: (True, "stand-in"))
    kernels.load_module.cache_clear()
    try:
        ops = kernels.get_ops("cuda")
        assert ops.backend == "cuda"
        x, w, b = f32(rng, 2, 3, 6, 5), f32(rng, 4, 3, 3, 3), f32(rng, 4)
        y, cache = ops.conv2d_forward(x, w, b, 2, 1)
        y_ref, cache_ref = nn.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 2, 1)
        close(y, y_ref)
        dy = f32(rng, *y.shape)
        for got, ref in zip(ops.conv2d_backward(dy, cache), nn.conv2d_backward(dy.astype(np.float64), cache_ref)):
            close(got, ref)
        q, k, v = f32(rng, 2, 9, 4), f32(rng, 2, 9, 4), f32(rng, 2, 9, 4)
        o, cache = ops.attention_forward(q, k, v)
        o_ref, cache_ref = nn.attention_forward(*(a.astype(np.float64) for a in (q, k, v)))
        close(o, o_ref)
        for got, ref in zip(ops.attention_backward(q, cache), nn.attention_backward(q.astype(np.float64), cache_ref)):
            close(got, ref)
        with pytest.raises(ValueError, match="numpy.int32"):       # the launch checks hold on this path too
            kernels.load_module("cuda", "conv2d_forward").get_function("conv2d_forward_kernel1")(
                (1,), (32,), (x, w, b, y) + (1,) * 11)
    finally:
        kernels.load_module.cache_clear()


def test_cli_validates_then_times_with_emulator_options(emulator, capsys):
    """python -m kernels OP VERSION: every fitting block size validated, then timed; exit 0."""
    from kernels.__main__ import main

    assert main(["conv2d_backward_weight", "3", "--shape", "2", "3", "9", "7", "5", "3", "2", "1",
                 "--concurrent", "3", "--numerics", "exact", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "block size default: ok" in out and "All results match. Timing" in out
    assert main(["attention_backward", "2", "--shape", "1", "40", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "block size 32: skipped, it does not fit at this shape: attention_backward_dkdv_kernel2" in out
