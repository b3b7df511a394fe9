"""Time every kernel version on a GPU against PyTorch (cuDNN), and the U-Net's training step on
the GPU against the NumPy reference on the CPU; write the tables into kernels/RESULTS.md.

    pip install -e ".[gpu]"            # CuPy; PyTorch with CUDA is optional (the cuDNN column)
    python -m kernels.bench_gpu        # writes kernels/RESULTS.md (--out to write elsewhere)
    python -m kernels.bench_gpu --quick --out /tmp/results.md

Each kernel version is first validated against the NumPy reference (kernels/harness.py) at a
small shape; a version that fails is reported as failed, not timed. Times: CUDA events around
`--repeats` launches after a warm-up, in milliseconds per call (for a backward op, the backward
kernels only). The U-Net step is forward + backward (no optimizer) of one batch.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import numpy as np

from kernels import OPS, VERSIONS, harness, load_module

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- bench_gpu: begin -->", "<!-- bench_gpu: end -->"

# (N, C, H, W, K, R, stride, pad): the demo U-Net's convolutions (8x8 digits) and a larger one
CONV_SHAPES = [(128, 32, 8, 8, 32, 3, 1, 1), (128, 64, 4, 4, 64, 3, 1, 1), (64, 64, 32, 32, 64, 3, 1, 1)]
# (B, L, D): the demo U-Net's attention at 4x4 and a longer sequence
SELF_ATTENTION_SHAPES = [(128, 16, 64), (32, 256, 64), (8, 1024, 64)]
# (B, Lq, Lk, D): cross-attention, queries and keys of different lengths. 128 feature maps of 4x4
# (16 pixels) asking 4 context tokens with D = 32 (ddpm_ref.models.cross_attention_block, as in
# lesson 17); and Stable Diffusion's shape at a 32x32 latent: 1024 pixels asking CLIP's 77 tokens.
# Validated in the emulator only until a GPU times them.
CROSS_ATTENTION_SHAPES = [(128, 16, 4, 32), (8, 1024, 77, 64)]
ATTENTION_SHAPES = SELF_ATTENTION_SHAPES + CROSS_ATTENTION_SHAPES


# The roofline estimates of each .cu file's header: expected speed-up of version 3 over version 2 on an
# H100. ESTIMATES, printed beside the measured times until a GPU replaces them.
ESTIMATED_GAIN = {
    ("conv2d_forward", 3): "~3x v2 (estimate)",
    ("conv2d_backward_data", 3): "~3x v2 (estimate)",
    ("conv2d_backward_weight", 3): "~10-20x v2 (estimate)",
    ("attention_forward", 3): "~5-10x v2 at L >= 256 (estimate)",
    ("attention_backward", 3): "~5-10x v2 at L >= 256 (estimate)",
}


def gpu_time(fn, repeats: int) -> float:
    """Milliseconds per call of fn, by CUDA events, after one warm-up call."""
    import cupy

    fn()
    cupy.cuda.Device().synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / repeats


def cpu_time(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1000 / repeats


def _ours(op, version, shape, repeats):
    """Time one version at one shape: only the kernels of `op` (inputs, outputs and the forward pass of a
    backward op are made once, outside the timing: harness.prepare)."""
    import cupy

    inp = harness.make_inputs(op, shape, np.random.default_rng(0))
    call, _ = harness.prepare(op, version, lambda name: load_module("cuda", name), inp, cupy)
    return gpu_time(call, repeats)


def _torch(op, shape, repeats):
    """The same operation in PyTorch on the GPU (cuDNN for the convolutions), or None without torch+CUDA."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    inp = harness.make_inputs(op, shape, np.random.default_rng(0))
    d = {k: torch.from_numpy(v).cuda() if isinstance(v, np.ndarray) else v for k, v in inp.items()}
    torch.backends.cuda.matmul.allow_tf32 = False      # float32 arithmetic, as in our kernels
    torch.backends.cudnn.allow_tf32 = False

    def timed(fn):
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / repeats

    if harness.kind(op) == "conv":
        s, p = d["stride"], d["pad"]
        if op == "conv2d_forward":
            return timed(lambda: F.conv2d(d["x"], d["w"], d["b"], s, p))
        if op == "conv2d_backward_data":
            return timed(lambda: torch.nn.grad.conv2d_input(d["x"].shape, d["w"], d["dy"], s, p))
        return timed(lambda: (torch.nn.grad.conv2d_weight(d["x"], d["w"].shape, d["dy"], s, p),
                              d["dy"].sum(dim=(0, 2, 3))))
    q, k, v = (d[n].unsqueeze(1) for n in ("q", "k", "v"))      # (B, 1 head, L, D)
    if op == "attention_forward":
        with torch.no_grad():
            return timed(lambda: F.scaled_dot_product_attention(q, k, v))
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v)
    do = d["do"].unsqueeze(1)
    return timed(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))


def kernel_rows(repeats, quick, skip=frozenset()):
    """One row per (op, version, shape); (op, version) pairs in `skip` (failed validation elsewhere) are
    listed as not timed."""
    rows = []
    for op in OPS:
        shapes = ATTENTION_SHAPES if harness.kind(op) == "attention" else CONV_SHAPES
        for shape in shapes[:1] if quick else shapes:
            ref = _torch(op, shape, repeats)
            for version in VERSIONS[op]:
                if (op, version) in skip:
                    rows.append((op, version, shape, None, ref, "not timed: failed validation (see above)"))
                    continue
                small = harness.DEFAULT_SHAPES["emulate"][harness.kind(op)]
                try:
                    import cupy

                    problems = harness.validate(op, version, lambda name: load_module("cuda", name),
                                                harness.make_inputs(op, small, np.random.default_rng(1)), cupy)
                    ms = None if problems else _ours(op, version, shape, repeats)
                    note = "FAILED validation: " + problems[0] if problems else ""
                except Exception as err:       # report, keep measuring the rest
                    ms, note = None, f"error: {type(err).__name__}: {err}"
                rows.append((op, version, shape, ms, ref, note))
                print(op, version, shape, ms, ref, note, flush=True)
    return rows


def unet_rows(repeats, batch):
    """The demo-sized U-Net, forward + backward: NumPy on the CPU vs our kernels (+ CuPy) on the GPU."""
    import cupy

    import kernels
    from ddpm_ref.models.unet import UNet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
    t = rng.integers(1, 1001, size=batch)
    d_eps = rng.standard_normal(x.shape).astype(np.float32)
    cpu = UNet()
    rows = [("U-Net forward+backward, NumPy on the CPU", batch,
             cpu_time(lambda: (cpu.forward(x, t), cpu.backward(d_eps)), max(1, repeats // 10)))]
    xg, dg = cupy.asarray(x), cupy.asarray(d_eps)
    for version in (1, 2, 3):
        try:
            gpu = UNet(ops=kernels.get_ops("cuda", version=version)).convert_params(cupy.asarray)
            ms = gpu_time(lambda: (gpu.forward(xg, t), gpu.backward(dg)), repeats)
        except Exception as err:
            ms = f"error: {type(err).__name__}: {err}"
        rows.append((f"U-Net forward+backward, kernels version {version} on the GPU", batch, ms))
    return rows


def _fmt(ms):
    return f"{ms:.3f}" if isinstance(ms, float) else ("—" if ms is None else str(ms))


def render(kernel_rows_, unet_rows_, device, versions_line) -> str:
    lines = [BEGIN, "", f"Measured on **{device}**, {datetime.date.today().isoformat()} ({versions_line}), "
             "by `python -m kernels.bench_gpu`. Milliseconds per call (lower is better); float32; "
             "PyTorch with TF32 off.", "",
             "| op | version | shape | ours (ms) | PyTorch/cuDNN (ms) | ours / PyTorch | model (header) | note |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for op, version, shape, ms, ref, note in kernel_rows_:
        ratio = f"{ms / ref:.1f}x" if isinstance(ms, float) and isinstance(ref, float) and ref > 0 else "—"
        model = ESTIMATED_GAIN.get((op, version), "")
        lines.append(f"| {op} | {version} | {'x'.join(map(str, shape))} | {_fmt(ms)} | {_fmt(ref)} | {ratio} | "
                     f"{model} | {note} |")
    lines += ["", "| training step | batch | ms |", "| --- | ---: | ---: |"]
    lines += [f"| {what} | {batch} | {_fmt(ms)} |" for what, batch, ms in unet_rows_]
    lines += ["", END]
    return "\n".join(lines)


def write_results(table: str, path: Path = RESULTS) -> None:
    """Replace the part of RESULTS.md between the bench_gpu markers (or append it)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + table + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + table + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench_gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=128, help="U-Net batch size")
    parser.add_argument("--quick", action="store_true", help="one shape per op")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip", default="", help="op:version,... not to time (failed validation)")
    args = parser.parse_args(argv)
    skip = {(op, int(v)) for item in args.skip.split(",") if item for op, v in [item.split(":")]}
    from kernels.cuda_backend import cuda_available

    ok, device = cuda_available()
    if not ok:
        print(f"no GPU ({device}): nothing measured; kernels/RESULTS.md is unchanged", file=sys.stderr)
        return 2
    import cupy

    versions_line = f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}"
    try:
        import torch

        versions_line += f", PyTorch {torch.__version__}"
    except ImportError:
        versions_line += ", no PyTorch"
    table = render(kernel_rows(args.repeats, args.quick, skip), unet_rows(args.repeats, args.batch), device, versions_line)
    write_results(table, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
