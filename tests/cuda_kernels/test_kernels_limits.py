"""CUDA's launch limits are checked before any launch, with a ValueError that names the kernel,
its tile and the limit; the harness tries only the tiles that fit. No compiler needed, except
for the last test (the ops object of the emulator)."""

import numpy as np
import pytest

from kernels import harness, launch
from kernels.limits import REGISTERS_PER_BLOCK, check_launch_limits, registers_per_block


def test_issue_example_dkdv_at_t32_and_d64_is_rejected_with_names():
    """`python -m kernels attention_backward 2 --backend cuda` used to launch dkdv at T=32, D=64 with
    50,176 bytes of shared memory, which CUDA rejects."""
    why = launch.tile_fits("attention_backward", 2, (32, 256, 64), 32)
    for part in ("attention_backward_dkdv_kernel2", "tile T=32", "50176 bytes", "48 KiB"):
        assert part in why, why


def test_harness_tries_only_the_tiles_that_fit():
    sizes = harness.block_sizes("attention_backward", 2, (1, 40, 64))
    assert 32 not in sizes and 64 not in sizes
    assert None in sizes and 16 in sizes                 # the ops' own choice, and the largest that fits
    skipped = dict(harness.skipped_block_sizes("attention_backward", 2, (1, 40, 64)))
    assert set(skipped) == {32, 64}


@pytest.mark.parametrize("D, fits", [(86, True), (87, False)])
def test_forward_shared_memory_limit_at_t32(D, fits):
    """(4*T*(D+1) + T*(T+1)) floats at T = 32: 48,768 bytes for D = 86, 49,280 for D = 87."""
    why = launch.tile_fits("attention_forward", 2, (1, 64, D), 32)
    assert (why == "") == fits, why


def test_ops_default_tiles_always_fit():
    """The tile the ops choose by themselves (block size None) fits at every D that version 2 allows."""
    for D in (1, 17, 64, 128, 200):
        for op in ("attention_forward", "attention_backward"):
            assert launch.tile_fits(op, 2, (2, 300, D), None) == "", (op, D)


def test_batch_over_65535_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"attention_forward_kernel2 with tile T=\d+ .*grid\.y = 65536 .*65535"):
        launch.check_plan(launch.attention_forward_plan(2, 65536, 3, 3, 4))
    launch.check_plan(launch.attention_forward_plan(2, 65535, 3, 3, 4))    # the limit itself is allowed


def test_too_many_threads_is_rejected_by_name():
    with pytest.raises(ValueError, match="conv2d_forward_kernel1 with tile 2048 threads.*at most 1024"):
        launch.check_plan(launch.conv2d_forward_plan(1, (1, 3, 8, 8, 4, 3, 3, 8, 8), 2048))


def test_static_plus_dynamic_shared_memory():
    check_launch_limits("k", "T=8", (1, 1, 1), (8, 1, 1), 47 * 1024, static_shared=1024)     # exactly 48 KiB
    with pytest.raises(ValueError, match=r"k with tile T=8 .*2048 static \+ 48128 dynamic"):
        check_launch_limits("k", "T=8", (1, 1, 1), (8, 1, 1), 47 * 1024, static_shared=2048)


def test_registers_times_threads():
    assert registers_per_block(40, 1024) == 32 * 1280            # 40*32 = 1280 registers per warp
    assert registers_per_block(33, 64) == 2 * 1280               # 1056 rounds up to 1280
    check_launch_limits("k", "1024 threads", (1, 1, 1), (1024, 1, 1), 0, registers=64)   # 64 * 1024 = 65536
    with pytest.raises(ValueError, match=f"k with tile 1024 threads .*72 registers x 1024 threads .*{REGISTERS_PER_BLOCK}"):
        check_launch_limits("k", "1024 threads", (1, 1, 1), (1024, 1, 1), 0, registers=72)


def test_emulated_ops_raise_before_any_launch(emulator):
    """Through the ops object: the forward pass checks the backward pass's launches too."""
    import kernels

    ops = kernels.get_ops("emulate")
    q = np.zeros((65536, 1, 2), np.float32)
    with pytest.raises(ValueError, match="grid.y = 65536"):
        ops.attention_forward(q, q, q)
