"""CUDA's launch limits, checked before every launch on both backends (ValueError, not a crash).

A launch that breaks one of these fails on a GPU with "invalid argument" or "too many resources
requested for launch", far from the Python line that chose the block. Here it raises a
ValueError that names the kernel, its tile (the block shape the launcher chose) and the limit:

* threads per block <= 1024 (block.x, block.y <= 1024, block.z <= 64);
* grid.x <= 2**31 - 1, grid.y and grid.z <= 65535;
* static + dynamic shared memory <= 48 KiB (a kernel may ask for more only by opting in with
  cudaFuncAttributeMaxDynamicSharedMemorySize; none of ours does);
* registers: ptxas gives each warp ceil(32 * registers / 256) * 256 registers, and a block's
  warps together get at most 65536 (the register file of one SM on sm_80 and sm_90).

Where the numbers come from: on a GPU, the compiled function's own attributes (CUDA driver:
static shared memory, registers); in the emulator, the static shared memory is measured while the
kernel runs (cuda_emulation.h) and the registers come from ``REGISTERS`` below, the ptxas
report of ``python -m kernels.nvrtc_check`` (the larger of sm_80 and sm_90). A test compiles
every kernel with NVRTC and fails when this table is out of date.
"""

from __future__ import annotations

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
SHARED_DEFAULT = 48 * 1024            # bytes a block gets without opting in
REGISTERS_PER_BLOCK = 65536           # the register file of one SM (sm_80, sm_90)
REGISTER_GRANULE = 256                # registers are given to a warp in units of 256

# ptxas -v, NVRTC 13, max(sm_80, sm_90): registers per thread. `python -m kernels.nvrtc_check --table`
# prints this table; tests/cuda_kernels/test_kernels_nvrtc.py checks it.
REGISTERS = {
    "conv2d_forward_kernel1": 32, "conv2d_forward_kernel2": 32, "conv2d_forward_kernel3": 63,
    "conv2d_backward_data_kernel1": 30, "conv2d_backward_data_kernel2": 32, "conv2d_backward_data_kernel3": 62,
    "conv2d_backward_weight_kernel1": 32, "conv2d_backward_weight_kernel2": 32, "conv2d_backward_weight_kernel3": 62,
    "conv2d_backward_bias_kernel1": 31, "conv2d_backward_bias_kernel2": 18, "conv2d_backward_bias_kernel3": 19,
    "conv2d_backward_reduce_kernel3": 32,
    "attention_scores_kernel1": 31, "attention_softmax_kernel1": 31, "attention_value_kernel1": 32,
    "attention_forward_kernel2": 40, "attention_forward_kernel3": 71,
    "attention_dv_kernel1": 32, "attention_dp_kernel1": 31, "attention_softmax_backward_kernel1": 32,
    "attention_dq_kernel1": 32, "attention_dk_kernel1": 32,
    "attention_backward_preprocess_kernel2": 32, "attention_backward_dkdv_kernel2": 32,
    "attention_backward_dq_kernel2": 32, "attention_backward_dkdv_kernel3": 96, "attention_backward_dq_kernel3": 72,
}
# ... and static shared memory in bytes (kernels not listed have none).
STATIC_SHARED = {
    "conv2d_forward_kernel2": 2048, "conv2d_forward_kernel3": 8192, "conv2d_backward_data_kernel2": 2048, "conv2d_backward_data_kernel3": 8192,
    "conv2d_backward_weight_kernel2": 2048, "conv2d_backward_weight_kernel3": 8192,
    "conv2d_backward_bias_kernel2": 1024, "conv2d_backward_bias_kernel3": 1024,
}


def registers_per_block(registers: int, threads: int) -> int:
    """Registers a block of `threads` threads takes: whole warps, each rounded up to 256 registers."""
    warps = -(-threads // 32)
    per_warp = -(-(32 * registers) // REGISTER_GRANULE) * REGISTER_GRANULE
    return warps * per_warp


def check_launch_limits(kernel: str, tile: str, grid, block, shared_mem: int, *, static_shared: int = 0,
                        registers: int | None = None, max_dynamic_shared: int = SHARED_DEFAULT) -> None:
    """Raise ValueError naming `kernel`, its `tile` and the limit if the launch would be rejected.

    grid and block are (x, y, z) tuples; shared_mem is the dynamic shared memory in bytes;
    static_shared the kernel's own __shared__ arrays; registers per thread (None: not known).
    """
    where = f"{kernel} with tile {tile} (grid {tuple(grid)}, block {tuple(block)})"
    threads = block[0] * block[1] * block[2]
    if threads > MAX_THREADS_PER_BLOCK or any(b > m for b, m in zip(block, MAX_BLOCK)):
        raise ValueError(f"{where}: {threads} threads per block; CUDA allows at most "
                         f"{MAX_THREADS_PER_BLOCK} (block.x, block.y <= 1024, block.z <= 64)")
    for axis, g, m in zip("xyz", grid, MAX_GRID):
        if g > m:
            raise ValueError(f"{where}: grid.{axis} = {g} is over CUDA's limit of {m}"
                             + (" (grid.y holds the batch here: split the batch)" if axis == "y" else ""))
    total = int(shared_mem) + int(static_shared)
    if shared_mem > max_dynamic_shared or total > max(SHARED_DEFAULT, max_dynamic_shared):
        raise ValueError(f"{where}: needs {total} bytes of shared memory ({static_shared} static + "
                         f"{shared_mem} dynamic), over the {max(SHARED_DEFAULT, max_dynamic_shared)} "
                         "bytes (48 KiB) a block gets without opting in; choose a smaller tile")
    if registers is not None and registers_per_block(registers, threads) > REGISTERS_PER_BLOCK:
        raise ValueError(f"{where}: {registers} registers x {threads} threads need "
                         f"{registers_per_block(registers, threads)} registers, over the "
                         f"{REGISTERS_PER_BLOCK} of one SM; use fewer threads per block")


def fits(kernel: str, grid, block, shared_mem: int, *, static_shared: int = 0, registers=None) -> str:
    """'' if the launch fits, else the reason (check_launch_limits' message)."""
    try:
        check_launch_limits(kernel, "?", grid, block, shared_mem,
                            static_shared=static_shared or STATIC_SHARED.get(kernel, 0),
                            registers=registers if registers is not None else REGISTERS.get(kernel))
    except ValueError as err:
        return str(err)
    return ""
