"""The numbers that lessons 1-5 state in their markdown, checked against the code.

A lesson's prose may state a number only if a cell prints it or a test here checks it: each test
reads the number *from the markdown* (so editing the text without the code, or the code without
the text, fails here) and compares it with what ``ddpm_ref`` computes today. Figure captions that
list a figure's settings (its t values, its rows, its sample count) are compared with the defaults
of the function that draws it.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from ddpm_ref.schedules import GAMMA_MIN, make_schedule

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"


def _notebook(prefix: str):
    (path,) = LESSONS.glob(f"{prefix}_*.ipynb")
    return nbformat.read(path, as_version=4)


def _markdown(prefix: str, phrase: str) -> str:
    """The one markdown cell of lesson ``prefix`` that contains ``phrase``."""
    hits = [c.source for c in _notebook(prefix).cells if c.cell_type == "markdown" and phrase in c.source]
    assert len(hits) == 1, f"lesson {prefix}: expected one markdown cell containing {phrase!r}, found {len(hits)}"
    return hits[0]


def _code(prefix: str) -> str:
    return "\n".join(c.source for c in _notebook(prefix).cells if c.cell_type == "code")


# a number: "298", "0.006", "-20.7", or with thousands separated by a space, a thin space or LaTeX's "\\,"
NUMBER = r"(-?\d{1,3}(?:(?:\\,|[ \u202f])\d{3})+(?![\d.])|-?\d+(?:\.\d+)?)"


def _number_after(text: str, pattern: str) -> float:
    """The number that directly follows the regular expression ``pattern`` in ``text``."""
    m = re.search(pattern + r"\s*" + NUMBER, text)
    assert m, f"no number after {pattern!r} in: {text[:200]}..."
    return float(re.sub(r"[ \u202f]|\\,", "", m.group(1)))


def _numbers_in(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def _alt_text(prefix: str, png: str) -> str:
    src = _markdown(prefix, f"../figures/{png}")
    m = re.search(r"!\[([^\]]*)\]\(\.\./figures/" + re.escape(png) + r"\)", src)
    assert m, png
    return m.group(1)


# --------------------------------------------------------------------------------------------
# Lesson 01
# --------------------------------------------------------------------------------------------


def test_01_signal_left_at_T():
    text = _markdown("01", "How fast the photograph disappears")
    stated = _number_after(text, r"\\sqrt\{\\bar\\alpha_T\} \\approx")
    assert stated == pytest.approx(np.sqrt(make_schedule("linear", 1000).alpha_bars[1000]), abs=5e-4)


def test_01_noised_photo_caption_lists_the_figures_t():
    from ddpm_ref.plots.forward import plot_noised_photo

    alt = _alt_text("01", "noised_photo.png")
    listed = _numbers_in(alt.split("t =", 1)[1].split(",  ")[0].split(", the same")[0])
    assert listed == list(_default(plot_noised_photo, "steps"))
    assert list(_default(plot_noised_photo, "schedules")) == ["linear", "cosine"] and "linear" in alt and "cosine" in alt


def test_01_marginals_caption_lists_the_figures_t():
    from ddpm_ref.plots.forward import plot_forward_marginals

    alt = _alt_text("01", "forward_marginals.png")
    listed = _numbers_in(alt.split("t =", 1)[1].split(" against")[0])
    assert listed == list(_default(plot_forward_marginals, "steps"))


def test_01_marginal_at_T_is_standard_normal():
    """The caption says q(x_T) and N(0, 1) coincide by t = 1000: their L1 distance is tiny."""
    from ddpm_ref.plots.forward import photo_marginal_density

    assert "by $t = 1000$ the two curves coincide" in _markdown("01", "forward_marginals.png")
    x = np.linspace(-6, 6, 2001)
    sched = make_schedule("linear", 1000)
    q0, q500, qT = photo_marginal_density(x, [0, 500, 1000], sched)
    normal = np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi)
    l1 = lambda q: np.abs(q - normal).sum() * (x[1] - x[0])  # noqa: E731
    assert l1(qT) < 0.01 < l1(q500) < l1(q0)


# --------------------------------------------------------------------------------------------
# Lesson 02
# --------------------------------------------------------------------------------------------


def _crossing(name):
    return int(np.argmax(make_schedule(name, 1000).logsnr <= 0))


def test_02_sigmoid_beta_against_linear_and_chen():
    text = _markdown("02", "Two things are called")
    stated_end = _number_after(text, r"\\bar\\alpha_T \\approx")
    assert "\\cdot10^{-5}" in text
    for name in ("linear", "sigmoid_beta"):
        assert make_schedule(name, 1000).alpha_bars[1000] == pytest.approx(stated_end * 1e-5, rel=0.1), name
    crossings = [int(v) for v in re.findall(r"t \\approx (\d+)", text)]
    assert len(crossings) == 3, crossings
    for stated, name in zip(crossings, ("sigmoid_beta", "linear", "sigmoid")):
        assert abs(stated - _crossing(name)) <= 5, (name, stated, _crossing(name))


def test_02_steps_below_minus_5():
    text = _markdown("02", "The log signal-to-noise ratio, $\\log")
    linear_steps = int(_number_after(text, r"spends its last"))
    cosine_steps = int(re.search(r"spends (\d+) there", text).group(1))
    assert linear_steps == int(np.sum(make_schedule("linear", 1000).logsnr[1:] < -5))
    assert cosine_steps == int(np.sum(make_schedule("cosine", 1000).logsnr[1:] < -5))


def test_02_gamma_clip_and_logsnr_floor():
    text = _markdown("02", "## 3. Chen's")
    assert "$[10^{-9}, 1]$" in text and GAMMA_MIN == 1e-9
    assert _number_after(text, r"\\log 10\^\{-9\} \\approx") == pytest.approx(np.log(1e-9), abs=0.05)


def test_02_wasted_steps_threshold():
    text = _markdown("02", "## 5. Two ways to get the schedule wrong")
    stated = _number_after(text, r"\\bar\\alpha_t <")
    assert stated * 1e-5 == pytest.approx(1 / (1 + np.exp(10)), rel=0.01)      # logSNR = -10
    wasted = np.mean(make_schedule("linear", 1000, beta_end=0.1).logsnr[1:] < -10)
    assert "more than half" in _markdown("02", "With $\\beta_\\text{end} = 0.1$") and wasted > 0.5


# --------------------------------------------------------------------------------------------
# Lesson 03
# --------------------------------------------------------------------------------------------


def test_03_variance_ratio_caption():
    """"close to 1 after the first few percent of a long chain, well below 1 over much of a short one"."""
    assert "first few percent" in _markdown("03", "posterior_variance_ratio.png")
    for name in ("linear", "cosine", "sigmoid"):
        s = make_schedule(name, 1000)
        ratio = s.posterior_variance[1:] / s.betas[1:]
        assert np.all(ratio[30:] > 0.9), name                                     # beyond 3 % of the chain
    s = make_schedule("linear", 50)
    assert np.mean(s.posterior_variance[1:] / s.betas[1:] < 0.9) > 0.25


def test_03_exercise_mixture_is_the_checkers():
    sys.path.insert(0, str(LESSONS))
    from course import answers_math

    text = _markdown("03", "**Exercise 3.3.**")
    pairs = [tuple(float(v) for v in p) for p in re.findall(r"\$\((-?[\d.]+), (-?[\d.]+)\)\$", text)]
    assert pairs == [tuple(m) for m in answers_math._EX_3_3_MEANS]
    weights = _numbers_in(text.split("weights", 1)[1].split("and")[0])
    assert weights == answers_math._EX_3_3_WEIGHTS


def test_03_ddim_with_eta_1_every_step_is_ddpm():
    from ddpm_ref.diffusion import ddim_sigma

    assert "with $\\eta = 1$ and every step" in _markdown("03", "## 5. DDIM")
    s = make_schedule("linear", 1000)
    for t in (2, 10, 500, 1000):
        assert float(ddim_sigma(s, t, t - 1, eta=1.0)) ** 2 == pytest.approx(s.posterior_variance[t], rel=1e-10)


def test_03_ddpm_vs_ddim_caption():
    from ddpm_ref.plots.reverse import plot_ddpm_vs_ddim

    text = _markdown("03", "ddpm_vs_ddim.png")
    assert _number_after(text, r"\*") == _default(plot_ddpm_vs_ddim, "n")
    assert _default(plot_ddpm_vs_ddim, "T") == 1000 and _default(plot_ddpm_vs_ddim, "schedule") == "linear"


# --------------------------------------------------------------------------------------------
# Lesson 04
# --------------------------------------------------------------------------------------------


def test_04_elbo_terms_caption():
    from ddpm_ref.plots.elbo import plot_elbo_terms

    text = _markdown("04", "elbo_terms.png")
    assert _number_after(text, r"mixture \(") == _default(plot_elbo_terms, "n")
    assert _number_after(text, r"\$T =") == _default(plot_elbo_terms, "T")
    assert list(_default(plot_elbo_terms, "schedules")) == ["linear", "cosine"]
    assert "default_gmm()" in _code("04")                    # the lesson uses the figure's mixture


def test_04_weights_hundred_times_smaller_and_largest_at_small_t():
    from ddpm_ref.plots.elbo import bound_weights

    assert "roughly a hundred times smaller" in _markdown("04", "## 6. Why")
    lam = bound_weights(make_schedule("linear", 1000))
    assert np.argmax(lam) == 0
    assert 50 < lam[0] / np.median(lam) < 200


def test_04_weight_shoots_up_where_cosine_beta_is_clipped():
    from ddpm_ref.plots.elbo import bound_weights

    assert "clipped to 0.999" in _markdown("04", "elbo_weights.png")
    s = make_schedule("cosine", 1000)
    lam = bound_weights(s)
    assert s.betas[1000] == 0.999 and lam[-1] > 100 * np.median(lam)


def test_04_x0_error_factor_at_t1():
    text = _markdown("04", "## 6. Why")
    stated = _number_after(text, r"times as much —")
    s = make_schedule("linear", 1000)
    assert stated == pytest.approx(np.sqrt((1 - s.alpha_bars[1]) / s.alpha_bars[1]), abs=0.001)


def test_04_exact_denoiser_eps_error_close_to_1_at_small_t():
    from ddpm_ref.data import default_gmm
    from ddpm_ref.diffusion import q_sample

    assert "close to 1 there" in _markdown("04", "## 6. Why")
    gmm, s = default_gmm(), make_schedule("linear", 1000)
    x0 = gmm.sample(2000, rng=0)[0]
    noise = np.random.default_rng(1).standard_normal(x0.shape)
    t = np.ones(len(x0), dtype=int)
    err = np.mean((gmm.eps_model(s)(q_sample(s, x0, t, noise), t) - noise) ** 2)
    assert 0.85 < err < 1.15


def test_04_derivation_chain_is_the_stated_one():
    text = _markdown("04", "**Check (steps 1–3).**")
    assert "$T = 8$, $\\beta_t$ from 0.05 to 0.5" in text
    assert "np.linspace(0.05, 0.5, 8)" in _code("04")


# --------------------------------------------------------------------------------------------
# Lesson 05
# --------------------------------------------------------------------------------------------


def test_05_longest_wavelength_for_d128():
    from ddpm_ref.embeddings import embedding_frequencies

    text = _markdown("05", "## 1. The formula")
    stated = _number_after(text, r"wavelength of about")
    assert "for $d = 128$" in text
    assert stated == pytest.approx(2 * np.pi / embedding_frequencies(128)[-1], rel=0.02)
    assert _number_after(text, r"2\\pi \\approx") == pytest.approx(2 * np.pi / embedding_frequencies(128)[0], abs=0.05)


def test_05_caption_lists_the_figures_rows():
    from ddpm_ref.plots.embedding import plot_timestep_embedding

    text = _markdown("05", "timestep_embedding.png")
    assert f"$d = {_default(plot_timestep_embedding, 'd')}$" in text
    rows = _numbers_in(re.search(r"\(\$k\$ = ([\d, ]+)\)", text).group(1))
    assert rows == list(_default(plot_timestep_embedding, "rows"))
    anchors = _numbers_in(re.search(r"\$k_0\$ = ([\d, ]+)", text).group(1))
    assert anchors == list(_default(plot_timestep_embedding, "anchors"))


def test_05_ho_frequencies_end_at_one_over_n():
    from ddpm_ref.embeddings import embedding_frequencies

    assert "the last frequency is exactly $1/n$" in _markdown("05", "## 4. Conventions")
    assert embedding_frequencies(128, frequency_spacing="d/2-1")[-1] == pytest.approx(1e-4, rel=1e-12)


def test_05_demo_unet_encodes_t_with_d_32_into_4d():
    from ddpm_ref.models.unet import UNet
    from ddpm_ref.train import DEMO_MODEL

    assert "$d = 32$ (its base width)" in _markdown("05", "**Exercise 5.2.**")
    assert "(d \\to 4d \\to 4d)" in _markdown("05", "## 5. Where it enters")
    net = UNet(**DEMO_MODEL)
    assert net.params["time.linear1.w"].shape == (4 * 32, 32)        # P(t) of width 32 -> 4d
    assert net.params["time.linear2.w"].shape == (4 * 32, 4 * 32)    # -> 4d


def test_03_reverse_gmm_caption():
    from ddpm_ref.plots.reverse import plot_reverse_gmm

    text = _markdown("03", "reverse_gmm.png")
    alt = _alt_text("03", "reverse_gmm.png")
    assert _numbers_in(alt.split("x_t at t =", 1)[1].split("(top)")[0]) == list(_default(plot_reverse_gmm, "show"))
    assert _number_after(text, r"\$T = 1000\$,") == _default(plot_reverse_gmm, "n")
    assert _default(plot_reverse_gmm, "T") == 1000 and _default(plot_reverse_gmm, "schedule") == "linear"
