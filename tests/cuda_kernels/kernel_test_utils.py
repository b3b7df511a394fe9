"""Helpers shared by the kernel tests (imported as a top-level module: tests/cuda_kernels is on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kernels import OPS, source_path
from kernels.emulator import build, find_compiler

HERE = Path(__file__).resolve().parent
PLANTED = HERE / "planted.cu"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def have_compiler() -> bool:
    try:
        find_compiler()
        return True
    except RuntimeError:
        return False


def sanitizer_runtime(name: str):
    """The path of libasan.so / libtsan.so that g++ links against, or None."""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    path = subprocess.run([gxx, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def requires_emulator():
    if not have_compiler():
        if IN_CI:
            pytest.fail("CI must run the emulator tests, and no C++ compiler was found")
        pytest.skip("no C++ compiler: the emulate backend needs g++ (see kernels/README.md)")


def line_of(marker: str) -> int:
    """The line of planted.cu that carries `// BUG: marker`."""
    for i, line in enumerate(PLANTED.read_text().splitlines(), start=1):
        if f"BUG: {marker}" in line:
            return i
    raise AssertionError(marker)


# Builds run in a thread pool (g++ is a child process), started by the session fixture in conftest.py.
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
    """Wait for (start, if needed) the builds of every .cu file for one sanitizer mode."""
    prebuild(sanitize)
    for (path, mode), fut in list(_builds.items()):
        if mode == sanitize:
            fut.result()


def shutdown_builds():
    if _pool is not None:
        _pool.shutdown(wait=True)
