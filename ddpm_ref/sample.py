r"""Sampling: Algorithm 2 (DDPM) and DDIM, driven by any ε-model callable, plus PNG grids.

Layer: loop (imports the model, layers and math; never the command line).

Every sampler takes an **ε-model**: a callable ``eps_model(xt, t, y=None) -> eps`` with ``t`` an
int array (N,) in 1..T and ``y`` an int array (N,) of class labels or ``None`` (unconditional).
Three kinds plug in:

* ``GaussianMixture.eps_model(sched)`` — the closed-form optimal denoiser (no training needed);
* ``ModelEps(net)`` — a trained ``UNet`` or ``MLP`` (inference mode, no caches kept);
* any function you write.

**Classifier-free guidance** (Ho & Salimans 2021) with guidance scale w:

.. math::  \tilde ε = (1 + w)\, ε_θ(x_t, t, y) − w\, ε_θ(x_t, t, ∅)

w = 0 is plain conditional sampling, w > 0 pushes samples towards what the class makes likely
(this is the paper's form; some codebases write s·ε(y) + (1 − s)·ε(∅) with s = 1 + w).

Determinism: all randomness (x_T and every z) is drawn from one ``numpy.random.Generator``
(``rng``: a Generator or an int seed) in a fixed order, so a seed fixes the samples. Timesteps
follow the paper, t = T, T−1, ..., 1.

Why just over 400 lines: Algorithm 2, DDIM, respacing and guidance share their setup and model
wrapper; the PNG grid sits at the end because every command that samples writes one.
"""

from __future__ import annotations

import numbers

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_positive_int
from ddpm_ref._rng import as_generator
from ddpm_ref.diffusion import PREDICTIONS, THRESHOLDS, ddim_step, ddpm_step, predict_x0, sampling_timesteps, x0_from_prediction
from ddpm_ref.schedules import Schedule

__all__ = ["ModelEps", "ddim_timesteps", "guided_eps", "sample_ddpm", "sample_ddpm_respaced", "respace", "RespacedModel", "sample_ddim", "image_grid", "save_grid_png"]


class ModelEps:
    """A ``UNet``/``MLP`` as an ε-model callable: ``eps = ModelEps(net)(xt, t, y)``.

    Runs ``net.forward(..., keep_cache=False)`` (no caches: inference), in chunks of at most
    ``batch_size`` examples, casting x_t to the network's dtype. ``num_classes``, ``dtype`` and
    ``learn_sigma`` are exposed for the samplers. ``to_device``/``to_host`` (optional) move arrays
    to and from a GPU. Despite the name, the output is whatever the network was trained to predict
    (ε, x_0 or v: the samplers' ``prediction``); a network with ``learn_sigma`` returns 2·C channels,
    [prediction | v_σ] along axis 1, which the samplers split.
    """

    def __init__(self, net, batch_size: int | None = 512, to_device=None, to_host=None):
        self.net = net
        self.num_classes = net.config.get("num_classes")
        self.learn_sigma = bool(net.config.get("learn_sigma", False))
        self.dtype = np.dtype(net.config.get("dtype", "float32"))
        self.batch_size = batch_size
        self._to_device = to_device or (lambda a: a)
        self._to_host = to_host or (lambda a: a)

    def __call__(self, xt, t, y=None):
        xt = np.asarray(xt, dtype=self.dtype)
        n = xt.shape[0]
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))
        step = self.batch_size or n
        outs = []
        for i in range(0, n, step):
            yi = None if y is None else np.asarray(y[i:i + step])
            eps = self._forward(self._to_device(xt[i:i + step]), self._to_device(t[i:i + step].copy()), yi)
            outs.append(self._to_host(eps))
        return np.concatenate(outs) if len(outs) > 1 else outs[0]

    def _forward(self, x, t, y):
        """One chunk through the network (x, t on the device; y the chunk's labels or None)."""
        return self.net.forward(x, t, None if y is None else self._to_device(y), keep_cache=False)


def _check_labels(eps_model, y, n: int, guidance: float):
    """Labels as an int64 array (N,) or None; guidance needs labels and a class-conditional model."""
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not np.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    num_classes = getattr(eps_model, "num_classes", None)
    if y is None:
        if guidance != 0:
            raise ValueError("guidance needs class labels (y / --label): classifier-free guidance "
                             "mixes a conditional and an unconditional prediction")
        return None
    if num_classes is None:
        raise ValueError("class labels were given but the model has no classes "
                         "(train with --cond for a class-conditional model)")
    y = np.broadcast_to(np.asarray(y), (n,))
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be integers in 0..{num_classes - 1}, got {np.unique(y)[:10]}")
    return y.astype(np.int64)


def guided_eps(eps_model, xt, t, y=None, guidance: float = 0.0):
    r"""ε̃ = (1 + w) ε(x_t, t, y) − w ε(x_t, t, ∅); just ε(x_t, t, y) when w = 0 or y is None.

    The same mix applies to an x_0- or v-prediction. A learned-variance output of 2·C channels,
    [pred | v_σ] on axis 1, is guided in its first half only and keeps the conditional v_σ (as GLIDE
    and improved-diffusion do: guidance moves the mean, not the variance).
    """
    eps = eps_model(xt, t, y)
    if y is None or guidance == 0:
        return eps
    uncond = eps_model(xt, t, None)
    eps, uncond = np.asarray(eps), np.asarray(uncond)
    c = np.shape(xt)[1]
    if eps.ndim >= 2 and eps.shape[1] == 2 * c and eps.shape[1] != c:          # [pred | v_σ]
        mixed = (1.0 + guidance) * eps[:, :c] - guidance * uncond[:, :c]
        return np.concatenate([mixed, eps[:, c:]], axis=1)
    return (1.0 + guidance) * eps - guidance * uncond


def ddim_timesteps(T: int, steps: int) -> np.ndarray:
    """The DDIM subsequence τ of 1..T, descending: ``steps`` values evenly spaced from T down to 1.

    τ = round(linspace(1, T, steps)) reversed (distinct because the spacing is ≥ 1 when
    steps ≤ T); ``steps = 1`` gives [T]. ``steps = T`` gives every t, so DDIM with η = 1 is then
    DDPM with σ_t² = β̃_t. (Song et al.'s "uniform" skip, range(0, T, T // steps), is the same
    idea in 0-based indexing but need not include T.)
    """
    T = check_positive_int("T", T)
    steps = check_positive_int("steps", steps)
    if steps > T:
        raise ValueError(f"steps={steps} is more than the schedule's T={T}; DDIM uses a subsequence of 1..T")
    if steps == 1:
        return np.array([T], dtype=np.int64)
    return np.round(np.linspace(1, T, steps)).astype(np.int64)[::-1].copy()


def _setup(eps_model, sched, shape, rng, y, guidance, dtype):
    if not isinstance(sched, Schedule):
        raise ValueError(f"sched must be a Schedule, got {type(sched).__name__}")
    if not callable(eps_model):
        raise ValueError("eps_model must be a callable eps_model(xt, t, y=None)")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (N, ...) with every size >= 1, got {shape}")
    dtype = np.dtype(dtype or getattr(eps_model, "dtype", np.float64))
    g = as_generator(rng)
    y = _check_labels(eps_model, y, shape[0], guidance)
    x = g.standard_normal(shape).astype(dtype)          # x_T ~ N(0, I)
    return g, y, x, dtype


def _frame_steps(ts: np.ndarray, num_frames: int) -> set:
    """Which of the visited timesteps to keep as frames (evenly spaced, first and last included)."""
    if num_frames >= len(ts):
        return set(int(t) for t in ts)
    idx = np.round(np.linspace(0, len(ts) - 1, num_frames)).astype(int)
    return set(int(ts[i]) for i in idx)


def _finish(x, sched, frames, return_trajectory):
    x = (x / sched.input_scale).astype(x.dtype, copy=False)   # the chain ends at b·x̂_0
    if not return_trajectory:
        return x
    traj = {"t": np.array([f[0] for f in frames] + [0]),
            "x": np.stack([f[1] for f in frames] + [x]),
            "x0_pred": np.stack([f[2] for f in frames] + [x])}
    return x, traj


def _check_sampler_options(eps_model, sched, prediction, threshold, clip_x0, learn_sigma):
    """Checks of the sampler options (the rest is ``_setup``'s); returns whether v_σ comes with the output."""
    if not isinstance(prediction, str) or prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be None or 'dynamic', got {threshold!r}")
    if threshold is not None and clip_x0:
        raise ValueError("threshold='dynamic' and clip_x0=True both keep x̂_0 in range: choose one")
    if isinstance(sched, Schedule) and prediction == "eps" and sched.alpha_bars[sched.T] == 0:
        raise ValueError("this schedule has zero terminal SNR (alpha_bar_T = 0): an eps-prediction model cannot "
                         "recover x_0 at t = T; use a model trained with prediction='v' or 'x0'")
    if learn_sigma is None:
        learn_sigma = bool(getattr(eps_model, "learn_sigma", False))
    return bool(learn_sigma)


def _model_output(eps_model, x, t_arr, y, guidance, dtype, learn_sigma):
    """The network's prediction (ε, x_0 or v) and its v_σ (None without a learned variance)."""
    out = np.asarray(guided_eps(eps_model, x, t_arr, y, guidance))
    if not learn_sigma:
        return out.astype(dtype), None
    c = x.shape[1]
    if out.shape[1] != 2 * c:
        raise ValueError(f"a learned-variance model must return 2·C = {2 * c} channels on axis 1 "
                         f"([prediction | v_sigma]), got shape {out.shape}")
    return out[:, :c].astype(dtype), out[:, c:].astype(dtype)


def _x0_frame(sched, x, t_arr, pred, prediction):
    return predict_x0(sched, x, t_arr, pred) if prediction == "eps" else x0_from_prediction(sched, x, t_arr, pred,
                                                                                              prediction)


def sample_ddpm(eps_model, sched, shape, *, rng=0, y=None, guidance: float = 0.0,
                variance: str = "fixed_small", clip_x0: bool = False, dtype=None,
                return_trajectory: bool = False, num_frames: int = 10, progress: bool = True,
                prediction: str = "eps", clip_range: float = 1.0, threshold=None, percentile: float = 0.995,
                learn_sigma: bool | None = None):
    r"""Algorithm 2 of Ho et al. 2020: x_T ~ N(0, I), then for t = T, ..., 1

    .. math::  x_{t-1} = \frac{1}{\sqrt{α_t}}\Big(x_t − \frac{β_t}{\sqrt{1 − \bar α_t}} ε_θ(x_t, t)\Big) + σ_t z,
               \quad z \sim N(0, I) \text{ if } t > 1 \text{ else } 0

    (``ddpm_step``), σ_t² = β̃_t (``"fixed_small"``) or β_t (``"fixed_large"``). ``shape``: the
    samples' shape (N, ...). ``y``: labels (N,) or one int; ``guidance``: w (module docstring).
    ``clip_x0`` is off by default, as in Algorithm 2.

    Beyond Algorithm 2 (issue 11): ``prediction`` ("eps", "x0", "v") says what the model returns;
    with "x0"/"v" a zero-terminal-SNR schedule is sampled from t = T (eps is refused there).
    ``clip_x0``/``clip_range`` clip x̂_0 to [−r, r]; ``threshold="dynamic"`` (with ``percentile``)
    thresholds it instead. ``learn_sigma`` (default: the model's ``learn_sigma`` attribute, as
    ``ModelEps`` sets it): the model returns [prediction | v_σ] on axis 1 and σ_t² is learned
    (Nichol & Dhariwal eq. 15); ``variance`` is then unused.

    Returns x_0 (N, ...), or ``(x_0, trajectory)`` with ``return_trajectory=True``: a dict with
    ``"t"`` (K + 1,), the frames ``"x"`` (K + 1, N, ...) — x_t *before* the step at each kept t,
    then the final x_0 under t = 0 — and ``"x0_pred"``, the x̂_0 predicted at those steps.
    """
    learn_sigma = _check_sampler_options(eps_model, sched, prediction, threshold, clip_x0, learn_sigma)
    g, y, x, dtype = _setup(eps_model, sched, shape, rng, y, guidance, dtype)
    ts = np.arange(sched.T, 0, -1)
    keep = _frame_steps(ts, num_frames) if return_trajectory else set()
    frames = []
    bar = tqdm(ts, desc="DDPM sampling", unit="step", disable=not progress, leave=False)
    for t in bar:
        t_arr = np.full(shape[0], t, dtype=np.int64)
        pred, v_sigma = _model_output(eps_model, x, t_arr, y, guidance, dtype, learn_sigma)
        if t in keep:
            frames.append((int(t), x.copy(), _x0_frame(sched, x, t_arr, pred, prediction)))
        z = g.standard_normal(shape).astype(dtype) if t > 1 else None
        x = ddpm_step(sched, x, t_arr, pred, z, variance=variance, clip_x0=clip_x0, prediction=prediction,
                      v_sigma=v_sigma, clip_range=clip_range, threshold=threshold, percentile=percentile)
    return _finish(x, sched, frames, return_trajectory)


def respace(sched: Schedule, timesteps) -> tuple[Schedule, np.ndarray]:
    r"""The chain that visits only ``timesteps`` τ_1 < … < τ_S of ``sched`` (Nichol & Dhariwal 2021,
    sec. 4), as a ``Schedule`` of S steps, and τ (increasing, paper indexing):

    .. math::  \bar α'_i = \bar α_{τ_i}, \qquad β'_i = 1 − \bar α_{τ_i} / \bar α_{τ_{i−1}} \quad (\bar α_{τ_0} = 1)

    Sampling the new chain with Algorithm 2 (``sample_ddpm``) while the network is told the
    original τ_i (``RespacedModel``) is DDPM with fewer steps; a learned v_σ then interpolates
    between β'_i and β̃'_i of the new chain, as improved-diffusion's ``SpacedDiffusion`` does.
    """
    taus = np.unique(np.asarray(timesteps, dtype=np.int64))
    if taus.size == 0 or taus[0] < 1 or taus[-1] > sched.T:
        raise ValueError(f"timesteps must lie in 1..{sched.T}, got {np.asarray(timesteps)!r}")
    alpha_bar = sched.alpha_bars[taus]
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    betas = 1.0 - alpha_bar / alpha_bar_prev                                   # β'_i
    return Schedule.from_betas(betas, name=f"{sched.name}@{taus.size}", input_scale=sched.input_scale), taus


class RespacedModel:
    """The model of a respaced chain: step i of the new chain calls the network at the original τ_i."""

    def __init__(self, eps_model, taus):
        self.eps_model, self.taus = eps_model, np.asarray(taus, dtype=np.int64)
        self.num_classes = getattr(eps_model, "num_classes", None)
        self.learn_sigma = bool(getattr(eps_model, "learn_sigma", False))

    def __call__(self, xt, t, y=None):
        tau = self.taus[np.asarray(t) - 1]                                     # i -> τ_i
        return self.eps_model(xt, tau) if y is None else self.eps_model(xt, tau, y)


def sample_ddpm_respaced(eps_model, sched, shape, *, steps: int, spacing: str = "linspace", **kwargs):
    """Algorithm 2 with ``steps`` of the T steps (``respace``; timesteps from ``sampling_timesteps``
    with ``spacing``). ``steps = T`` is ``sample_ddpm`` itself. Other keyword arguments as for
    ``sample_ddpm``; a trajectory's ``"t"`` is given in the original timesteps."""
    steps = check_positive_int("steps", steps)
    if steps > sched.T:
        raise ValueError(f"steps must be at most T = {sched.T}, got {steps}")
    new_sched, taus = respace(sched, sampling_timesteps(sched.T, steps, spacing))
    out = sample_ddpm(RespacedModel(eps_model, taus), new_sched, shape, **kwargs)
    if kwargs.get("return_trajectory"):
        x, traj = out
        traj["t"] = np.where(traj["t"] > 0, taus[np.maximum(traj["t"], 1) - 1], 0)
        return x, traj
    return out


def sample_ddim(eps_model, sched, shape, *, steps: int = 50, eta: float = 0.0, rng=0, y=None,
                guidance: float = 0.0, clip_x0: bool = False, dtype=None,
                return_trajectory: bool = False, num_frames: int = 10, progress: bool = True,
                prediction: str = "eps", spacing: str | None = None, steps_offset: int = 0,
                set_alpha_to_one: bool = True, clip_range: float = 1.0, threshold=None,
                percentile: float = 0.995, use_clipped_model_output: bool = True,
                learn_sigma: bool | None = None):
    r"""DDIM (Song et al. 2021, eq. 12) on a decreasing subsequence τ of 1..T:

    .. math::  x_{τ_{i-1}} = \sqrt{\bar α_{τ_{i-1}}}\, \hat x_0 + \sqrt{1 − \bar α_{τ_{i-1}} − σ^2}\, ε_θ + σ z

    with σ from η (eq. 16; η = 0: deterministic, the same x_T always gives the same x_0) and the
    last step going to t_prev = 0 (ᾱ = 1), which returns x̂_0. Other arguments and the return
    value as for ``sample_ddpm``.

    τ: ``spacing=None`` (default) is ``ddim_timesteps(T, steps)``, as before issue 11;
    "linspace", "leading" or "trailing" (+ ``steps_offset``) is ``sampling_timesteps`` — diffusers'
    ``timestep_spacing`` (with a zero-terminal-SNR schedule use "trailing" or "linspace", which start
    at t = T; "leading" does not). Each step goes to the next visited t (diffusers' DDIMScheduler
    goes to t − T // steps instead, which differs for "linspace"). ``set_alpha_to_one=False`` ends on
    ᾱ_1 instead of ᾱ_0 = 1 (diffusers' option). ``clip_x0``/``clip_range``/``threshold``/
    ``percentile``/``use_clipped_model_output``: see ``ddim_step`` (by default ε is recomputed from
    the kept x̂_0). A learned-variance model's v_σ is split off and unused: DDIM's σ comes from η.
    """
    learn_sigma = _check_sampler_options(eps_model, sched, prediction, threshold, clip_x0, learn_sigma)
    g, y, x, dtype = _setup(eps_model, sched, shape, rng, y, guidance, dtype)
    if spacing is None:
        ts = ddim_timesteps(sched.T, steps)
    else:
        ts = sampling_timesteps(sched.T, steps, spacing, steps_offset)
    prevs = np.append(ts[1:], 0)
    final_ab = None if set_alpha_to_one else float(sched.alpha_bars[1])
    keep = _frame_steps(ts, num_frames) if return_trajectory else set()
    frames = []
    bar = tqdm(list(zip(ts, prevs)), desc=f"DDIM sampling (eta={eta:g})", unit="step",
               disable=not progress, leave=False)
    for t, t_prev in bar:
        t_arr = np.full(shape[0], t, dtype=np.int64)
        pred, _ = _model_output(eps_model, x, t_arr, y, guidance, dtype, learn_sigma)
        if t in keep:
            frames.append((int(t), x.copy(), _x0_frame(sched, x, t_arr, pred, prediction)))
        z = g.standard_normal(shape).astype(dtype) if eta > 0 else None
        x = ddim_step(sched, x, t_arr, np.full(shape[0], t_prev, dtype=np.int64), pred,
                      eta=eta, z=z, clip_x0=clip_x0, prediction=prediction,
                      alpha_bar_prev=final_ab if t_prev == 0 else None, clip_range=clip_range,
                      threshold=threshold, percentile=percentile,
                      use_clipped_model_output=use_clipped_model_output)
    return _finish(x, sched, frames, return_trajectory)


#: The largest PNG grid ``image_grid`` builds, in pixels (values, for colour): 2^28, 268 MB as
#: uint8 — about 200,000 samples of 8×8 at the default scale 4. Larger grids are refused.
MAX_GRID_PIXELS = 2 ** 28


def _check_grid_args(imgs, nrow, scale, padding, pad_value):
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3) or imgs.shape[0] < 1:
        raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W) with C = 1 or 3, got {imgs.shape}")
    if not (np.issubdtype(imgs.dtype, np.floating) or np.issubdtype(imgs.dtype, np.integer)):
        raise ValueError(f"images must be a real-valued array, got dtype {imgs.dtype}")
    if not np.isfinite(imgs).all():
        raise ValueError("images hold NaN or infinite values")
    n, c, h, w = imgs.shape
    nrow = check_positive_int("nrow", nrow or int(np.ceil(np.sqrt(n))))
    scale = check_positive_int("scale", scale)
    if isinstance(padding, bool) or not isinstance(padding, numbers.Integral) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    if (isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real)
            or not 0.0 <= pad_value <= 1.0):           # also refuses NaN
        raise ValueError(f"pad_value must be a number in [0, 1], got {pad_value!r}")
    rows = -(-n // nrow)
    size = (c * (rows * (h + padding) + padding) * scale, (nrow * (w + padding) + padding) * scale)
    if size[0] * size[1] > MAX_GRID_PIXELS:
        raise ValueError(f"a grid of {n} images of {h}×{w} at scale {scale} has {size[0] * size[1]:,} pixel "
                         f"values, more than MAX_GRID_PIXELS = {MAX_GRID_PIXELS:,}; draw fewer or use scale=1")
    return imgs, nrow, rows


def image_grid(images, nrow: int | None = None, scale: int = 4, padding: int = 1,
               pad_value: float = 0.5, dtype=np.float64) -> np.ndarray:
    """Tile images (N, C, H, W) or (N, H, W) in [−1, 1] into one (rows, cols[, 3]) array.

    ``nrow``: images per row (default ≈ √N). Each image is enlarged ``scale`` times
    (nearest neighbour) so that 8×8 digits are visible; cells are separated by ``padding`` pixels
    (before scaling) of grey ``pad_value`` ∈ [0, 1]. ``dtype``: a float type gives values in
    [0, 1]; ``numpy.uint8`` gives 0..255 (what a PNG holds: 1 byte a value, the grid is built
    one image at a time, so no float copy of all N images is ever made).
    """
    imgs, nrow, rows = _check_grid_args(np.asarray(images), nrow, scale, padding, pad_value)
    n, c, h, w = imgs.shape
    dtype = np.dtype(dtype)
    top = 255.0 if dtype == np.uint8 else 1.0
    grid = np.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding),
                   np.round(pad_value * top) if dtype == np.uint8 else pad_value, dtype=dtype)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + col * (w + padding)
        cell = (np.clip(imgs[i].astype(np.float64), -1, 1) + 1) / 2 * top      # [−1, 1] → [0, top]
        grid[:, y0:y0 + h, x0:x0 + w] = np.round(cell) if dtype == np.uint8 else cell
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_grid_png(images, path: str, nrow: int | None = None, scale: int = 4) -> str:
    """Write images (N, C, H, W) in [−1, 1] as a PNG grid (``image_grid``); returns the path.

    Grey-scale images are drawn with −1 black and +1 white. The grid is built as uint8 (1 byte a
    pixel value) and written with Pillow, atomically (``ddpm_ref.checkpoint.write_atomic``): an
    error or a full disk leaves no half-written PNG.
    """
    from PIL import Image      # a dependency of matplotlib

    from ddpm_ref.checkpoint import write_atomic

    grid = image_grid(images, nrow=nrow, scale=scale, dtype=np.uint8)
    image = Image.fromarray(grid)             # 2-D uint8: mode "L" (grey); (H, W, 3): "RGB"
    write_atomic(path, lambda f: image.save(f, format="PNG"))
    return path
