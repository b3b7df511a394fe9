"""Checkers (and solutions) for the exercises of lessons 12-14: what DDPM grew into.

As in ``answers_math``: each checker computes the expected answer with ``ddpm_ref`` (the modules
``prediction``, ``learned_variance``, ``score``, ``timesteps``, ``embeddings``); each solution writes
the formula out with NumPy; every exercise registers plausible wrong answers, which
``tests/test_lessons.py`` feeds to the checker and requires to be rejected.

Why over 400 lines: the checkers, plausible wrong answers, hints and solutions of every exercise of
lessons 12-14, one block per exercise, in the order the lessons ask them.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise


def _linear(T=1000):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("linear", T)


def _col(values, ndim):
    """values of shape (N,) reshaped to (N, 1, ..., 1)."""
    return np.asarray(values, dtype=np.float64).reshape((-1,) + (1,) * (ndim - 1))


def _as_fn(mistakes):
    return {what: (lambda fn=fn: fn) for what, fn in mistakes.items()}


# --------------------------------------------------------------------------------------------
# Lesson 12: prediction targets, zero terminal SNR, learned variance
# --------------------------------------------------------------------------------------------


def _solution_12_1():
    """The solution of exercise 12.1, as a student writes it (what hint() shows last)."""
    def my_v_target(sched, x0, t, noise):
        a = sched.alpha_bars[t].reshape(-1, *([1] * (x0.ndim - 1)))          # ᾱ_t per example, (N, 1, ...)
        return np.sqrt(a) * noise - np.sqrt(1 - a) * x0                        # v = √ᾱ ε − √(1 − ᾱ) x₀
    return my_v_target


_my_v_target = _solution_12_1()


def _v_sign_flipped(sched, x0, t, noise):
    return -_my_v_target(sched, x0, t, noise)


def _v_coefficients_swapped(sched, x0, t, noise):
    a = _col(sched.alpha_bars[t], x0.ndim)
    return np.sqrt(1 - a) * noise - np.sqrt(a) * x0


def _v_no_sqrt(sched, x0, t, noise):
    a = _col(sched.alpha_bars[t], x0.ndim)
    return a * noise - (1 - a) * x0


def _v_off_by_one(sched, x0, t, noise):
    a = _col(sched.alpha_bars[t - 1], x0.ndim)
    return np.sqrt(a) * noise - np.sqrt(1 - a) * x0


def _v_is_eps(sched, x0, t, noise):
    return np.array(noise, dtype=np.float64)


_V_MISTAKES = {
    "−v: the sign is flipped (v points along increasing φ, towards ε)": _v_sign_flipped,
    "the coefficients of ε and x₀ swapped (that is −dx_t/dφ rotated the wrong way)": _v_coefficients_swapped,
    "ᾱ_t and 1 − ᾱ_t without their square roots": _v_no_sqrt,
    "ᾱ_{t−1} where ᾱ_t belongs (an off-by-one t)": _v_off_by_one,
    "ε itself, the ε-prediction target": _v_is_eps,
}


@exercise("12.1", solution=_solution_12_1, wrong=_as_fn(_V_MISTAKES),
          hints=("Differentiate x_t = cos φ·x₀ + sin φ·ε with respect to φ, then write cos φ_t and sin φ_t with ᾱ_t. "
                 "t holds one timestep per example: reshape sched.alpha_bars[t] to (N, 1, ...).",
                 "v = cos φ_t·ε − sin φ_t·x₀ = √ᾱ_t·ε − √(1 − ᾱ_t)·x₀ (Salimans & Ho 2022, sec. 4)."))
def _ex_12_1(answer):
    from ddpm_ref.prediction import v_target
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(121)
    inputs = []
    for sched, n, shape in [(_linear(), 4, (3, 4, 4)), (_linear(), 3, (2,)), (make_schedule("cosine", 50), 5, (1, 3, 3))]:
        t = g.integers(1, sched.T + 1, n)
        t[0] = sched.T
        inputs.append((sched, g.uniform(-1, 1, (n,) + shape), t, g.standard_normal((n,) + shape)))
    return compare_function(answer, v_target, inputs, rtol=1e-10, atol=1e-12, mistakes=_V_MISTAKES)


def _solution_12_2():
    """The solution of exercise 12.2, as a student writes it (what hint() shows last)."""
    def my_x0_from_v(sched, xt, t, v):
        a = sched.alpha_bars[t].reshape(-1, *([1] * (xt.ndim - 1)))
        return np.sqrt(a) * xt - np.sqrt(1 - a) * v                             # rotate (x_t, v) back by −φ_t
    return my_x0_from_v


_my_x0_from_v = _solution_12_2()


def _x0_from_v_plus(sched, xt, t, v):
    a = _col(sched.alpha_bars[t], xt.ndim)
    return np.sqrt(a) * xt + np.sqrt(1 - a) * v


def _x0_from_v_swapped(sched, xt, t, v):
    a = _col(sched.alpha_bars[t], xt.ndim)
    return np.sqrt(1 - a) * xt - np.sqrt(a) * v


def _x0_from_v_as_eps(sched, xt, t, v):
    a = _col(sched.alpha_bars[t], xt.ndim)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xt - np.sqrt(1 - a) * v) / np.sqrt(a)


def _eps_from_v(sched, xt, t, v):
    a = _col(sched.alpha_bars[t], xt.ndim)
    return np.sqrt(a) * v + np.sqrt(1 - a) * xt


_X0_FROM_V_MISTAKES = {
    "√ᾱ_t·x_t + √(1 − ᾱ_t)·v: the sign of the v term": _x0_from_v_plus,
    "the coefficients of x_t and v swapped": _x0_from_v_swapped,
    "eq. 15's ε formula applied to v, (x_t − √(1 − ᾱ_t)·v)/√ᾱ_t": _x0_from_v_as_eps,
    "ε̂ from v (the other row of the inverse rotation), not x̂₀": _eps_from_v,
}


def _ex_12_2_reference(sched, xt, t, v):
    from ddpm_ref.prediction import x0_from_prediction

    return x0_from_prediction(sched, xt, t, v, "v")


@exercise("12.2", solution=_solution_12_2, wrong=_as_fn(_X0_FROM_V_MISTAKES),
          hints=("(x_t, v) is (x₀, ε) rotated by φ_t; a rotation is undone by its transpose. Write the 2×2 matrix "
                 "out and read off the row that gives x₀.",
                 "x̂₀ = cos φ_t·x_t − sin φ_t·v̂ = √ᾱ_t·x_t − √(1 − ᾱ_t)·v̂."))
def _ex_12_2(answer):
    from ddpm_ref.schedules import make_schedule
    from ddpm_ref.schedules import rescale_zero_terminal_snr

    g = np.random.default_rng(122)
    inputs = []
    zero = rescale_zero_terminal_snr(_linear())
    for sched, n, shape in [(_linear(), 4, (2, 3, 3)), (make_schedule("cosine", 40), 3, (2,)), (zero, 3, (4,))]:
        t = g.integers(1, sched.T + 1, n)
        t[0] = sched.T                                         # the zero-SNR schedule's t = T comes last
        inputs.append((sched, g.standard_normal((n,) + shape), t, g.standard_normal((n,) + shape)))
    return compare_function(answer, _ex_12_2_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_X0_FROM_V_MISTAKES)


def _solution_12_3():
    """The solution of exercise 12.3, as a student writes it (what hint() shows last)."""
    def my_vlb_grad(sched, x0, xt, t, mean, v_sigma):
        log_beta, log_beta_tilde = np.log(sched.betas[t]), sched.posterior_log_variance_clipped[t]
        mu_q = sched.posterior_mean_coef_x0[t] * x0 + sched.posterior_mean_coef_xt[t] * xt     # μ̃_t, eq. 7
        log_var = v_sigma * log_beta + (1 - v_sigma) * log_beta_tilde                           # eq. 15
        d_kl_d_logvar = 0.5 * (1 - np.exp(log_beta_tilde - log_var) - (mu_q - mean) ** 2 * np.exp(-log_var))
        dims = x0[0].size
        return d_kl_d_logvar * (log_beta - log_beta_tilde) / (dims * np.log(2))                 # chain rule; mean over dims, bits
    return my_vlb_grad


_my_vlb_grad = _solution_12_3()


def _grad_variant(*, bits=True, mean=True, chain=True, half=True, sign=-1.0):
    def fn(sched, x0, xt, t, mu, v_sigma):
        log_beta, log_beta_tilde = np.log(sched.betas[t]), sched.posterior_log_variance_clipped[t]
        mu_q = sched.posterior_mean_coef_x0[t] * x0 + sched.posterior_mean_coef_xt[t] * xt
        log_var = v_sigma * log_beta + (1 - v_sigma) * log_beta_tilde
        d = (1 - np.exp(log_beta_tilde - log_var) + sign * (mu_q - mu) ** 2 * np.exp(-log_var))
        d = d * (0.5 if half else 1.0)
        d = d * ((log_beta - log_beta_tilde) if chain else 1.0)
        d = d / (x0[0].size if mean else 1.0) / (np.log(2) if bits else 1.0)
        return d
    return fn


_VLB_GRAD_MISTAKES = {
    "nats: the gradient of a loss in bits/dim is divided by log 2": _grad_variant(bits=False),
    "the gradient of the sum over dimensions; L_{t−1} is their mean (divide by D)": _grad_variant(mean=False),
    "∂L/∂log σ², not ∂L/∂v: the chain rule's factor log β_t − log β̃_t is missing": _grad_variant(chain=False),
    "the KL's ½ is missing": _grad_variant(half=False),
    "the sign of the mean term: (μ̃ − μ_θ)²/σ² enters ∂KL/∂log σ² with a minus": _grad_variant(sign=+1.0),
}


def _ex_12_3_reference(sched, x0, xt, t, mean, v_sigma):
    from ddpm_ref.learned_variance import vlb_term_learned_backward, vlb_term_learned_forward

    _, cache = vlb_term_learned_forward(sched, x0, xt, t, mean, v_sigma)
    return vlb_term_learned_backward(np.ones(len(x0)), cache)


def _vlb_grad_inputs():
    from ddpm_ref.diffusion import q_sample
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(123)
    inputs = []
    for sched, t, shape in [(_linear(), 2, (3, 4)), (_linear(), 300, (2, 1, 3, 3)), (make_schedule("cosine", 50), 50, (4, 5)),
                            (_linear(), 20, (3, 6))]:
        x0 = np.round(g.uniform(-1, 1, shape) * 127.5) / 127.5
        xt = q_sample(sched, x0, t, g.standard_normal(shape))
        mu_q = sched.posterior_mean_coef_x0[t] * x0 + sched.posterior_mean_coef_xt[t] * xt
        mean = mu_q + 0.05 * np.sqrt(sched.betas[t]) * g.standard_normal(shape)   # a slightly wrong mean
        inputs.append((sched, x0, xt, t, mean, g.uniform(-0.2, 1.2, shape)))
    return inputs


@exercise("12.3", solution=_solution_12_3, wrong=_as_fn(_VLB_GRAD_MISTAKES),
          hints=("Two factors by the chain rule: ∂KL/∂log σ² (a Gaussian KL whose second variance is σ² = exp(log σ²)), "
                 "times ∂log σ²/∂v from eq. 15. Then the units: L_{t−1} is a mean over the D dimensions in bits.",
                 "∂L/∂v = ½(1 − β̃_t/σ² − (μ̃_t − μ_θ)²/σ²)·(log β_t − log β̃_t)/(D·log 2), with "
                 "log σ² = v·log β_t + (1 − v)·log β̃_t and log β̃_t = sched.posterior_log_variance_clipped[t]."))
def _ex_12_3(answer):
    return compare_function(answer, _ex_12_3_reference, _vlb_grad_inputs(), rtol=1e-8, atol=1e-13,
                            mistakes=_VLB_GRAD_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 13: the score-based view
# --------------------------------------------------------------------------------------------


def _solution_13_1():
    """The solution of exercise 13.1, as a student writes it (what hint() shows last)."""
    def my_langevin_step(sched, x, t, eps, alpha, z):
        score = -eps / np.sqrt(1 - sched.alpha_bars[t])                      # ∇ log q_t = −ε/√(1 − ᾱ_t)
        return x + 0.5 * alpha * score + np.sqrt(alpha) * z
    return my_langevin_step


_my_langevin_step = _solution_13_1()


def _langevin_no_half(sched, x, t, eps, alpha, z):
    return x - alpha * eps / np.sqrt(1 - sched.alpha_bars[t]) + np.sqrt(alpha) * z


def _langevin_noise_alpha(sched, x, t, eps, alpha, z):
    return x - 0.5 * alpha * eps / np.sqrt(1 - sched.alpha_bars[t]) + alpha * z


def _langevin_score_sign(sched, x, t, eps, alpha, z):
    return x + 0.5 * alpha * eps / np.sqrt(1 - sched.alpha_bars[t]) + np.sqrt(alpha) * z


def _langevin_score_no_sqrt(sched, x, t, eps, alpha, z):
    return x - 0.5 * alpha * eps / (1 - sched.alpha_bars[t]) + np.sqrt(alpha) * z


def _langevin_mixed_convention(sched, x, t, eps, alpha, z):
    return x - 0.5 * alpha * eps / np.sqrt(1 - sched.alpha_bars[t]) + np.sqrt(2 * alpha) * z


_LANGEVIN_MISTAKES = {
    "α·∇log q without the ½": _langevin_no_half,
    "noise α·z where √α·z belongs": _langevin_noise_alpha,
    "+ε/√(1 − ᾱ_t): the score is minus the noise, scaled": _langevin_score_sign,
    "ε/(1 − ᾱ_t): the score divides by the noise's standard deviation √(1 − ᾱ_t)": _langevin_score_no_sqrt,
    "the α/2 drift with √(2α) noise: two conventions mixed (ε∇log q + √(2ε)z is the other one)": _langevin_mixed_convention,
}


def _ex_13_1_reference(sched, x, t, eps, alpha, z):
    from ddpm_ref.score import score_from_eps

    return x + 0.5 * alpha * score_from_eps(sched, t, eps) + np.sqrt(alpha) * z


@exercise("13.1", solution=_solution_13_1, wrong=_as_fn(_LANGEVIN_MISTAKES),
          hints=("First the score from ε (section 1), then Song & Ermon's update: half the step size times the score, "
                 "plus noise whose variance is the step size.",
                 "x ← x + (α/2)·∇log q_t(x) + √α·z with ∇log q_t(x) = −ε_θ(x, t)/√(1 − ᾱ_t)."))
def _ex_13_1(answer):
    g = np.random.default_rng(131)
    inputs = [(_linear(), g.standard_normal((5, 2)), t, g.standard_normal((5, 2)), alpha, g.standard_normal((5, 2)))
              for t, alpha in [(1000, 0.3), (10, 1e-3), (250, 0.05)]]
    return compare_function(answer, _ex_13_1_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_LANGEVIN_MISTAKES)


def _solution_13_2():
    """The solution of exercise 13.2, as a student writes it (what hint() shows last)."""
    def my_pf_ode_vp_step(sched, x, t, t_prev, eps):
        B = np.log(sched.alpha_bars[t_prev]) - np.log(sched.alpha_bars[t])   # ∫ β(s) ds over (t_prev, t]
        score = -eps / np.sqrt(1 - sched.alpha_bars[t])
        return x + 0.5 * B * (x + score)                                      # dx/du = −½(x + score), Δu = −B
    return my_pf_ode_vp_step


_my_pf_ode_vp_step = _solution_13_2()


def _vp_sum_of_betas(sched, x, t, t_prev, eps):
    B = sched.betas[t_prev + 1:t + 1].sum()
    return x + 0.5 * B * (x - eps / np.sqrt(1 - sched.alpha_bars[t]))


def _vp_sde_drift(sched, x, t, t_prev, eps):
    B = np.log(sched.alpha_bars[t_prev]) - np.log(sched.alpha_bars[t])
    return x + B * (0.5 * x - eps / np.sqrt(1 - sched.alpha_bars[t]))


def _vp_wrong_direction(sched, x, t, t_prev, eps):
    B = np.log(sched.alpha_bars[t_prev]) - np.log(sched.alpha_bars[t])
    return x - 0.5 * B * (x - eps / np.sqrt(1 - sched.alpha_bars[t]))


def _vp_score_no_sqrt(sched, x, t, t_prev, eps):
    B = np.log(sched.alpha_bars[t_prev]) - np.log(sched.alpha_bars[t])
    return x + 0.5 * B * (x - eps / (1 - sched.alpha_bars[t]))


_VP_MISTAKES = {
    "B = Σβ_s: the step needs ∫β(s)ds = log ᾱ_{t_prev} − log ᾱ_t, which is Σ −log(1 − β_s)": _vp_sum_of_betas,
    "the reverse SDE's drift ½x + ∇log q (the ODE halves the score term)": _vp_sde_drift,
    "a step forward in time (the sign of Δu)": _vp_wrong_direction,
    "ε/(1 − ᾱ_t) where the score divides by √(1 − ᾱ_t)": _vp_score_no_sqrt,
}


def _ex_13_2_reference(sched, x, t, t_prev, eps):
    from ddpm_ref.score import integrated_beta, score_from_eps

    return x + 0.5 * integrated_beta(sched, t, t_prev) * (x + score_from_eps(sched, t, eps))


@exercise("13.2", solution=_solution_13_2, wrong=_as_fn(_VP_MISTAKES),
          hints=("With u = −log ᾱ as the time variable the ODE reads dx/du = −½(x + ∇log q). Going from t down to t_prev "
                 "changes u by −B, where B = log ᾱ_{t_prev} − log ᾱ_t > 0.",
                 "x_{t_prev} = x_t + ½·B·(x_t + ∇log q_t(x_t)), B = log ᾱ_{t_prev} − log ᾱ_t, ∇log q_t = −ε/√(1 − ᾱ_t)."))
def _ex_13_2(answer):
    g = np.random.default_rng(132)
    inputs = [(_linear(), g.standard_normal((4, 2)), t, tp, g.standard_normal((4, 2)))
              for t, tp in [(1000, 900), (500, 499), (100, 10), (20, 1)]]
    return compare_function(answer, _ex_13_2_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_VP_MISTAKES)


def _solution_13_3():
    """The solution of exercise 13.3, as a student writes it (what hint() shows last)."""
    def my_heun_step(eps_model, sched, x, t, t_prev):
        def euler(x, eps):                                                   # dx̄/dσ = ε, x̄ = x/√ᾱ, σ = √(1 − ᾱ)/√ᾱ
            sig, sig_prev = np.sqrt(1 - sched.alpha_bars[t]) / np.sqrt(sched.alpha_bars[t]), \
                np.sqrt(1 - sched.alpha_bars[t_prev]) / np.sqrt(sched.alpha_bars[t_prev])
            return np.sqrt(sched.alpha_bars[t_prev]) * (x / np.sqrt(sched.alpha_bars[t]) + (sig_prev - sig) * eps)

        n = len(x)
        eps = eps_model(x, np.full(n, t))
        eps_end = eps_model(euler(x, eps), np.full(n, t_prev))               # the slope where Euler lands
        return euler(x, 0.5 * (eps + eps_end))                               # the step again, average slope
    return my_heun_step


_my_heun_step = _solution_13_3()


def _heun_reference_with(end_t=None, mode="heun"):
    def fn(eps_model, sched, x, t, t_prev):
        from ddpm_ref.score import pf_ode_euler_step

        n = len(x)
        eps = eps_model(x, np.full(n, t))
        x_euler = pf_ode_euler_step(sched, x, t, t_prev, eps)
        if mode == "euler":
            return x_euler
        eps_end = eps_model(x_euler, np.full(n, t_prev if end_t is None else end_t(t, t_prev)))
        if mode == "end":
            return pf_ode_euler_step(sched, x, t, t_prev, eps_end)
        return pf_ode_euler_step(sched, x, t, t_prev, 0.5 * (eps + eps_end))
    return fn


def _heun_in_vp(eps_model, sched, x, t, t_prev):
    n = len(x)
    B = np.log(sched.alpha_bars[t_prev]) - np.log(sched.alpha_bars[t])

    def slope(x, tt):
        return -0.5 * (x - eps_model(x, np.full(n, tt)) / np.sqrt(1 - sched.alpha_bars[tt]))

    s0 = slope(x, t)
    x_e = x - B * s0
    return x - B * 0.5 * (s0 + slope(x_e, t_prev))


_HEUN_MISTAKES = {
    "one Euler step (no correction)": _heun_reference_with(mode="euler"),
    "the step with the end point's slope only (the average is the point of Heun)": _heun_reference_with(mode="end"),
    "ε at the Euler end point evaluated with t, not t_prev": _heun_reference_with(end_t=lambda t, tp: t),
    "Heun in the variables (x, u = −log ᾱ): the same method in other variables is another step": _heun_in_vp,
}


@exercise("13.3", solution=_solution_13_3, wrong=_as_fn(_HEUN_MISTAKES),
          hints=("Heun = predictor + corrector: an Euler step to t_prev, the model's ε at that point (at t_prev), then "
                 "the Euler step from x_t again with the mean of the two slopes. In (x̄, σ) the slope is ε itself.",
                 "ε₁ = ε_θ(x_t, t); x_E = √ᾱ_{t'}(x_t/√ᾱ_t + (σ_{t'} − σ_t)ε₁); ε₂ = ε_θ(x_E, t'); "
                 "x_{t'} = √ᾱ_{t'}(x_t/√ᾱ_t + (σ_{t'} − σ_t)(ε₁ + ε₂)/2), σ = √(1 − ᾱ)/√ᾱ."))
def _ex_13_3(answer):
    from ddpm_ref.data import GaussianMixture, default_gmm

    g = np.random.default_rng(133)
    sched = _linear()
    other = GaussianMixture(means=[[1.0, 0.0], [-0.5, 0.5]], stds=[0.2, 0.1], weights=[0.7, 0.3])
    inputs = [(default_gmm().eps_model(sched), sched, g.standard_normal((6, 2)), 1000, 900),
              (other.eps_model(sched), sched, g.standard_normal((6, 2)), 400, 300),
              (default_gmm().eps_model(sched), sched, 0.3 * g.standard_normal((6, 2)), 50, 1)]
    return compare_function(answer, _heun_reference_with(), inputs, rtol=1e-9, atol=1e-12, mistakes=_HEUN_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 14: from ddpm_ref to diffusers
# --------------------------------------------------------------------------------------------


def _solution_14_1():
    """The solution of exercise 14.1, as a student writes it (what hint() shows last)."""
    def my_trailing(T, steps):
        return np.round(np.arange(T, 0, -T / steps))[:steps].astype(np.int64)   # diffusers' i + 1
    return my_trailing


_my_trailing = _solution_14_1()


def _trailing_zero_based(T, steps):
    return _my_trailing(T, steps) - 1


def _trailing_floor(T, steps):
    return np.floor(np.arange(T, 0, -T / steps))[:steps].astype(np.int64)


def _trailing_increasing(T, steps):
    return _my_trailing(T, steps)[::-1]


def _leading(T, steps):
    from ddpm_ref.timesteps import sampling_timesteps

    return sampling_timesteps(T, steps, "leading")


def _linspace(T, steps):
    from ddpm_ref.timesteps import sampling_timesteps

    return sampling_timesteps(T, steps, "linspace")


_TRAILING_MISTAKES = {
    "diffusers' 0-based index i = t − 1; our t is that index + 1": _trailing_zero_based,
    "floor where diffusers rounds": _trailing_floor,
    "increasing; a sampler visits t from high to low": _trailing_increasing,
    '"leading": an integer stride counted up from 0': _leading,
    '"linspace": evenly spaced with both ends': _linspace,
}


def _ex_14_1_reference(T, steps):
    from ddpm_ref.timesteps import sampling_timesteps

    return sampling_timesteps(T, steps, "trailing")


@exercise("14.1", solution=_solution_14_1, wrong=_as_fn(_TRAILING_MISTAKES),
          hints=("Count down from T with a float stride T/steps and round, keeping `steps` values. diffusers then "
                 "subtracts 1 to get its 0-based index, and our t is that index + 1.",
                 "t_k = round(T − k·T/steps) for k = 0, ..., steps − 1 (np.round(np.arange(T, 0, -T/steps))[:steps])."))
def _ex_14_1(answer):
    inputs = [(1000, 10), (1000, 3), (50, 7), (100, 30), (1000, 1)]
    return compare_function(answer, _ex_14_1_reference, inputs, rtol=0, atol=0, mistakes=_TRAILING_MISTAKES)


def _solution_14_2():
    """The solution of exercise 14.2, as a student writes it (what hint() shows last)."""
    def my_diffusers_embedding(t, d, n=10000.0):
        i = np.asarray(t, dtype=np.float64) - 1                                # diffusers' 0-based timestep
        omega = n ** (-np.arange(d // 2) / (d // 2))                           # freq_shift = 0: n^(−2k/d)
        angles = i[:, None] * omega[None, :]
        return np.concatenate([np.cos(angles), np.sin(angles)], axis=1)       # flip_sin_to_cos=True: [cos | sin]
    return my_diffusers_embedding


_my_diffusers_embedding = _solution_14_2()


def _emb_not_shifted(t, d):
    return _my_diffusers_embedding(np.asarray(t) + 1, d)


def _emb_sin_cos(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding_halves

    return sinusoidal_embedding_halves(np.asarray(t) - 1, d, order="sin_cos")


def _emb_freq_shift_1(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding_halves

    return sinusoidal_embedding_halves(np.asarray(t) - 1, d, order="cos_sin", frequency_spacing="d/2-1")


def _emb_ours(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding

    return sinusoidal_embedding(t, d)


_EMB_MISTAKES = {
    "our t fed as is: diffusers' UNet sees its 0-based timestep t − 1": _emb_not_shifted,
    "[sin | cos] (flip_sin_to_cos=False): UNet2DModel flips to [cos | sin]": _emb_sin_cos,
    "downscale_freq_shift = 1 (Ho et al.'s n^(−k/(d/2 − 1))): UNet2DModel uses freq_shift = 0": _emb_freq_shift_1,
    "ddpm_ref's interleaved encoding at t": _emb_ours,
}


def _ex_14_2_reference(t, d):
    from ddpm_ref.embeddings import sinusoidal_embedding_halves

    return sinusoidal_embedding_halves(np.asarray(t) - 1, d, order="cos_sin")


@exercise("14.2", solution=_solution_14_2, wrong=_as_fn(_EMB_MISTAKES),
          hints=("Three conventions at once: which timestep the network is given (0-based), the frequencies "
                 "(exponent −log(n)·k/(d/2 − freq_shift) with freq_shift = 0) and the order of the halves.",
                 "E(t, k) = cos((t − 1)·n^(−2k/d)), E(t, d/2 + k) = sin((t − 1)·n^(−2k/d)), k = 0..d/2 − 1, n = 10000."))
def _ex_14_2(answer):
    inputs = [(np.array([1, 2, 500, 1000]), 8), (np.arange(1, 40), 32), (np.array([7, 999]), 128)]
    return compare_function(answer, _ex_14_2_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_EMB_MISTAKES)


def _solution_14_3():
    """The solution of exercise 14.3, as a student writes it (what hint() shows last)."""
    def my_learned_range(sched, t, model_output):
        v = (np.asarray(model_output, dtype=np.float64) + 1) / 2                 # [−1, 1] → [0, 1]
        return v * np.log(sched.betas[t]) + (1 - v) * sched.posterior_log_variance_clipped[t]   # eq. 15
    return my_learned_range


_my_learned_range = _solution_14_3()


def _lr_no_map(sched, t, o):
    return o * np.log(sched.betas[t]) + (1 - o) * sched.posterior_log_variance_clipped[t]


def _lr_swapped(sched, t, o):
    v = (o + 1) / 2
    return v * sched.posterior_log_variance_clipped[t] + (1 - v) * np.log(sched.betas[t])


def _lr_off_by_one(sched, t, o):
    v = (o + 1) / 2
    return v * np.log(sched.betas[t - 1]) + (1 - v) * sched.posterior_log_variance_clipped[t - 1]


def _lr_variance(sched, t, o):
    return np.exp(_my_learned_range(sched, t, o))


_LR_MISTAKES = {
    "the raw output used as v: diffusers maps it from [−1, 1] to [0, 1]": _lr_no_map,
    "β_t and β̃_t swapped (v = 1 is β_t, the larger)": _lr_swapped,
    "the arrays read at t − 1 (diffusers' index), but these arrays are indexed by our t": _lr_off_by_one,
    "the variance, not its log": _lr_variance,
}


def _ex_14_3_reference(sched, t, o):
    from ddpm_ref.learned_variance import learned_log_variance

    return learned_log_variance(sched, t, (np.asarray(o, dtype=np.float64) + 1) / 2)


@exercise("14.3", solution=_solution_14_3, wrong=_as_fn(_LR_MISTAKES),
          hints=("It is eq. 15 of lesson 12 after one change of variable: diffusers' network output lives in [−1, 1].",
                 "log σ_t² = v·log β_t + (1 − v)·log β̃_t with v = (output + 1)/2, log β̃_t = "
                 "sched.posterior_log_variance_clipped[t]."))
def _ex_14_3(answer):
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(143)
    inputs = [(_linear(), t, g.uniform(-1, 1, (3, 2))) for t in (2, 10, 700)]
    inputs.append((make_schedule("cosine", 100), 100, g.uniform(-1, 1, (2, 1, 3, 3))))
    return compare_function(answer, _ex_14_3_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_LR_MISTAKES)


_DIFFUSERS_GUIDANCE_SCALE = 7.5    # Stable Diffusion pipelines' default guidance_scale


@exercise("14.4", solution=lambda: _DIFFUSERS_GUIDANCE_SCALE - 1,
          wrong={"s itself": lambda: _DIFFUSERS_GUIDANCE_SCALE, "s + 1": lambda: _DIFFUSERS_GUIDANCE_SCALE + 1,
                 "1/s": lambda: 1 / _DIFFUSERS_GUIDANCE_SCALE},
          hints=("Write diffusers' ε_u + s(ε_c − ε_u) as a·ε_c + b·ε_u and match it with ddpm_ref's (1 + w)·ε_c − w·ε_u.",
                 "s·ε_c + (1 − s)·ε_u = (1 + w)·ε_c − w·ε_u gives w = s − 1."))
def _ex_14_4(answer):
    s = _DIFFUSERS_GUIDANCE_SCALE
    return compare(answer, s - 1, rtol=1e-9,
                   mistakes={"s itself: diffusers' scale multiplies (ε_c − ε_u), ours is one less": s,
                             "s + 1: the shift goes the other way, w = s − 1": s + 1,
                             "1/s: the two scales differ by a shift, not a ratio": 1 / s})
