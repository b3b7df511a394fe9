"""Every .cu file compiles with NVRTC for sm_80 (A100) and sm_90 (H100), without a GPU.

g++ (the emulator) and NVRTC accept different things, so both must compile every kernel. ptxas's
report (-Xptxas=-v) is checked: no register spills, static shared memory within 48 KiB.
Skipped when CuPy or the NVRTC library is missing (pip install -e ".[nvrtc]").
"""

import pytest

from kernels import nvrtc_check
from kernels.nvrtc_check import ARCHS, SOURCES, check_file, parse_ptxas

needs_nvrtc = pytest.mark.skipif(nvrtc_check.nvrtc() is None,
                                 reason="NVRTC not available (pip install -e '.[nvrtc]')")


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", SOURCES)
def test_compiles_without_spills(filename, arch):
    reports = check_file(filename, arch)
    assert reports
    for r in reports.values():
        assert not r.problems(), f"{r.name} ({arch}): {r.problems()}"
        assert 0 < r.registers <= 255


@needs_nvrtc
def test_limits_tables_match_ptxas():
    """kernels/limits.py's REGISTERS and STATIC_SHARED (used by the emulator's launch checks) are what
    ptxas reports now; after changing a kernel, `python -m kernels.nvrtc_check --table` prints them."""
    from kernels.limits import REGISTERS, STATIC_SHARED

    regs, smem = nvrtc_check.resource_table()
    assert regs == REGISTERS
    assert smem == STATIC_SHARED


@needs_nvrtc
def test_compiled_with_cupys_options():
    """-ftz=true changes the arithmetic of subnormals: the checked binary must be compiled as CuPy compiles it."""
    from kernels.cuda_backend import CUPY_ADDS, OPTIONS

    seen = []
    real = nvrtc_check.nvrtc()

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def compileProgram(self, prog, options):
            seen.extend(options)
            return real.compileProgram(prog, options)

    import unittest.mock

    with unittest.mock.patch.object(nvrtc_check, "nvrtc", lambda: Spy()):
        nvrtc_check.compile_source('extern "C" __global__ void f(float* a) { a[0] = 1.0f; }', "f.cu", "sm_90")
    assert "-ftz=true" in CUPY_ADDS and all(o in seen for o in (*OPTIONS, *CUPY_ADDS, "-arch=sm_90"))


@needs_nvrtc
def test_nvrtc_rejects_what_it_must():
    with pytest.raises(RuntimeError, match="INFINITY"):
        nvrtc_check.compile_source('extern "C" __global__ void f(float* a) { a[0] = INFINITY; }', "f.cu", "sm_80")


def test_ptxas_report_is_parsed():
    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem
ptxas info    : Compiling entry function 'k1' for 'sm_90'
ptxas info    : Function properties for k1
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers
"""
    r = parse_ptxas(log)
    assert (r["k2"].registers, r["k2"].smem, r["k2"].spill_stores, r["k2"].stack) == (40, 2048, 4, 8)
    assert r["k2"].problems() and not r["k1"].problems() and r["k1"].smem == 0
