"""The facts in lesson 14's tables, checked against diffusers (a test-only oracle; skipped without it).

Lesson 14 translates ddpm_ref's names and conventions into diffusers'. The course does not depend on
diffusers, so the lesson prints what it would compare when diffusers is missing and the reader relies
on its tables; this file is what makes those tables true. The name table is read *from the notebook*
(every row ``| kind | `"ours"` | `"theirs"` |``), so a row edited without the code, or a diffusers
release that renames something, fails here. The exercise references of lesson 14
(``lessons/course/answers_beyond.py``) are checked against diffusers too.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import typing
from pathlib import Path

import nbformat
import numpy as np
import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from ddpm_ref.prediction import x0_from_prediction  # noqa: E402
from ddpm_ref.schedules import make_schedule  # noqa: E402
from ddpm_ref.timesteps import sampling_timesteps  # noqa: E402
from ddpm_ref.schedules import rescale_zero_terminal_snr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
sys.path.insert(0, str(LESSONS))
from course import answers_beyond  # noqa: E402

T = 1000


@pytest.fixture(scope="module", autouse=True)
def _quiet_diffusers():
    import logging

    logging.getLogger("diffusers").setLevel(logging.ERROR)


def _markdown() -> str:
    (path,) = LESSONS.glob("14_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _rows(kind: str) -> list[tuple[str, str | None]]:
    """(ours, theirs) of the name table's rows of this kind; theirs None where the cell has no quoted name."""
    rows = []
    for line in _markdown().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] == kind:
            ours = re.search(r'`"([^"]+)"`', cells[1])
            theirs = re.search(r'`"([^"]+)"`', cells[2])
            rows.append((ours.group(1) if ours else cells[1], theirs.group(1) if theirs else None))
    return rows


def _literal_options(cls, name):
    return set(typing.get_args(inspect.signature(cls.__init__).parameters[name].annotation))


def _float64_ddim(sched, **kw):
    ds = DDIMScheduler(num_train_timesteps=sched.T, clip_sample=False, **kw)
    ds.alphas_cumprod = torch.from_numpy(sched.alpha_bars[1:].copy())
    ds.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ds


def _float64_ddpm(sched, **kw):
    dd = DDPMScheduler(num_train_timesteps=sched.T, **kw)
    dd.alphas_cumprod = torch.from_numpy(sched.alpha_bars[1:].copy())
    dd.betas = torch.from_numpy(sched.betas[1:].copy())
    return dd


def test_name_table_is_there():
    assert len(_rows("schedule")) == 5 and len(_rows("prediction")) == 3
    assert len(_rows("variance")) == 3 and len(_rows("spacing")) == 3


def test_timesteps_are_shifted_by_one():
    assert "alphas_cumprod[i] == alpha_bars[i + 1]" in _markdown()
    ac = DDPMScheduler(num_train_timesteps=T).alphas_cumprod.double().numpy()
    np.testing.assert_allclose(ac, make_schedule("linear", T).alpha_bars[1:], rtol=1e-5)
    assert not np.allclose(ac, make_schedule("linear", T).alpha_bars[:-1], rtol=1e-5)


def test_schedule_names():
    rows = _rows("schedule")
    named = {theirs for _, theirs in rows if theirs}
    assert named == _literal_options(DDPMScheduler, "beta_schedule"), "the table should cover every diffusers schedule"
    for ours, theirs in rows:
        b_ours = make_schedule(ours, T).betas[1:]
        if theirs is None:               # our "sigmoid" has no diffusers name, and is not their "sigmoid"
            assert ours == "sigmoid"
            b_theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule="sigmoid").betas.double().numpy()
            assert np.abs(b_ours - b_theirs).max() > 0.1 * b_theirs.max()
            continue
        b_theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule=theirs).betas.double().numpy()
        np.testing.assert_allclose(b_ours, b_theirs, rtol=2e-5, atol=1e-9, err_msg=f"{ours} vs {theirs}")


def test_prediction_names():
    rows = _rows("prediction")
    assert {theirs for _, theirs in rows} == _literal_options(DDIMScheduler, "prediction_type")
    sched = make_schedule("linear", T)
    g = np.random.default_rng(0)
    xt, out = g.standard_normal((2, 3, 4)), g.standard_normal((2, 3, 4))
    for ours, theirs in rows:
        ds = _float64_ddim(sched, prediction_type=theirs, timestep_spacing="trailing")
        ds.set_timesteps(10)
        for i in (999, 499, 99):
            res = ds.step(torch.from_numpy(out), i, torch.from_numpy(xt), eta=0.0)
            np.testing.assert_allclose(res.pred_original_sample.numpy(), x0_from_prediction(sched, xt, i + 1, out, ours),
                                       rtol=1e-12, atol=1e-12)


def test_variance_names_and_learned_range():
    rows = dict(_rows("variance"))
    assert rows["fixed_small"] == "fixed_small" and rows["fixed_large"] == "fixed_large"
    learned = [theirs for ours, theirs in _rows("variance") if ours not in ("fixed_small", "fixed_large")]
    assert learned == ["learned_range"]
    assert "(o+1)/2" in _markdown().replace(" ", "")
    sched = make_schedule("linear", T)
    dd = _float64_ddpm(sched)
    g = np.random.default_rng(1)
    for t in (2, 10, 500, T):
        assert float(dd._get_variance(t - 1, variance_type="fixed_small")) == pytest.approx(sched.posterior_variance[t], rel=1e-10)
        assert float(dd._get_variance(t - 1, variance_type="fixed_large")) == pytest.approx(sched.betas[t], rel=1e-10)
        o = g.uniform(-1, 1, (2, 3))
        theirs = dd._get_variance(t - 1, predicted_variance=torch.from_numpy(o), variance_type="learned_range").numpy()
        np.testing.assert_allclose(answers_beyond._ex_14_3_reference(sched, t, o), theirs, rtol=1e-10, atol=1e-12)
    # at t = 1 they clamp beta_tilde_1 = 0 to 1e-20, where we use log beta_tilde_2 (lesson 14, section 5)
    assert "10^{-20}" in _markdown()
    at_1 = dd._get_variance(0, predicted_variance=torch.tensor([-1.0], dtype=torch.float64), variance_type="learned_range")
    assert float(at_1) == pytest.approx(np.log(1e-20), rel=1e-6)


def test_spacings_default_and_the_first_leading_t():
    rows = _rows("spacing")
    assert all(o == t for o, t in rows) and {t for _, t in rows} == _literal_options(DDIMScheduler, "timestep_spacing")
    for _, spacing in rows:
        ds = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
        ds.set_timesteps(10)
        np.testing.assert_array_equal(ds.timesteps.numpy() + 1, sampling_timesteps(T, 10, spacing))
        np.testing.assert_array_equal(ds.timesteps.numpy() + 1, answers_beyond._ex_14_1_reference(T, 10)
                                      if spacing == "trailing" else ds.timesteps.numpy() + 1)
    assert DDIMScheduler().config.timestep_spacing == "leading" == DDPMScheduler().config.timestep_spacing
    assert "(default `\"leading\"`)" in _markdown()
    m = re.search(r"the printout: \$t = (\d+)\$ of (\d+)", _markdown())
    assert m and int(m.group(2)) == T
    ds = DDIMScheduler(num_train_timesteps=T)
    ds.set_timesteps(10)
    assert int(m.group(1)) == int(ds.timesteps[0]) + 1 == sampling_timesteps(T, 10, "leading")[0]


def test_timestep_encoding():
    from diffusers import UNet2DModel
    from diffusers.models.embeddings import get_timestep_embedding
    from diffusers.pipelines.ddpm.pipeline_ddpm import DDPMPipeline

    params = inspect.signature(UNet2DModel.__init__).parameters
    assert params["flip_sin_to_cos"].default is True and params["freq_shift"].default == 0
    fn = inspect.signature(get_timestep_embedding).parameters
    assert fn["flip_sin_to_cos"].default is False and fn["downscale_freq_shift"].default == 1
    assert "self.unet(image, t)" in inspect.getsource(DDPMPipeline.__call__)     # the scheduler's 0-based t, as is
    for d in (8, 32, 128):
        t = np.array([1, 2, 77, 500, 1000])
        theirs = get_timestep_embedding(torch.from_numpy(t - 1).double(), d, flip_sin_to_cos=True,
                                        downscale_freq_shift=0).double().numpy()
        np.testing.assert_allclose(answers_beyond._ex_14_2_reference(t, d), theirs, atol=2e-4)   # float32 angles
        defaults = get_timestep_embedding(torch.from_numpy(t - 1).double(), d).double().numpy()
        from ddpm_ref.embeddings import sinusoidal_embedding_halves
        np.testing.assert_allclose(sinusoidal_embedding_halves(t - 1, d, order="sin_cos", frequency_spacing="d/2-1"),
                                   defaults, atol=2e-4)


def test_guidance_scale_is_one_plus_w():
    """s = 1 + w, from the pipeline's own source (read as text: importing it needs transformers)."""
    src = Path(importlib.util.find_spec("diffusers").origin).parent / "pipelines" / "stable_diffusion" / "pipeline_stable_diffusion.py"
    text = src.read_text()
    assert "noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)" in text
    default = float(re.search(r"guidance_scale: float = ([\d.]+)", text).group(1))
    assert default == answers_beyond._DIFFUSERS_GUIDANCE_SCALE == 7.5
    from ddpm_ref.sample import guided_eps

    g = np.random.default_rng(2)
    cond, uncond = g.standard_normal((3, 2)), g.standard_normal((3, 2))
    model = lambda x, t, y: cond if y is not None else uncond   # noqa: E731
    s = default
    ours = guided_eps(model, np.zeros((3, 2)), np.ones(3, dtype=np.int64), np.zeros(3, dtype=np.int64), s - 1)
    np.testing.assert_allclose(ours, uncond + s * (cond - uncond), rtol=1e-12)


def test_clipping_thresholding_and_last_step_defaults():
    cfg = DDPMScheduler().config
    assert cfg.clip_sample is True and cfg.clip_sample_range == 1.0
    assert cfg.thresholding is False and cfg.dynamic_thresholding_ratio == 0.995 and cfg.sample_max_value == 1.0
    assert DDIMScheduler().config.clip_sample is True and DDIMScheduler().config.set_alpha_to_one is True
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((4, 3, 5, 5)) * 3)
    np.testing.assert_allclose(DDPMScheduler(thresholding=True)._threshold_sample(x).numpy(), np.clip(x.numpy(), -1, 1),
                               rtol=1e-12)   # their default cap s <= 1: plain clipping
    sched = make_schedule("linear", T)
    ds = _float64_ddim(sched)
    assert float(DDIMScheduler(set_alpha_to_one=False).final_alpha_cumprod) == pytest.approx(sched.alpha_bars[1], rel=1e-6)
    assert float(ds.final_alpha_cumprod) == 1.0


def test_zero_snr_row():
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr as theirs

    assert "rescale_betas_zero_snr=True" in _markdown() and "rescale_betas_zero_snr" in DDPMScheduler().config
    sched = make_schedule("linear", T)
    np.testing.assert_allclose(rescale_zero_terminal_snr(sched).betas[1:],
                               theirs(torch.from_numpy(sched.betas[1:].copy())).numpy(), rtol=1e-10, atol=1e-12)
