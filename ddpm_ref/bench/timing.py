"""Threads and the timer of ``ddpm-ref bench``.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import statistics
import time

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["limit_threads", "time_call", "blas_description"]

_LIMITER = None          # keeps threadpoolctl's limit alive for the whole process


def limit_threads(n: int) -> str:
    """Limit BLAS/OpenMP threads to n (threadpoolctl); returns how it was done, for the report."""
    global _LIMITER
    import numpy  # noqa: F401  threadpoolctl limits only libraries already loaded: load NumPy's BLAS

    _LIMITER = threadpool_limits(limits=n)
    return f"threadpoolctl.threadpool_limits({n})"


def blas_description() -> str:
    """The BLAS libraries NumPy loaded, with their thread counts."""
    return ", ".join(f"{i['internal_api']} {i.get('version') or ''} "
                     f"({i.get('architecture') or i.get('prefix')}, {i['num_threads']} threads)"
                     for i in threadpool_info())


def time_call(fn, warmup: int, repeats: int) -> dict:
    """Seconds per call of ``fn()``: {"median", "min", "repeats"} after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "repeats": repeats}
