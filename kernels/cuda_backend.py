"""The ``cuda`` backend: the same .cu files, compiled by NVRTC through ``cupy.RawModule``.

    mod = CudaModule("kernels/conv2d_forward.cu")
    mod.get_function("conv2d_forward_kernel2")(grid, block, args, shared_mem=0)   # CuPy arrays

The arguments are checked exactly as in the emulator (kernels/_source.py) before the launch, since
a GPU kernel given the wrong dtype does not fail: it reads garbage.
"""

from __future__ import annotations

from pathlib import Path

from kernels._source import check_launch, kernel_signatures
from kernels.limits import REGISTERS, STATIC_SHARED, check_launch_limits

# The options CuPy's RawModule compiles with: ours, then what CuPy adds itself (cupy/cuda/compiler.py:
# -ftz=true, --device-as-default-execution-space, and -arch=sm_XX for the GPU it runs on).
# kernels/nvrtc_check.py compiles with exactly these, so that the binary it checks is the one that runs.
OPTIONS = ("--std=c++17",)
CUPY_ADDS = ("-ftz=true", "--device-as-default-execution-space")


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
        # The compiled function's own resources (CUDA driver attributes), else ptxas's table.
        try:
            attrs = self.raw.attributes
            self.registers, self.static_shared = int(attrs["num_regs"]), int(attrs["shared_size_bytes"])
        except Exception:     # an older CuPy, or a stand-in in the tests
            self.registers, self.static_shared = REGISTERS.get(name), STATIC_SHARED.get(name, 0)

    def __call__(self, grid, block, args, shared_mem=0, tile=None):
        cupy = import_cupy()
        grid, block = check_launch(self.name, self.params, grid, block, args, shared_mem, cupy.ndarray, "CuPy")
        check_launch_limits(self.name, tile or "x".join(map(str, block)), grid, block, int(shared_mem),
                            static_shared=self.static_shared, registers=self.registers)
        self.raw(grid, block, tuple(args), shared_mem=int(shared_mem))


class CudaModule:
    """A .cu file compiled for the current GPU (cupy.RawModule), with checked launches."""

    def __init__(self, path, *, options=OPTIONS):
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
