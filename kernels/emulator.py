"""Run a CUDA .cu file on a CPU: build it with g++ against cuda_emulation.h, load it with ctypes,
launch its kernels with CuPy's call shape ``kernel(grid, block, args, shared_mem=0)``.

    mod = EmulatedModule(path="kernels/conv2d_forward.cu")        # like cupy.RawModule
    kern = mod.get_function("conv2d_forward_kernel1")              # like RawModule.get_function
    kern((blocks,), (256,), (x, w, b, y, np.int32(N), ...))         # NumPy arrays, typed scalars

What happens on a launch (cuda_emulation.h has the details):
1. The arguments are checked against the kernel's parameters read from the source (exact dtypes,
   C-contiguous arrays, numpy.int32 for ``int``...) -> ValueError.
2. Every output array (a ``float*`` parameter that is not ``const``) is filled with NaN, so an
   element the kernel forgets to write shows up.
3. The C++ launcher starts blockDim.x*y*z OS threads per concurrent block (``concurrent_blocks``,
   default 1), which run the blocks one after another (``reverse_blocks=True``: last block first),
   and returns an error message if the threads of a block disagreed on a __syncthreads(), or the
   kernel's static + dynamic shared memory is over 48 KiB -> EmulatorError. (Registers x threads
   are checked before, from ptxas's table in kernels/limits.py.)

Builds are cached under ``$DDPM_REF_CACHE/kernels`` (default ``~/.cache/ddpm_ref/kernels``) by a
hash of the generated source, the header, the compiler and the flags.

Numerics: ``numerics="exact"`` (default) rounds every float operation on its own and keeps
subnormals; ``numerics="gpu"`` contracts a*b + c into fused multiply-adds and flushes subnormals
to zero, as the NVRTC build CuPy makes (-ftz=true, and nvcc's default --fmad=true).

Sanitizers: ``sanitize="address"`` builds with AddressSanitizer + UndefinedBehaviorSanitizer,
``sanitize="thread"`` with ThreadSanitizer. Python itself is not instrumented, so the sanitizer's
runtime must be loaded first, e.g.::

    LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        DDPM_REF_EMU_SANITIZE=address python -m kernels conv2d_forward 2

(the environment variable ``DDPM_REF_EMU_SANITIZE`` sets the default for every module).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import platform
import tempfile
from pathlib import Path

import numpy as np

from kernels._source import KERNEL_DIR, check_launch, kernel_signatures, rewrite_shared, strip_comments
from kernels.limits import REGISTERS, check_launch_limits

HEADER = KERNEL_DIR / "cuda_emulation.h"
BASE_FLAGS = ("-std=c++20", "-shared", "-fPIC", "-pthread", "-w")
SANITIZE_FLAGS = {
    None: ("-O2",),
    "address": ("-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                "-fno-sanitize-recover=undefined"),
    "thread": ("-O1", "-g", "-fsanitize=thread"),
}
_RUNTIME = {"address": ("libasan.so", "__asan_init"), "thread": ("libtsan.so", "__tsan_init")}

INSTALL_HINT = (
    "The 'emulate' backend compiles the .cu files with a C++20 compiler (g++ 11 or newer), and none "
    "was found. Install one: `sudo apt install g++` (Debian/Ubuntu), `sudo dnf install gcc-c++` "
    "(Fedora), `conda install -c conda-forge gxx`, or on macOS/Windows use WSL or a Linux container; "
    "or point the CXX environment variable at a compiler. Without one you can still read the kernels, "
    "run the NumPy reference (ddpm_ref.nn) and the NVRTC compile checks (pip install -e '.[nvrtc]')."
)


class EmulatorError(RuntimeError):
    """A kernel failed while running in the emulator (e.g. threads disagreed on a __syncthreads())."""


def cache_dir() -> Path:
    """Where built libraries go: $DDPM_REF_CACHE/kernels, else $XDG_CACHE_HOME or ~/.cache /ddpm_ref/kernels."""
    root = os.environ.get("DDPM_REF_CACHE")
    if root:
        return Path(root) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "ddpm_ref" / "kernels"


@functools.lru_cache(maxsize=None)
def find_compiler() -> tuple[str, str]:
    """(path, first line of --version) of $CXX, else g++, else c++. Raises RuntimeError with how to install one."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    for name in names:
        path = shutil.which(name)
        if path:
            out = subprocess.run([path, "--version"], capture_output=True, text=True)
            return path, (out.stdout.splitlines() or ["?"])[0]
    raise RuntimeError(INSTALL_HINT)


def translation_unit(src: str, filename: str) -> str:
    """The C++ file g++ compiles: the header, the rewritten kernel source, one launcher per kernel."""
    body = rewrite_shared(strip_comments(src))
    launchers = [
        f'extern "C" int emu_launch_{name}(const unsigned int* grid, const unsigned int* block, '
        f"std::size_t shared_mem, int reverse, int concurrent, void** args, char* err, std::size_t err_len) {{\n"
        f"    return ::emu::launch({name}, grid, block, shared_mem, reverse, concurrent, args, err, err_len);\n}}\n"
        for name in kernel_signatures(src)
    ]
    return (f'#include "cuda_emulation.h"\n#line 1 "{filename}"\n{body}\n'
            f'#line 1 "{filename} (launchers generated by kernels/emulator.py)"\n' + "".join(launchers))


NUMERICS = ("exact", "gpu")


def numerics_flags(numerics: str) -> tuple[str, ...]:
    """g++ flags for the arithmetic: "exact" (each float operation rounded on its own, subnormals kept:
    IEEE, what NumPy does) or "gpu" (what CuPy's NVRTC build does: a*b + c contracted into one fused
    multiply-add, rounded once, and subnormals flushed to zero, -ftz=true)."""
    if numerics not in NUMERICS:
        raise ValueError(f"numerics={numerics!r} is not known; choose 'exact' or 'gpu'")
    if numerics == "exact":
        return ("-ffp-contract=off",)
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        if " fma" not in flags:
            raise RuntimeError("numerics='gpu' needs a CPU with fused multiply-add (x86 FMA3); this one has none "
                               "(or /proc/cpuinfo cannot say): use numerics='exact'")
        return ("-ffp-contract=fast", "-mfma", "-DEMU_FLUSH_TO_ZERO")
    if machine in ("aarch64", "arm64"):
        return ("-ffp-contract=fast", "-DEMU_FLUSH_TO_ZERO")
    raise RuntimeError(f"numerics='gpu' is written for x86-64 and aarch64, not {machine}: use numerics='exact'")


def build(src: str, filename: str, sanitize: str | None = None, numerics: str = "exact") -> Path:
    """Compile (or find in the cache) the shared library for one .cu source. Returns its path.

    Builds of the same key may run in parallel (threads or processes): each writes into its own
    temporary directory and renames the result into place, so no lock is needed."""
    if sanitize not in SANITIZE_FLAGS:
        raise ValueError(f"sanitize={sanitize!r} is not known; choose None, 'address' or 'thread'")
    compiler, version = find_compiler()
    tu = translation_unit(src, filename)
    flags = BASE_FLAGS + SANITIZE_FLAGS[sanitize] + numerics_flags(numerics)
    key = hashlib.sha256("\0".join([tu, HEADER.read_text(), compiler, version, *flags]).encode()).hexdigest()
    stem = Path(filename).stem
    target = cache_dir() / f"{stem}-{sanitize or 'plain'}-{numerics}-{key[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cpp = Path(tmp) / f"{stem}.cpp"
        cpp.write_text(tu)
        out = Path(tmp) / "lib.so"
        cmd = [compiler, *flags, "-I", str(HEADER.parent), str(cpp), "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise EmulatorError(f"g++ could not compile {filename} for the emulator:\n"
                                f"{' '.join(cmd)}\n{res.stderr[-6000:]}")
        os.replace(out, target)   # atomic: a parallel build of the same key writes the same bytes
    return target


def _check_runtime_loaded(sanitize: str) -> None:
    lib, symbol = _RUNTIME[sanitize]
    if not hasattr(ctypes.CDLL(None), symbol):
        raise RuntimeError(
            f"a sanitize={sanitize!r} build needs the sanitizer runtime loaded before Python starts: run "
            f"`LD_PRELOAD=$(g++ -print-file-name={lib}) ... python ...` "
            "(with ASAN_OPTIONS=detect_leaks=0 for AddressSanitizer)")


class EmulatedKernel:
    """One ``extern "C" __global__`` function, called as ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, module: "EmulatedModule", name: str):
        self.module, self.name = module, name
        self.params = module.signatures[name]
        self._launch = getattr(module.lib, f"emu_launch_{name}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t,
                                 ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                 ctypes.c_size_t]

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = check_launch(self.name, self.params, grid, block, args, shared_mem, np.ndarray, "NumPy")
        registers = REGISTERS.get(self.name)          # ptxas's count; the C++ side checks threads and shared memory
        if registers is not None and all(v > 0 for v in grid + block):
            check_launch_limits(self.name, "x".join(map(str, block)), (1, 1, 1), block, 0, registers=registers)
        slots = []                                   # one C value per parameter, kept alive here
        for p, a in zip(self.params, args):
            if p.pointer:
                if not p.const and a.dtype.kind == "f" and self.module.poison_outputs:
                    a.fill(np.nan)                   # outputs start as NaN: unwritten elements show
                slots.append(ctypes.c_void_p(a.ctypes.data))
            else:
                slots.append(np.ctypeslib.as_ctypes_type(a.dtype)(a.item()))
        # Like cuLaunchKernel's kernelParams: an array of pointers to the argument values.
        argv = (ctypes.c_void_p * max(1, len(slots)))(*[ctypes.cast(ctypes.pointer(s), ctypes.c_void_p)
                                                         for s in slots])
        err = ctypes.create_string_buffer(8192)
        rc = self._launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), int(shared_mem),
                          int(self.module.reverse_blocks), self.module.concurrent_blocks, argv, err, len(err))
        if rc != 0:
            raise EmulatorError(f"{self.name}<<<{grid}, {block}, {shared_mem}>>>: {err.value.decode()}")


class EmulatedModule:
    """A .cu file built for the CPU: the emulator's ``cupy.RawModule``.

    Args:
        path: the .cu file (or give ``code`` and a ``name`` for messages).
        sanitize: None, "address" (ASan + UBSan) or "thread" (TSan); default $DDPM_REF_EMU_SANITIZE.
        reverse_blocks: run the grid's blocks last to first (a kernel whose result depends on the
            order of its blocks is wrong on a GPU, where blocks run in any order, even concurrently).
        poison_outputs: fill every non-const float pointer argument with NaN before a launch. Turn
            it off only for a kernel that reads an output before writing it (an in-place update or
            an atomicAdd into zeros); ddpm_ref's kernels never do.
        concurrent_blocks: how many blocks run at the same time (default 1, or $DDPM_REF_EMU_CONCURRENT),
            each with its own threads and shared memory, as on a GPU's SMs. With 2 or more, races
            between blocks happen for real: ThreadSanitizer (sanitize="thread") names them, and the
            order of float atomics varies from run to run.
        numerics: "exact" (IEEE float32, each operation rounded; the default, or $DDPM_REF_EMU_NUMERICS)
            or "gpu" (FMA contraction and flush-to-zero, as CuPy's NVRTC build; see numerics_flags).
    """

    def __init__(self, path=None, *, code=None, name="kernel.cu", sanitize="default", reverse_blocks=False,
                 poison_outputs=True, concurrent_blocks=None, numerics=None):
        if (path is None) == (code is None):
            raise ValueError("give exactly one of path= and code=")
        if path is not None:
            path = Path(path)
            code, name = path.read_text(), path.name
        if sanitize == "default":
            sanitize = os.environ.get("DDPM_REF_EMU_SANITIZE") or None
        self.name, self.sanitize, self.reverse_blocks = name, sanitize, bool(reverse_blocks)
        self.poison_outputs = bool(poison_outputs)
        if concurrent_blocks is None:
            concurrent_blocks = int(os.environ.get("DDPM_REF_EMU_CONCURRENT") or 1)
        if isinstance(concurrent_blocks, bool) or not isinstance(concurrent_blocks, int) or not 1 <= concurrent_blocks <= 64:
            raise ValueError(f"concurrent_blocks must be an int from 1 to 64, got {concurrent_blocks!r}")
        self.concurrent_blocks = concurrent_blocks
        self.numerics = numerics or os.environ.get("DDPM_REF_EMU_NUMERICS") or "exact"
        self.signatures = kernel_signatures(code)
        if not self.signatures:
            raise ValueError(f'{name} has no extern "C" __global__ function')
        self.library_path = build(code, name, sanitize, self.numerics)
        if sanitize:
            _check_runtime_loaded(sanitize)
        self.lib = ctypes.CDLL(str(self.library_path))
        self._kernels = {}

    def get_function(self, name: str) -> EmulatedKernel:
        if name not in self.signatures:
            raise ValueError(f"{self.name} has no kernel {name!r}; it has {sorted(self.signatures)}")
        if name not in self._kernels:
            self._kernels[name] = EmulatedKernel(self, name)
        return self._kernels[name]
