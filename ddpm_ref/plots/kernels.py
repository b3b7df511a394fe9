"""Lesson 11's pictures of the CUDA kernels in ``kernels/``.

Layer: tooling beside the stack (imports anything below the command line).

* ``plot_conv_thread_map``: which thread computes which output element in version 1 of
  ``conv2d_forward`` (one thread per element of y (N, K, P, Q), numbered in C order) and which
  block owns which tile of Y = W·X_col in version 2 (square tiles; partial tiles at the edges keep
  idle threads). Drawn with small blocks and tiles so that every thread can be labelled; the
  launches in ``kernels/ops.py`` use 256-thread blocks and ``CONV_TILE``-sided tiles.
* ``emulator_errors`` / ``plot_emulator_check``: every version of every kernel, run on the CPU
  emulator (needs g++), against ``ddpm_ref.nn`` in the llm.c manner: the worst
  |got − ref| / (atol + rtol·|ref|) per output, so that a bar past 1 is a mismatch.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from ddpm_ref.plots import FigureUnavailable, new_figure, register, save

__all__ = ["plot_conv_thread_map", "emulator_errors", "plot_emulator_check"]


def plot_conv_thread_map(N=2, K=3, P=3, Q=4, block=16, tile=4, K2=6, N2=2):
    """Left: thread idx → y[n, k, p, q] (version 1), coloured by block. Right: block (bx, by) →
    tile of Y (K rows × N·P·Q columns) (version 2), idle threads hatched."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    fig = new_figure(9, 8.2)
    gs = fig.add_gridspec(2, 1, height_ratios=[1.1, 1.0])
    ax = fig.add_subplot(gs[0, 0])
    gap = 1
    for n in range(N):
        for k in range(K):
            x0 = k * (Q + gap)
            y0 = n * (P + gap + 0.6)
            ax.text(x0 + Q / 2, y0 - 0.35, f"n={n}, k={k}", ha="center", va="bottom", fontsize=7)
            for p in range(P):
                for q in range(Q):
                    idx = ((n * K + k) * P + p) * Q + q
                    ax.add_patch(Rectangle((x0 + q, y0 + p), 1, 1, fc=cmap((idx // block) % 20), ec="w", lw=0.8))
                    ax.text(x0 + q + 0.5, y0 + p + 0.5, str(idx), ha="center", va="center", fontsize=6.5)
    ax.set_xlim(-0.3, K * (Q + gap))
    ax.set_ylim(N * (P + gap + 0.6), -0.8)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"version 1: thread idx → y[n, k, p, q], y of shape (N, K, P, Q) = ({N}, {K}, {P}, {Q})\n"
                 f"(one row of K output maps per image n; p down, q across; colour: block of {block} threads)",
                 fontsize=9)

    K, N = K2, N2
    ax = fig.add_subplot(gs[1, 0])
    cols = N * P * Q
    gx, gy = -(-cols // tile), -(-K // tile)
    for by in range(gy):
        for bx in range(gx):
            c = cmap((by * gx + bx) % 20)
            ax.add_patch(Rectangle((bx * tile, by * tile), tile, tile, fc=c, ec="k", lw=1.2, alpha=0.55))
            rows_in_y = min(tile, K - by * tile)                  # label the part of the tile inside Y
            ax.text(bx * tile + tile / 2, by * tile + rows_in_y / 2, f"({bx},{by})", ha="center", va="center",
                    fontsize=7)
            for ty in range(tile):
                for tx in range(tile):
                    if by * tile + ty >= K or bx * tile + tx >= cols:      # a thread with no element of Y
                        ax.add_patch(Rectangle((bx * tile + tx, by * tile + ty), 1, 1, fc="w", ec="0.6",
                                               hatch="///", lw=0.3))
    ax.add_patch(Rectangle((0, 0), cols, K, fill=False, ec="C3", lw=2))
    ax.set_xlim(-0.5, gx * tile + 0.5)
    ax.set_ylim(gy * tile + 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([j + 0.5 for j in range(0, cols, Q)])
    ax.set_xticklabels([f"n={j // (P * Q)}\np={(j // Q) % P}" for j in range(0, cols, Q)], fontsize=6)
    ax.set_yticks([k + 0.5 for k in range(K)])
    ax.set_yticklabels([f"k={k}" for k in range(K)], fontsize=7)
    ax.set_title(f"version 2: block (blockIdx.x, blockIdx.y) → a {tile}×{tile} tile of Y, K = {K} rows × "
                 f"N·P·Q = {N}·{P}·{Q} = {cols} columns (red)\n"
                 f"grid ⌈{cols}/{tile}⌉ × ⌈{K}/{tile}⌉ = {gx} × {gy} blocks; hatched: threads past the edge of Y, "
                 "which load zeros and write nothing", fontsize=9)
    return fig


def emulator_errors(seed: int = 0) -> list[tuple[str, float]]:
    """[(label, worst |got − ref| / (atol + rtol·|ref|))] for every kernel version on the emulator."""
    try:
        import kernels
        from kernels.emulator import find_compiler

        find_compiler()
    except (ImportError, RuntimeError) as err:
        raise FigureUnavailable(f"the emulator check needs the kernels/ folder and g++: {err}") from err
    import ddpm_ref.nn as nn

    rng = np.random.default_rng(seed)
    out = []

    def ratio(got, ref, atol, rtol=1e-4):
        got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
        return float(np.max(np.abs(got - ref) / (atol + rtol * np.abs(ref))))

    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    w = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for stride in (1, 2):
        y_ref, cache_ref = nn.conv2d_forward(x, w, b, stride=stride, padding=1)
        dy = rng.standard_normal(y_ref.shape).astype(np.float32)
        grads_ref = nn.conv2d_backward(dy, cache_ref)
        for version in kernels.VERSIONS["conv2d_forward"]:
            ops = kernels.get_ops("emulate", version=version)
            y, cache = ops.conv2d_forward(x, w, b, stride=stride, padding=1)
            out.append((f"conv v{version} s{stride}: y", ratio(y, y_ref, 1e-4)))
            for name, g, g_ref in zip(("dx", "dw", "db"), ops.conv2d_backward(dy, cache), grads_ref):
                out.append((f"conv v{version} s{stride}: {name}", ratio(g, g_ref, 1e-3)))
    q, k, v = (rng.standard_normal((2, 13, 8)).astype(np.float32) for _ in range(3))
    do = rng.standard_normal(q.shape).astype(np.float32)
    o_ref, cache_ref = nn.attention_forward(q, k, v)
    grads_ref = nn.attention_backward(do, cache_ref)
    for version in kernels.VERSIONS["attention_forward"]:
        ops = kernels.get_ops("emulate", version=version)
        o, cache = ops.attention_forward(q, k, v)
        out.append((f"attention v{version}: o", ratio(o, o_ref, 1e-4)))
        for name, g, g_ref in zip(("dq", "dk", "dv"), ops.attention_backward(do, cache), grads_ref):
            out.append((f"attention v{version}: {name}", ratio(g, g_ref, 1e-3)))
    return out


def plot_emulator_check(errors):
    labels = [lab for lab, _ in errors]
    values = [max(v, 1e-6) for _, v in errors]
    fig = new_figure(8, 0.2 * len(values) + 1.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(range(len(values)), values, color=["C0" if "conv" in lab else "C2" for lab in labels])
    ax.set_xscale("log")
    ax.set_xlim(1e-6, 10)
    ax.invert_yaxis()
    ax.axvline(1.0, color="r", ls="--", lw=1, label="1: the tolerance atol + rtol·|ref| (a bar past it is a mismatch)")
    ax.set_yticks(range(len(values)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("worst |kernel − NumPy| / (atol + rtol·|NumPy|)   (rtol 1e-4; atol 1e-4 forward, 1e-3 gradients)")
    ax.set_title("every version of the CUDA kernels, run on the CPU emulator, against ddpm_ref.nn\n"
                 "(float32; conv x (2, 3, 7, 5), w (4, 3, 3, 3), padding 1; attention (B, L, D) = (2, 13, 8))",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig


@register("conv_thread_map", "which thread computes which output element: version 1 of conv2d_forward "
          "(one thread per element of y, by block) and version 2 (one block per tile of Y = W·X_col, idle "
          "threads at the edges)", lessons=("11",))
def _make_thread_map(out_dir, seed):
    return [save(plot_conv_thread_map(), out_dir, "conv_thread_map")]


@register("emulator_check", "every version of the conv and attention kernels run on the CPU emulator "
          "(needs g++) against ddpm_ref.nn: worst error relative to the llm.c-style tolerance", lessons=("11",))
def _make_emulator_check(out_dir, seed):
    return [save(plot_emulator_check(emulator_errors(seed)), out_dir, "emulator_check")]
