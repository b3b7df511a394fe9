"""Fixtures for the kernel tests: emulator builds started early, in parallel, and the skip rules.

Skip rules:
* no C++ compiler: the emulator tests skip, except in CI (CI=true), where they fail: CI must run them.
* no CuPy or no GPU: the cuda tests skip.
* no NVRTC: the compile checks skip.
* no sanitizer runtime (libasan/libtsan next to g++): the sanitizer tests skip.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from kernel_test_utils import PLANTED, have_compiler, requires_emulator, sanitizer_runtime

from kernels import OPS, source_path
from kernels.cuda_backend import cuda_available
from kernels.emulator import build

_pool = None
_builds = {}


def _sources():
    return [source_path(op) for op in OPS] + [PLANTED]


def prebuild(sanitize=None):
    """Start the builds of every .cu file for this sanitizer mode in the background (idempotent)."""
    global _pool
    if not have_compiler():
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
    for path in _sources():
        key = (path, sanitize)
        if key not in _builds:
            _builds[key] = _pool.submit(build, path.read_text(), path.name, sanitize)


def wait_for_builds(sanitize=None):
    prebuild(sanitize)
    for (path, mode), fut in list(_builds.items()):
        if mode == sanitize:
            fut.result()


@pytest.fixture(scope="session", autouse=True)
def _start_builds():
    """Cold cache (CI): start every build at once so that 2 cores compile while the first tests wait."""
    prebuild(None)
    if sanitizer_runtime("libasan.so"):
        prebuild("address")
    if sanitizer_runtime("libtsan.so"):
        prebuild("thread")
    yield
    if _pool is not None:
        _pool.shutdown(wait=True)


@pytest.fixture
def emulator():
    """Skip (or, in CI, fail) without a compiler; wait for the plain builds."""
    requires_emulator()
    wait_for_builds(None)


@pytest.fixture(scope="session")
def gpu():
    ok, why = cuda_available()
    if not ok:
        pytest.skip(f"no GPU for the cuda backend ({why})")
    return why
