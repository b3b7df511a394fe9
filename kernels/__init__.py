"""CUDA kernels for ddpm_ref's convolution and attention, runnable on a GPU (CuPy) or on a CPU (emulator).

    import kernels
    ops = kernels.get_ops("emulate")          # NumPy arrays in and out; the .cu files run on the CPU
    ops = kernels.get_ops("cuda")             # CuPy arrays in and out; the .cu files run on the GPU
    y, cache = ops.conv2d_forward(x, w, b, stride=1, padding=1)
    net = ddpm_ref.models.unet.UNet(..., ops=ops)    # the U-Net's convolutions and attention, by our kernels

One operation per file, each with its versions: kernels/conv2d_forward.cu, conv2d_backward_data.cu,
conv2d_backward_weight.cu, attention_forward.cu, attention_backward.cu. Read kernels/README.md first.
"""

from __future__ import annotations

import functools

from kernels._source import KERNEL_DIR
from kernels.cuda_backend import cuda_available
from kernels.emulator import EmulatorError
from kernels.ops import ATTENTION_SAVES, OPS, VERSIONS, KernelOps

__all__ = ["get_ops", "OPS", "VERSIONS", "KERNEL_DIR", "EmulatorError", "KernelOps", "cuda_available",
           "source_path", "load_module", "to_device", "to_host"]

BACKENDS = ("emulate", "cuda")


def source_path(op: str):
    """The .cu file of one operation, e.g. source_path("conv2d_forward")."""
    if op not in OPS:
        raise ValueError(f"op={op!r} is not known; choose one of {', '.join(OPS)}")
    return KERNEL_DIR / f"{op}.cu"


@functools.lru_cache(maxsize=None)
def load_module(backend: str, op: str, sanitize="default", reverse_blocks: bool = False,
                concurrent_blocks=None, numerics=None):
    """The compiled module of one .cu file (cached): EmulatedModule (emulate) or CudaModule (cuda)."""
    if backend == "emulate":
        from kernels.emulator import EmulatedModule

        return EmulatedModule(source_path(op), sanitize=sanitize, reverse_blocks=reverse_blocks,
                              concurrent_blocks=concurrent_blocks, numerics=numerics)
    from kernels.cuda_backend import CudaModule

    return CudaModule(source_path(op))


def _versions(version) -> dict:
    fastest = {op: VERSIONS[op][-1] for op in OPS}
    if version is None:
        return fastest
    if isinstance(version, int) and not isinstance(version, bool):
        # an int: that version of every op that has it, the fastest of the others
        version = {op: version for op in OPS if version in VERSIONS[op]} or {"conv2d_forward": version}
    if isinstance(version, dict):
        unknown = set(version) - set(OPS)
        if unknown:
            raise ValueError(f"version has unknown ops {sorted(unknown)}; the ops are {', '.join(OPS)}")
        chosen = {**fastest, **version}
    else:
        chosen = {op: version for op in OPS}
    for op, v in chosen.items():
        if isinstance(v, bool) or v not in VERSIONS[op]:
            raise ValueError(f"{op} has versions {VERSIONS[op]}, got version={v!r}")
    saves = ATTENTION_SAVES[chosen["attention_forward"]], ATTENTION_SAVES[chosen["attention_backward"]]
    if saves[0] != saves[1]:
        raise ValueError(f"attention_forward version {chosen['attention_forward']} saves {saves[0]} and "
                         f"attention_backward version {chosen['attention_backward']} reads {saves[1]}: "
                         "choose versions that agree (1 with 1; 2 or 3 with 2)")
    return chosen


def get_ops(backend: str = "emulate", version=None, *, reverse_blocks: bool = False, sanitize="default",
            concurrent_blocks=None, numerics=None):
    """An ops object (conv2d_forward/backward, attention_forward/backward with ddpm_ref.nn's signatures).

    Args:
        backend: "emulate" (NumPy arrays; the .cu files compiled with g++ and run on the CPU, one OS
            thread per CUDA thread) or "cuda" (CuPy arrays; the .cu files on an NVIDIA GPU).
        version: None (the fastest version of every kernel), an int (that version of every kernel
            that has it, e.g. 1 for the direct ports), or a dict {op: version} for some of
            kernels.OPS (attention_forward 2 or 3 goes with attention_backward 2 or 3).
        reverse_blocks: emulate only; run each grid's blocks last to first.
        concurrent_blocks: emulate only; run this many blocks at the same time (default 1, or
            $DDPM_REF_EMU_CONCURRENT), so that races between blocks can happen (and TSan see them).
        numerics: emulate only; "exact" (IEEE, default, or $DDPM_REF_EMU_NUMERICS) or "gpu" (FMA
            contraction and flush-to-zero, as CuPy's NVRTC build).
        sanitize: emulate only; None, "address" (ASan + UBSan) or "thread" (TSan); the default
            reads $DDPM_REF_EMU_SANITIZE (see kernels/emulator.py for how to run a sanitizer build).

    The kernels are float32 only: other dtypes raise ValueError. See kernels/ops.py for the rules.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not known; choose one of {', '.join(map(repr, BACKENDS))}")
    versions = _versions(version)
    if backend == "emulate":
        import numpy as np

        from kernels.emulator import find_compiler

        find_compiler()              # fail now, with how to install one, rather than at the first layer
        return KernelOps("emulate", versions, lambda op: load_module("emulate", op, sanitize, bool(reverse_blocks),
                                                                    concurrent_blocks, numerics),
                         np, np.ndarray, "NumPy")
    if reverse_blocks or sanitize != "default" or concurrent_blocks is not None or numerics is not None:
        raise ValueError("reverse_blocks, sanitize, concurrent_blocks and numerics are options of the "
                         "'emulate' backend only")
    from kernels.cuda_backend import import_cupy

    cupy = import_cupy()
    ok, why = cuda_available()
    if not ok:
        raise RuntimeError(f"the 'cuda' backend needs an NVIDIA GPU, and CuPy finds none ({why}); "
                           "get_ops('emulate') runs the same kernels on the CPU")
    return KernelOps("cuda", versions, lambda op: load_module("cuda", op), cupy, cupy.ndarray, "CuPy")


def to_device(arrays):
    """A dict (or list) of NumPy arrays as CuPy arrays on the current GPU."""
    from kernels.cuda_backend import import_cupy

    cupy = import_cupy()
    if isinstance(arrays, dict):
        return {k: cupy.asarray(v) for k, v in arrays.items()}
    return [cupy.asarray(v) for v in arrays]


def to_host(arrays):
    """A dict (or list) of CuPy (or NumPy) arrays as NumPy arrays."""
    def get(v):
        return v.get() if hasattr(v, "get") else v
    if isinstance(arrays, dict):
        return {k: get(v) for k, v in arrays.items()}
    return [get(v) for v in arrays]
