"""What DDPM grew into, part 2 (lessons 15-17): classifier guidance and inpainting on the 2-D mixture,
inpainting the digits and latent diffusion in miniature.

The mixture figures are cheap (the mixture's exact ε and its exact classifier / conditional, a few
seconds) and deterministic given the seed; the digit figures need the demo model (``needs="demo"``),
and ``latent_diffusion`` also trains a small autoencoder and latent U-Net (a few minutes on 2 cores). The mixture is ``default_gmm()``: components 0 and 1 at
the bottom, 2 at the top. Guidance uses two classes, ``CLASSES = (0, 0, 1)``: class 0 is the bottom
pair (so at s = 1 guidance must also get their relative weights 0.5 : 0.3 right), class 1 the top one.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.data import default_gmm
from ddpm_ref.data.gmm_exact import class_conditional, exact_classifier, sample_inpainting_conditional
from ddpm_ref.guidance import sample_ddim_guided, sample_ddpm_guided
from ddpm_ref.inpaint import sample_repaint
from ddpm_ref.plots import new_figure, register, save
from ddpm_ref.plots.beyond_ddpm import mixture_stats
from ddpm_ref.sample import RespacedModel, respace
from ddpm_ref.schedules import make_schedule

__all__ = ["CLASSES", "GUIDANCE_RUNS", "guidance_runs", "plot_classifier_guidance_gmm", "inpainting_schedule",
           "OBSERVED_X", "RESAMPLES", "w1_distance", "inpainting_runs", "plot_inpainting_gmm", "RespacedEps",
           "inpaint_digits", "plot_inpainting_digits", "train_latent_diffusion", "plot_latent_diffusion"]

CLASSES = np.array([0, 0, 1])          # component -> class label

#: (name, sampler, label y, scale s) of the guidance figure; DDIM runs 50 steps (η = 0)
GUIDANCE_RUNS = (("DDPM (Alg. 1), y = 0, s = 1", "ddpm", 0, 1.0), ("DDIM (Alg. 2), y = 0, s = 1", "ddim", 0, 1.0),
                 ("DDPM (Alg. 1), y = 0, s = 10", "ddpm", 0, 10.0), ("DDPM (Alg. 1), y = 1, s = 1", "ddpm", 1, 1.0))


def guidance_runs(n: int = 2000, seed: int = 0, T: int = 1000, runs=GUIDANCE_RUNS):
    """{name: samples (n, 2)}: classifier-guided sampling of the mixture with the exact ∇log p(y | x_t)."""
    gmm, sched = default_gmm(), make_schedule("linear", T)
    eps, grad = gmm.eps_model(sched), exact_classifier(gmm, sched, CLASSES)
    out = {}
    for name, kind, y, s in runs:
        if kind == "ddpm":
            out[name] = sample_ddpm_guided(eps, grad, sched, (n, 2), y, scale=s, rng=seed)
        else:
            out[name] = sample_ddim_guided(eps, grad, sched, (n, 2), y, scale=s, steps=50, rng=seed)
    return out


def _guidance_field(ax, gmm, sched, t, y):
    u = np.linspace(-1.5, 1.5, 13)
    X, Y = np.meshgrid(u, u)
    pts = np.stack([X.ravel(), Y.ravel()], 1)
    g = exact_classifier(gmm, sched, CLASSES)(pts, np.full(len(pts), t), np.full(len(pts), y))
    g = g / (1.0 + np.linalg.norm(g, axis=1, keepdims=True))            # squash long arrows, keep directions
    ax.quiver(pts[:, 0], pts[:, 1], g[:, 0], g[:, 1], color="0.3", width=0.004, scale=12)


def plot_classifier_guidance_gmm(seed: int = 0, n: int = 2000, T: int = 1000):
    gmm, sched = default_gmm(), make_schedule("linear", T)
    x, k = gmm.sample(n, rng=seed)
    runs = guidance_runs(n, seed, T)
    fig = new_figure(15, 3.3)
    axes = fig.subplots(1, 1 + len(runs))
    colours = np.array(["tab:blue", "tab:blue", "tab:orange"])
    axes[0].scatter(x[:, 0], x[:, 1], s=1.5, c=colours[k], linewidths=0, rasterized=True)
    _guidance_field(axes[0], gmm, sched, 300, 0)
    axes[0].set_title("data: class 0 (blue) = components 0, 1;\nclass 1 (orange) = component 2. "
                      "Arrows:\n∇log p(y=0 | x_t) at t = 300 (squashed)", fontsize=8)
    for ax, (name, xs) in zip(axes[1:], runs.items()):
        frac, _, stds = mixture_stats(gmm, xs)
        y = 0 if "y = 0" in name else 1
        target = class_conditional(gmm, y, CLASSES).weights
        ax.scatter(xs[:, 0], xs[:, 1], s=1.5, alpha=0.6, linewidths=0, rasterized=True)
        ax.set_title(f"{name}\ncomponent fractions {np.round(frac, 3)}\np(x₀|y={y}) has "
                     f"{np.round(_expand(target, y), 3)}", fontsize=8)
    for ax in axes:
        ax.set(xlim=(-1.6, 1.6), ylim=(-1.2, 1.4), aspect="equal", xticks=[], yticks=[])
    fig.suptitle(f"classifier guidance on the 2-D mixture with the exact classifier gradient (linear, T = {T}, "
                 f"{n} samples each)", fontsize=10)
    return fig


def _expand(weights, y):
    """class y's renormalised weights placed back on the components (0 elsewhere)."""
    full = np.zeros(len(CLASSES))
    full[CLASSES == y] = weights
    return full


@register("classifier_guidance_gmm", "classifier guidance (Dhariwal & Nichol Alg. 1 and 2) on the 2-D mixture with "
          "the exact ∇log p(y | x_t): samples and their component fractions against p(x₀ | y)", lessons=("15",))
def _make_classifier_guidance_gmm(out_dir, seed):
    return [save(plot_classifier_guidance_gmm(seed=seed), out_dir, "classifier_guidance_gmm")]


# ------------------------------------------------------------------ lesson 16: inpainting on the mixture
OBSERVED_X = 0.4           # the observed first coordinate; the second is filled in
RESAMPLES = (1, 2, 5, 10)   # RePaint's r (r = 1 is replacement), jump length 1


def inpainting_schedule(T: int = 100):
    """Linear with β scaled by 1000/T (β from 1e-4·1000/T to 0.02·1000/T), so that ᾱ_T ≈ 0 at T = 100 too."""
    return make_schedule("linear", T, beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)


def w1_distance(a, b) -> float:
    """The 1-D Wasserstein-1 distance between two samples of the same size: mean |sorted a − sorted b|."""
    return float(np.mean(np.abs(np.sort(np.ravel(a)) - np.sort(np.ravel(b)))))


def inpainting_runs(n: int = 2000, seed: int = 0, x_obs: float = OBSERVED_X, resamples=RESAMPLES, T: int = 100):
    """({r: filled-in second coordinates (n,)}, exact draws (n,), another exact draw (n,)) at first coordinate x_obs."""
    gmm, sched = default_gmm(), inpainting_schedule(T)
    observed = np.array([True, False])
    known = np.zeros((n, 2))
    known[:, 0] = x_obs
    mask = np.array([[1.0, 0.0]])
    filled = {r: sample_repaint(gmm.eps_model(sched), sched, known, mask, resamples=r, jump_length=1, rng=seed)[:, 1]
              for r in resamples}
    exact = sample_inpainting_conditional(gmm, known[:, :1], observed, rng=seed + 1)[:, 0]
    exact2 = sample_inpainting_conditional(gmm, known[:, :1], observed, rng=seed + 2)[:, 0]
    return filled, exact, exact2


def plot_inpainting_gmm(seed: int = 0, n: int = 2000, T: int = 100):
    gmm = default_gmm()
    filled, exact, exact2 = inpainting_runs(n, seed, T=T)
    x, _ = gmm.sample(n, rng=seed)
    fig = new_figure(13, 3.8)
    a0, a1, a2 = fig.subplots(1, 3)
    a0.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, linewidths=0, rasterized=True)
    a0.axvline(OBSERVED_X, color="k", lw=1)
    a0.set(xlim=(-1.6, 1.6), ylim=(-1.2, 1.4), aspect="equal", title=f"the mixture; observed x₁ = {OBSERVED_X}\n"
           "(the line): fill in x₂")
    bins = np.linspace(-1.0, 1.4, 61)
    a1.hist(exact, bins=bins, density=True, histtype="stepfilled", color="0.8", label="exact p(x₂ | x₁)")
    for r in (RESAMPLES[0], RESAMPLES[-1]):
        a1.hist(filled[r], bins=bins, density=True, histtype="step", lw=1.3,
                label="replacement (r = 1)" if r == 1 else f"RePaint r = {r}")
    a1.set(xlabel="x₂", title="the filled-in coordinate")
    a1.legend(fontsize=8)
    rs = np.array(list(filled))
    a2.plot(rs, [w1_distance(filled[r], exact) for r in rs], "o-", label="RePaint vs exact")
    a2.axhline(w1_distance(exact, exact2), color="0.4", ls="--", label="exact vs exact (Monte Carlo baseline)")
    a2.set(xscale="log", xticks=rs, xticklabels=[str(r) for r in rs], xlabel="resamples r (jump length 1)",
           ylabel="Wasserstein-1 distance", ylim=(0, None), title=f"distance to the exact conditional ({n} draws)")
    a2.legend(fontsize=8)
    fig.suptitle(f"inpainting the 2-D mixture with its exact ε (linear, T = {T}, β scaled by 1000/T)", fontsize=10)
    return fig


@register("inpainting_gmm", "replacement and RePaint on the 2-D mixture: the filled-in coordinate against the exact "
          "conditional, and the Wasserstein distance against the number of resamples with its Monte Carlo baseline",
          lessons=("16",))
def _make_inpainting_gmm(out_dir, seed):
    return [save(plot_inpainting_gmm(seed=seed), out_dir, "inpainting_gmm")]


# ------------------------------------------------------------------ lesson 16: inpainting the digits (demo model)
class RespacedEps(RespacedModel):
    """A trained ε-model on K of its T steps, with the K-step chain it runs on (``.sched``).

    ``ddpm_ref.sample.respace`` at τ = round(linspace(0, T, K + 1))[1:], i.e. every (T/K)-th step ending
    at T: the respaced chain has ᾱ'_k = ᾱ_{τ_k} (β'_k = 1 − ᾱ_{τ_k}/ᾱ_{τ_{k−1}}, Nichol & Dhariwal
    2021's respacing), and step k asks the network at its own timestep τ_k (``RespacedModel``). Any
    sampler of the K-step schedule then runs the trained model in K network calls per pass instead of T.
    """

    def __init__(self, eps_model, sched, steps: int):
        taus = np.unique(np.linspace(0, sched.T, steps + 1).round().astype(np.int64))[1:]    # τ_1 < … < τ_K = T
        self.sched, taus = respace(sched, taus)
        super().__init__(eps_model, taus)
        self.dtype = getattr(eps_model, "dtype", np.float64)


def inpaint_digits(eps_model, sched, images, mask_names=("right", "bottom"), steps: int = 50, resamples: int = 5,
                   seed: int = 0):
    """{mask name: (mask, {"replacement": x0, f"RePaint r={resamples}": x0})} on a ``steps``-step respacing."""
    from ddpm_ref.inpaint import make_mask

    model = RespacedEps(eps_model, sched, steps)
    out = {}
    for name in mask_names:
        m = make_mask(name, images.shape[2], images.shape[3])
        out[name] = (m, {"replacement": sample_repaint(model, model.sched, images, m, resamples=1, rng=seed),
                         f"RePaint r={resamples}": sample_repaint(model, model.sched, images, m, resamples=resamples,
                                                                  jump_length=1, rng=seed)})
    return out


def plot_inpainting_digits(images, results):
    from ddpm_ref.sample import image_grid

    rows = [("original", images)]
    for name, (m, outs) in results.items():
        rows.append((f"known ({name} half hidden)", np.where(m > 0, images, 0.0)))
        rows += [(f"{k}: {name}", v) for k, v in outs.items()]
    fig = new_figure(10, 0.55 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 1)
    for ax, (title, imgs) in zip(axes, rows):
        ax.imshow(image_grid(np.clip(imgs, -1, 1), nrow=len(imgs), scale=4), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle("the demo model completes held-out digits (hidden half shown grey; 50-step respacing of T = 1000)",
                 fontsize=9)
    return fig


@register("inpainting_digits", "held-out digits with their right or bottom half hidden, completed by the demo model "
          "with replacement and with RePaint (r = 5) on a 50-step respacing", lessons=("16",), needs="demo")
def _make_inpainting_digits(out_dir, seed, run_dir):
    from ddpm_ref.data.digits import load_digits_images
    from ddpm_ref.runs import load_model
    from ddpm_ref.sample import ModelEps

    net, _ = load_model(str(run_dir))
    sched = make_schedule("linear", 1000)
    x, y = load_digits_images("test")
    order = np.argsort(y, kind="stable")
    images = x[order[np.searchsorted(y[order], np.arange(10))]].astype(np.float64)   # the first test digit of each class
    results = inpaint_digits(ModelEps(net), sched, images, seed=seed)
    return [save(plot_inpainting_digits(images, results), out_dir, "inpainting_digits")]


# ------------------------------------------------------------------ lesson 17: latent diffusion in miniature (demo model beside)
def train_latent_diffusion(ae_steps: int = 250, ldm_steps: int = 350, seed: int = 0):
    """(autoencoder, scale factor, latent U-Net with EMA weights): lesson 17's default settings.

    A KL-regularised ``Autoencoder`` (32 hidden channels, 2 latent channels, w = 1e-4) trained ``ae_steps`` steps,
    the latents rescaled by ``fit_scale_factor``, and a class-conditional ``UNet`` on the 2×4×4 latents trained
    ``ldm_steps`` steps with ``ddpm_ref.train.train_step`` (label dropout 0.1, EMA 0.99).
    """
    from ddpm_ref.data import Dataset
    from ddpm_ref.data.digits import load_digits_images
    from ddpm_ref.models.autoencoder import Autoencoder, fit_scale_factor
    from ddpm_ref.models.unet import UNet
    from ddpm_ref.optim import Adam
    from ddpm_ref.train import TrainConfig, new_state, train_step

    x, y = load_digits_images("train")
    ae = Autoencoder(hidden_channels=32, latent_channels=2, kl_weight=1e-4, dtype="float32", seed=seed)
    opt, g = Adam(ae.params), np.random.default_rng(seed)
    for step in range(ae_steps):
        _, _, grads, _ = ae.loss_and_grads(x[g.integers(0, len(x), 64)], rng=step, sample=True)
        opt.update(ae.params, grads, 2e-3 if step < 0.7 * ae_steps else 5e-4)
    scale = fit_scale_factor(ae.encode(x[:256]))
    data = Dataset(x=ae.encode(x, scale), y=y, num_classes=10, name="digit latents")
    net = UNet(in_channels=2, image_size=4, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
               attention_resolutions=(2,), groups=4, num_classes=10, dtype="float32", seed=seed)
    config = TrainConfig(data="digit latents", steps=ldm_steps, lr=2e-3, warmup=50, cond=True, p_uncond=0.1,
                         seed=seed, ema_decay=0.99)
    state = new_state(net, config)
    for _ in range(ldm_steps):
        train_step(state, data, make_schedule("linear", 1000), config)
    for k, v in state.ema.params.items():
        net.params[k][...] = v
    return ae, scale, net


def plot_latent_diffusion(pixel_net, ae, scale, latent_net, seed: int = 0, per_class: int = 3):
    from ddpm_ref.data.digits import load_digits_images
    from ddpm_ref.sample import ModelEps, image_grid, sample_ddim

    sched = make_schedule("linear", 1000)
    x, y = load_digits_images("test")
    order = np.argsort(y, kind="stable")
    originals = x[order[np.searchsorted(y[order], np.arange(10))]]
    labels = np.tile(np.arange(10), per_class)
    pixel = sample_ddim(ModelEps(pixel_net), sched, (len(labels), 1, 8, 8), steps=25, rng=seed, y=labels,
                        guidance=1.0, progress=False)
    latent = sample_ddim(ModelEps(latent_net), sched, (len(labels), 2, 4, 4), steps=25, rng=seed, y=labels,
                         guidance=1.0, progress=False)
    z = ae.encode(originals, scale)
    rows = [("held-out digits", originals), ("their reconstructions D(E(x))", ae.decode(z, scale)),
            ("their latents E(x)·s, channel 0 (4×4)", np.repeat(np.repeat(z[:, :1], 2, 2), 2, 3)),
            ("pixel diffusion (the demo model), 25 DDIM steps, w = 1", pixel),
            ("latent diffusion, decoded: D(z₀/s), 25 DDIM steps, w = 1", ae.decode(latent.astype(np.float32), scale))]
    fig = new_figure(8, 7.2)
    axes = fig.subplots(len(rows), 1, gridspec_kw={"height_ratios": [1, 1, 1, per_class, per_class]})
    for ax, (title, imgs) in zip(axes, rows):
        ax.imshow(image_grid(np.clip(imgs, -1, 1), nrow=10, scale=4), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle(f"latent diffusion in miniature: KL autoencoder (8×8 → 2×4×4, scale factor {scale:.3f}) "
                 "and a latent U-Net trained 350 steps", fontsize=9)
    return fig


@register("latent_diffusion", "held-out digits, their autoencoder reconstructions and latents, and samples of pixel "
          "diffusion (the demo model) beside latent diffusion decoded (autoencoder and latent U-Net trained as in "
          "lesson 17's default settings)", lessons=("17",), needs="demo")
def _make_latent_diffusion(out_dir, seed, run_dir):
    from ddpm_ref.runs import load_model

    pixel_net, _ = load_model(str(run_dir))
    ae, scale, latent_net = train_latent_diffusion(seed=seed)
    return [save(plot_latent_diffusion(pixel_net, ae, scale, latent_net, seed=seed), out_dir, "latent_diffusion")]
