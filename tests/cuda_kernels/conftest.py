"""Fixtures for the kernel tests: emulator builds started early, in parallel, and the skip rules.

Skip rules:
* no C++ compiler: the emulator tests skip, except in CI (CI=true), where they fail: CI must run them.
* no CuPy or no GPU: the cuda tests skip.
* no NVRTC: the compile checks skip.
* no sanitizer runtime (libasan/libtsan next to g++): the sanitizer tests skip.
"""

from __future__ import annotations

import kernel_test_utils
import pytest
from kernel_test_utils import prebuild, requires_emulator, sanitizer_runtime, wait_for_builds

from kernels.cuda_backend import cuda_available


@pytest.fixture(scope="session", autouse=True)
def _start_builds():
    """Cold cache (CI): start every build at once so that 2 cores compile while the first tests wait."""
    prebuild(None)
    if sanitizer_runtime("libasan.so"):
        prebuild("address")
    if sanitizer_runtime("libtsan.so"):
        prebuild("thread")
    yield
    kernel_test_utils.shutdown_builds()


@pytest.fixture
def emulator():
    """Skip (or, in CI, fail) without a compiler; wait for the plain builds."""
    requires_emulator()
    wait_for_builds(None)


@pytest.fixture(scope="session")
def gpu():
    ok, why = cuda_available()
    if not ok:
        # Expected on a laptop or CI: say so plainly; CuPy's own error text (e.g. "CUDA driver
        # version is insufficient") reads like a fault, so it is not shown.
        pytest.skip("no NVIDIA GPU here: the cuda backend runs only on one (the emulator tests cover the kernels)")
    return why
