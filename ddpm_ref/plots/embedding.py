"""The sinusoidal timestep encoding: the matrix P(k, column), a few of its rows, their similarities.

Layer: tooling beside the stack (imports anything below the command line).
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.embeddings import sinusoidal_embedding
from ddpm_ref.plots import new_figure, register, save

__all__ = ["plot_timestep_embedding"]


def plot_timestep_embedding(T: int = 1000, d: int = 128, rows=(3, 40, 600), anchors=(100, 500, 900)):
    """Three panels: the matrix P(k, j) for k = 1..T (y-axis) and columns j (x-axis); rows k as
    curves over the frequency index i (solid: P(k, 2i) = sin, dashed: P(k, 2i+1) = cos); and the
    similarity P(k)·P(k₀)/(d/2) of every row with a few anchor rows k₀."""
    k = np.arange(1, T + 1)
    P = sinusoidal_embedding(k, d)
    fig = new_figure(14, 4.2)
    ax_m, ax_r, ax_s = fig.subplots(1, 3)
    im = ax_m.imshow(P, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, origin="lower",
                     extent=(-0.5, d - 0.5, 0.5, T + 0.5))
    fig.colorbar(im, ax=ax_m, shrink=0.85)
    ax_m.set(xlabel="column j (2i: sin, 2i+1: cos)", ylabel="timestep k", title=f"P(k, j), d = {d}, n = 10000")
    i = np.arange(d // 2)
    for row, color in zip(rows, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]):
        ax_r.plot(i, P[row - 1, 0::2], color=color, lw=1.2, label=f"k = {row}: sin")
        ax_r.plot(i, P[row - 1, 1::2], color=color, lw=1.2, ls="--", label=f"k = {row}: cos")
    ax_r.set(xlabel="frequency index i (column 2i and 2i+1)", ylabel="P(k, j)",
             title="rows k as curves: fast frequencies left, slow right")
    ax_r.legend(fontsize=7, loc="lower right", ncol=2)
    for k0 in anchors:
        ax_s.plot(k, P @ P[k0 - 1] / (d / 2), lw=1.2, label=f"k₀ = {k0}")
    ax_s.set(xlabel="timestep k", ylabel=r"$P(k)\cdot P(k_0)\,/\,(d/2)$",
             title="similarity depends only on k − k₀")
    ax_s.legend(fontsize=8)
    for ax in (ax_r, ax_s):
        ax.grid(alpha=0.3)
    return fig


@register("timestep_embedding", "The sinusoidal timestep encoding as a heat map (k on y), a few rows as curves, "
          "and row similarities", lessons=("05",))
def _make_timestep_embedding(out_dir, seed):
    return [save(plot_timestep_embedding(), out_dir, "timestep_embedding")]
