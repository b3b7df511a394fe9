"""Lesson 17's prompt model: samples for prompts, their strokes, and where the pixels look.

The figure needs the prompt model of ``ddpm-ref train --prompts --run-dir runs/prompts`` (the demo's
U-Net reading prompts, ``ddpm_ref.train.PROMPT_CONFIG``), looked up next to the demo run: it is
trained there first if missing (deterministic; 3000 steps took 14 minutes on 2 cores shared with
other jobs), so the figure is the same either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddpm_ref.prompts import DIGIT_WORDS, ink, sample_prompts, thickness_classes, tokenize
from ddpm_ref.plots import new_figure, register, save

__all__ = ["CLASS_PROMPTS", "STROKE_PROMPTS", "prompt_run_dir", "stroke_table", "attention_to_tokens",
           "plot_prompts"]

CLASS_PROMPTS = DIGIT_WORDS
STROKE_PROMPTS = ("thin seven", "seven", "thick seven", "thin digit", "digit", "thick digit")


def prompt_run_dir(demo_run_dir) -> Path:
    """Where the prompt model lives: ``runs/prompts`` beside ``runs/demo``."""
    return Path(demo_run_dir).parent / "prompts"


def stroke_table(samples: dict, x_train, y_train) -> list:
    """Rows (prompt, mean ink of its samples, standard error, mean ink of the training digits the
    prompt describes) for the prompts of ``STROKE_PROMPTS`` present in ``samples``."""
    thick = thickness_classes(x_train, y_train)
    amount = ink(x_train)
    rows = []
    for prompt, x in samples.items():
        words = prompt.split()
        members = np.ones(len(y_train), bool)
        if "thick" in words:
            members &= thick > 0
        if "thin" in words:
            members &= thick < 0
        named = [w for w in words if w in DIGIT_WORDS]
        if named:
            members &= y_train == DIGIT_WORDS.index(named[0])
        a = ink(x)
        rows.append((prompt, float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))), float(amount[members].mean())))
    return rows


def attention_to_tokens(net, x, t, prompt: str, block: str = "mid.xattn") -> np.ndarray:
    """The cross-attention weights of ``block`` for ``prompt`` at images x (N, C, H, W) noised to t:
    (M, h, w), each pixel's weight on each of the prompt's M tokens, averaged over the images."""
    tokens = np.repeat(tokenize(prompt, net.config["prompt_vocab"], net.config["prompt_length"])[None], len(x), 0)
    net.forward(x, np.full(len(x), t), tokens=tokens, keep_cache=True)
    step_caches = net._tape["tapes"][0]["steps"] if len(net._tape["tapes"]) == 1 else None
    if step_caches is None:
        raise ValueError("attention_to_tokens needs net.workers == 1 (one tape)")
    cache = next(c for s, c in step_caches if getattr(s, "name", None) == block)
    p = cache["attn"]["p"]                                       # (N·heads, H·W, M), one head
    side = int(round(np.sqrt(p.shape[1])))
    return p.mean(0).T.reshape(p.shape[2], side, side)


def plot_prompts(net, sched, x_train, y_train, seed: int = 0, n_each: int = 8, steps: int = 50, guidance: float = 1.0):
    """Samples per digit word and per stroke prompt (top); the ink of the stroke prompts' samples beside
    the training digits', and the middle block's attention to each token of "thick seven" (bottom)."""
    from ddpm_ref.diffusion import q_sample

    classes = sample_prompts(net, sched, list(CLASS_PROMPTS), n_each, steps=steps, guidance=guidance, rng=seed)
    strokes = sample_prompts(net, sched, list(STROKE_PROMPTS), n_each, steps=steps, guidance=guidance, rng=seed + 1)
    fig = new_figure(12.5, 7.2)
    outer = fig.add_gridspec(2, 1, height_ratios=[1.55, 1], hspace=0.45)
    top = outer[0].subgridspec(1, 2, width_ratios=[len(classes), len(strokes)], wspace=0.12)
    bottom = outer[1].subgridspec(1, 2, width_ratios=[1.1, 1], wspace=0.25)

    def tiles(ax, samples, title):
        cols = [np.concatenate([s[i, 0] for i in range(n_each)], axis=0) for s in samples.values()]
        pad = [np.pad(c, ((0, 0), (0, 1)), constant_values=1.0) for c in cols]
        ax.imshow(np.concatenate(pad, axis=1), cmap="gray", vmin=-1, vmax=1)
        ax.set_xticks(np.arange(len(cols)) * 9 + 3.5)
        ax.set_xticklabels([f'"{p}"' for p in samples], rotation=30, ha="right", fontsize=8)
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)

    left, right = fig.add_subplot(top[0, 0]), fig.add_subplot(top[0, 1])
    left.set_anchor("E")                              # the two grids side by side, the spare width outside them
    right.set_anchor("W")
    tiles(left, classes, f"one column per prompt ({n_each} samples, DDIM {steps} steps, guidance w = {guidance:g})")
    tiles(right, strokes, "stroke words")
    ax = fig.add_subplot(bottom[0, 0])
    rows = stroke_table(strokes, x_train, y_train)
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [r[1] for r in rows], 0.4, yerr=[r[2] for r in rows], label=f"its {n_each} samples (± s.e.)",
           color="C0")
    ax.bar(pos + 0.2, [r[3] for r in rows], 0.4, label="the training digits it describes", color="C1")
    ax.set_xticks(pos)
    ax.set_xticklabels([f'"{r[0]}"' for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ink: mean of (x + 1)/2", fontsize=8)
    ax.set_title("the ink of each stroke prompt", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    prompt, t = "thick seven", 300
    x7 = x_train[y_train == 7][:32]
    xt = q_sample(sched, x7, t, np.random.default_rng(seed).standard_normal(x7.shape).astype(x7.dtype))
    maps = attention_to_tokens(net, xt, t, prompt)
    words = prompt.split() + ["<pad>"] * (maps.shape[0] - len(prompt.split()))
    sub = bottom[0, 1].subgridspec(1, maps.shape[0], wspace=0.15)
    for j in range(maps.shape[0]):
        a = fig.add_subplot(sub[0, j])
        im = a.imshow(maps[j], cmap="viridis", vmin=0, vmax=1)
        a.set_title(f'"{words[j]}": {maps[j].mean():.2f}', fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
        if j == 1:
            a.set_xlabel(f'cross-attention mid.xattn at t = {t} for "{prompt}": each 4×4 pixel\'s weight\n'
                         "on each token (mean over 32 noised sevens; the weights of a pixel sum to 1)", fontsize=8)
    fig.colorbar(im, ax=a, fraction=0.046, pad=0.04)
    return fig


@register("prompts", "samples of the prompt model (the demo's U-Net reading prompts through cross-attention) for "
          "each digit word and for stroke words, their ink beside the training digits', and the attention of the "
          "pixels to each token (needs runs/prompts: trained first if missing)", lessons=("17",), needs="demo")
def _make_prompts(out_dir, seed, run_dir):
    from ddpm_ref.data.digits import load_digits_images
    from ddpm_ref.train import PROMPT_CONFIG, load_or_train_demo

    net = load_or_train_demo(str(prompt_run_dir(run_dir)), prompts=True, progress=False)
    x_train, y_train = load_digits_images("train")
    return [save(plot_prompts(net, PROMPT_CONFIG.make_schedule(), x_train, y_train, seed=seed), out_dir, "prompts")]
