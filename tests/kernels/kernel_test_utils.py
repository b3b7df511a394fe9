"""Helpers shared by the kernel tests (imported as a top-level module: tests/kernels is on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kernels.emulator import find_compiler

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
