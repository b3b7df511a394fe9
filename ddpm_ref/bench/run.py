"""The driver of ``ddpm-ref bench``: every timing side by side in one run, and the printed table.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import os
import platform

import numpy as np

from ddpm_ref.bench.layers import LAYERS, layer_calls
from ddpm_ref.bench.profile import profile_step
from ddpm_ref.bench.steps import (check_identical, demo_model_config, numpy_model, numpy_step,
                                  torch_setup, torch_step)
from ddpm_ref.bench.timing import blas_description, limit_threads, time_call

__all__ = ["run_bench", "format_report"]


def _import_torch(use_torch: bool):
    """PyTorch if wanted and installed, else None (the NumPy columns are timed either way)."""
    if not use_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def run_bench(threads=2, batch=64, repeats=20, warmup=5, use_torch=True, layers=True, seed=0,
              progress=None, profile=False) -> dict:
    """Run every timing; returns a JSON-serialisable dict (see ``format_report``)."""
    say = progress or (lambda msg: None)
    thread_method = limit_threads(threads)
    torch = _import_torch(use_torch)
    res = {"threads": threads, "thread_method": thread_method, "batch": batch, "repeats": repeats,
           "warmup": warmup, "model": demo_model_config(), "numpy": np.__version__,
           "torch": getattr(torch, "__version__", None), "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "blas": blas_description(), "rows": [],
           "optimizer": "ddpm_ref.optim.Adam"}
    net, data = numpy_model(batch, seed)
    res["num_params"] = net.num_params
    twin = None
    if torch is not None:
        twin = torch_setup(net, data, threads)
        say("checking that the PyTorch twin computes the same function")
        res["identical"] = check_identical(net, data, *twin)
    if profile:
        say("profiling a training step (forward + backward, no optimizer) by layer")
        res["profile"] = profile_step(net, data)

    def row(name, np_fn, t_fn, reps, torch_timing=None):
        """Time one line; the PyTorch column is timed once and shared by the NumPy variants."""
        say(f"timing {name}")
        r = {"name": name, "numpy": time_call(np_fn, warmup, reps)}
        if t_fn is not None:
            torch_timing = time_call(t_fn, warmup, reps)
        if torch_timing is not None:
            r["torch"] = torch_timing
            r["ratio"] = r["numpy"]["median"] / torch_timing["median"]
        res["rows"].append(r)
        return torch_timing

    _model_rows(row, net, data, twin, threads, repeats)
    if layers:
        rng = np.random.default_rng(seed + 1)
        for name, kind, args in LAYERS:
            f, fb, tf, tfb = layer_calls(kind, args, batch, rng, torch)
            row(f"{name} fwd", f, tf, 3 * repeats)
            row(f"{name} fwd+bwd", fb, tfb, 3 * repeats)
    return res


def _model_rows(row, net, data, twin, threads, repeats) -> None:
    """The training step and the sampling forward, NumPy two ways on the same thread count: one
    pass with BLAS on ``threads`` threads, and the batch split over ``threads`` shards with one
    BLAS thread each (``ddpm_ref.models.parallel``)."""
    x, t, y = data["x"], data["t"], data["y"]
    t_step = t_sample = None
    if twin is not None:
        torch, module, tdata = twin
        t_step = torch_step(torch, module, tdata)

        def t_sample():
            with torch.inference_mode():
                module(tdata["x"], tdata["t"], tdata["y"])

    configs = [(1, f"1 shard, BLAS {threads} thr")]
    if threads > 1:
        configs.append((threads, f"{threads} shards x 1 thr"))
    np_step = numpy_step(net, data)
    for label, np_fn, t_fn in (("training step", np_step, t_step),
                               ("sampling forward", lambda: net.forward(x, t, y, keep_cache=False), t_sample)):
        timing = None
        for workers, how in configs:
            net.workers = workers
            timing = row(f"{label} [{how}]", np_fn, t_fn if timing is None else None, repeats, timing)
    net.workers = 1


def format_report(res: dict) -> str:
    """The table ``ddpm-ref bench`` prints."""
    m = res["model"]
    lines = [
        f"ddpm-ref bench: U-Net base {m['base_channels']}, mults {tuple(m['channel_mults'])}, "
        f"attention at {tuple(m['attention_resolutions'])}, {m['num_res_blocks']} res block(s), "
        f"classes {m['num_classes']}, {res['num_params']:,} parameters; "
        f"batch {res['batch']} x 1 x {m['image_size']} x {m['image_size']}, float32",
        f"threads: {res['threads']} via {res['thread_method']}; BLAS: {res['blas']}",
        f"numpy {res['numpy']}, torch {res['torch'] or 'not installed'}, {res['cpu_count']} CPUs; "
        f"median of {res['repeats']} runs (layers: {3 * res['repeats']}) after {res['warmup']} warm-up; "
        f"optimizer {res['optimizer']}",
    ]
    if "identical" in res:
        ident = res["identical"]
        lines.append(f"same architecture check: eps rel. diff {ident['output_rel_err']:.1e}, "
                     f"worst grad rel. diff {ident['grad_rel_err']:.1e} -> "
                     f"{'identical' if ident['ok'] else 'MISMATCH'}")
    lines.append("")
    head = f"{'':46s} {'numpy ms':>10s} {'(min)':>8s} {'torch ms':>10s} {'(min)':>8s} {'ratio':>7s}"
    lines += [head, "-" * len(head)]
    for r in res["rows"]:
        n = r["numpy"]
        text = f"{r['name']:46s} {1e3 * n['median']:10.2f} {1e3 * n['min']:8.2f}"
        if "torch" in r:
            tt = r["torch"]
            text += f" {1e3 * tt['median']:10.2f} {1e3 * tt['min']:8.2f} {r['ratio']:6.2f}x"
        lines.append(text)
    if "profile" in res:
        prof = res["profile"]
        lines += ["", f"where a NumPy forward + backward goes ({1e3 * prof['step']:.1f} ms per step):"]
        for name, sec in prof["layers"].items():
            lines.append(f"  {name:28s} {1e3 * sec:7.2f} ms  {100 * sec / prof['step']:5.1f} %")
        lines.append(f"  {'(python, adds, glue)':28s} {1e3 * prof['python_and_glue']:7.2f} ms")
    return "\n".join(lines)
