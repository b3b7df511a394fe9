"""The numbers and claims that the markdown of lessons 6-11 states, checked against the code.

A number a lesson's text gives is either printed by one of its cells or checked here, so that a
change in the library (a schedule, a default, a kernel's launch) makes the sentence fail instead of
silently going stale. Also: each lesson embeds the figures that make it readable without running,
and no exercise is answered by a cell above it (a printed source or a listing that contains the
answer comes after the exercise's check).
"""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"


def _nb(prefix: str):
    (path,) = LESSONS.glob(f"{prefix}_*.ipynb")
    return nbformat.read(path, as_version=4)


def _markdown(prefix: str) -> str:
    return "\n".join(c.source for c in _nb(prefix).cells if c.cell_type == "markdown")


def _code(prefix: str) -> str:
    return "\n".join(c.source for c in _nb(prefix).cells if c.cell_type == "code")


def _first_cell(prefix: str, needle: str) -> int:
    cells = _nb(prefix).cells
    hits = [i for i, c in enumerate(cells) if needle in c.source]
    assert hits, f"lesson {prefix} has no cell containing {needle!r}"
    return hits[0]


# ------------------------------------------------------------------ figures embedded where they belong

@pytest.mark.parametrize("prefix, figures", [
    ("06", ["gradcheck.png"]),
    ("07", ["unet_diagram.png"]),
    ("08", ["demo_loss.png"]),
    ("09", ["demo_samples_ddim.png", "demo_trajectory.png", "ddpm_vs_ddim.png", "ddim_steps_quality.png"]),
    ("10", ["guidance_grid.png"]),
    ("11", ["conv_thread_map.png", "emulator_check.png"]),
])
def test_lesson_embeds_its_figures(prefix, figures):
    text = _markdown(prefix)
    for name in figures:
        assert f"](../figures/{name})" in text, f"lesson {prefix} does not embed {name}"


def test_the_figures_lessons_6_to_11_embed_are_registered_for_them():
    from ddpm_ref import plots

    specs = plots.available()
    for prefix in ("06", "07", "09", "10", "11"):
        for name in re.findall(r"\]\(\.\./figures/([a-z_]+)\.png\)", _markdown(prefix)):
            assert name in specs, name
            assert prefix in specs[name].lessons or name == "ddpm_vs_ddim", (name, specs[name].lessons)


# ------------------------------------------------------------------ no exercise answered above it

@pytest.mark.parametrize("prefix, ex_id, answer_giving", [
    ("06", "06.2", "getsource(nn.groupnorm_backward"),
    ("06", "06.3", "getsource(nn.attention_backward"),
    ("08", "08.1", "getsource(train_step)"),
    ("10", "10.1", "getsource(guided_eps)"),
    ("11", "11.1", 'show_kernel("conv2d_forward", "conv2d_forward_kernel1")'),
    ("11", "11.3", 'show_kernel("attention_forward", "attention_forward_kernel2")'),
])
def test_no_cell_above_an_exercise_prints_its_answer(prefix, ex_id, answer_giving):
    check_at = _first_cell(prefix, f'check("{ex_id}"')
    cells = _nb(prefix).cells
    above = [i for i, c in enumerate(cells[:check_at]) if answer_giving in c.source]
    assert not above, f"lesson {prefix}: cell {above} prints the answer to {ex_id} before its check (cell {check_at})"


def test_the_formulas_the_exercises_ask_for_are_not_in_the_text_above_them():
    assert "P_i\\Big(dP_i - \\sum_j dP_j P_j\\Big)" not in _markdown("06")       # 6.3's answer
    assert "9CK + K" not in _markdown("07")                                     # 7.1's answer
    md11 = _markdown("11")
    assert "\\ell' = \\ell\\,e^{m - m'}" not in md11                               # 11.3's answer


# ------------------------------------------------------------------ lesson 6

def test_lesson6_thresholds_are_the_charts_and_the_chart_meets_them():
    from ddpm_ref.plots.gradcheck import THRESHOLD_BUG, THRESHOLD_RIGHT, gradient_check_errors

    assert (THRESHOLD_RIGHT, THRESHOLD_BUG) == (1e-6, 1e-3)
    text = _markdown("06")
    assert "below about $10^{-6}$ is right" in text and "$10^{-3}$ or more is a bug" in text
    assert "green line (10⁻⁶, right) and the red one (10⁻³, a bug)" in text
    worst = max(e for errs in gradient_check_errors(0).values() for e in errs.values())
    assert worst < THRESHOLD_RIGHT, "the caption says every bar sits left of the 1e-6 line"


def test_lesson6_says_three_exercises_and_has_three():
    assert "write three backward passes yourself" in _markdown("06")
    assert len(re.findall(r'check\("06\.\d"', _code("06"))) == 3


def test_lesson6_uses_delta_not_sigma_for_the_stride():
    text = _markdown("06")
    assert "i\\sigma" not in text and "stride $\\Delta$" in text


# ------------------------------------------------------------------ lesson 7

def test_unet_diagram_blocks_match_a_real_unet():
    """The diagram's channel counts (and the caption's 128 → 64, 96 → 64) are the parameter shapes."""
    from ddpm_ref.models.unet import UNet
    from ddpm_ref.plots.unet_diagram import unet_blocks
    from ddpm_ref.train import DEMO_MODEL

    config = dict(DEMO_MODEL, in_channels=1, image_size=8)
    net = UNet(**config)
    blocks = unet_blocks(config)
    res = [b for b in blocks if b["label"].startswith("ResBlock") and b["part"] in ("down", "up")]
    conv1 = [p.shape for name, p in net.params.items() if name.endswith("conv1.w") and not name.startswith("mid")]
    assert [(b["c_out"], b["c_in"]) for b in res] == [s[:2] for s in conv1]
    assert blocks[-1]["c_out"] == 1 and blocks[-1]["size"] == 8
    ups = [f"{b['c_in']} → {b['c_out']}" for b in res if b["part"] == "up"]
    assert ups[:2] == ["128 → 64", "96 → 64"]
    assert "(hence 128 → 64, 96 → 64, ...)" in _markdown("07")


def test_lesson7_dropout_statement():
    from ddpm_ref.train import DEMO_MODEL

    assert DEMO_MODEL["dropout"] == 0.0
    assert "the demo model uses none" in _markdown("07")


def test_lesson7_exercise_numbers():
    import course.answers_nn as a

    assert a._num_skips() == 9 and a._level_sizes() == [32, 16, 8, 4]


# ------------------------------------------------------------------ lesson 8

def test_lesson8_digit_counts():
    from ddpm_ref.data import load_dataset, load_digits_images

    assert len(load_dataset("digits", seed=0).x) == 1438
    assert len(load_digits_images("test", seed=0)[0]) == 359
    assert "(1438 training images" in _markdown("08") and "the other 359 are held out" in _markdown("08")


def test_lesson8_full_mode_is_the_demo_length():
    from ddpm_ref.train import DEMO_CONFIG

    assert DEMO_CONFIG.steps == 2500 and "(2500 steps, several minutes)" in _markdown("08")
    assert "full=2500" in _code("08")


def test_lesson8_ema_numbers():
    from ddpm_ref.optim import EMA
    from ddpm_ref.train import DEMO_CONFIG

    text, code = _markdown("08"), _code("08")
    assert DEMO_CONFIG.ema_decay == 0.999 and "uses $d = 0.999$ and the 2-D run $d = 0.995$" in text
    assert "ema_decay=0.995" in code
    assert "default=400" in code and "in a run of\n  400 steps $d_s$ never exceeds 0.978" in text
    ema = EMA({"w": np.zeros(1)}, decay=DEMO_CONFIG.ema_decay)
    decays = []
    for _ in range(400):
        decays.append(ema.current_decay())
        ema.update({"w": np.zeros(1)})
    assert round(max(decays), 3) == 0.978


# ------------------------------------------------------------------ lesson 9

def test_lesson9_amplification_over_a_hundred_at_T():
    from ddpm_ref.schedules import make_schedule
    from ddpm_ref.train import DEMO_CONFIG

    s = make_schedule(DEMO_CONFIG.schedule, DEMO_CONFIG.T)
    assert np.sqrt((1 - s.alpha_bars[s.T]) / s.alpha_bars[s.T]) > 100
    assert "over a hundred at $t = T$" in _markdown("09")


def test_lesson9_captions_quote_the_figure_settings():
    from ddpm_ref.plots import sampling, training

    text = _markdown("09")
    assert sampling.N_DIGITS == 100 and "FDD of 100 digits" in text
    assert (sampling.DDIM_STEPS[0], sampling.DDIM_STEPS[-1]) == (5, 100) and "at 5 to 100 steps" in text
    assert sampling.DDIM_ETAS == (0.0, 1.0)
    src = inspect.getsource(training._make_ddim)
    assert "n_per_class=4" in src and "steps=50" in src and "guidance=1.0" in src
    assert "50-step DDIM (η = 0) and classifier-free guidance w = 1" in text and "four per class" in text
    assert "at most at the 359 held-out digits" in text


def test_lesson9_exercise_uses_beta_and_the_check_agrees():
    import course.answers_train as a

    assert "$\\sigma_t^2 = \\beta_t$" in _markdown("09")
    inputs = a._ddpm_inputs()
    assert np.allclose(a._my_ddpm_sample(*inputs[0]), a._ddpm_reference(*inputs[0]))


# ------------------------------------------------------------------ lesson 10

def test_lesson10_numbers():
    from ddpm_ref.plots import sampling
    from ddpm_ref.train import DEMO_CONFIG

    text = _markdown("10")
    assert DEMO_CONFIG.p_uncond == 0.1 and "with probability 0.1" in text and "(0.1 for the demo)" in text
    assert sampling.GUIDANCE_WS == (0.0, 0.5, 1.0, 2.0, 4.0, 8.0) and "w = 0, 0.5, 1, 2, 4, 8 (rows)" in text
    assert sampling.GUIDANCE_STEPS == 20 and "DDIM (20 steps)" in text
    assert "FDD of 100\ndigits per w" in text or "FDD of 100 digits per w" in text
    assert "(Lesson 7)." not in text and "(Lesson 5, §5)" in text


# ------------------------------------------------------------------ lesson 11

def test_lesson11_thread_map_caption_matches_the_figure():
    from ddpm_ref.plots.kernels import plot_conv_thread_map

    d = {k: v.default for k, v in inspect.signature(plot_conv_thread_map).parameters.items()}
    assert (d["N"], d["K"], d["P"], d["Q"]) == (2, 3, 3, 4) and d["block"] == 16 and d["tile"] == 4
    assert d["K2"] == 6 and d["N2"] * d["P"] * d["Q"] == 24
    text = _markdown("11")
    assert "(N, K, P, Q) = (2, 3, 3, 4)" in text and "16 threads per block here" in text
    assert "K = 6 filters and N·P·Q = 24" in text and "4×4 here" in text


def test_lesson11_launch_and_exercise_numbers():
    sys.path.insert(0, str(ROOT))
    from kernels.launch import conv2d_forward_plan

    import course.answers_kernels as a

    # version 1's default launch: blocks of 256 threads (dims N, C, H, W, K, R, S, P, Q)
    assert conv2d_forward_plan(1, (2, 3, 5, 5, 4, 3, 3, 5, 5))[0].block == (256, 1, 1)
    text = _markdown("11")
    assert "the launch uses 256" in text and "blocks of 256 threads" in text
    assert (a._N, a._C, a._H, a._W, a._K, a._TILE) == (8, 32, 16, 16, 40, 16)
    assert "(8, 32, 16, 16), **40** filters" in text and "tiles of 16×16 threads" in text
    assert a._blocks_v1() != a._blocks_v2(), "11.2 must tell the two grids apart"


@pytest.mark.skipif(shutil.which("g++") is None, reason="the emulator needs g++")
def test_lesson11_emulator_caption_all_far_below_one():
    from ddpm_ref.plots.kernels import emulator_errors

    assert max(v for _, v in emulator_errors(0)) < 0.1
    assert "all sit far below 1" in _markdown("11")


def test_lesson11_surplus_threads_description_matches_the_kernel():
    src = (ROOT / "kernels" / "attention_forward.cu").read_text()
    body = src[src.index("attention_forward_kernel2("):]
    assert "if (active)" in body
    assert "skip all the work of a query row (`if (active)`" in _markdown("11")


# ------------------------------------------------------------------ exercises: stubs say "not answered yet"

@pytest.mark.parametrize("ex_id", ["06.1", "06.2", "06.3", "08.1", "09.2", "09.3", "10.1", "10.3", "11.1", "11.3"])
def test_a_stub_function_is_reported_as_not_answered(ex_id):
    import course

    ok, message = course.grade(ex_id, lambda *args, **kwargs: None)
    assert ok is None and message.startswith("not answered yet")   # neither right nor wrong yet


@pytest.fixture(autouse=True, scope="module")
def _course_on_path():
    sys.path.insert(0, str(LESSONS))
    yield
