"""Reading a .cu file: its kernels and their parameters, and the emulator's small source rewrite.

Both backends use :func:`kernel_signatures` to check a launch's arguments before it happens
(a CUDA kernel given an int64 where it expects ``int`` reads garbage; here it raises instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERNEL_DIR = Path(__file__).resolve().parent

# The parameter types a kernel may take, and what the caller must pass for each.
POINTER_DTYPES = {"float": np.float32, "double": np.float64, "int": np.int32,
                  "unsigned int": np.uint32, "long long": np.int64}
SCALAR_DTYPES = {"int": np.int32, "unsigned int": np.uint32, "float": np.float32,
                 "double": np.float64, "long long": np.int64}


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``const float* __restrict__ x`` is Param("x", "float", True, True)."""
    name: str
    base: str          # "float", "int", ...
    pointer: bool
    const: bool

    @property
    def dtype(self):
        return np.dtype((POINTER_DTYPES if self.pointer else SCALAR_DTYPES)[self.base])

    def __str__(self):
        return f"{'const ' if self.const else ''}{self.base}{'*' if self.pointer else ''} {self.name}"


def strip_comments(src: str) -> str:
    """Blank out // and /* */ comments, keeping every newline (so line numbers stay the same)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r"//[^\n]*|/\*.*?\*/", blank, src, flags=re.S)


_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+(\w+)\s*\(([^)]*)\)')


def _parse_param(text: str, kernel: str) -> Param:
    words = text.replace("*", " * ").replace("__restrict__", " ").split()
    if len(words) < 2:
        raise ValueError(f"{kernel}: cannot read the parameter {text.strip()!r}")
    name, words = words[-1], words[:-1]
    pointer = words.count("*")
    const = "const" in words
    base = " ".join(w for w in words if w not in ("*", "const"))
    base = {"unsigned": "unsigned int"}.get(base, base)
    if pointer > 1 or (pointer and base not in POINTER_DTYPES) or (not pointer and base not in SCALAR_DTYPES):
        raise ValueError(f"{kernel}: parameter {text.strip()!r} has a type the kernels package does not "
                         f"pass (pointers to {sorted(POINTER_DTYPES)}, or scalars {sorted(SCALAR_DTYPES)})")
    return Param(name, base, bool(pointer), const)


def kernel_signatures(src: str) -> dict[str, tuple[Param, ...]]:
    """Every ``extern "C" __global__`` function of a source: name -> its parameters, in order."""
    found = {}
    for m in _KERNEL.finditer(strip_comments(src)):
        params = [p for p in m.group(2).split(",") if p.strip()]
        found[m.group(1)] = tuple(_parse_param(p, m.group(1)) for p in params)
    return found


_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w ]*?)\s+(\w+)\s*\[\s*\]\s*;")
_SHARED = re.compile(r"__shared__\s+(?:__align__\((\d+)\)\s+)?([A-Za-z_][\w ]*?)\s+(\w+)\s*((?:\[[^\]\n]*\]\s*)*);")


def rewrite_shared(src: str) -> str:
    """The emulator's rewrite of shared-memory declarations, each on its own line (see cuda_emulation.h).

    ``extern __shared__ T name[];``  ->  ``T* name = reinterpret_cast<T*>(::emu::dynamic_shared());``
    ``__shared__ T name[A][B];``     ->  ``using name__t = T[A][B]; static ::emu::SharedDecl name__emu(...);
                                         name__t& name = *reinterpret_cast<name__t*>(name__emu.get("name"));``
    (a reference into the running block's own shared-memory buffer: blocks may run concurrently)
    """
    src = _EXTERN_SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = "
                             f"reinterpret_cast<{m.group(1)}*>(::emu::dynamic_shared());", src)

    def static(m):
        t, name, dims = m.group(2), m.group(3), m.group(4).strip()
        align = m.group(1) or f"alignof({name}__t)"
        return (f"using {name}__t = {t}{dims}; static ::emu::SharedDecl {name}__emu(sizeof({name}__t), {align}); "
                f"{name}__t& {name} = *reinterpret_cast<{name}__t*>({name}__emu.get(\"{name}\"));")
    src = _SHARED.sub(static, src)
    leftover = [i + 1 for i, line in enumerate(src.splitlines()) if "__shared__" in line]
    if leftover:
        raise ValueError(f"the emulator cannot read the __shared__ declaration on line(s) {leftover}: "
                         "declare one array per statement, `__shared__ float name[N][M];`")
    return src


def _dims(name: str, value) -> tuple[int, int, int]:
    """A grid or block: an int or a tuple of 1 to 3 ints -> (x, y, z)."""
    t = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(t) <= 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in t):
        raise ValueError(f"{name} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    return tuple(int(v) for v in t) + (1,) * (3 - len(t))


def check_launch(kernel: str, params, grid, block, args, shared_mem, array_type, array_kind: str):
    """Check a launch like CUDA never does: exact dtypes, C-contiguous arrays, the argument count.

    ``array_type`` is numpy.ndarray (emulate) or cupy.ndarray (cuda). Returns (grid, block).
    Raises ValueError naming the parameter.
    """
    grid, block = _dims("grid", grid), _dims("block", block)
    if isinstance(shared_mem, bool) or not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
        raise ValueError(f"{kernel}: shared_mem must be an int >= 0 (bytes), got {shared_mem!r}")
    args = tuple(args)
    if len(args) != len(params):
        raise ValueError(f"{kernel} takes {len(params)} arguments ({', '.join(map(str, params))}), "
                         f"got {len(args)}")
    for i, (p, a) in enumerate(zip(params, args)):
        where = f"{kernel}: argument {i} `{p}`"
        if p.pointer:
            if not isinstance(a, array_type):
                raise ValueError(f"{where} must be a {array_kind} array of {p.dtype}, got {type(a).__name__}")
            if a.dtype != p.dtype:
                raise ValueError(f"{where} must have dtype {p.dtype}, got {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{where} must be C-contiguous (use ascontiguousarray); got strides {a.strides}")
            if not p.const and not getattr(a.flags, "writeable", True):   # CuPy arrays have no such flag
                raise ValueError(f"{where} is an output but the array is read-only")
        else:
            # CuPy would pass a Python int as a 64-bit integer: the kernel would read garbage.
            if not isinstance(a, np.generic) or a.dtype != p.dtype:
                got = f"{type(a).__name__} {a!r}" if not isinstance(a, np.generic) else f"{a.dtype} {a!r}"
                raise ValueError(f"{where} must be declared numpy.{p.dtype}(...), got {got}")
    return grid, block
