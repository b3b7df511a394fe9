"""Where a NumPy training step spends its time, layer by layer (``ddpm-ref bench --profile``)."""

from __future__ import annotations

import time

import ddpm_ref.nn as nn

__all__ = ["profile_step"]


def profile_step(net, data, repeats=10, warmup=3) -> dict:
    """Where a NumPy training step's time goes: seconds per step spent in each ``ddpm_ref.nn``
    forward/backward function (wrapped with timers for the run, then restored). A layer that
    calls others (upsample_conv calls conv2d) is charged for the calls it makes."""
    names = [n for n in nn.__all__ if n.endswith(("_forward", "_backward"))]
    originals = {n: getattr(nn, n) for n in names}
    spent = dict.fromkeys(names, 0.0)
    depth = [0]

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:                  # outermost layer call only: no double count
                    spent[name] += time.perf_counter() - t0
        return wrapper

    x, t, y, noise = data["x"], data["t"], data["y"], data["noise"]

    def step():
        eps = net.forward(x, t, y)
        net.backward((2.0 / eps.size) * (eps - noise))

    workers, net.workers = net.workers, 1        # the timers are not thread-safe: one shard
    for _ in range(warmup):
        step()
    try:
        for n in names:
            setattr(nn, n, timed(n, originals[n]))
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        total = (time.perf_counter() - t0) / repeats
    finally:
        net.workers = workers
        for n, fn in originals.items():
            setattr(nn, n, fn)
    per_step = {n: v / repeats for n, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}
    return {"step": total, "layers": per_step, "python_and_glue": total - sum(per_step.values())}
