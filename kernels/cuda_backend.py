"""The ``cuda`` backend: the same .cu files, compiled by NVRTC through ``cupy.RawModule``.

    mod = CudaModule("kernels/conv2d_forward.cu")
    mod.get_function("conv2d_forward_kernel2")(grid, block, args, shared_mem=0)   # CuPy arrays

The arguments are checked exactly as in the emulator (kernels/_source.py) before the launch, since
a GPU kernel given the wrong dtype does not fail: it reads garbage.
"""

from __future__ import annotations

from pathlib import Path

from kernels._source import check_launch, kernel_signatures


def import_cupy():
    """cupy, or a RuntimeError that says how to get it and a GPU."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            "the 'cuda' backend needs CuPy and an NVIDIA GPU: pip install -e \".[gpu]\" "
            "(without a GPU, use get_ops('emulate'), which runs the same kernels on the CPU)") from err
    return cupy


def cuda_available() -> tuple[bool, str]:
    """(True, device name) if CuPy sees a GPU, else (False, why not)."""
    try:
        cupy = import_cupy()
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:    # no CuPy, no driver, no device: all mean "no GPU here"
        return False, f"{type(err).__name__}: {err}"
    if n < 1:
        return False, "no CUDA device"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return True, name


class CudaKernel:
    def __init__(self, module: "CudaModule", name: str):
        self.module, self.name = module, name
        self.params = module.signatures[name]
        self.raw = module.raw.get_function(name)

    def __call__(self, grid, block, args, shared_mem=0):
        cupy = import_cupy()
        grid, block = check_launch(self.name, self.params, grid, block, args, shared_mem, cupy.ndarray, "CuPy")
        self.raw(grid, block, tuple(args), shared_mem=int(shared_mem))


class CudaModule:
    """A .cu file compiled for the current GPU (cupy.RawModule), with checked launches."""

    def __init__(self, path, *, options=("--std=c++17",)):
        cupy = import_cupy()
        path = Path(path)
        code = path.read_text()
        self.name = path.name
        self.signatures = kernel_signatures(code)
        self.raw = cupy.RawModule(code=code, options=tuple(options))
        self._kernels = {}

    def get_function(self, name: str) -> CudaKernel:
        if name not in self.signatures:
            raise ValueError(f"{self.name} has no kernel {name!r}; it has {sorted(self.signatures)}")
        if name not in self._kernels:
            self._kernels[name] = CudaKernel(self, name)
        return self._kernels[name]
