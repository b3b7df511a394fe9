"""Run by test_kernels_sanitizers.py in a child process that has a sanitizer runtime preloaded.

    python sanitizer_driver.py kernels                      # every version of every kernel, validated
    python sanitizer_driver.py planted KERNEL THREADS [BLOCKS]   # one planted bug of planted.cu

The sanitizer mode comes from $DDPM_REF_EMU_SANITIZE ("address" or "thread"), the number of
blocks run at the same time from $DDPM_REF_EMU_CONCURRENT (default 1).
"""

import sys
from pathlib import Path

import numpy as np

from kernels import OPS, VERSIONS, harness, load_module
from kernels.emulator import EmulatedModule

# attention: self-attention, and cross-attention with more keys than queries in 2 sequences (a query
# row indexed with Lk instead of Lq reads past the end of q there: ASan's heap-buffer-overflow)
SHAPES = {"conv": [(1, 3, 5, 4, 17, 3, 2, 1)], "attention": [(1, 37, 5), (2, 3, 9, 5)]}


def all_kernels() -> int:
    failures = 0
    for op in OPS:
        for version in VERSIONS[op]:
            for shape in SHAPES[harness.kind(op)]:
                inp = harness.make_inputs(op, shape, np.random.default_rng(0))
                for bs in harness.block_sizes(op, version, shape):
                    problems = harness.validate(op, version, lambda name: load_module("emulate", name), inp, np, bs)
                    if problems:
                        failures += 1
                        print(f"{op} v{version} {shape} block size {bs}:", *problems[:3], sep="\n  ")
    print("ALL OK" if not failures else f"{failures} FAILED")
    return 1 if failures else 0


def planted(kernel: str, threads: int, blocks: int = 1) -> int:
    mod = EmulatedModule(Path(__file__).with_name("planted.cu"))
    x = np.arange(64, dtype=np.float32)
    mod.get_function(kernel)((blocks,), (threads,), (x, np.empty(64, np.float32), np.int32(64)))
    print("NOTHING CAUGHT")
    return 0


if __name__ == "__main__":
    sys.exit(all_kernels() if sys.argv[1] == "kernels" else planted(sys.argv[2], *map(int, sys.argv[3:])))
