"""The training step timed by ``ddpm-ref bench``, in NumPy (the demo U-Net, ``ddpm_ref.optim.Adam``)
and in PyTorch (the same network from ``torch_twin``, ``torch.optim.Adam``).

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.models.unet import UNet
from ddpm_ref.optim import Adam
from ddpm_ref.train import DEMO_CONFIG, DEMO_MODEL

__all__ = ["demo_model_config", "numpy_model", "numpy_step", "torch_setup", "check_identical", "torch_step"]


def demo_model_config() -> dict:
    """The demo's U-Net (``ddpm_ref.train.DEMO_MODEL``), float32, on 8×8 digits with 10 classes."""
    cfg = dict(DEMO_MODEL)
    cfg.update(in_channels=1, image_size=8, num_classes=10 if DEMO_CONFIG.cond else None,
               dtype="float32", seed=0)
    return cfg


def numpy_model(batch, seed):
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


def numpy_step(net, data):
    """A callable doing one training step: forward, the L_simple gradient, backward, Adam."""
    adam = Adam(net.params)
    x, t, y, noise = data["x"], data["t"], data["y"], data["noise"]

    def step():
        eps = net.forward(x, t, y)
        d_eps = (2.0 / eps.size) * (eps - noise)          # d/dε̂ of mean((ε̂ − ε)²)
        adam.update(net.params, net.backward(d_eps), 1e-4)

    return step


def torch_setup(net, data, threads):
    import torch

    from ddpm_ref.bench.torch_twin import torch_unet

    torch.set_num_threads(threads)
    module = torch_unet(net)
    tdata = {k: (torch.from_numpy(v) if v is not None else None) for k, v in data.items()}
    return torch, module, tdata


def check_identical(net, data, torch, module, tdata) -> dict:
    """Same ε̂ and same gradients from both implementations (float32 rounding apart)."""
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


def torch_step(torch, module, tdata):
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    x, t, y, noise = tdata["x"], tdata["t"], tdata["y"], tdata["noise"]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((module(x, t, y) - noise) ** 2).mean()
        loss.backward()
        opt.step()

    return step
