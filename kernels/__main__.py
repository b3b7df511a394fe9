"""Validate, then time, one kernel version: ``python -m kernels OP [VERSION] [--backend cuda]``.

    python -m kernels conv2d_forward 1                    # on the CPU, in the emulator
    python -m kernels attention_forward 2 --backend cuda  # on a GPU
    python -m kernels attention_backward 3 --shape 2 16 4 32   # B Lq Lk D: 16 queries, 4 keys (cross-attention)
    python -m kernels list                                # the ops and their versions

As in llm.c's dev/cuda files: the version is first checked against the NumPy reference at each
block size it supports that fits CUDA's limits at the shape (the others are listed as skipped),
stopping at the first few mismatches with the index, both values and the tolerance; only then is
it timed (warm-up, then the mean of --repeats runs of the op's kernels alone: inputs, outputs and
the forward pass of a backward op are made once, outside the timing). Emulator times are CPU times of
the emulation and say nothing about GPU speed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from kernels import OPS, VERSIONS, harness, load_module


def _time(fn, repeats, backend):
    """Milliseconds per call after one warm-up call: CUDA events on a GPU, the wall clock on the emulator."""
    from kernels.bench_gpu import cpu_time, gpu_time

    return gpu_time(fn, repeats) if backend == "cuda" else cpu_time(fn, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels", description=__doc__.splitlines()[0])
    parser.add_argument("op", choices=(*OPS, "list"))
    parser.add_argument("version", nargs="?", type=int, default=1)
    parser.add_argument("--backend", choices=("emulate", "cuda"), default="emulate")
    parser.add_argument("--shape", type=int, nargs="+",
                        help="N C H W K R stride pad for the convolutions; B L D (self-attention) or "
                             "B Lq Lk D (Lq queries, Lk keys, as in cross-attention) for attention")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--reverse-blocks", action="store_true", help="emulate: run blocks last to first")
    parser.add_argument("--concurrent", type=int, default=None, metavar="N",
                        help="emulate: run N blocks at the same time (races between blocks become real)")
    parser.add_argument("--numerics", choices=("exact", "gpu"), default=None,
                        help="emulate: 'gpu' = FMA contraction and flush-to-zero, as CuPy's NVRTC build")
    args = parser.parse_args(argv)
    if args.op == "list":
        for op in OPS:
            print(f"{op:24} versions {', '.join(map(str, VERSIONS[op]))}  (kernels/{op}.cu)")
        return 0
    if args.version not in VERSIONS[args.op]:
        parser.error(f"{args.op} has versions {VERSIONS[args.op]}")
    kind = harness.kind(args.op)
    shape = tuple(args.shape) if args.shape else harness.DEFAULT_SHAPES[args.backend][kind]
    if len(shape) not in ((3, 4) if kind == "attention" else (8,)):
        parser.error("--shape takes B L D or B Lq Lk D (attention) or N C H W K R stride pad (convolution)")
    if args.backend == "cuda":
        import cupy as xp
    else:
        xp = np

    def modules(op):
        if args.backend == "emulate":
            return load_module("emulate", op, "default", args.reverse_blocks, args.concurrent, args.numerics)
        return load_module("cuda", op)

    inp = harness.make_inputs(args.op, shape, np.random.default_rng(0))
    print(f"{args.op} version {args.version}, backend {args.backend}, shape {shape}")
    for bs, why in harness.skipped_block_sizes(args.op, args.version, shape):
        print(f"block size {bs}: skipped, it does not fit at this shape: {why}")
    sizes = harness.block_sizes(args.op, args.version, shape)
    if not sizes:
        print("no block size of this version fits at this shape")
        return 1
    for bs in sizes:
        problems = harness.validate(args.op, args.version, modules, inp, xp, bs)
        label = "default" if bs is None else bs
        if problems:
            print(f"block size {label}: MISMATCH\n  " + "\n  ".join(problems))
            return 1
        print(f"block size {label}: ok")
    print("All results match. Timing (the kernels of this op only: inputs, outputs and, for a backward "
          "pass, the forward pass are made once, outside the timed calls).")
    repeats = args.repeats or (20 if args.backend == "cuda" else 2)
    for bs in sizes:
        call, _ = harness.prepare(args.op, args.version, modules, inp, xp, bs)
        ms = _time(call, repeats, args.backend)
        print(f"block size {'default' if bs is None else bs:>7}: {ms:10.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
