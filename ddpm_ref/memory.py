"""Sizes that cannot fit are refused before any work, with the estimate.

Layer: loop (used by training and the commands; imports nothing of ddpm_ref above NumPy).

The estimates are simple: what matters is that ``--batch-size 100000000`` or ``sample -n 1e12``
says at once "needs about 3.1 TB of memory; about 9.4 GB are available" instead of a
``MemoryError`` traceback minutes later. A network's memory per example is *measured*
(``measure_step_bytes``: one training step's peak allocation at two batch sizes, by
``tracemalloc``, which sees NumPy's buffers) rather than derived from a formula that would go
stale when the architecture changes; for the demo U-Net at batch 64 it estimated 67 MB of a
measured 74 MB.

Available memory: ``MemAvailable`` of ``/proc/meminfo`` (Linux), capped by ``ulimit -v``; where
neither can be read nothing is refused (the command line still turns a ``MemoryError`` into one
line).
"""

from __future__ import annotations

import resource
import tracemalloc

import numpy as np

__all__ = ["available_bytes", "format_bytes", "check_fits", "measure_step_bytes", "sampling_bytes"]


def available_bytes() -> int | None:
    """Bytes of memory this process can still allocate (best estimate), or None if unknown."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            found = soft if found is None else min(found, soft)
    except (OSError, ValueError, AttributeError):
        pass
    return found


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_fits(what: str, nbytes: float, available: int | None = None) -> None:
    """Raise ValueError if ``nbytes`` exceed the available memory: "<what> needs about X; Y are available"."""
    available = available_bytes() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(f"{what} needs about {format_bytes(nbytes)} of memory; about "
                         f"{format_bytes(available)} are available")


def _peak_of_one_step(model, batch: int, x_shape: tuple, dtype) -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *x_shape)).astype(dtype)
    t = np.ones(batch, dtype=np.int64)
    y = None if model.config.get("num_classes") is None else np.zeros(batch, dtype=np.int64)
    already = tracemalloc.is_tracing()          # someone is profiling: measure without stopping them
    if not already:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = model.forward(x, t, y, keep_cache=True, rng=rng)
        model.backward(np.ones_like(out))
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not already:
            tracemalloc.stop()


def measure_step_bytes(model, x_shape: tuple) -> tuple[float, float]:
    """``(fixed, per_example)``: one training step's peak memory is about fixed + batch · per_example.

    Measured on ``model`` (a ``UNet``/``MLP``; its caches are overwritten, its weights untouched)
    with inputs of shape (batch, *x_shape) at batch 4 and 12 (at 1 and 2, NumPy's small-array
    overheads made the slope ~30% low).
    """
    dtype = np.dtype(model.config.get("dtype", "float32"))
    workers = getattr(model, "workers", None)
    if workers is not None:
        model.workers = 1                # one shard: the threads would split the same total
    try:
        small, large = (_peak_of_one_step(model, b, tuple(x_shape), dtype) for b in (4, 12))
    finally:
        if workers is not None:
            model.workers = workers
    per_example = max((large - small) / 8, 1.0)
    return max(small - 4 * per_example, 0.0), per_example


def sampling_bytes(n: int, example_shape: tuple, itemsize: int = 4, trajectory_frames: int = 0) -> int:
    """Memory of drawing ``n`` samples: about eight arrays of the samples' size (x_t, ε, z, x_{t−1},
    the guided ε and their temporaries), plus x_t and x̂_0 at every kept frame of a trajectory,
    plus the uint8 PNG grid (4× enlarged, so 16 bytes a pixel)."""
    per = int(np.prod(example_shape)) * itemsize
    return n * per * (8 + 2 * trajectory_frames) + n * int(np.prod(example_shape[-2:])) * 16
