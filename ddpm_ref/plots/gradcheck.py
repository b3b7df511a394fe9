"""The gradient check of lesson 6 as a chart: every layer's backward pass against centred
differences in float64, and the whole U-Net's.

``gradient_check_errors(seed)`` runs the checks (a few seconds) and returns
``{layer: {array: worst relative error}}``; ``plot_gradcheck`` draws them on a log axis with the
thresholds the lesson uses.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.plots import new_figure, register, save

__all__ = ["gradient_check_errors", "plot_gradcheck", "THRESHOLD_RIGHT", "THRESHOLD_BUG"]

THRESHOLD_RIGHT = 1e-6      # below: right (one layer; a whole float64 network reaches ~1e-7)
THRESHOLD_BUG = 1e-3        # above: a bug


def _rel_error(a, n):
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-12)


def _worst(f, arrays, grads, g, n_entries, h=1e-6):
    out = {}
    for name, a in arrays.items():
        errs = []
        for flat in g.choice(a.size, size=min(n_entries, a.size), replace=False):
            idx = np.unravel_index(flat, a.shape)
            old = a[idx]
            a[idx] = old + h
            fp = f()
            a[idx] = old - h
            fm = f()
            a[idx] = old
            errs.append(_rel_error(grads[name][idx], (fp - fm) / (2 * h)))
        out[name] = float(np.max(errs))
    return out


def gradient_check_errors(seed: int = 0, n_entries: int = 20) -> dict:
    """Worst relative error of each layer's backward pass (linear, SiLU, GroupNorm, conv with
    stride 2 and padding 1, attention) and of the float64 U-Net's L_simple gradient."""
    import ddpm_ref.nn as nn
    from ddpm_ref.diffusion import loss_simple, loss_simple_grad
    from ddpm_ref.models.unet import UNet

    rng = np.random.default_rng(seed)
    res = {}

    x = rng.standard_normal((5, 7)); W = rng.standard_normal((3, 7)); b = rng.standard_normal(3)
    G = rng.standard_normal((5, 3))
    dx, dW, db = nn.linear_backward(G, nn.linear_forward(x, W, b)[1])
    res["linear"] = _worst(lambda: float((nn.linear_forward(x, W, b)[0] * G).sum()),
                           {"x": x, "W": W, "b": b}, {"x": dx, "W": dW, "b": db}, rng, n_entries)

    xs = rng.standard_normal((4, 6)) * 3; Gs = rng.standard_normal((4, 6))
    dxs = nn.silu_backward(Gs, nn.silu_forward(xs)[1])
    res["SiLU"] = _worst(lambda: float((nn.silu_forward(xs)[0] * Gs).sum()), {"x": xs}, {"x": dxs}, rng, n_entries)

    xg = rng.standard_normal((2, 8, 4, 4)); gam = rng.standard_normal(8); bet = rng.standard_normal(8)
    Gg = rng.standard_normal(xg.shape)
    dxg, dgam, dbet = nn.groupnorm_backward(Gg, nn.groupnorm_forward(xg, gam, bet, 4)[1])
    res["GroupNorm"] = _worst(lambda: float((nn.groupnorm_forward(xg, gam, bet, 4)[0] * Gg).sum()),
                              {"x": xg, "gamma": gam, "beta": bet}, {"x": dxg, "gamma": dgam, "beta": dbet},
                              rng, n_entries)

    xc = rng.standard_normal((2, 3, 7, 5)); wc = rng.standard_normal((4, 3, 3, 3)); bc = rng.standard_normal(4)
    yc, cache = nn.conv2d_forward(xc, wc, bc, stride=2, padding=1)
    Gc = rng.standard_normal(yc.shape)
    dxc, dwc, dbc = nn.conv2d_backward(Gc, cache)
    res["conv 3x3, stride 2"] = _worst(
        lambda: float((nn.conv2d_forward(xc, wc, bc, stride=2, padding=1)[0] * Gc).sum()),
        {"x": xc, "w": wc, "b": bc}, {"x": dxc, "w": dwc, "b": dbc}, rng, n_entries)

    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3)); Ga = rng.standard_normal((2, 5, 4))
    dq, dk, dv = nn.attention_backward(Ga, nn.attention_forward(q, k, v)[1])
    res["attention"] = _worst(lambda: float((nn.attention_forward(q, k, v)[0] * Ga).sum()),
                              {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv}, rng, n_entries)

    net = UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(4,), groups=4, dtype="float64", seed=seed)
    for p in net.params.values():
        p += 0.1 * rng.standard_normal(p.shape)      # a fresh net has zero layers that would hide bugs
    xt = rng.standard_normal((2, 1, 8, 8)); t = np.array([3, 700]); eps = rng.standard_normal(xt.shape)
    grads = net.backward(loss_simple_grad(eps, net.forward(xt, t)))
    names = list(net.params)
    picked = [names[0], names[len(names) // 3], names[len(names) // 2], names[-1]]
    picked += [n for n in names if "attn" in n][:1]
    res["U-Net"] = _worst(lambda: loss_simple(eps, net.forward(xt, t, keep_cache=False)),
                          {n: net.params[n] for n in picked}, grads, rng, max(3, n_entries // 5))
    return res


def plot_gradcheck(results: dict):
    """Horizontal bars, one per checked array, of the worst relative error (log scale)."""
    labels, values = [], []
    for layer, errs in results.items():
        for name, e in errs.items():
            labels.append(f"{layer}: {name}")
            values.append(max(e, 1e-16))
    fig = new_figure(8, 0.26 * len(values) + 1.4)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["C0" if not lab.startswith("U-Net") else "C1" for lab in labels]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_xscale("log")
    ax.set_xlim(1e-14, 1e0)
    ax.invert_yaxis()
    ax.axvline(THRESHOLD_RIGHT, color="g", ls="--", lw=1, label=f"{THRESHOLD_RIGHT:.0e}: below, right")
    ax.axvline(THRESHOLD_BUG, color="r", ls="--", lw=1, label=f"{THRESHOLD_BUG:.0e}: above, a bug")
    ax.set_yticks(range(len(values)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("worst relative error |analytic − numerical| / max(|analytic|, |numerical|)")
    ax.set_title("backward passes vs centred differences (float64, h = 1e-6)\n"
                 "blue: one layer; orange: the whole U-Net's L_simple gradient", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x", which="major")
    return fig


@register("gradcheck", "worst relative error of every layer's backward pass (linear, SiLU, GroupNorm, "
          "conv, attention) and of the float64 U-Net against centred differences", lessons=("06",))
def _make_gradcheck(out_dir, seed):
    return [save(plot_gradcheck(gradient_check_errors(seed)), out_dir, "gradcheck")]
