"""``ddpm-ref bench``: time the NumPy U-Net (training step, sampling forward, heaviest layers),
side by side with the identical architecture in PyTorch when it is installed.

    ddpm-ref bench                      # 2 threads, batch 64, the demo's model
    ddpm-ref bench --threads 1 --repeats 50 --json bench.json
    ddpm-ref bench --no-torch --no-layers --profile

See ``ddpm_ref.bench`` for what is measured and how threads are fixed.
"""

from __future__ import annotations

import argparse
import json

from ddpm_ref._checks import check_positive_int

HELP = "time a training step and a sampling forward of the demo U-Net (vs PyTorch if installed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=2, help="BLAS / PyTorch threads (default: 2)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per line (default: 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--no-layers", action="store_true", help="skip the single-layer timings")
    parser.add_argument("--profile", action="store_true",
                        help="also show where a NumPy training step spends its time, layer by layer")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run(args) -> int:
    threads = check_positive_int("--threads", args.threads)
    batch = check_positive_int("--batch", args.batch)
    repeats = check_positive_int("--repeats", args.repeats)
    if isinstance(args.warmup, bool) or args.warmup < 0:
        raise ValueError(f"--warmup must be an integer >= 0, got {args.warmup}")
    from ddpm_ref.bench import format_report, run_bench

    res = run_bench(threads=threads, batch=batch, repeats=repeats, warmup=args.warmup,
                    use_torch=not args.no_torch, layers=not args.no_layers, profile=args.profile,
                    progress=lambda msg: print(f"  {msg} ...", flush=True))
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0
