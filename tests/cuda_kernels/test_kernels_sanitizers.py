"""Sanitizer builds of the emulator: every kernel runs clean, and planted bugs are caught.

* AddressSanitizer + UndefinedBehaviorSanitizer (one build, sanitize="address"): out-of-bounds
  reads and writes of global memory (heap-buffer-overflow: NumPy's arrays come from malloc) and
  of static shared memory (UBSan's bounds check, or ASan's global-buffer-overflow), misaligned
  vector loads.
* ThreadSanitizer (sanitize="thread"): data races between the threads of a block, such as a
  missing __syncthreads() (it names the two lines), and, with blocks run concurrently
  (concurrent_blocks / $DDPM_REF_EMU_CONCURRENT), between blocks.

Python is not instrumented, so each run is a child process with the sanitizer's runtime in
LD_PRELOAD (the command is in kernels/README.md). Skipped when g++ has no libasan/libtsan.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_test_utils import HERE, line_of, requires_emulator, sanitizer_runtime, wait_for_builds

import kernels

DRIVER = HERE / "sanitizer_driver.py"
PACKAGE_ROOT = Path(kernels.__file__).resolve().parent.parent     # so the child imports the same code


def run_child(mode, *args, timeout=300, concurrent=1):
    lib = sanitizer_runtime("libasan.so" if mode == "address" else "libtsan.so")
    if lib is None:
        pytest.skip(f"g++ has no {mode} sanitizer runtime")
    requires_emulator()
    wait_for_builds(mode)
    env = dict(os.environ, LD_PRELOAD=lib, DDPM_REF_EMU_SANITIZE=mode, DDPM_REF_EMU_CONCURRENT=str(concurrent),
               ASAN_OPTIONS="detect_leaks=0", PYTHONPATH=os.pathsep.join(
                   [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    res = subprocess.run([sys.executable, str(DRIVER), *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    out = res.stdout + res.stderr
    if "unexpected memory mapping" in out:          # TSan and a kernel with high mmap ASLR entropy
        pytest.skip("ThreadSanitizer cannot start here (try `setarch -R`)")
    return res.returncode, out


@pytest.mark.parametrize("mode, concurrent", [("address", 1), ("thread", 2)])
def test_every_kernel_is_clean_under_the_sanitizer(mode, concurrent):
    """ThreadSanitizer runs two blocks at a time, so that a race between blocks would be reported too."""
    rc, out = run_child(mode, "kernels", concurrent=concurrent)
    assert rc == 0 and "ALL OK" in out, out[-4000:]
    for report in ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer"):
        assert report not in out, out[-4000:]


@pytest.mark.parametrize("kernel, threads, expected, marker", [
    ("copy_off_by_one", 96, "heap-buffer-overflow", "off_by_one"),
    ("shared_overrun", 64, "out of bounds", "shared_overrun"),
    ("misaligned_float4", 8, "misaligned address", "misaligned"),
])
def test_asan_ubsan_catch_planted_bug(kernel, threads, expected, marker):
    rc, out = run_child("address", "planted", kernel, str(threads))
    assert rc != 0 and "NOTHING CAUGHT" not in out, out[-4000:]
    assert expected in out, out[-4000:]
    assert f"planted.cu:{line_of(marker)}" in out, out[-4000:]


def test_tsan_names_the_race_of_a_missing_syncthreads():
    rc, out = run_child("thread", "planted", "reverse_missing_sync", "64")
    assert "WARNING: ThreadSanitizer: data race" in out, out[-4000:]
    assert f"planted.cu:{line_of('missing_sync')}" in out, out[-4000:]
    assert rc != 0


def test_tsan_names_a_race_between_blocks_when_blocks_run_concurrently():
    """Blocks that run one after another cannot race; with concurrent blocks, TSan names the line."""
    rc, out = run_child("thread", "planted", "cross_block_race", "32", "8", concurrent=4)
    assert "WARNING: ThreadSanitizer: data race" in out, out[-4000:]
    assert f"planted.cu:{line_of('cross_block_race')}" in out, out[-4000:]
    assert rc != 0
