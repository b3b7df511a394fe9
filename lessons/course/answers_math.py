"""Checkers (and solutions) for the exercises of lessons 1-5: the math of DDPM.

Each exercise is stated in its notebook. The checker computes the expected answer by calling
``ddpm_ref``; the solution (what ``hint`` shows last) writes the formula out with NumPy, so the two
are independent routes to the same numbers. Every exercise registers plausible wrong answers
(``wrong=``), which ``tests/test_lessons.py`` feeds to the checker and requires to be rejected, and
the checkers name the mistake when they recognise it.

Why over 400 lines: the checkers, plausible wrong answers, hints and solutions of every exercise of
lessons 1-5, one block per exercise, in the order the lessons ask them.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise


def _linear(T=1000):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("linear", T)


def _per_example(values, ndim):
    """values[t] of shape (N,) reshaped to (N, 1, ..., 1) so that it broadcasts over an image batch."""
    return np.asarray(values).reshape((-1,) + (1,) * (ndim - 1))


# --------------------------------------------------------------------------------------------
# Lesson 01: the forward process
# --------------------------------------------------------------------------------------------


def _first_t_signal_below_half():
    betas = np.linspace(1e-4, 0.02, 1000)
    signal = np.sqrt(np.cumprod(1 - betas))       # signal[t - 1] = √ᾱ_t
    return int(np.flatnonzero(signal < 0.5)[0]) + 1


def _first_t_below_half_reference():
    return int(np.argmax(_linear().sqrt_alpha_bars < 0.5))


def _first_t_alpha_bar_below_half():
    return int(np.argmax(_linear().alpha_bars < 0.5))


@exercise("01.1", solution=_first_t_signal_below_half,
          wrong={"the last t still above 0.5 (off by one)": lambda: _first_t_below_half_reference() - 1,
                 "ᾱ_t < 0.5 instead of √ᾱ_t < 0.5": _first_t_alpha_bar_below_half},
          hints=("sched.alpha_bars[t] is ᾱ_t for t = 0..T; compare its square root with 0.5 and find the first "
                 "index where it is below (np.argmax on a boolean array gives the first True).",
                 "the answer is the smallest t with √ᾱ_t < 0.5, i.e. ᾱ_t < 0.25."))
def _ex_01_1(answer):
    expected = _first_t_below_half_reference()
    return compare(answer, expected, atol=0, rtol=0,
                   mistakes={"the last t whose signal is still ≥ 0.5 (off by one)": expected - 1,
                             "the first t with ᾱ_t < 0.5: the question asks about √ᾱ_t": _first_t_alpha_bar_below_half()})


def _variance_two_steps():
    alpha_bar_2 = (1 - 0.1) * (1 - 0.2)
    return 1 - alpha_bar_2


def _variance_two_steps_reference():
    from ddpm_ref.schedules import Schedule

    return float(1 - Schedule.from_betas([0.1, 0.2]).alpha_bars[2])


@exercise("01.2", solution=_variance_two_steps,
          wrong={"the sum of the betas": lambda: 0.1 + 0.2, "ᾱ_2 instead of 1 − ᾱ_2": lambda: 0.9 * 0.8},
          hints=("Write x_2 with eq. 4 and read off the variance of its noise term.",
                 "Var(x_2 | x_0) = 1 − ᾱ_2 with ᾱ_2 = (1 − β_1)(1 − β_2)."))
def _ex_01_2(answer):
    expected = _variance_two_steps_reference()
    return compare(answer, expected, rtol=1e-6,
                   mistakes={"β_1 + β_2: variances do add, but the first step's noise is shrunk by √(1 − β_2) "
                             "before the second is added": 0.3,
                             "ᾱ_2, the signal's squared amplitude, not the noise variance": 0.72})


def _my_q_sample(sched, x0, t, noise):
    a = sched.alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))   # one ᾱ_t per example: (N, 1, 1, 1)
    return np.sqrt(a) * x0 + np.sqrt(1 - a) * noise


def _q_sample_no_sqrt(sched, x0, t, noise):
    a = _per_example(sched.alpha_bars[t], x0.ndim)
    return a * x0 + (1 - a) * noise


def _q_sample_off_by_one(sched, x0, t, noise):
    a = _per_example(sched.alpha_bars[t - 1], x0.ndim)
    return np.sqrt(a) * x0 + np.sqrt(1 - a) * noise


def _q_sample_alpha_not_bar(sched, x0, t, noise):
    a = _per_example(sched.alphas[t], x0.ndim)
    return np.sqrt(a) * x0 + np.sqrt(1 - a) * noise


def _q_sample_noise_std_beta(sched, x0, t, noise):
    a = _per_example(sched.alpha_bars[t], x0.ndim)
    return np.sqrt(a) * x0 + np.sqrt(_per_example(sched.betas[t], x0.ndim)) * noise


def _q_sample_not_reshaped(sched, x0, t, noise):
    """ᾱ_t of shape (N,) times x0 of shape (N, C, H, W): NumPy pairs it with the last axis (W), which
    runs only when N == W and then mixes up the images. NaN where it cannot run, so it never matches."""
    try:
        return np.sqrt(sched.alpha_bars[t]) * x0 + np.sqrt(1 - sched.alpha_bars[t]) * noise
    except ValueError:
        return np.full(x0.shape, np.nan)


_Q_SAMPLE_MISTAKES = {
    "ᾱ_t of shape (N,) not reshaped to (N, 1, 1, 1): it multiplies the last axis of each image, not each image":
        _q_sample_not_reshaped,
    "ᾱ_t and 1 − ᾱ_t without their square roots": _q_sample_no_sqrt,
    "ᾱ_{t−1} where ᾱ_t belongs (an off-by-one t)": _q_sample_off_by_one,
    "α_t = 1 − β_t where the product ᾱ_t belongs (that is one step of eq. 2, not eq. 4)": _q_sample_alpha_not_bar,
    "noise scaled by √β_t instead of √(1 − ᾱ_t)": _q_sample_noise_std_beta,
}


@exercise("01.3", solution=lambda: _my_q_sample,
          wrong={what: (lambda fn=fn: fn) for what, fn in _Q_SAMPLE_MISTAKES.items()},
          hints=("t is an array with one timestep per example: sched.alpha_bars[t] has shape (N,). Reshape it to "
                 "(N, 1, 1, 1) so that it multiplies each image of the batch, not its last axis.",
                 "eq. 4: x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε."))
def _ex_01_3(answer):
    from ddpm_ref.diffusion import q_sample
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(1)
    inputs = []
    for sched, n, hw in [(_linear(), 4, 4), (_linear(), 3, 5), (make_schedule("cosine", 50), 2, 3)]:
        t = g.integers(1, sched.T + 1, n)
        t[0] = sched.T
        inputs.append((sched, g.uniform(-1, 1, (n, 3, hw, hw)), t, g.standard_normal((n, 3, hw, hw))))
    return compare_function(answer, q_sample, inputs, rtol=1e-10, atol=1e-12, mistakes=_Q_SAMPLE_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 02: noise schedules
# --------------------------------------------------------------------------------------------

_TARGET_SIGNAL = 0.01   # Exercise 2.1: the largest √ᾱ_T we accept as "pure noise"


def _shortest_chain():
    for T in range(2, 5000):
        if np.sqrt(np.prod(1 - np.linspace(1e-4, 0.02, T))) < _TARGET_SIGNAL:
            return T
    raise AssertionError("not reached")


def _shortest_chain_reference():
    from ddpm_ref.schedules import make_schedule

    T = 2
    while make_schedule("linear", T).sqrt_alpha_bars[T] >= _TARGET_SIGNAL:
        T += 1
    return T


@exercise("02.1", solution=_shortest_chain,
          wrong={"the last T that is still too short (off by one)": lambda: _shortest_chain_reference() - 1,
                 "the first t of the T = 1000 chain with √ᾱ_t < 0.01 (the β range is not rescaled)":
                     lambda: int(np.argmax(_linear().sqrt_alpha_bars < _TARGET_SIGNAL))},
          hints=("Each T gives a different chain: make_schedule('linear', T) keeps β from 1e-4 to 0.02 spread "
                 "over T steps. Loop over T and look at the end of each chain.",
                 "find the smallest T with np.sqrt(make_schedule('linear', T).alpha_bars[T]) < 0.01."))
def _ex_02_1(answer):
    expected = _shortest_chain_reference()
    within_1000 = int(np.argmax(_linear().sqrt_alpha_bars < _TARGET_SIGNAL))
    return compare(answer, expected, atol=0, rtol=0,
                   mistakes={"the last T whose chain still ends above 0.01 (off by one)": expected - 1,
                             "a t inside the T = 1000 chain; the question changes T, and with it every β_t":
                                 within_1000})


def _cosine_alpha_bar(t, T, s=0.008):
    def f(u):
        return np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2

    return f(np.asarray(t, dtype=np.float64)) / f(0.0)


def _cosine_no_square(t, T, s=0.008):
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2)  # noqa: E731
    return f(np.asarray(t, dtype=np.float64)) / f(0.0)


def _cosine_not_normalised(t, T, s=0.008):
    return np.cos((np.asarray(t, dtype=np.float64) / T + s) / (1 + s) * np.pi / 2) ** 2


def _cosine_no_offset_scale(t, T, s=0.008):
    f = lambda u: np.cos((u / T + s) * np.pi / 2) ** 2  # noqa: E731
    return f(np.asarray(t, dtype=np.float64)) / f(0.0)


def _cosine_off_by_one(t, T, s=0.008):
    return _cosine_alpha_bar(np.asarray(t) + 1, T, s)


_COSINE_MISTAKES = {
    "cos instead of cos²": _cosine_no_square,
    "f(t) not divided by f(0)": _cosine_not_normalised,
    "(t/T + s)·π/2 without the division by (1 + s)": _cosine_no_offset_scale,
    "ᾱ_{t+1}: t shifted by one": _cosine_off_by_one,
}


def _ex_02_2_reference(t, T):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("cosine", T).alpha_bars[t]


@exercise("02.2", solution=lambda: _cosine_alpha_bar,
          wrong={what: (lambda fn=fn: fn) for what, fn in _COSINE_MISTAKES.items()},
          hints=("Write f(u) as a small function of an array u and return f(t) / f(0); NumPy applies it to every "
                 "entry of t at once.",
                 "Nichol & Dhariwal eq. 17: f(t) = cos²(((t/T + s)/(1 + s))·π/2), ᾱ_t = f(t)/f(0), s = 0.008."))
def _ex_02_2(answer):
    inputs = [(np.arange(1000), 1000), (np.arange(50), 50), (np.array([0, 3, 7]), 8)]
    return compare_function(lambda t, T: answer(t, T), _ex_02_2_reference, inputs, rtol=1e-9, atol=1e-12,
                            mistakes={what: (lambda t, T, fn=fn: fn(t, T)) for what, fn in _COSINE_MISTAKES.items()})


def _first_t_as_noisy():
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.concatenate([[1.0], np.cumprod(1 - betas)])
    with np.errstate(divide="ignore"):
        snr_b = 0.25 * ab / (1 - ab)               # b = 0.5 multiplies the signal power by b² = 1/4
        snr_500 = ab[500] / (1 - ab[500])
    return int(np.flatnonzero(snr_b <= snr_500)[0])


def _first_t_as_noisy_reference(b=0.5):
    ls = _linear().logsnr
    return int(np.argmax(ls + 2 * np.log(b) <= ls[500]))


@exercise("02.3", solution=_first_t_as_noisy,
          wrong={"the shift with the wrong sign (b = 2)": lambda: _first_t_as_noisy_reference(2.0),
                 "off by one": lambda: _first_t_as_noisy_reference() - 1},
          hints=("A smaller b means less signal, so the b = 0.5 process reaches t = 500's noise level earlier: "
                 "expect a t below 500.",
                 "find the first t with logsnr[t] + 2·log(0.5) ≤ logsnr[500] (np.argmax on a boolean array)."))
def _ex_02_3(answer):
    expected = _first_t_as_noisy_reference()
    return compare(answer, expected, atol=0, rtol=0,
                   mistakes={"the shift with the wrong sign: b = 0.5 lowers logSNR by 2·log 2": _first_t_as_noisy_reference(2.0),
                             "the last t that is still less noisy (off by one)": expected - 1})


# --------------------------------------------------------------------------------------------
# Lesson 03: the posterior and the reverse process
# --------------------------------------------------------------------------------------------


def _beta_tilde_2():
    alpha_bar_1, alpha_bar_2 = 0.9, 0.9 * 0.8
    return (1 - alpha_bar_1) / (1 - alpha_bar_2) * 0.2


def _beta_tilde_2_reference():
    from ddpm_ref.schedules import Schedule

    return float(Schedule.from_betas([0.1, 0.2]).posterior_variance[2])


@exercise("03.1", solution=_beta_tilde_2,
          wrong={"β_2 itself": lambda: 0.2, "the ratio upside down": lambda: 0.28 / 0.1 * 0.2},
          hints=("The posterior is narrower than one forward step: β̃_t ≤ β_t.",
                 "eq. 7: β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t."))
def _ex_03_1(answer):
    return compare(answer, _beta_tilde_2_reference(), rtol=1e-4,
                   mistakes={"β_2, the forward step's variance, not the posterior's": 0.2,
                             "(1 − ᾱ_2)/(1 − ᾱ_1)·β_2: the ratio is upside down": 0.56})


def _my_q_posterior(sched, x0, xt, t):
    ab, ab_prev, beta, alpha = sched.alpha_bars[t], sched.alpha_bars[t - 1], sched.betas[t], sched.alphas[t]
    mean = (np.sqrt(ab_prev) * beta / (1 - ab) * x0
            + np.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * xt)            # eq. 7
    var = (1 - ab_prev) / (1 - ab) * beta                                 # eq. 7
    return mean, var


def _posterior_beta_for_beta_tilde(sched, x0, xt, t):
    mean, _ = _my_q_posterior(sched, x0, xt, t)
    return mean, sched.betas[t]


def _posterior_off_by_one(sched, x0, xt, t):
    s = t - 1                                   # every array read one index too early
    ab, ab_prev, beta, alpha = sched.alpha_bars[s], sched.alpha_bars[s - 1], sched.betas[s], sched.alphas[s]
    return (np.sqrt(ab_prev) * beta / (1 - ab) * x0 + np.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * xt,
            (1 - ab_prev) / (1 - ab) * beta)


def _posterior_no_sqrt_alpha(sched, x0, xt, t):
    ab, ab_prev, beta, alpha = sched.alpha_bars[t], sched.alpha_bars[t - 1], sched.betas[t], sched.alphas[t]
    return (np.sqrt(ab_prev) * beta / (1 - ab) * x0 + alpha * (1 - ab_prev) / (1 - ab) * xt,
            (1 - ab_prev) / (1 - ab) * beta)


def _posterior_swapped(sched, x0, xt, t):
    ab, ab_prev, beta, alpha = sched.alpha_bars[t], sched.alpha_bars[t - 1], sched.betas[t], sched.alphas[t]
    return (np.sqrt(ab_prev) * beta / (1 - ab) * xt + np.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * x0,
            (1 - ab_prev) / (1 - ab) * beta)


_POSTERIOR_MISTAKES = {
    "β_t as the variance where β̃_t belongs": _posterior_beta_for_beta_tilde,
    "every array read at t − 1 (an off-by-one t: the arrays are indexed by the paper's t)": _posterior_off_by_one,
    "α_t without its square root in the coefficient of x_t": _posterior_no_sqrt_alpha,
    "the coefficients of x_0 and x_t swapped": _posterior_swapped,
}


def _stacked(fn):
    """(mean, variance) of an (N, D) batch as one (2, N, D) array, the variance broadcast."""
    def run(sched, x0, xt, t):
        out = fn(sched, x0, xt, t)
        if out is None:
            return None
        if not isinstance(out, tuple) or len(out) != 2:
            raise ValueError("return a pair (mean, variance)")
        mean, var = np.asarray(out[0], dtype=np.float64), np.asarray(out[1], dtype=np.float64)
        if mean.shape != xt.shape:
            raise ValueError(f"the mean should have the shape of x_t, {xt.shape}; got {mean.shape}")
        return np.stack([mean, np.broadcast_to(var, xt.shape)])
    return run


@exercise("03.2", solution=lambda: _my_q_posterior,
          wrong={what: (lambda fn=fn: fn) for what, fn in _POSTERIOR_MISTAKES.items()},
          hints=("Two numbers per t from the schedule: the weights of x_0 and x_t in the mean, and one variance. "
                 "ᾱ_{t−1} is sched.alpha_bars[t - 1].",
                 "eqs. 6–7: μ̃_t = √ᾱ_{t−1}β_t/(1 − ᾱ_t)·x_0 + √α_t(1 − ᾱ_{t−1})/(1 − ᾱ_t)·x_t, "
                 "β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t."))
def _ex_03_2(answer):
    from ddpm_ref.diffusion import q_posterior
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(32)
    inputs = [(s, g.uniform(-1, 1, (4, 2)), g.standard_normal((4, 2)), t)
              for s, t in [(_linear(), 2), (_linear(), 517), (make_schedule("cosine", 40), 39), (_linear(200), 200)]]
    mistakes = {what: _stacked(fn) for what, fn in _POSTERIOR_MISTAKES.items()}
    return compare_function(_stacked(answer), _stacked(q_posterior), inputs, rtol=1e-9, atol=1e-12,
                            mistakes=mistakes)


# Exercise 3.3: a mixture that is not the lesson's, so that no figure shows the answer.
_EX_3_3_MEANS = [[1.0, 0.0], [-0.5, 0.5], [0.0, -1.0]]
_EX_3_3_WEIGHTS = [0.6, 0.3, 0.1]


def _mixture_mean():
    means, weights = np.array(_EX_3_3_MEANS), np.array(_EX_3_3_WEIGHTS)
    return weights @ means


def _mixture_mean_reference():
    """E[x_0 | x_T] from the mixture's exact denoiser, averaged over many x_T (T = 1000, linear)."""
    from ddpm_ref.data import GaussianMixture

    gmm = GaussianMixture(means=_EX_3_3_MEANS, stds=0.1, weights=_EX_3_3_WEIGHTS)
    xT = np.random.default_rng(33).standard_normal((200, 2))
    sched = _linear()
    return gmm.optimal_x0(sched, xT, sched.T).mean(axis=0)


@exercise("03.3", solution=_mixture_mean,
          wrong={"the unweighted mean of the three means": lambda: np.mean(_EX_3_3_MEANS, axis=0),
                 "the mean of the heaviest component": lambda: np.array(_EX_3_3_MEANS[0]),
                 "zero, the mean of x_T": lambda: np.zeros(2)},
          hints=("When x_T says (almost) nothing about x_0, the best guess of x_0 in squared error is what you "
                 "would guess without seeing x_T at all.",
                 "E[x_0 | x_T] ≈ E[x_0] = Σ_k π_k μ_k."))
def _ex_03_3(answer):
    return compare(answer, _mixture_mean_reference(), atol=5e-3, rtol=0,
                   mistakes={"the unweighted mean of the three means: the components have weights":
                                 np.mean(_EX_3_3_MEANS, axis=0),
                             "the mean of x_T, not of x_0": np.zeros(2)})


def _my_mu_theta(sched, xt, t, eps):
    return (xt - sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])


def _mu_theta_no_sqrt_alpha(sched, xt, t, eps):
    return (xt - sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / sched.alphas[t]


def _mu_theta_no_sqrt_noise(sched, xt, t, eps):
    return (xt - sched.betas[t] / (1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])


def _mu_theta_plus(sched, xt, t, eps):
    return (xt + sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])


def _mu_theta_beta_tilde(sched, xt, t, eps):
    return (xt - sched.posterior_variance[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])


_MU_THETA_MISTAKES = {
    "a division by α_t where √α_t belongs": _mu_theta_no_sqrt_alpha,
    "β_t/(1 − ᾱ_t) where β_t/√(1 − ᾱ_t) belongs": _mu_theta_no_sqrt_noise,
    "the noise added instead of subtracted (a sign)": _mu_theta_plus,
    "β̃_t where β_t belongs": _mu_theta_beta_tilde,
}


def _ex_03_4_reference(sched, xt, t, eps):
    from ddpm_ref.diffusion import p_mean_variance

    return p_mean_variance(sched, xt, t, eps)[0]


@exercise("03.4", solution=lambda: _my_mu_theta,
          wrong={what: (lambda fn=fn: fn) for what, fn in _MU_THETA_MISTAKES.items()},
          hints=("Substitute x̂_0 = (x_t − √(1 − ᾱ_t)ε)/√ᾱ_t into μ̃_t and simplify, or use the result of section 2.",
                 "eq. 11: μ_θ = (x_t − β_t/√(1 − ᾱ_t)·ε_θ)/√α_t."))
def _ex_03_4(answer):
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(3)
    inputs = [(s, g.standard_normal((4, 2)), t, g.standard_normal((4, 2)))
              for s, t in [(_linear(), 1), (_linear(), 500), (make_schedule("cosine", 40), 39), (_linear(), 3)]]
    return compare_function(answer, _ex_03_4_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_MU_THETA_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 04: the ELBO
# --------------------------------------------------------------------------------------------


def _my_vb_term(sched, x0, xt, t, eps_pred):
    ab, ab_prev, beta, alpha = sched.alpha_bars[t], sched.alpha_bars[t - 1], sched.betas[t], sched.alphas[t]
    mu_q = np.sqrt(ab_prev) * beta / (1 - ab) * x0 + np.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * xt
    var = (1 - ab_prev) / (1 - ab) * beta                                    # σ_t² = β̃_t: both variances equal
    mu_p = (xt - beta / np.sqrt(1 - ab) * eps_pred) / np.sqrt(alpha)
    kl = (mu_q - mu_p) ** 2 / (2 * var)                                      # nats, per dimension
    return kl.reshape(len(x0), -1).mean(axis=1) / np.log(2)                 # bits/dim, one per example


def _vb_term_nats(sched, x0, xt, t, eps_pred):
    return _my_vb_term(sched, x0, xt, t, eps_pred) * np.log(2)


def _vb_term_sum(sched, x0, xt, t, eps_pred):
    return _my_vb_term(sched, x0, xt, t, eps_pred) * x0[0].size


def _vb_term_no_half(sched, x0, xt, t, eps_pred):
    return 2 * _my_vb_term(sched, x0, xt, t, eps_pred)


def _vb_term_fixed_large(sched, x0, xt, t, eps_pred):
    from ddpm_ref.elbo import vb_term_bpd

    return vb_term_bpd(sched, x0, xt, t, eps_pred, variance="fixed_large")


_VB_MISTAKES = {
    "nats: the KL not divided by log 2": _vb_term_nats,
    "a sum over the dimensions where the mean belongs (bits per dimension)": _vb_term_sum,
    "(μ̃ − μ_θ)²/σ² without the ½": _vb_term_no_half,
    "p_θ with σ_t² = β_t (then the variances differ and the KL has more terms)": _vb_term_fixed_large,
}


@exercise("04.1", solution=lambda: _my_vb_term,
          wrong={what: (lambda fn=fn: fn) for what, fn in _VB_MISTAKES.items()},
          hints=("Two Gaussians with the same variance σ² = β̃_t: their KL is (μ_1 − μ_2)²/(2σ²) per dimension. "
                 "You need μ̃_t (eq. 7, Exercise 3.2), μ_θ (eq. 11, Exercise 3.4) and β̃_t.",
                 "L_{t−1} = mean over dimensions of (μ̃_t(x_t, x_0) − μ_θ(x_t, t))² / (2β̃_t), divided by log 2."))
def _ex_04_1(answer):
    from ddpm_ref.diffusion import q_sample
    from ddpm_ref.elbo import vb_term_bpd
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(41)
    inputs = []
    for sched, t, shape in [(_linear(), 2, (3, 4)), (_linear(), 300, (2, 1, 3, 3)), (make_schedule("cosine", 50), 50, (4, 5))]:
        x0 = np.round(g.uniform(-1, 1, shape) * 127.5) / 127.5
        noise = g.standard_normal(shape)
        inputs.append((sched, x0, q_sample(sched, x0, t, noise), t, noise + 0.3 * g.standard_normal(shape)))
    return compare_function(answer, vb_term_bpd, inputs, rtol=1e-7, atol=1e-12, mistakes=_VB_MISTAKES)


def _prior_white_t50():
    alpha_bar_T = np.prod(1 - np.linspace(1e-4, 0.02, 50))
    m, s2 = np.sqrt(alpha_bar_T) * 1.0, 1 - alpha_bar_T
    return 0.5 * (m ** 2 + s2 - 1 - np.log(s2)) / np.log(2)


def _prior_white_t50_reference():
    from ddpm_ref.elbo import prior_bpd
    from ddpm_ref.schedules import make_schedule

    return float(prior_bpd(make_schedule("linear", 50), np.ones((1, 1, 8, 8)))[0])


@exercise("04.2", solution=_prior_white_t50,
          wrong={"nats, not divided by log 2": lambda: _prior_white_t50() * np.log(2),
                 "m = ᾱ_T instead of √ᾱ_T": lambda: 0.5 * (np.prod(1 - np.linspace(1e-4, 0.02, 50)) ** 2
                                                          + 1 - np.prod(1 - np.linspace(1e-4, 0.02, 50)) - 1
                                                          - np.log(1 - np.prod(1 - np.linspace(1e-4, 0.02, 50))))
                                                          / np.log(2)},
          hints=("q(x_T | x_0) = N(√ᾱ_T·x_0, (1 − ᾱ_T)): for a pixel of value 1, m = √ᾱ_T and s² = 1 − ᾱ_T. "
                 "Every pixel is the same, so the per-dimension KL is the answer.",
                 "KL = ½(m² + s² − 1 − log s²) nats with ᾱ_T = make_schedule('linear', 50).alpha_bars[50]; "
                 "divide by log 2."))
def _ex_04_2(answer):
    expected = _prior_white_t50_reference()
    alpha_bar_T = _linear(50).alpha_bars[50]
    no_sqrt = 0.5 * (alpha_bar_T ** 2 - alpha_bar_T - np.log(1 - alpha_bar_T)) / np.log(2)
    return compare(answer, expected, rtol=1e-4, mistakes={"nats: divide by log 2": expected * np.log(2),
                                                           "m = ᾱ_T: the mean is √ᾱ_T·x_0": no_sqrt,
                                                           "a sum over the 64 pixels: bits per *dimension*": expected * 64})


def _my_l_simple(eps_model, sched, x0, t, noise):
    a = sched.alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))
    xt = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise                             # eq. 4
    return float(np.mean((noise - eps_model(xt, t)) ** 2))                   # eq. 14


def _ex_04_3_reference(eps_model, sched, x0, t, noise):
    from ddpm_ref.diffusion import loss_simple, q_sample

    return loss_simple(noise, eps_model(q_sample(sched, x0, t, noise), t))


def _l_simple_on_x0(eps_model, sched, x0, t, noise):
    return float(np.mean((noise - eps_model(x0, t)) ** 2))


def _l_simple_t_minus_1(eps_model, sched, x0, t, noise):
    from ddpm_ref.diffusion import q_sample

    return float(np.mean((noise - eps_model(q_sample(sched, x0, t, noise), t - 1)) ** 2))


def _l_simple_sum(eps_model, sched, x0, t, noise):
    from ddpm_ref.diffusion import q_sample

    return float(np.sum((noise - eps_model(q_sample(sched, x0, t, noise), t)) ** 2))


def _l_simple_weighted(eps_model, sched, x0, t, noise):
    from ddpm_ref.diffusion import q_sample

    lam = sched.betas[t] ** 2 / (2 * sched.posterior_variance[t] * sched.alphas[t] * (1 - sched.alpha_bars[t]))
    err = ((noise - eps_model(q_sample(sched, x0, t, noise), t)) ** 2).reshape(len(x0), -1).mean(axis=1)
    return float(np.mean(lam * err))


_L_SIMPLE_MISTAKES = {
    "the network fed x_0 instead of x_t": _l_simple_on_x0,
    "the network told t − 1 instead of t": _l_simple_t_minus_1,
    "a sum over the elements where L_simple takes the mean": _l_simple_sum,
    "the bound's weights λ_t kept (that is eq. 12, not eq. 14)": _l_simple_weighted,
}


@exercise("04.3", solution=lambda: _my_l_simple,
          wrong={what: (lambda fn=fn: fn) for what, fn in _L_SIMPLE_MISTAKES.items()},
          hints=("Two lines: noise x_0 to x_t with the given ε (eq. 4, one t per example), then compare the network's "
                 "prediction at (x_t, t) with that ε.",
                 "L_simple = mean over every element of (ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t))²."))
def _ex_04_3(answer):
    from ddpm_ref.data import default_gmm

    g = np.random.default_rng(43)
    gmm = default_gmm()
    inputs = []
    for T, n in [(1000, 6), (100, 5)]:
        from ddpm_ref.schedules import make_schedule

        sched = make_schedule("linear", T)
        x0 = gmm.sample(n, rng=int(g.integers(1 << 30)))[0]
        t = g.integers(2, T + 1, n)
        t[0] = 2
        inputs.append((gmm.eps_model(sched), sched, x0, t, g.standard_normal((n, 2))))
    return compare_function(answer, _ex_04_3_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_L_SIMPLE_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 05: the timestep encoding
# --------------------------------------------------------------------------------------------


def _my_encoding(t, d, n=10000.0):
    t = np.asarray(t, dtype=np.float64)
    out = np.empty((len(t), d))
    for i in range(d // 2):
        omega = n ** (-2 * i / d)
        out[:, 2 * i] = np.sin(omega * t)
        out[:, 2 * i + 1] = np.cos(omega * t)
    return out


def _encoding_halves(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding_halves

    return sinusoidal_embedding_halves(t, d, order="sin_cos")


def _encoding_cos_sin(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding_halves

    return sinusoidal_embedding_halves(t, d, order="cos_sin")


def _encoding_ho_frequencies(t, d):
    from ddpm_ref.embeddings import embedding_frequencies

    angles = np.outer(t, embedding_frequencies(d, frequency_spacing="d/2-1"))
    out = np.empty((len(t), d))
    out[:, 0::2], out[:, 1::2] = np.sin(angles), np.cos(angles)
    return out


def _encoding_t_minus_1(t, d):
    return _my_encoding(np.asarray(t) - 1, d)


def _encoding_cos_first_in_pair(t, d):
    e = _my_encoding(t, d)
    return e[:, np.arange(d) ^ 1]


_ENCODING_MISTAKES = {
    "all sines first, then all cosines ([sin | cos] halves, not interleaved)": _encoding_halves,
    "all cosines first ([cos | sin] halves, improved-diffusion's layout)": _encoding_cos_sin,
    "Ho et al.'s frequencies n^(−i/(d/2−1)) where this library uses n^(−2i/d)": _encoding_ho_frequencies,
    "t − 1 fed where this library feeds t": _encoding_t_minus_1,
    "cos in column 2i and sin in 2i+1 (swapped within each pair)": _encoding_cos_first_in_pair,
}


@exercise("05.1", solution=lambda: _my_encoding,
          wrong={what: (lambda fn=fn: fn) for what, fn in _ENCODING_MISTAKES.items()},
          hints=("Column pair i shares one frequency ω_i; even columns hold the sines, odd columns the cosines. "
                 "Fill out[:, 0::2] and out[:, 1::2], or loop over i.",
                 "P(k, 2i) = sin(k·n^(−2i/d)), P(k, 2i+1) = cos(k·n^(−2i/d)), i = 0..d/2−1, n = 10000, k = t as is."))
def _ex_05_1(answer):
    from ddpm_ref.embeddings import sinusoidal_embedding

    inputs = [(np.array([1, 2, 500, 1000]), 8), (np.arange(1, 40), 32), (np.array([7, 999]), 128)]
    return compare_function(answer, sinusoidal_embedding, inputs, rtol=1e-9, atol=1e-12, mistakes=_ENCODING_MISTAKES)


_EX_5_2_D = 32   # the demo U-Net's base width


def _longest_wavelength():
    d, n = _EX_5_2_D, 10000.0
    return 2 * np.pi * n ** (1 - 2 / d)            # ω of the last pair, i = d/2 − 1, is n^(−(d − 2)/d)


def _longest_wavelength_reference():
    from ddpm_ref.embeddings import embedding_frequencies

    return 2 * np.pi / embedding_frequencies(_EX_5_2_D).min()


def _wavelength_of_fastest():
    from ddpm_ref.embeddings import embedding_frequencies

    return 2 * np.pi / embedding_frequencies(_EX_5_2_D).max()


@exercise("05.2", solution=_longest_wavelength,
          wrong={"2πn, the limit for d → ∞": lambda: 2 * np.pi * 1e4,
                 "the fastest column's wavelength (i = 0)": _wavelength_of_fastest,
                 "the frequency instead of the wavelength": lambda: 1 / _longest_wavelength()},
          hints=("Which column pair changes most slowly with k? Its wavelength is the answer; the largest i is d/2 − 1, "
                 "not d/2.",
                 "wavelength = 2π/ω_i with ω_i = n^(−2i/d); the slowest pair is i = d/2 − 1."))
def _ex_05_2(answer):
    expected = _longest_wavelength_reference()
    return compare(answer, expected, rtol=1e-4,
                   mistakes={"the wavelength of the fastest column (i = 0), not the slowest": _wavelength_of_fastest(),
                             "2πn: that pair (i = d/2) does not exist; the last is i = d/2 − 1": 2 * np.pi * 1e4,
                             "the angular frequency, not the wavelength": 1 / expected})


def _shift_matrix(delta, d):
    omegas = 10000.0 ** (-2 * np.arange(d // 2) / d)
    m = np.zeros((d, d))
    for i, w in enumerate(omegas):
        c, s = np.cos(w * delta), np.sin(w * delta)
        # row vector [sin, cos] @ [[c, -s], [s, c]] = [sin·c + cos·s, −sin·s + cos·c] = [sin(a+b), cos(a+b)]
        m[2 * i, 2 * i], m[2 * i, 2 * i + 1] = c, -s
        m[2 * i + 1, 2 * i], m[2 * i + 1, 2 * i + 1] = s, c
    return m


def _shift_matrix_transposed(delta, d):
    return _shift_matrix(delta, d).T


def _shift_matrix_identity(delta, d):
    return np.eye(d)


def _ex_05_3_reference(delta, d, k):
    from ddpm_ref.embeddings import sinusoidal_embedding

    return sinusoidal_embedding(k + delta, d)


def _shifted_by(fn):
    def run(delta, d, k):
        from ddpm_ref.embeddings import sinusoidal_embedding

        m = fn(delta, d)
        return None if m is None else sinusoidal_embedding(k, d) @ np.asarray(m)
    return run


@exercise("05.3", solution=lambda: _shift_matrix,
          wrong={"the column-vector rotation (M transposed)": lambda: _shift_matrix_transposed,
                 "the identity": lambda: _shift_matrix_identity},
          hints=("M is block diagonal: one 2×2 block per column pair, built from cos(ω_iΔ) and sin(ω_iΔ). Mind that "
                 "rows are multiplied from the left, P(k) @ M, so the block is the transpose of section 3's matrix.",
                 "block i at rows/columns (2i, 2i+1): [[cos ω_iΔ, −sin ω_iΔ], [sin ω_iΔ, cos ω_iΔ]]."))
def _ex_05_3(answer):
    k = np.array([1, 7, 250, 999])
    inputs = [(delta, d, k) for delta, d in [(1, 8), (5, 16), (37, 128), (-3, 32)]]
    return compare_function(_shifted_by(answer), _ex_05_3_reference, inputs, atol=1e-9,
                            mistakes={"M transposed: the rows are multiplied from the left, P(k) @ M":
                                      _shifted_by(_shift_matrix_transposed)})
