"""Compile every .cu file with NVRTC for real GPUs, without a GPU, and read ptxas's report.

    python -m kernels.nvrtc_check                        # all files, sm_80 and sm_90
    python -m kernels.nvrtc_check attention_forward.cu --arch sm_90

g++ (the emulator) accepts code that NVRTC rejects and the other way round, so both compile
every kernel. It compiles with the options CuPy's RawModule uses (kernels/cuda_backend.py: ours,
then CuPy's -ftz=true and --device-as-default-execution-space), so the binary checked is the one
that runs. For each kernel the report gives registers per thread, spills (registers that did
not fit and went to slow local memory), static shared memory and the stack frame. The checks:
no spills, static shared memory <= 48 KiB (dynamic shared memory is checked at launch, see
kernels/ops.py), at most 255 registers.

NVRTC comes from the PyPI wheel nvidia-cuda-nvrtc (pip install -e ".[nvrtc]"); CuPy's low-level
bindings call it. (CuPy's high-level compile asks the driver for the GPU, so it fails without one.)
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from dataclasses import dataclass

from kernels._source import KERNEL_DIR, kernel_signatures
from kernels.cuda_backend import CUPY_ADDS, OPTIONS

ARCHS = ("sm_80", "sm_90")
SOURCES = ("conv2d_forward.cu", "conv2d_backward_data.cu", "conv2d_backward_weight.cu",
           "attention_forward.cu", "attention_backward.cu")
SHARED_LIMIT = 48 * 1024


@dataclass
class KernelReport:
    name: str
    arch: str
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0

    def problems(self) -> list[str]:
        out = []
        if self.spill_stores or self.spill_loads:
            out.append(f"{self.spill_stores} bytes spill stores, {self.spill_loads} bytes spill loads")
        if self.smem > SHARED_LIMIT:
            out.append(f"{self.smem} bytes of static shared memory > 48 KiB")
        if self.registers > 255:
            out.append(f"{self.registers} registers > 255")
        return out


def nvrtc():
    """CuPy's low-level NVRTC bindings, or None if CuPy or the NVRTC library is missing."""
    try:
        from cupy.cuda import nvrtc as binding

        binding.getVersion()
        return binding
    except Exception:   # ImportError, or CuPy present but libnvrtc not found
        return None


def compile_source(src: str, name: str, arch: str, extra_options=()) -> str:
    """Compile with NVRTC and return ptxas's -v log. Raises RuntimeError with the log on failure."""
    binding = nvrtc()
    if binding is None:
        raise RuntimeError("NVRTC is not available: pip install -e \".[nvrtc]\" (CuPy + nvidia-cuda-nvrtc)")
    prog = binding.createProgram(src, name, [], [])
    options = [*OPTIONS, *CUPY_ADDS, f"-arch={arch}", "-Xptxas=-v", *extra_options]
    try:
        binding.compileProgram(prog, options)
    except Exception as err:
        raise RuntimeError(f"NVRTC could not compile {name} for {arch}:\n{binding.getProgramLog(prog)}") from err
    finally:
        log = binding.getProgramLog(prog)
        binding.destroyProgram(prog)
    return log


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log: str) -> dict[str, KernelReport]:
    """ptxas -v output -> {kernel name: KernelReport} (entry functions only)."""
    reports, current = {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = reports[m.group(1)] = KernelReport(m.group(1), m.group(2))
            continue
        if current is None:
            continue
        if (m := _STACK.search(line)):
            current.stack, current.spill_stores, current.spill_loads = map(int, m.groups())
        if (m := _USED.search(line)):
            current.registers = int(m.group(1))
            s = _SMEM.search(line)
            current.smem = int(s.group(1)) if s else 0
    return reports


@functools.lru_cache(maxsize=None)
def check_file(filename: str, arch: str) -> dict[str, KernelReport]:
    """Compile one kernels/*.cu file for one architecture; every kernel of it must be in the report.
    (Cached per process: the tests ask for each file twice; do not change the returned reports.)"""
    src = (KERNEL_DIR / filename).read_text()
    reports = parse_ptxas(compile_source(src, filename, arch))
    missing = set(kernel_signatures(src)) - set(reports)
    if missing:
        raise RuntimeError(f"{filename}: ptxas reported nothing for {sorted(missing)}")
    return reports


def resource_table(files=SOURCES, archs=ARCHS) -> tuple[dict, dict]:
    """({kernel: registers}, {kernel: static shared bytes, if any}), the larger over `archs`:
    what kernels/limits.py's REGISTERS and STATIC_SHARED must say."""
    regs, smem = {}, {}
    for filename in files:
        for arch in archs:
            for r in check_file(filename, arch).values():
                regs[r.name] = max(regs.get(r.name, 0), r.registers)
                if r.smem:
                    smem[r.name] = max(smem.get(r.name, 0), r.smem)
    return regs, smem


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.nvrtc_check", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=list(SOURCES))
    parser.add_argument("--arch", action="append", choices=("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90"))
    parser.add_argument("--table", action="store_true", help="print REGISTERS and STATIC_SHARED for kernels/limits.py")
    args = parser.parse_args(argv)
    if nvrtc() is None:
        print("NVRTC is not available: pip install -e \".[nvrtc]\"", file=sys.stderr)
        return 2
    if args.table:
        regs, smem = resource_table(args.files, args.arch or ARCHS)
        print("REGISTERS =", regs)
        print("STATIC_SHARED =", smem)
        return 0
    bad = 0
    print(f"{'kernel':44} {'arch':6} {'regs':>4} {'smem':>6} {'stack':>5}  spills")
    for filename in args.files:
        for arch in args.arch or ARCHS:
            for r in check_file(filename, arch).values():
                problems = r.problems()
                bad += bool(problems)
                print(f"{r.name:44} {arch:6} {r.registers:4d} {r.smem:6d} {r.stack:5d}  "
                      f"{r.spill_stores}/{r.spill_loads}" + (f"  <- {'; '.join(problems)}" if problems else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
