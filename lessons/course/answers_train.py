"""Checkers (and solutions) for the exercises of lessons 8-10: training, sampling, guidance."""

from __future__ import annotations

import numpy as np

from course import compare, exercise

# --------------------------------------------------------------------------------------------
# Lesson 08: training
# --------------------------------------------------------------------------------------------


def _loss_of_zero():
    from ddpm_ref.diffusion import loss_simple

    eps = np.random.default_rng(8).standard_normal(2_000_000)
    return round(loss_simple(eps, np.zeros_like(eps)))        # E[ε²] = 1


@exercise("08.1", solution=_loss_of_zero)
def _ex_08_1(answer):
    return compare(answer, 1.0, rtol=1e-3, hint="L_simple(ε̂ = 0) = E[ε²] for ε ~ N(0, 1).")


def _ema_mean_age(d=0.999):
    return d / (1 - d)


@exercise("08.2", solution=_ema_mean_age)
def _ex_08_2(answer):
    return compare(answer, _ema_mean_age(), rtol=0.01,
                   hint="Σ_k k (1−d) d^k = d/(1−d): about 1/(1−d) steps.")


def _lr_at_30():
    from ddpm_ref.optim import warmup_lr

    return warmup_lr(30, 1e-3, 100)


@exercise("08.3", solution=_lr_at_30)
def _ex_08_3(answer):
    return compare(answer, _lr_at_30(), rtol=1e-6, hint="Linear warm-up: η · min(1, s / W).")


# --------------------------------------------------------------------------------------------
# Lesson 09: sampling
# --------------------------------------------------------------------------------------------


def _ddim_5():
    from ddpm_ref.sample import ddim_timesteps

    return [int(t) for t in ddim_timesteps(1000, 5)]


@exercise("09.1", solution=_ddim_5)
def _ex_09_1(answer):
    return compare(answer, _ddim_5(), atol=0,
                   hint="round(linspace(1, T, steps)), visited from the largest down.")


def _sigma_500_450():
    from ddpm_ref.diffusion import ddim_sigma
    from ddpm_ref.schedules import make_schedule

    return float(ddim_sigma(make_schedule("linear", 1000), 500, 450, eta=1.0))


@exercise("09.2", solution=_sigma_500_450)
def _ex_09_2(answer):
    return compare(answer, _sigma_500_450(), rtol=1e-6,
                   hint="σ = η·√((1 − ᾱ_450)/(1 − ᾱ_500))·√(1 − ᾱ_500/ᾱ_450).")


# --------------------------------------------------------------------------------------------
# Lesson 10: classifier-free guidance
# --------------------------------------------------------------------------------------------


def _my_guided(eps_cond, eps_uncond, w):
    return (1 + w) * eps_cond - w * eps_uncond


def _guided_reference(eps_cond, eps_uncond, w):
    """guided_eps on a stand-in model that returns eps_cond with labels and eps_uncond without."""
    from ddpm_ref.sample import guided_eps

    def model(xt, t, y=None):
        return eps_uncond if y is None else eps_cond

    return guided_eps(model, np.zeros_like(eps_cond), np.ones(len(eps_cond), dtype=np.int64),
                      np.zeros(len(eps_cond), dtype=np.int64), guidance=w)


@exercise("10.1", solution=lambda: _my_guided)
def _ex_10_1(answer):
    from course import compare_function

    g = np.random.default_rng(10)
    inputs = [(g.standard_normal((3, 1, 2, 2)), g.standard_normal((3, 1, 2, 2)), w) for w in (0.5, 2.0, 7.5)]
    return compare_function(answer, _guided_reference, inputs, rtol=1e-12, atol=1e-12,
                            hint="ε̃ = (1 + w)·ε(y) − w·ε(∅).")


@exercise("10.2", solution=lambda: 3.0)
def _ex_10_2(answer):
    return compare(answer, 3.0, rtol=1e-9, hint="Match the coefficients of ε(y): s = 1 + w.")
