"""``ddpm-ref bench``: time the NumPy U-Net (training step, sampling forward, heaviest layers),
side by side with the identical architecture in PyTorch when it is installed.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref bench                      # 2 threads, batch 64, the demo's model
    ddpm-ref bench --threads 1 --repeats 50 --json bench.json
    ddpm-ref bench --no-torch --no-layers --profile

See ``ddpm_ref.bench`` for what is measured and how threads are fixed.
"""

from __future__ import annotations

import argparse

HELP = "time a training step and a sampling forward of the demo U-Net (vs PyTorch if installed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count

    parser.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads (default: 2)")
    parser.add_argument("--batch", type=count, default=64, help="batch size (default: 64)")
    parser.add_argument("--repeats", type=count, default=20, help="timed runs per line (default: 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--no-layers", action="store_true", help="skip the single-layer timings")
    parser.add_argument("--profile", action="store_true",
                        help="also show where a NumPy training step spends its time, layer by layer")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def _check(args) -> None:
    """Every option in range, --json writable and a batch that fits in memory, before any timing."""
    from ddpm_ref._checks import check_positive_int
    from ddpm_ref.bench.steps import demo_model_config
    from ddpm_ref.memory import check_fits, measure_step_bytes
    from ddpm_ref.preflight import check_output_file
    from ddpm_ref.runs import build_model

    check_positive_int("--threads", args.threads)
    check_positive_int("--batch", args.batch)
    check_positive_int("--repeats", args.repeats)
    if isinstance(args.warmup, bool) or args.warmup < 0:
        raise ValueError(f"--warmup must be an integer >= 0, got {args.warmup}")
    if args.json:
        check_output_file(args.json, "--json")
    fixed, per_example = measure_step_bytes(build_model("unet", demo_model_config()), (1, 8, 8))
    copies = 1 if args.no_torch else 2            # the PyTorch twin holds its own activations
    check_fits(f"--batch {args.batch}", copies * (fixed + args.batch * per_example))


def run(args) -> int:
    from ddpm_ref.bench import format_report, run_bench
    from ddpm_ref.checkpoint import write_json_atomic

    _check(args)
    res = run_bench(threads=args.threads, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                    use_torch=not args.no_torch, layers=not args.no_layers, profile=args.profile,
                    progress=lambda msg: print(f"  {msg} ...", flush=True))
    print(format_report(res))
    if args.json:
        write_json_atomic(args.json, res)
    return 0
