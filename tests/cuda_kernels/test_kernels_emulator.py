"""The emulator itself: launches, argument checks, poisoned memory, barriers, shuffles, atomics.

The planted bugs of tests/cuda_kernels/planted.cu that the emulator catches on its own are here; the
ones that need a sanitizer are in test_kernels_sanitizers.py.
"""

import numpy as np
import pytest

from kernels import emulator
from kernels._source import kernel_signatures, rewrite_shared, strip_comments
from kernels.emulator import EmulatedModule, EmulatorError

from kernel_test_utils import PLANTED, line_of


@pytest.fixture
def planted(emulator):
    return EmulatedModule(PLANTED, sanitize=None)


def arange(n):
    return np.arange(n, dtype=np.float32)


# --------------------------------------------------------------------------- source reading (no compiler)

def test_signatures_are_read_from_the_source():
    sigs = kernel_signatures('// extern "C" __global__ void commented_out(int n)\n'
                             'extern "C" __global__ void f(const float* __restrict__ x, float* y, int n, float a) {}')
    assert list(sigs) == ["f"]
    assert [str(p) for p in sigs["f"]] == ["const float* x", "float* y", "int n", "float a"]


def test_shared_rewrite_keeps_lines():
    src = ("__global__ void k() {\n  __shared__ float tile[16][17];\n"
           "  extern __shared__ float buf[];\n  // __shared__ in a comment\n}\n")
    out = rewrite_shared(strip_comments(src))
    assert out.count("\n") == src.count("\n")
    assert ("using tile__t = float[16][17]; static ::emu::SharedDecl tile__emu(sizeof(tile__t), alignof(tile__t)); "
            'tile__t& tile = *reinterpret_cast<tile__t*>(tile__emu.get("tile"));') in out
    assert "float* buf = reinterpret_cast<float*>(::emu::dynamic_shared());" in out


def test_unreadable_shared_declaration_raises():
    with pytest.raises(ValueError, match="one array per statement"):
        rewrite_shared("__shared__ float a[4], b[4];")


def test_missing_compiler_says_how_to_install(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-ddpm-ref")
    emulator.find_compiler.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt install g\\+\\+"):
            emulator.find_compiler()
    finally:
        monkeypatch.undo()
        emulator.find_compiler.cache_clear()


# --------------------------------------------------------------------------- launches

def test_a_correct_kernel_runs(planted):
    x, y = arange(100), np.empty(100, np.float32)
    planted.get_function("reverse_ok")((2,), (64,), (np.concatenate([x, x[:28]]), np.empty(128, np.float32),
                                                     np.int32(128)))
    planted.get_function("reverse_ok")((1,), (64,), (x[:64].copy(), y[:64], np.int32(64)))
    np.testing.assert_array_equal(y[:64], x[:64][::-1])


def test_build_is_cached(planted):
    again = EmulatedModule(PLANTED, sanitize=None)
    assert again.library_path == planted.library_path


@pytest.mark.parametrize("args, match", [
    (lambda x, y: (x, y, 64), "numpy.int32"),                                     # a Python int
    (lambda x, y: (x, y, np.int64(64)), "numpy.int32"),
    (lambda x, y: (x.astype(np.float64), y, np.int32(64)), "dtype float32"),
    (lambda x, y: (x[::2], y, np.int32(32)), "C-contiguous"),
    (lambda x, y: (x, y), "takes 3 arguments"),
    (lambda x, y: (list(x), y, np.int32(64)), "NumPy array"),
])
def test_bad_arguments_raise_before_launch(planted, args, match):
    x, y = arange(64), np.full(64, 7.0, np.float32)
    with pytest.raises(ValueError, match=match):
        planted.get_function("reverse_ok")((1,), (64,), args(x, y))
    assert np.all(y == 7.0)                                  # nothing ran


def test_read_only_output_raises(planted):
    y = np.empty(64, np.float32)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        planted.get_function("reverse_ok")((1,), (64,), (arange(64), y, np.int32(64)))


def test_unknown_kernel_raises(planted):
    with pytest.raises(ValueError, match="has no kernel"):
        planted.get_function("nope")


@pytest.mark.parametrize("grid, block, shared, match", [
    ((1,), (2048,), 0, "at most 1024 threads"),
    ((1,), (64,), 64 * 1024, "48 KiB"),
    ((0,), (64,), 0, ">= 1"),
])
def test_launch_limits_are_cuda_s(planted, grid, block, shared, match):
    with pytest.raises(EmulatorError, match=match):
        planted.get_function("reverse_ok")(grid, block, (arange(64), np.empty(64, np.float32), np.int32(64)),
                                           shared_mem=shared)


# --------------------------------------------------------------------------- poisoned memory

def test_unwritten_output_is_nan(planted):
    y = np.zeros(64, np.float32)
    planted.get_function("forgets_last")((1,), (64,), (arange(64), y, np.int32(64)))
    np.testing.assert_array_equal(y[:-1], arange(63))
    assert np.isnan(y[-1])


def test_shared_memory_is_nan_in_every_block(planted):
    out = np.empty(2 * 64 * 2, np.float32)
    planted.get_function("reads_stale_shared")((2,), (64,), (out, np.int32(0)), shared_mem=64 * 4)
    first, second = out[:128], out[128:]
    np.testing.assert_array_equal(first, np.tile([1.0, 2.0], 64))     # block 0 wrote them
    assert np.all(np.isnan(second))                                   # block 1 sees no leftovers


# --------------------------------------------------------------------------- barriers

def test_barrier_in_divergent_code_is_reported(planted):
    with pytest.raises(EmulatorError) as err:
        planted.get_function("divergent_barrier")((1,), (64,), (arange(64), np.empty(64, np.float32), np.int32(64)))
    msg = str(err.value)
    assert f"planted.cu:{line_of('divergent_barrier')}" in msg
    assert "16 thread(s)" in msg and "48 thread(s)" in msg and "returned from the kernel" in msg


def test_return_before_barrier_is_reported(planted):
    with pytest.raises(EmulatorError, match=f"planted.cu:{line_of('waits_for_returned')}"):
        planted.get_function("return_before_barrier")((1,), (64,),
                                                      (arange(64), np.empty(64, np.float32), np.int32(40)))


def test_missing_syncthreads_gives_wrong_results(planted):
    """Threads start one by one, so thread 0 reads s[63] before thread 63 wrote it (NaN).

    Scheduling could in principle hide it once; it cannot hide it three times in a row.
    The race itself is named by ThreadSanitizer in test_kernels_sanitizers.py.
    """
    x = arange(64)
    wrong = 0
    for _ in range(3):
        y = np.empty(64, np.float32)
        planted.get_function("reverse_missing_sync")((1,), (64,), (x, y, np.int32(64)))
        wrong += not np.array_equal(y, x[::-1])
    assert wrong >= 1


def test_reverse_block_order_exposes_order_dependence(emulator):
    """Blocks run in any order on a GPU: a kernel that reads another block's output is wrong."""
    forward = EmulatedModule(PLANTED, sanitize=None)
    backward = EmulatedModule(PLANTED, sanitize=None, reverse_blocks=True)
    out = np.empty(5, np.float32)
    forward.get_function("depends_on_block_order")((5,), (32,), (out, np.int32(5)))
    np.testing.assert_array_equal(out, [1, 2, 3, 4, 5])             # looks right in order ...
    backward.get_function("depends_on_block_order")((5,), (32,), (out, np.int32(5)))
    assert np.isnan(out[1:]).all()                                   # ... and is not


# --------------------------------------------------------------------------- shuffles, atomics

def test_shuffle_down_block_sum(planted):
    x = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    out = np.empty(1, np.float32)
    planted.get_function("block_sum_shuffle")((1,), (128,), (x, out, np.int32(100)))
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-5)


def test_shuffle_xor_allreduce(planted):
    x = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    out = np.empty(64, np.float32)
    planted.get_function("warp_allreduce_xor")((1,), (64,), (x, out, np.int32(64)))
    np.testing.assert_allclose(out[:32], x[:32].sum(), rtol=1e-5)
    np.testing.assert_allclose(out[32:], x[32:].sum(), rtol=1e-5)


def test_shuffle_from_a_lane_past_the_block_is_reported(planted):
    with pytest.raises(EmulatorError, match="multiple of 32"):
        planted.get_function("warp_allreduce_xor")((1,), (40,), (arange(40), np.empty(40, np.float32), np.int32(40)))


def test_atomic_add_counts_every_thread(planted):
    counter = np.zeros(1, np.int32)
    planted.get_function("count_threads")((3, 2), (50, 2), (counter,))
    assert counter[0] == 3 * 2 * 50 * 2


# --------------------------------------------------------------------------- closer to a GPU (issue 13, item 4)

def test_concurrent_blocks_give_the_same_results(emulator):
    """The kernels at 3 blocks at a time: same answers as one at a time (a cross-block race would differ)."""
    from kernels import harness, load_module

    for op, shape in (("conv2d_backward_weight", (1, 4, 9, 8, 17, 3, 2, 0)), ("attention_backward", (2, 37, 8))):
        inp = harness.make_inputs(op, shape, np.random.default_rng(5))
        problems = harness.validate(op, 2, lambda name: load_module("emulate", name, None, False, 3), inp)
        assert not problems, "\n".join(problems)


def test_concurrent_blocks_make_cross_block_races_real(emulator):
    """40 blocks each add 1 to out[0] without an atomic. One at a time, that looks right (40); with
    8 blocks at a time updates get lost in some runs. (TSan names the race: test_kernels_sanitizers.py.)"""
    serial = EmulatedModule(PLANTED, sanitize=None, poison_outputs=False)
    out = np.zeros(64, np.float32)
    serial.get_function("cross_block_race")((40,), (32,), (arange(64), out, np.int32(64)))
    assert out[0] == 40.0
    concurrent = EmulatedModule(PLANTED, sanitize=None, poison_outputs=False, concurrent_blocks=8)
    assert concurrent.concurrent_blocks == 8
    seen = set()
    for _ in range(20):
        out[:] = 0
        concurrent.get_function("cross_block_race")((40,), (32,), (arange(64), out, np.int32(64)))
        seen.add(float(out[0]))
    assert max(seen) <= 40.0       # lost updates are possible, never extra ones; whether one is lost is luck


def test_bad_concurrency_is_rejected(emulator):
    with pytest.raises(ValueError, match="concurrent_blocks must be an int from 1 to 64"):
        EmulatedModule(PLANTED, sanitize=None, concurrent_blocks=0)


def _probe(numerics):
    mod = EmulatedModule(PLANTED, sanitize=None, numerics=numerics)
    a = np.float32(1 + 2**-12)
    x = np.array([a, a, -(1 + 2**-11), 1e-40, 1.0] + [0] * 59, np.float32)    # 1e-40 is subnormal
    out = np.zeros(64, np.float32)
    mod.get_function("numerics_probe")((1,), (32,), (x, out, np.int32(64)))
    return out[0], out[1]


def test_numerics_exact_rounds_each_operation(emulator):
    """(1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: rounded to float32 first, the 2^-24 is lost (a tie, to even)."""
    fused, subnormal = _probe("exact")
    assert fused == 0.0
    assert subnormal == np.float32(1e-40)


def test_numerics_gpu_fuses_and_flushes(emulator):
    """numerics="gpu": a*b + c in one fused multiply-add keeps the 2^-24; a subnormal input reads as 0."""
    try:
        fused, subnormal = _probe("gpu")
    except RuntimeError as err:
        pytest.skip(str(err))            # a CPU without FMA
    assert fused == np.float32(2**-24)
    assert subnormal == 0.0


def test_unknown_numerics_is_rejected(emulator):
    with pytest.raises(ValueError, match="numerics='fast' is not known"):
        EmulatedModule(PLANTED, sanitize=None, numerics="fast")


def test_static_plus_dynamic_shared_memory_is_checked(planted):
    """32 KiB static + 16 KiB dynamic fits exactly; one float more does not (CUDA would refuse the launch)."""
    x, out = arange(64), np.empty(64, np.float32)
    planted.get_function("too_much_shared")((1,), (64,), (x, out, np.int32(64)), shared_mem=16 * 1024)
    np.testing.assert_array_equal(out, 2 * x)
    with pytest.raises(EmulatorError, match=r"32768 bytes static \(reaching __shared__ big\) \+ 16388 bytes dynamic"):
        planted.get_function("too_much_shared")((1,), (64,), (x, out, np.int32(64)), shared_mem=16 * 1024 + 4)


def test_registers_times_threads_is_checked(planted, monkeypatch):
    """With ptxas's count in kernels/limits.py, 1024 threads of a 72-register kernel do not fit on an SM."""
    from kernels import limits

    monkeypatch.setitem(limits.REGISTERS, "reverse_ok", 72)
    x = np.zeros(1024, np.float32)
    with pytest.raises(ValueError, match="reverse_ok with tile 1024x1x1 .*72 registers x 1024 threads"):
        planted.get_function("reverse_ok")((1,), (1024,), (x, np.empty(1024, np.float32), np.int32(64)))
