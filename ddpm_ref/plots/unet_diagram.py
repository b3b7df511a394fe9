"""A block diagram of the U-Net with the shape of the activations after every block.

Layer: tooling beside the stack (imports anything below the command line).

The blocks and shapes are derived from the model's configuration by the rule ``build_plan``
follows (input conv; per level ``num_res_blocks`` ResBlocks, attention where the resolution is
listed, a stride-2 downsampling except at the last level; middle ResBlock, attention, ResBlock;
per level ``num_res_blocks + 1`` ResBlocks that each read a concatenated skip, upsampling except at
the top; GroupNorm, SiLU, output conv). ``unet_blocks(config)`` returns that list;
``tests/test_lessons_text_b.py`` checks it against a real ``UNet``'s parameter shapes.
"""

from __future__ import annotations

from ddpm_ref.plots import new_figure, register, save

__all__ = ["unet_blocks", "plot_unet_diagram"]


def unet_blocks(config: dict) -> list[dict]:
    """[{part, label, c_in, c_out, size, skip}]: the U-Net's blocks in the order forward runs them.

    ``skip`` is "push" (its output is saved for the decoder), "pop (+C)" (it reads a saved output
    of C channels, concatenated), or "".
    """
    base, mults = config["base_channels"], list(config["channel_mults"])
    nrb, size = config["num_res_blocks"], config["image_size"]
    attn = set(config.get("attention_resolutions", ()))
    c_in = config.get("in_channels", 1)
    blocks, stack = [], []

    def add(part, label, ci, co, s, skip=""):
        blocks.append(dict(part=part, label=label, c_in=ci, c_out=co, size=s, skip=skip))

    ch = base
    add("down", "conv 3x3", c_in, ch, size, "push")
    stack.append(ch)
    for i, m in enumerate(mults):
        for _ in range(nrb):
            add("down", "ResBlock" + (" + attn" if size in attn else ""), ch, base * m, size, "push")
            ch = base * m
            stack.append(ch)
        if i < len(mults) - 1:
            add("down", "downsample (conv stride 2)", ch, ch, size // 2, "push")
            size //= 2
            stack.append(ch)
    add("mid", "ResBlock, attn, ResBlock", ch, ch, size)
    for i, m in reversed(list(enumerate(mults))):
        for _ in range(nrb + 1):
            s = stack.pop()
            add("up", "ResBlock" + (" + attn" if size in attn else ""), ch + s, base * m, size, f"pop (+{s})")
            ch = base * m
        if i > 0:
            add("up", "upsample (nearest, conv 3x3)", ch, ch, size * 2)
            size *= 2
    add("out", "GroupNorm, SiLU, conv 3x3", ch, c_in, size)
    return blocks


def plot_unet_diagram(config: dict, title: str = ""):
    """The encoder down the left, the decoder up the right, skips as arrows across."""
    blocks = unet_blocks(config)
    down = [b for b in blocks if b["part"] == "down"]
    mid = [b for b in blocks if b["part"] == "mid"]
    up = [b for b in blocks if b["part"] in ("up", "out")]
    rows = max(len(down), len(up)) + 1
    fig = new_figure(10, 0.55 * rows + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(0, 10)
    ax.set_ylim(-rows - 0.6, 0.9)
    ax.set_axis_off()
    colors = {"down": "#dbe9f6", "mid": "#fde2c8", "up": "#dff0d8", "out": "#eeeeee"}

    def box(x, y, b):
        text = f"{b['label']}\n{b['c_in']}→{b['c_out']} ch, out {b['c_out']}×{b['size']}×{b['size']}"
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5,
                bbox=dict(boxstyle="round,pad=0.3", fc=colors[b["part"]], ec="0.4"))

    n = config.get("in_channels", 1)
    s0 = config["image_size"]
    ax.text(2.3, 0.5, f"input x_t: {n}×{s0}×{s0}", ha="center", fontsize=8, weight="bold")
    ax.text(7.7, 0.5, f"output ε̂: {n}×{s0}×{s0}", ha="center", fontsize=8, weight="bold")
    pushed = []
    for i, b in enumerate(down):
        box(2.3, -i, b)
        pushed.append(-i)
    box(5.0, -rows + 0.4, mid[0])
    up_y = [-(len(up) - 1 - i) for i in range(len(up))]
    for b, y in zip(up, up_y):
        box(7.7, y, b)
        if b["skip"].startswith("pop"):
            y0 = pushed.pop()
            ax.annotate("", xy=(6.5, y), xytext=(3.5, y0),
                        arrowprops=dict(arrowstyle="->", color="0.5", lw=0.8, connectionstyle="arc3,rad=0.0"))
    ax.annotate("", xy=(4.6, -rows + 0.75), xytext=(2.3, -len(down) + 0.6), arrowprops=dict(arrowstyle="->", lw=1))
    ax.annotate("", xy=(7.7, up_y[0] - 0.4), xytext=(5.4, -rows + 0.75), arrowprops=dict(arrowstyle="->", lw=1))
    ax.set_title(title or ("U-Net, base_channels={base_channels}, channel_mults={mults}, num_res_blocks={nrb}, "
                           "attention at {attn}; grey arrows: skip connections (concatenated)").format(
        base_channels=config["base_channels"], mults=tuple(config["channel_mults"]), nrb=config["num_res_blocks"],
        attn=tuple(config.get("attention_resolutions", ()))), fontsize=8.5)
    ax.text(5.0, -rows - 0.45, "every ResBlock also adds Linear(SiLU(e_t)) (timestep, + class label) to its first "
            "convolution's output", ha="center", fontsize=7.5, style="italic")
    return fig


@register("unet_diagram", "block diagram of the demo U-Net (8×8 digits, base 32, mults (1, 2)) with the "
          "channels and the activation shape after every block, and the skip connections", lessons=("07",))
def _make_unet_diagram(out_dir, seed):
    from ddpm_ref.train import DEMO_MODEL

    config = dict(DEMO_MODEL, in_channels=1, image_size=8)
    return [save(plot_unet_diagram(config), out_dir, "unet_diagram")]
