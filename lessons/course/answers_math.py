"""Checkers (and solutions) for the exercises of lessons 1-5: the math of DDPM.

Each exercise is stated in its notebook; the expected answer is computed here from ddpm_ref.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise

# --------------------------------------------------------------------------------------------
# Lesson 05: the timestep encoding
# --------------------------------------------------------------------------------------------


def _longest_wavelength():
    from ddpm_ref.embeddings import embedding_frequencies

    return 2 * np.pi / embedding_frequencies(128).min()


def _wavelength_of_fastest():
    from ddpm_ref.embeddings import embedding_frequencies

    return 2 * np.pi / embedding_frequencies(128).max()


@exercise("05.1", solution=_longest_wavelength,
          wrong={"the fastest column's wavelength (i = 0)": _wavelength_of_fastest,
                 "the frequency instead of the wavelength": lambda: 1 / _longest_wavelength()},
          hints=("Which column of the encoding changes most slowly with k? Its wavelength is the answer.",
                 "Wavelength = 2π / ω_i, and the slowest column is the last one, i = d/2 − 1."))
def _ex_05_1(answer):
    return compare(answer, _longest_wavelength(), rtol=1e-4,
                   mistakes={"the wavelength of the fastest column (i = 0), not the slowest":
                             _wavelength_of_fastest()})


def _shift_matrix(delta, d):
    from ddpm_ref.embeddings import embedding_frequencies

    m = np.zeros((d, d))
    for i, w in enumerate(embedding_frequencies(d)):
        c, s = np.cos(w * delta), np.sin(w * delta)
        m[2 * i, 2 * i], m[2 * i, 2 * i + 1] = c, -s
        m[2 * i + 1, 2 * i], m[2 * i + 1, 2 * i + 1] = s, c
    return m


def _ex_05_2_reference(delta, d, k):
    from ddpm_ref.embeddings import sinusoidal_embedding

    return sinusoidal_embedding(k + delta, d)


@exercise("05.2", solution=lambda: _shift_matrix)
def _ex_05_2(answer):
    from ddpm_ref.embeddings import sinusoidal_embedding

    def shifted_by_student(delta, d, k):
        m = answer(delta, d)
        return None if m is None else sinusoidal_embedding(k, d) @ np.asarray(m)

    k = np.array([1, 7, 250, 999])
    inputs = [(delta, d, k) for delta, d in [(1, 8), (5, 16), (37, 128), (-3, 32)]]
    return compare_function(shifted_by_student, _ex_05_2_reference, inputs, atol=1e-9,
                            hint="Use sin(a+b) and cos(a+b) for each (sin, cos) column pair; "
                                 "remember the rows are multiplied from the left: P(k) @ M.")


def _similarity(delta, d):
    from ddpm_ref.embeddings import embedding_frequencies

    return float(np.sum(np.cos(embedding_frequencies(d) * delta)))


def _ex_05_3_reference(delta, d):
    from ddpm_ref.embeddings import sinusoidal_embedding

    rows = sinusoidal_embedding(np.array([100, 100 + delta]), d)
    return float(rows[0] @ rows[1])


@exercise("05.3", solution=lambda: _similarity)
def _ex_05_3(answer):
    inputs = [(0, 16), (1, 16), (3, 128), (40, 128), (-12, 64)]
    return compare_function(answer, _ex_05_3_reference, inputs, atol=1e-8,
                            hint="Expand sin(a)sin(b) + cos(a)cos(b) for each pair of columns.")


# --------------------------------------------------------------------------------------------
# Lesson 01: the forward process
# --------------------------------------------------------------------------------------------


def _linear(T=1000):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("linear", T)


def _first_t_signal_below_half():
    s = _linear()
    return int(np.argmax(np.sqrt(s.alpha_bars) < 0.5))


@exercise("01.1", solution=_first_t_signal_below_half)
def _ex_01_1(answer):
    return compare(answer, _first_t_signal_below_half(), atol=0,
                   hint="Look for the first index t where np.sqrt(sched.alpha_bars[t]) < 0.5.")


@exercise("01.2", solution=lambda: 1 - 0.9 * 0.8)
def _ex_01_2(answer):
    return compare(answer, 1 - 0.9 * 0.8, rtol=1e-6,
                   hint="The variance of x_t given x_0 is 1 − ᾱ_t, and ᾱ_2 = (1 − β_1)(1 − β_2).")


def _my_q_sample(sched, x0, t, noise):
    return np.sqrt(sched.alpha_bars[t]) * x0 + np.sqrt(1 - sched.alpha_bars[t]) * noise


@exercise("01.3", solution=lambda: _my_q_sample)
def _ex_01_3(answer):
    from ddpm_ref.diffusion import q_sample
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(1)
    inputs = []
    for sched, t in [(_linear(), 1), (_linear(), 321), (make_schedule("cosine", 50), 50)]:
        inputs.append((sched, g.uniform(-1, 1, (3, 1, 4, 4)), t, g.standard_normal((3, 1, 4, 4))))
    return compare_function(answer, q_sample, inputs, rtol=1e-10, atol=1e-12,
                            hint="x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · noise, with ᾱ_t = sched.alpha_bars[t].")


# --------------------------------------------------------------------------------------------
# Lesson 02: noise schedules
# --------------------------------------------------------------------------------------------


def _signal_left_t50():
    from ddpm_ref.schedules import make_schedule

    return float(np.sqrt(make_schedule("linear", 50).alpha_bars[50]))


@exercise("02.1", solution=_signal_left_t50)
def _ex_02_1(answer):
    return compare(answer, _signal_left_t50(), rtol=1e-4,
                   hint="make_schedule('linear', 50) keeps β from 1e-4 to 0.02; take np.sqrt(alpha_bars[50]).")


def _cosine_alpha_bar(t, T, s=0.008):
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    return f(np.asarray(t, dtype=np.float64)) / f(0.0)


def _ex_02_2_reference(t, T):
    from ddpm_ref.schedules import make_schedule

    return make_schedule("cosine", T).alpha_bars[t]


@exercise("02.2", solution=lambda: _cosine_alpha_bar)
def _ex_02_2(answer):
    inputs = [(np.arange(1000), 1000), (np.arange(50), 50), (np.array([0, 3, 7]), 8)]
    return compare_function(lambda t, T: answer(t, T), _ex_02_2_reference, inputs, rtol=1e-9, atol=1e-12,
                            hint="f(t) = cos²(((t/T + s)/(1 + s))·π/2) and ᾱ_t = f(t)/f(0).")


def _first_t_as_noisy():
    from ddpm_ref.schedules import make_schedule

    ls = make_schedule("linear", 1000).logsnr
    return int(np.argmax(ls + 2 * np.log(0.5) <= ls[500]))


@exercise("02.3", solution=_first_t_as_noisy)
def _ex_02_3(answer):
    return compare(answer, _first_t_as_noisy(), atol=0,
                   hint="Find the first t with logsnr[t] + 2·log(0.5) <= logsnr[500] (np.argmax on a boolean array).")


# --------------------------------------------------------------------------------------------
# Lesson 03: the posterior and the reverse process
# --------------------------------------------------------------------------------------------


def _beta_tilde_2():
    from ddpm_ref.schedules import Schedule

    return float(Schedule.from_betas([0.1, 0.2]).posterior_variance[2])


@exercise("03.1", solution=_beta_tilde_2)
def _ex_03_1(answer):
    return compare(answer, _beta_tilde_2(), rtol=1e-4,
                   hint="β̃_2 = (1 − ᾱ_1)/(1 − ᾱ_2)·β_2 with ᾱ_1 = 0.9 and ᾱ_2 = 0.9·0.8.")


def _my_mu_theta(sched, xt, t, eps):
    return (xt - sched.betas[t] / np.sqrt(1 - sched.alpha_bars[t]) * eps) / np.sqrt(sched.alphas[t])


def _ex_03_2_reference(sched, xt, t, eps):
    from ddpm_ref.diffusion import p_mean_variance

    return p_mean_variance(sched, xt, t, eps)[0]


@exercise("03.2", solution=lambda: _my_mu_theta)
def _ex_03_2(answer):
    from ddpm_ref.schedules import make_schedule

    g = np.random.default_rng(3)
    inputs = [(s, g.standard_normal((4, 2)), t, g.standard_normal((4, 2)))
              for s, t in [(_linear(), 1), (_linear(), 500), (make_schedule("cosine", 40), 39)]]
    return compare_function(answer, _ex_03_2_reference, inputs, rtol=1e-9, atol=1e-12,
                            hint="μ_θ = (x_t − β_t/√(1 − ᾱ_t)·ε)/√α_t.")


def _gmm_mean():
    from ddpm_ref.data import default_gmm

    gmm = default_gmm()
    return gmm.weights @ gmm.means


@exercise("03.3", solution=_gmm_mean)
def _ex_03_3(answer):
    return compare(answer, _gmm_mean(), atol=5e-3, rtol=0,
                   hint="When x_T carries no information about x_0, the best guess of x_0 is its mean, Σ_k π_k μ_k.")


# --------------------------------------------------------------------------------------------
# Lesson 04: the ELBO
# --------------------------------------------------------------------------------------------


def _my_lambda(sched, t):
    return sched.betas[t] ** 2 / (2 * sched.posterior_variance[t] * sched.alphas[t] * (1 - sched.alpha_bars[t]))


def _ex_04_1_reference(sched, t):
    """λ_t measured: vb_term_bpd / (mean squared error / ln 2), one t at a time."""
    from ddpm_ref.diffusion import q_sample
    from ddpm_ref.elbo import vb_term_bpd

    g = np.random.default_rng(4)
    x0 = np.round(g.uniform(-1, 1, (1, 6)) * 127.5) / 127.5
    out = []
    for ti in np.atleast_1d(t):
        noise, delta = g.standard_normal((1, 6)), g.standard_normal((1, 6))
        xt = q_sample(sched, x0, int(ti), noise)
        vb = vb_term_bpd(sched, x0, xt, int(ti), noise + delta)[0]
        out.append(vb * np.log(2) / np.mean(delta ** 2))
    return np.array(out)


@exercise("04.1", solution=lambda: _my_lambda)
def _ex_04_1(answer):
    from ddpm_ref.schedules import make_schedule

    inputs = [(_linear(), np.array([2, 10, 500, 1000])), (make_schedule("cosine", 100), np.array([2, 50, 99])),
              (make_schedule("quadratic", 20), np.array([3, 20]))]
    return compare_function(lambda s, t: answer(s, t), _ex_04_1_reference, inputs, rtol=1e-6,
                            hint="λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) with σ_t² = β̃_t = sched.posterior_variance[t].")


def _prior_white_t50():
    from ddpm_ref.elbo import prior_bpd
    from ddpm_ref.schedules import make_schedule

    return float(prior_bpd(make_schedule("linear", 50), np.ones((1, 1, 8, 8)))[0])


@exercise("04.2", solution=_prior_white_t50)
def _ex_04_2(answer):
    return compare(answer, _prior_white_t50(), rtol=1e-4,
                   hint="m = √ᾱ_T·1, s² = 1 − ᾱ_T with ᾱ_T = make_schedule('linear', 50).alpha_bars[50]; "
                        "KL = ½(m² + s² − 1 − log s²) nats, then divide by log 2.")
