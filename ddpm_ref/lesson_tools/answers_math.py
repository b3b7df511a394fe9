"""Checkers (and solutions) for the exercises of lessons 1-5: the math of DDPM.

Each exercise is stated in its notebook; the expected answer is computed here from ddpm_ref.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.lesson_tools import compare, compare_function, exercise

# --------------------------------------------------------------------------------------------
# Lesson 05: the timestep encoding
# --------------------------------------------------------------------------------------------


def _longest_wavelength():
    from ddpm_ref.embeddings import embedding_frequencies

    return 2 * np.pi / embedding_frequencies(128).min()


@exercise("05.1", solution=_longest_wavelength)
def _ex_05_1(answer):
    return compare(answer, _longest_wavelength(), rtol=1e-4,
                   hint="Wavelength = 2π / angular frequency; the slowest column is i = d/2 - 1.")


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
