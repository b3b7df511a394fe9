"""``ddpm-ref bench``: how fast the NumPy U-Net trains and samples, next to PyTorch on the same CPU.

What is timed (each with warm-up calls first, then ``repeats`` timed calls; the median is
reported, the minimum alongside):

* **training step** of the demo's model (``ddpm_ref.train.DEMO_MODEL``: 32 base channels,
  channel_mults (1, 2), attention at 4×4, one ResBlock per level, 10 classes) on 8×8 inputs:
  forward, the L_simple gradient, backward, Adam update (``ddpm_ref.optim.Adam``);
* **sampling forward**: one forward without caches (``keep_cache=False``);
* both for NumPy in two ways on the same thread count: one pass with BLAS on all threads, and
  the batch split into one shard per thread with one BLAS thread each (``UNet(workers=...)``,
  ``ddpm_ref.parallel``);
* **the heaviest layers** alone (the widest 3×3 convolutions, a group norm, the fused group
  norm + SiLU of the ResBlocks, the attention),
  forward and forward + backward.

When PyTorch is importable, the *identical* architecture (``ddpm_ref.torch_mirror``, built from
the same plan with the same weights: the run first checks that both give the same ε̂ and the same
gradients) runs side by side in the same process, with ``torch.optim.Adam``, and every line gets
the ratio NumPy / PyTorch.

Threads: both libraries get the same count. NumPy's BLAS is limited with ``threadpoolctl``
(a dependency of scikit-learn, so normally present); without it the command sets
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` before NumPy is first imported, which works only
when nothing imported NumPy earlier (the report says which method took effect). PyTorch gets
``torch.set_num_threads``. NumPy's element-wise operations are single-threaded either way.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

__all__ = ["limit_threads", "time_call", "demo_model_config", "run_bench", "format_report",
           "profile_step"]

_LIMITER = None          # keeps threadpoolctl's limit alive for the whole process


def limit_threads(n: int) -> str:
    """Limit BLAS/OpenMP threads to n; returns how it was done (for the report)."""
    global _LIMITER
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import sys

        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)
        if "numpy" in sys.modules:
            return "NOT limited: threadpoolctl is missing and NumPy was already imported"
        return f"environment variables OMP/OPENBLAS/MKL_NUM_THREADS={n} (set before importing NumPy)"
    import numpy  # noqa: F401  threadpoolctl limits only libraries already loaded: load NumPy's BLAS

    _LIMITER = threadpool_limits(limits=n)
    return f"threadpoolctl.threadpool_limits({n})"


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


def demo_model_config() -> dict:
    """The demo's U-Net config (from ddpm_ref.train when present), float32, 8×8 digits, 10 classes."""
    cfg = dict(base_channels=32, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
               groups=8, dropout=0.0)
    cond = True
    try:
        from ddpm_ref.train import DEMO_CONFIG, DEMO_MODEL

        cfg, cond = dict(DEMO_MODEL), bool(DEMO_CONFIG.cond)
    except ImportError:
        pass
    cfg.update(in_channels=1, image_size=8, num_classes=10 if cond else None, dtype="float32", seed=0)
    return cfg


# ------------------------------------------------------------------------------ NumPy side

def _numpy_model(batch, seed):
    import numpy as np

    from ddpm_ref.unet import UNet

    net = UNet(**demo_model_config())
    rng = np.random.default_rng(seed)
    for v in net.params.values():              # non-zero everywhere (zero-init convs included)
        v += (0.02 * rng.standard_normal(v.shape)).astype(v.dtype)
    data = {
        "x": rng.standard_normal((batch, 1, 8, 8)).astype(np.float32),
        "t": rng.integers(1, 1001, batch),
        "y": rng.integers(0, 11, batch) if net.config["num_classes"] else None,
        "noise": rng.standard_normal((batch, 1, 8, 8)).astype(np.float32),
    }
    return net, data


def _adam(params):
    """ddpm_ref.optim.Adam when present; otherwise an in-place Adam of the same cost."""
    try:
        from ddpm_ref.optim import Adam

        opt = Adam(params)
        return "ddpm_ref.optim.Adam", lambda grads: opt.update(params, grads, 1e-4)
    except ImportError:
        m = {k: p * 0 for k, p in params.items()}
        v = {k: p * 0 for k, p in params.items()}

        def update(grads):
            for k, p in params.items():
                m[k] *= 0.9
                m[k] += 0.1 * grads[k]
                v[k] *= 0.999
                v[k] += 0.001 * grads[k] ** 2
                p -= 1e-4 * m[k] / (v[k] ** 0.5 + 1e-8)

        return "inline Adam (ddpm_ref.optim not found)", update


def _numpy_step(net, data):
    name, update = _adam(net.params)
    x, t, y, noise = data["x"], data["t"], data["y"], data["noise"]

    def step():
        eps = net.forward(x, t, y)
        d_eps = (2.0 / eps.size) * (eps - noise)          # d/dε̂ of mean((ε̂ − ε)²)
        update(net.backward(d_eps))

    return name, step


# ------------------------------------------------------------------------------ PyTorch side

def _torch_setup(net, data, threads):
    import torch

    from ddpm_ref.torch_mirror import torch_unet

    torch.set_num_threads(threads)
    module = torch_unet(net)
    tdata = {k: (torch.from_numpy(v) if v is not None else None) for k, v in data.items()}
    return torch, module, tdata


def _check_identical(net, torch, module, data, tdata) -> dict:
    """Same ε̂ and same gradients from both implementations (float32 rounding apart)."""
    import numpy as np

    eps = net.forward(data["x"], data["t"], data["y"])
    grads = net.backward(np.ones_like(eps))
    module.zero_grad(set_to_none=True)
    eps_t = module(tdata["x"], tdata["t"], tdata["y"])
    eps_t.backward(torch.ones_like(eps_t))
    ref = eps_t.detach().numpy()
    out_err = float(np.abs(eps - ref).max() / np.abs(ref).max())
    grad_err = max(float(np.abs(g - module.param(k).grad.numpy()).max()
                         / (np.abs(module.param(k).grad.numpy()).max() + 1e-30)) for k, g in grads.items())
    module.zero_grad(set_to_none=True)
    return {"output_rel_err": out_err, "grad_rel_err": grad_err, "ok": out_err < 1e-3 and grad_err < 1e-2}


def _torch_step(torch, module, tdata):
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    x, t, y, noise = tdata["x"], tdata["t"], tdata["y"], tdata["noise"]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((module(x, t, y) - noise) ** 2).mean()
        loss.backward()
        opt.step()

    return step


# ------------------------------------------------------------------------------ layers

LAYERS = [
    # name, kind, shape args
    ("conv3x3 96->32 @8x8", "conv", (96, 32, 8)),
    ("conv3x3 64->64 @8x8", "conv", (64, 64, 8)),
    ("conv3x3 64->64 @4x4", "conv", (64, 64, 4)),
    ("groupnorm 96ch @8x8", "groupnorm", (96, 8)),
    ("groupnorm+silu 96ch @8x8", "groupnorm_silu", (96, 8)),
    ("attention L=16 D=64", "attention", (16, 64)),
]


def _layer_calls(kind, args, batch, rng, torch):
    """(numpy fwd, numpy fwd+bwd, torch fwd, torch fwd+bwd) callables for one layer."""
    import numpy as np

    import ddpm_ref.nn as nn

    f32 = np.float32
    if kind == "conv":
        c, k, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, (0.05 * rng.standard_normal((k, c, 3, 3))).astype(f32), np.zeros(k, f32)]
        fwd = lambda: nn.conv2d_forward(*arrays, 1, 1)             # noqa: E731
        bwd = nn.conv2d_backward
        tfn = lambda a, w, b: torch.nn.functional.conv2d(a, w, b, padding=1)   # noqa: E731
    elif kind == "groupnorm":
        c, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, np.ones(c, f32), np.zeros(c, f32)]
        fwd = lambda: nn.groupnorm_forward(*arrays, 8)             # noqa: E731
        bwd = nn.groupnorm_backward
        tfn = lambda a, g, b: torch.nn.functional.group_norm(a, 8, g, b)   # noqa: E731
    elif kind == "groupnorm_silu":                                 # the fused pair of the ResBlocks
        c, s = args
        x = np.ascontiguousarray(rng.standard_normal((batch, s, s, c)).astype(f32)).transpose(0, 3, 1, 2)
        arrays = [x, np.ones(c, f32), np.zeros(c, f32)]
        fwd = lambda: nn.groupnorm_silu_forward(*arrays, 8)        # noqa: E731
        bwd = nn.groupnorm_silu_backward
        tfn = lambda a, g, b: torch.nn.functional.silu(torch.nn.functional.group_norm(a, 8, g, b))  # noqa: E731
    else:
        length, d = args
        arrays = [rng.standard_normal((batch, length, d)).astype(f32) for _ in range(3)]
        fwd = lambda: nn.attention_forward(*arrays)                # noqa: E731
        bwd = nn.attention_backward
        tfn = lambda q, k_, v: torch.nn.functional.scaled_dot_product_attention(q, k_, v)  # noqa: E731
    out, _ = fwd()
    dout = np.ascontiguousarray(rng.standard_normal(out.shape).astype(f32))

    def np_train():
        o, cache = fwd()
        bwd(dout, cache)

    calls = [fwd, np_train, None, None]
    if torch is not None:
        targs = [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True) for a in arrays]
        tdout = torch.from_numpy(dout)

        def t_fwd():
            with torch.no_grad():
                tfn(*targs)

        def t_train():
            tfn(*targs).backward(tdout)

        calls[2:] = [t_fwd, t_train]
    return calls


# ------------------------------------------------------------------------------ driver

def profile_step(net, data, repeats=10, warmup=3) -> dict:
    """Where a NumPy training step's time goes: seconds per step spent in each ``ddpm_ref.nn``
    forward/backward function (wrapped with timers for the run, then restored). A layer that
    calls others (upsample_conv calls conv2d) is charged for the calls it makes."""
    import ddpm_ref.nn as nn

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


def run_bench(threads=2, batch=64, repeats=20, warmup=5, use_torch=True, layers=True, seed=0,
              progress=None, profile=False) -> dict:
    """Run every timing; returns a JSON-serialisable dict (see ``format_report``)."""
    say = progress or (lambda msg: None)
    thread_method = limit_threads(threads)
    import numpy as np

    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            torch = None
    res = {"threads": threads, "thread_method": thread_method, "batch": batch, "repeats": repeats,
           "warmup": warmup, "model": demo_model_config(), "numpy": np.__version__,
           "torch": getattr(torch, "__version__", None), "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "rows": []}
    try:
        from threadpoolctl import threadpool_info

        res["blas"] = ", ".join(f"{i['internal_api']} {i.get('version') or ''} "
                                f"({i.get('architecture') or i.get('prefix')}, {i['num_threads']} threads)"
                                for i in threadpool_info())
    except ImportError:
        res["blas"] = "unknown"

    net, data = _numpy_model(batch, seed)
    res["num_params"] = net.num_params
    if torch is not None:
        torch, module, tdata = _torch_setup(net, data, threads)
        say("checking that the PyTorch mirror computes the same function")
        res["identical"] = _check_identical(net, torch, module, data, tdata)
    adam_name, np_step = _numpy_step(net, data)
    res["optimizer"] = adam_name

    def row(name, np_fn, t_fn, reps, torch_timing=None):
        say(f"timing {name}")
        r = {"name": name, "numpy": time_call(np_fn, warmup, reps)}
        if t_fn is not None:
            torch_timing = time_call(t_fn, warmup, reps)
        if torch_timing is not None:
            r["torch"] = torch_timing
            r["ratio"] = r["numpy"]["median"] / torch_timing["median"]
        res["rows"].append(r)
        return torch_timing

    x, t, y = data["x"], data["t"], data["y"]
    if profile:
        say("profiling a training step (forward + backward, no optimizer) by layer")
        res["profile"] = profile_step(net, data)

    def t_sample():
        with torch.inference_mode():
            module(tdata["x"], tdata["t"], tdata["y"])

    # NumPy two ways on the same thread count: one pass with BLAS on `threads` threads, and the
    # batch split over `threads` shards with one BLAS thread each (ddpm_ref.parallel).
    configs = [(1, f"1 shard, BLAS {threads} thr")]
    if threads > 1:
        configs.append((threads, f"{threads} shards x 1 thr"))
    t_step = _torch_step(torch, module, tdata) if torch is not None else None
    timing = None
    for workers, how in configs:
        net.workers = workers
        timing = row(f"training step [{how}]", np_step, t_step if timing is None else None,
                     repeats, timing)
    timing = None
    for workers, how in configs:
        net.workers = workers
        timing = row(f"sampling forward [{how}]", lambda: net.forward(x, t, y, keep_cache=False),
                     (t_sample if torch is not None else None) if timing is None else None,
                     repeats, timing)
    net.workers = 1
    if layers:
        rng = np.random.default_rng(seed + 1)
        for name, kind, args in LAYERS:
            f, fb, tf, tfb = _layer_calls(kind, args, batch, rng, torch)
            row(f"{name} fwd", f, tf, 3 * repeats)
            row(f"{name} fwd+bwd", fb, tfb, 3 * repeats)
    return res


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
