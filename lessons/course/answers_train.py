"""Checkers (and solutions) for the exercises of lessons 8-10: training, sampling, guidance.

The function exercises are run on fresh inputs against ``ddpm_ref`` (``q_sample``/``loss_simple``,
``ddim_step``, ``ddpm_step``, ``guided_eps``, the label dropout of ``train_step``); each registers
the plausible mistakes it can name.

Why over 400 lines: the checkers, plausible wrong answers, hints and solutions of every exercise of
lessons 8-10, one block per exercise, in the order the lessons ask them.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise
from course.answers_nn import NOT_ANSWERED


def _linear(T=1000):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("linear", T)


# --------------------------------------------------------------------------------------------
# Lesson 08: training
# --------------------------------------------------------------------------------------------

# ---- 08.1: the loss of one step of Algorithm 1, given the network ----

def _my_l_simple(eps_model, x0, t, eps, alpha_bars):
    ab = alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))         # one ᾱ_t per example
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    return np.mean((eps - eps_model(xt, t)) ** 2)


def _l_simple_with(xt_of, t_of=lambda t: t, reduce=np.mean):
    def wrong(eps_model, x0, t, eps, alpha_bars):
        xt = xt_of(alpha_bars, x0, t, eps)
        return reduce((eps - eps_model(xt, t_of(t))) ** 2)
    return wrong


def _col(a, t, x0):
    return a[t].reshape(-1, *([1] * (x0.ndim - 1)))


_ALG1_MISTAKES = {
    "ᾱ_{t−1} instead of ᾱ_t (an off-by-one t)":
        _l_simple_with(lambda ab, x0, t, e: np.sqrt(_col(ab, t - 1, x0)) * x0 + np.sqrt(1 - _col(ab, t - 1, x0)) * e),
    "ᾱ_t and 1 − ᾱ_t without their square roots":
        _l_simple_with(lambda ab, x0, t, e: _col(ab, t, x0) * x0 + (1 - _col(ab, t, x0)) * e),
    "the network called with t − 1":
        _l_simple_with(lambda ab, x0, t, e: np.sqrt(_col(ab, t, x0)) * x0 + np.sqrt(1 - _col(ab, t, x0)) * e,
                       t_of=lambda t: t - 1),
    "the sum of squares instead of the mean":
        _l_simple_with(lambda ab, x0, t, e: np.sqrt(_col(ab, t, x0)) * x0 + np.sqrt(1 - _col(ab, t, x0)) * e,
                       reduce=np.sum),
}


class _RecordingModel:
    """A stand-in ε_θ(x_t, t) that is not zero and depends on x_t and t, and records its inputs."""

    def __init__(self):
        self.calls = []

    def __call__(self, xt, t):
        xt, t = np.asarray(xt), np.asarray(t)
        self.calls.append((xt.copy(), t.copy()))
        return 0.5 * xt + np.sin(t.reshape(-1, *([1] * (xt.ndim - 1))) / 100.0)


def _alg1_inputs():
    g = np.random.default_rng(81)
    out = []
    for shape, ts in [((4, 1, 3, 3), [1, 2, 500, 1000]), ((3, 2), [7, 999, 250]), ((5, 1, 2, 2), None)]:
        t = np.array(ts) if ts is not None else g.integers(1, 1001, size=shape[0])
        out.append((g.uniform(-1, 1, shape), t, g.standard_normal(shape)))
    return out


@exercise("08.1", solution=lambda: _my_l_simple,
          wrong={what: (lambda fn=fn: fn) for what, fn in _ALG1_MISTAKES.items()},
          hints=("Two lines: build x_t from x_0 and ε (eq. 4, one ᾱ_t per example, broadcast over the image), "
                 "then the mean squared difference between ε and the network's prediction at (x_t, t).",
                 "x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε with alpha_bars[t] (index t, the paper's t = 1..T); "
                 "loss = mean((ε − ε_θ(x_t, t))²)."))
def _ex_08_1(answer):
    from ddpm_ref.diffusion import loss_simple, q_sample

    if not callable(answer):
        return False, f"expected a function, got {type(answer).__name__}."
    sched = _linear()
    for x0, t, eps in _alg1_inputs():
        model = _RecordingModel()
        got = answer(model, x0, t, eps, sched.alpha_bars)
        if got is None:
            return None, NOT_ANSWERED
        xt_ref = q_sample(sched, x0, t, eps)
        if not model.calls:
            return False, "your function never called eps_model: the loss compares ε with the network's prediction."
        xt_got, t_got = model.calls[-1]
        if t_got.shape != t.shape or not np.array_equal(t_got, t):
            if t_got.shape == t.shape and np.array_equal(t_got, t - 1):
                return False, "the network was called with t − 1; it takes the same t (1..T) that gave x_t."
            return False, f"the network was called with t = {t_got.tolist()}, expected {t.tolist()}."
        mistakes = {what: fn(_RecordingModel(), x0, t, eps, sched.alpha_bars) for what, fn in _ALG1_MISTAKES.items()}
        ok, message = compare(xt_got, xt_ref, rtol=1e-9, atol=1e-12)
        if not ok:
            for what, value in mistakes.items():
                if np.ndim(got) == 0 and np.isclose(float(got), value, rtol=1e-9):
                    return False, f"x_t is wrong: this looks like {what}."
            return False, f"the x_t you gave the network is wrong: {message}"
        ok, message = compare(got, loss_simple(eps, model(xt_ref, t)), rtol=1e-9, atol=1e-12, mistakes=mistakes)
        if not ok:
            return False, f"x_t is right, the loss is not: {message}"
    return True, "(x_t and the loss agree with q_sample and loss_simple on 3 batches)"


def _ema_mean_age(d=0.999):
    return d / (1 - d)


@exercise("08.2", solution=_ema_mean_age,
          wrong={"the weight of the newest step, 1 − d": lambda: 0.001, "d itself": lambda: 0.999},
          hints=("The weights (1 − d)d^k sum to 1; their mean k is a geometric series' derivative.",
                 "Σ_k k (1 − d) d^k = d/(1 − d): about 1/(1 − d) steps."))
def _ex_08_2(answer):
    return compare(answer, _ema_mean_age(), rtol=0.01)


def _lr_at_30():
    from ddpm_ref.optim import warmup_lr

    return warmup_lr(30, 1e-3, 100)


@exercise("08.3", solution=_lr_at_30,
          wrong={"the full learning rate (no warm-up)": lambda: 1e-3, "steps counted from 0 (29/100)": lambda: 2.9e-4},
          hints=("During warm-up the rate grows linearly from 0 to η over W steps; steps count from 1.",
                 "η · min(1, s / W)."))
def _ex_08_3(answer):
    return compare(answer, _lr_at_30(), rtol=1e-6,
                   mistakes={"steps counted from 0 (step 30 is the 31st step here, s = 30)": 2.9e-4,
                             "the full rate: step 30 is still inside the 100 warm-up steps": 1e-3})


# --------------------------------------------------------------------------------------------
# Lesson 09: sampling
# --------------------------------------------------------------------------------------------


def _ddim_5():
    from ddpm_ref.sample import ddim_timesteps

    return [int(t) for t in ddim_timesteps(1000, 5)]


def _ddim_5_by_hand():
    """Rounding 500.5 up, as one does by hand: wrong for NumPy, which rounds halves to even."""
    return [1000, 750, 501, 251, 1]


@exercise("09.1", solution=_ddim_5,
          wrong={"500.5 rounded up by hand (NumPy rounds halves to even)": _ddim_5_by_hand,
                 "the right timesteps in ascending order": lambda: _ddim_5()[::-1],
                 "0-based timesteps (diffusers' indexing)": lambda: [t - 1 for t in _ddim_5()]},
          hints=("Compute linspace(1, 1000, 5) first, then round each value the way NumPy does.",
                 "τ = np.round(np.linspace(1, T, steps)) reversed; np.round(500.5) is 500 (round half to even)."))
def _ex_09_1(answer):
    expected = _ddim_5()
    try:
        a = [int(round(float(v))) for v in answer]
    except TypeError:
        return False, "expected a list of 5 timesteps."
    if a == _ddim_5_by_hand():
        return False, ("right except 501: linspace gives 500.5, and NumPy's round takes halves to the nearest "
                       "even integer (np.round(500.5) = 500, np.round(250.75) = 251). The sampler visits 500.")
    if a == expected[::-1]:
        return False, "the right timesteps, in the wrong order: the reverse process visits them from T down."
    if a == [t - 1 for t in expected]:
        return False, "these are 0-based (diffusers' t − 1); the lessons count t = 1..T."
    return compare(answer, expected, atol=0)


# ---- 09.2: one DDIM step ----

def _my_ddim_step(xt, eps, t, t_prev, alpha_bars, eta, z):
    ab, ab_prev = alpha_bars[t], alpha_bars[t_prev]
    x0_hat = (xt - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
    return np.sqrt(ab_prev) * x0_hat + np.sqrt(1 - ab_prev - sigma ** 2) * eps + sigma * z


def _ddim_reference(xt, eps, t, t_prev, alpha_bars, eta, z):
    from ddpm_ref.diffusion import ddim_step

    return ddim_step(_linear(), xt, t, t_prev, eps, eta=eta, z=z)


def _ddim_variant(*, sigma_in_dir=True, sqrt_prev=True, shift=0, clip=False):
    def wrong(xt, eps, t, t_prev, alpha_bars, eta, z):
        ab, ab_prev = alpha_bars[t - shift], alpha_bars[max(t_prev - shift, 0)]
        x0_hat = (xt - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        if clip:
            x0_hat = np.clip(x0_hat, -1, 1)
        sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
        direction = np.sqrt(1 - ab_prev - (sigma ** 2 if sigma_in_dir else 0)) * eps
        return (np.sqrt(ab_prev) if sqrt_prev else ab_prev) * x0_hat + direction + sigma * z
    return wrong


_DDIM_MISTAKES = {
    "σ² left out of the direction term √(1 − ᾱ_{t'} − σ²)": _ddim_variant(sigma_in_dir=False),
    "ᾱ_{t'} instead of √ᾱ_{t'} in front of x̂_0 (a missing square root)": _ddim_variant(sqrt_prev=False),
    "ᾱ at t − 1 and t' − 1 (an off-by-one t)": _ddim_variant(shift=1),
    "x̂_0 clipped to [−1, 1] (eq. 12 has no clip; the library clips only with clip_x0=True)": _ddim_variant(clip=True),
}


def _ddim_inputs():
    g = np.random.default_rng(92)
    out = []
    for t, t_prev, eta in [(1000, 900, 0.0), (500, 450, 1.0), (300, 100, 0.5), (20, 0, 1.0), (2, 1, 1.0)]:
        xt = g.standard_normal((3, 1, 4, 4))
        out.append((xt, g.standard_normal(xt.shape), t, t_prev, _linear().alpha_bars, eta, g.standard_normal(xt.shape)))
    return out


@exercise("09.2", solution=lambda: _my_ddim_step,
          wrong={what: (lambda fn=fn: fn) for what, fn in _DDIM_MISTAKES.items()},
          hints=("Three pieces: x̂_0 from x_t and ε (eq. 15), σ from η (eq. 16), then eq. 12. "
                 "alpha_bars[0] = 1, so a step to t' = 0 returns x̂_0.",
                 "x̂_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t;  σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'});  "
                 "x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε + σ z."))
def _ex_09_2(answer):
    inputs = _ddim_inputs()
    if callable(answer) and answer(*inputs[0]) is None:
        return None, NOT_ANSWERED
    return compare_function(answer, _ddim_reference, inputs, rtol=1e-9, atol=1e-10, mistakes=_DDIM_MISTAKES)


# ---- 09.3: Algorithm 2's loop ----

T_SHORT = 10          # a short chain, so that the check is fast


def _my_ddpm_sample(eps_model, x_T, sched, z):
    x = x_T
    for t in range(sched.T, 0, -1):
        eps = eps_model(x, t)
        mean = (x - sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])
        sigma = np.sqrt(sched.betas[t])                              # σ_t² = β_t ("fixed large")
        x = mean + (sigma * z[t] if t > 1 else 0)
    return x


def _ddpm_reference(eps_model, x_T, sched, z):
    from ddpm_ref.diffusion import ddpm_step

    x = x_T
    for t in range(sched.T, 0, -1):
        x = ddpm_step(sched, x, t, eps_model(x, t), z[t] if t > 1 else None, variance="fixed_large")
    return x


def _ddpm_variant(*, noise_at_1=False, var="beta", t_shift=0, stop=1):
    def wrong(eps_model, x_T, sched, z):
        x = x_T
        for t in range(sched.T, stop - 1, -1):
            if t < 1:
                break
            eps = eps_model(x, t - t_shift)
            mean = (x - sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])
            v = sched.posterior_variance[t] if var == "posterior" else sched.betas[t]
            sigma = np.sqrt(v) if var != "no-sqrt" else sched.betas[t]
            x = mean + (sigma * z[t] if (t > 1 or noise_at_1) else 0)
        return x
    return wrong


_DDPM_MISTAKES = {
    "noise added at the last step t = 1 too (Algorithm 2 sets z = 0 there)": _ddpm_variant(noise_at_1=True),
    "σ_t² = β̃_t where this exercise asks for β_t (β̃ for β)": _ddpm_variant(var="posterior"),
    "σ_t = β_t (a missing square root)": _ddpm_variant(var="no-sqrt"),
    "the network called with t − 1": _ddpm_variant(t_shift=1),
    "the loop stops at t = 2 (one step short)": _ddpm_variant(stop=2),
}


def _eps_stand_in(x, t):
    """A fixed, nonlinear stand-in for a trained ε_θ(x_t, t): the check needs no training."""
    return 0.3 * np.tanh(x) + 0.05 * np.cos(0.7 * t) * x


def _ddpm_inputs():
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(93)
    out = []
    for kind, shape in [("linear", (2, 1, 3, 3)), ("cosine", (4, 2))]:
        sched = make_schedule(kind, T_SHORT)
        out.append((_eps_stand_in, g.standard_normal(shape), sched, g.standard_normal((T_SHORT + 1,) + shape)))
    return out


@exercise("09.3", solution=lambda: _my_ddpm_sample,
          wrong={what: (lambda fn=fn: fn) for what, fn in _DDPM_MISTAKES.items()},
          hints=("Loop t = T, T−1, ..., 1. Each step: ε from the network at (x, t), the mean of eq. 11, "
                 "then add σ_t·z[t] — except at t = 1. Here σ_t² = β_t (sched.betas[t]).",
                 "x ← (x − β_t/√(1 − ᾱ_t) · ε_θ(x, t))/√α_t + σ_t z[t] (z[t] only for t > 1), σ_t = √β_t."))
def _ex_09_3(answer):
    inputs = _ddpm_inputs()
    if callable(answer) and answer(*inputs[0]) is None:
        return None, NOT_ANSWERED
    return compare_function(answer, _ddpm_reference, inputs, rtol=1e-9, atol=1e-10, mistakes=_DDPM_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 10: classifier-free guidance
# --------------------------------------------------------------------------------------------


def _my_guided_eps(eps_model, xt, t, y, w, num_classes):
    eps_cond = eps_model(xt, t, y)
    eps_uncond = eps_model(xt, t, np.full_like(y, num_classes))      # the null label
    return (1 + w) * eps_cond - w * eps_uncond


class _LabelledModel:
    """A stand-in ε_θ(x_t, t, y) whose answer depends on the label; y = None or num_classes is ∅."""

    def __init__(self, num_classes=10):
        self.num_classes = num_classes

    def __call__(self, xt, t, y=None):
        y = np.full(len(xt), self.num_classes) if y is None else np.asarray(y)
        shape = (-1,) + (1,) * (np.ndim(xt) - 1)
        return 0.4 * np.tanh(xt) + 0.1 * (y.reshape(shape) - 4.5) + 0.001 * np.asarray(t).reshape(shape)


def _guided_reference(eps_model, xt, t, y, w, num_classes):
    from ddpm_ref.sample import guided_eps

    return guided_eps(eps_model, xt, t, y, guidance=w)


def _guided_variant(combine):
    def wrong(eps_model, xt, t, y, w, num_classes):
        c = eps_model(xt, t, y)
        u = eps_model(xt, t, np.full_like(y, num_classes))
        return combine(c, u, w)
    return wrong


_GUIDED_MISTAKES = {
    "the two predictions swapped (guidance towards the unconditional one)":
        _guided_variant(lambda c, u, w: (1 + w) * u - w * c),
    "w·ε(y) + (1 − w)·ε(∅): the other convention's s used as our w": _guided_variant(lambda c, u, w: w * c + (1 - w) * u),
    "ε(y) + w·ε(∅) (a sign error)": _guided_variant(lambda c, u, w: c + w * u),
    "the unconditional prediction taken with label 0 (a real digit) instead of the null label":
        lambda m, x, t, y, w, n: (1 + w) * m(x, t, y) - w * m(x, t, np.zeros_like(y)),
}


@exercise("10.1", solution=lambda: _my_guided_eps,
          wrong={what: (lambda fn=fn: fn) for what, fn in _GUIDED_MISTAKES.items()},
          hints=("Two network calls on the same x_t and t: one with the labels y, one with every label replaced by "
                 "the null label (num_classes). Then move from ε(y) further along ε(y) − ε(∅).",
                 "ε̃ = ε(x_t, t, y) + w·(ε(x_t, t, y) − ε(x_t, t, ∅)) = (1 + w)·ε(y) − w·ε(∅)."))
def _ex_10_1(answer):
    g = np.random.default_rng(10)
    model = _LabelledModel(10)
    inputs = []
    for w in (0.5, 2.0, 7.5):
        xt = g.standard_normal((4, 1, 3, 3))
        inputs.append((model, xt, g.integers(1, 1001, size=4), g.integers(0, 10, size=4), w, 10))
    if callable(answer) and answer(*inputs[0]) is None:
        return None, NOT_ANSWERED
    return compare_function(answer, _guided_reference, inputs, rtol=1e-12, atol=1e-12, mistakes=_GUIDED_MISTAKES)


@exercise("10.2", solution=lambda: 3.0,
          wrong={"s = w": lambda: 2.0, "s = w − 1": lambda: 1.0},
          hints=("Expand s·ε(y) + (1 − s)·ε(∅) and compare the coefficient of ε(y) with ours.",
                 "(1 + w)·ε(y) − w·ε(∅): the coefficient of ε(y) is 1 + w."))
def _ex_10_2(answer):
    return compare(answer, 3.0, rtol=1e-9, mistakes={"s = w: compare the coefficients of ε(y)": 2.0})


# ---- 10.3: label dropout ----

def _my_drop_labels(y, u, p_uncond, num_classes):
    return np.where(u < p_uncond, num_classes, y)


def _drop_reference(y, u, p_uncond, num_classes):
    """The rule of ddpm_ref.train.train_step, applied to the given uniform draws u (tested there)."""
    import inspect

    from ddpm_ref.train import train_step

    src = inspect.getsource(train_step)
    assert "< config.p_uncond" in src and 'np.where(drop, model.config["num_classes"], y)' in src, \
        "train_step's label dropout changed; update exercise 10.3"
    drop = u < p_uncond
    return np.where(drop, num_classes, y).astype(np.int64)


_DROP_MISTAKES = {
    "labels kept where they should be dropped (u > p: 90 % of them dropped)":
        lambda y, u, p, n: np.where(u > p, n, y),
    "the null label written as 0 (a real digit) instead of num_classes": lambda y, u, p, n: np.where(u < p, 0, y),
    "the null label written as −1 (not a row of the embedding table)": lambda y, u, p, n: np.where(u < p, -1, y),
}


def _drop_inputs():
    g = np.random.default_rng(103)
    out = []
    for n, p in [(50, 0.1), (200, 0.3), (7, 0.5)]:
        y, u = g.integers(0, 10, size=n), g.random(n)
        u[0] = p                                    # a draw exactly at p: kept (drop where u < p)
        out.append((y, u, p, 10))
    return out


@exercise("10.3", solution=lambda: _my_drop_labels,
          wrong={what: (lambda fn=fn: fn) for what, fn in _DROP_MISTAKES.items()},
          hints=("Each label is dropped independently with probability p_uncond: compare its uniform draw u with p.",
                 "y_train = num_classes where u < p_uncond, else y (np.where)."))
def _ex_10_3(answer):
    inputs = _drop_inputs()
    if callable(answer) and answer(*inputs[0]) is None:
        return None, NOT_ANSWERED
    return compare_function(answer, _drop_reference, inputs, atol=0, rtol=0, mistakes=_DROP_MISTAKES)
