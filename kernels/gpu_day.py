"""The one command for the day a GPU is lent: validate, sanitize, time, write kernels/RESULTS.md.

    pip install -e ".[gpu]"                  # CuPy + NVRTC; PyTorch with CUDA adds the cuDNN column
    python -m kernels.gpu_day                # about 10 minutes on one GPU; rewrites kernels/RESULTS.md
    python -m kernels.gpu_day --plan         # what it would do (runs anywhere, no GPU needed)

Steps, each with its own share of the time budget (``--budget``, default 600 s):
1. validate every version of every op on the GPU at the U-Net's real shapes (the demo net's
   convolutions and attention at batch 128, the wider net's attention) and at the benchmark's
   shapes (with cross-attention's: queries and keys of different lengths), at every block size
   that fits, against the float64 NumPy reference (kernels/harness.py);
2. compute-sanitizer (memcheck, racecheck, synccheck, initcheck), when it is on PATH, on a child
   process that validates every version at small shapes;
3. time every version against PyTorch/cuDNN and the U-Net's training step (kernels/bench_gpu.py);
4. write the results into kernels/RESULTS.md (--out elsewhere), between markers, leaving the rest.

A version that fails validation is not timed. Without a GPU it stops at once with one line.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernels import OPS, VERSIONS, harness, load_module
from kernels.launch import tile_fits

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- gpu_day: begin -->", "<!-- gpu_day: end -->"
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")
BUDGET_SHARE = {"validate": 0.25, "sanitize": 0.35, "time": 0.4}
NO_GPU = ("kernels.gpu_day: no GPU ({why}); nothing was run and kernels/RESULTS.md is unchanged "
          "(run it on a machine with an NVIDIA GPU: pip install -e '.[gpu]')")


def validation_shapes() -> dict:
    """{op: [shapes]}: the U-Net's recorded shapes at batch 128, the wider net's attention, the prompt
    model's cross-attention, and bench_gpu's (including its cross-attention shapes (B, Lq, Lk, D))."""
    from kernels import bench_gpu
    from kernels.unet_shapes import PROMPTS, WIDER, unet_shapes

    demo, wider = unet_shapes(batch=128), unet_shapes(batch=32, **WIDER)
    prompts = unet_shapes(batch=128, **PROMPTS)["cross_attention"]          # the prompt model's pixels → tokens
    conv = sorted(set(demo["conv"]) | set(bench_gpu.CONV_SHAPES))
    attention = sorted(set(demo["attention"]) | set(wider["attention"]) | set(prompts) | set(bench_gpu.ATTENTION_SHAPES),
                       key=lambda s: (len(s), s))
    return {op: attention if harness.kind(op) == "attention" else conv for op in OPS}


@dataclass
class Plan:
    validate: list                          # (op, version, shape, [block sizes that fit])
    sanitizer: str | None                   # the path of compute-sanitizer, or None
    sanitize: list                          # [argv] of each compute-sanitizer run
    budget_s: float
    notes: list = field(default_factory=list)


def sanitizer_argv(tool: str, sanitizer: str) -> list[str]:
    """compute-sanitizer on a child that validates every version at the small emulator shapes."""
    return [sanitizer, "--tool", tool, "--error-exitcode", "3", "--print-limit", "20",
            sys.executable, "-m", "kernels.gpu_day", "--child-validate"]


def build_plan(budget_s: float = 600.0) -> Plan:
    """Everything the command will do, from the shapes alone (no GPU needed)."""
    validate = []
    for op, shapes in validation_shapes().items():
        for shape in shapes:                 # versions innermost: run_validation computes the reference once
            for version in VERSIONS[op]:
                validate.append((op, version, shape, harness.block_sizes(op, version, shape)))
    sanitizer = shutil.which("compute-sanitizer")
    plan = Plan(validate, sanitizer, [sanitizer_argv(t, sanitizer) for t in SANITIZER_TOOLS] if sanitizer else [],
                budget_s)
    if sanitizer is None:
        plan.notes.append("compute-sanitizer is not on PATH: the sanitizer step will be skipped "
                          "(it comes with the CUDA toolkit)")
    return plan


def describe(plan: Plan) -> str:
    lines = [f"kernels.gpu_day plan (budget {plan.budget_s:.0f} s):",
             f"1. validate {len(plan.validate)} (op, version, shape) cases, "
             f"{sum(len(b) for *_, b in plan.validate)} runs in all:"]
    lines += [f"   {op} v{v} {'x'.join(map(str, s))} block sizes {', '.join(map(str, b))}"
              for op, v, s, b in plan.validate]
    lines.append("2. compute-sanitizer:" + ("".join(f"\n   {' '.join(a)}" for a in plan.sanitize)
                                         if plan.sanitize else " skipped (not on PATH)"))
    lines.append("3. time every version against PyTorch/cuDNN, and the U-Net step (kernels.bench_gpu)")
    lines.append("4. write kernels/RESULTS.md")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def run_validation(plan: Plan, deadline: float) -> list:
    """[(op, version, shape, block size, 'ok' | first mismatch | 'not run: ...')] on the GPU."""
    import cupy

    rows, expected = [], {}          # the float64 reference and tolerance, once per (op, shape)
    for op, version, shape, sizes in plan.validate:
        if (op, shape) not in expected:
            inp = harness.make_inputs(op, shape, np.random.default_rng(0))
            expected = {(op, shape): (inp, harness.reference(op, inp), harness.tolerance(op, inp))}
        inp, ref, tol = expected[(op, shape)]
        for bs in sizes:
            if time.monotonic() > deadline:
                rows.append((op, version, shape, bs, "not run: out of time"))
                continue
            try:
                out = harness.run(op, version, lambda name: load_module("cuda", name), inp, cupy, bs)
                problems = [m for n in ref for m in harness.compare(n, out[n], ref[n], tol[n])]
                result = "ok" if not problems else f"MISMATCH: {problems[0]} ({len(problems)} lines)"
            except Exception as err:        # record and go on with the rest
                result = f"error: {type(err).__name__}: {err}"
            rows.append((op, version, shape, bs, result))
            print(op, version, shape, bs, result, flush=True)
    return rows


def run_sanitizers(plan: Plan, deadline: float) -> list:
    """[(tool, 'clean' | 'ERRORS: ...' | 'not run: ...')]."""
    rows = []
    for argv in plan.sanitize:
        tool = argv[argv.index("--tool") + 1]
        left = deadline - time.monotonic()
        if left < 10:
            rows.append((tool, "not run: out of time"))
            continue
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=left)
            out = (res.stdout + res.stderr).strip().splitlines()
            summary = next((line for line in reversed(out) if "ERROR SUMMARY" in line), "")
            rows.append((tool, "clean" if res.returncode == 0 else f"ERRORS (exit {res.returncode}): {summary}"))
        except subprocess.TimeoutExpired:
            rows.append((tool, "not run to the end: out of time"))
        print(*rows[-1], flush=True)
    return rows


def render(validation: list, sanitizers: list, device: str) -> str:
    ok = sum(r[-1] == "ok" for r in validation)
    lines = [BEGIN, "", f"`python -m kernels.gpu_day` on **{device}**: {ok} of {len(validation)} validation runs "
             "passed at the U-Net's and the benchmark's shapes (tolerance: kernels/harness.py).", ""]
    bad = [r for r in validation if r[-1] != "ok"]
    if bad:
        lines += ["| op | version | shape | block size | result |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {op} | {v} | {'x'.join(map(str, s))} | {bs} | {res} |" for op, v, s, bs, res in bad]
        lines.append("")
    lines += ["| compute-sanitizer tool | result |", "| --- | --- |"]
    lines += [f"| {tool} | {res} |" for tool, res in sanitizers] or ["| — | not run: compute-sanitizer not on PATH |"]
    lines += ["", END]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace the gpu_day section of `path` (or append it)."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text + rest.split(END, 1)[1]
    else:
        new = old.rstrip() + "\n\n" + text + "\n"
    path.write_text(new)


def child_validate() -> int:
    """Run under compute-sanitizer: every version at the small shapes, at every block size that fits."""
    import cupy

    failures = 0
    for op in OPS:
        shape = harness.DEFAULT_SHAPES["emulate"][harness.kind(op)]
        inp = harness.make_inputs(op, shape, np.random.default_rng(0))
        for version in VERSIONS[op]:
            for bs in harness.block_sizes(op, version, shape):
                failures += bool(harness.validate(op, version, lambda n: load_module("cuda", n), inp, cupy, bs))
    cupy.cuda.Device().synchronize()
    return 1 if failures else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.gpu_day", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds in all (default 600)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child-validate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_validate:
        return child_validate()
    plan = build_plan(args.budget)
    if args.plan:
        print(describe(plan))
        return 0
    from kernels.cuda_backend import cuda_available

    ok, device = cuda_available()
    if not ok:
        print(NO_GPU.format(why=device.splitlines()[0] if device else "none found"), file=sys.stderr)
        return 2
    from kernels import bench_gpu

    start = time.monotonic()
    share = {k: v * args.budget for k, v in BUDGET_SHARE.items()}
    validation = run_validation(plan, start + share["validate"])
    sanitizers = run_sanitizers(plan, time.monotonic() + share["sanitize"])
    failed = {(op, v) for op, v, _, _, res in validation if res != "ok"}
    write_section(render(validation, sanitizers, device), args.out)
    rc = bench_gpu.main(["--out", str(args.out), "--repeats", "20",
                         "--skip", ",".join(f"{op}:{v}" for op, v in sorted(failed))])
    print(f"kernels.gpu_day: done in {time.monotonic() - start:.0f} s; results in {args.out}")
    return 1 if failed or rc or any(res != "clean" for _, res in sanitizers if not res.startswith("not run")) else 0


def _check_plan_fits(plan: Plan) -> list[str]:
    """Cases whose ops-chosen tile (block size None) does not fit: must be none (tested without a GPU)."""
    return [f"{op} v{v} {s}: {why}" for op, v, s, _ in plan.validate if (why := tile_fits(op, v, s, None))]


if __name__ == "__main__":
    sys.exit(main())
