"""ddpm_ref.sample: Algorithm 2 and DDIM with the GMM's closed-form optimal denoiser (no training)."""

import numpy as np
import pytest

from ddpm_ref.data import GaussianMixture, default_gmm
from ddpm_ref.sample import ddim_timesteps, guided_eps, image_grid, sample_ddim, sample_ddpm, save_grid_png
from ddpm_ref.schedules import make_schedule

SCHED = make_schedule("linear", 1000)


def _assign(gmm, x):
    return np.argmin(((x[:, None, :] - gmm.means[None]) ** 2).sum(-1), axis=1)


def _check_mixture(gmm, x):
    """Weights within 4 binomial standard errors; means within 4 standard errors + 0.01."""
    n = len(x)
    k = _assign(gmm, x)
    for j in range(gmm.num_components):
        w = gmm.weights[j]
        frac = np.mean(k == j)
        assert abs(frac - w) < 4 * np.sqrt(w * (1 - w) / n), (j, frac, w)
        xs = x[k == j]
        se = gmm.stds[j] / np.sqrt(len(xs))
        assert np.all(np.abs(xs.mean(0) - gmm.means[j]) < 4 * se + 0.01), (j, xs.mean(0))
        assert abs(xs.std(0).mean() / gmm.stds[j] - 1) < 0.1, (j, xs.std(0))


def test_ddpm_with_optimal_denoiser_reproduces_the_mixture():
    gmm = default_gmm()
    x = sample_ddpm(gmm.eps_model(SCHED), SCHED, (2000, 2), rng=0, progress=False)
    assert x.shape == (2000, 2) and x.dtype == np.float64
    _check_mixture(gmm, x)


def test_ddpm_fixed_large_and_ddim_also_reproduce_it():
    gmm = default_gmm()
    eps = gmm.eps_model(SCHED)
    # fixed_large adds a little extra variance at the last steps; the weights and means still hold
    x = sample_ddpm(eps, SCHED, (1500, 2), rng=1, variance="fixed_large", progress=False)
    k = _assign(gmm, x)
    assert np.all(np.abs(np.bincount(k, minlength=3) / 1500 - gmm.weights) < 0.05)
    _check_mixture(gmm, sample_ddim(eps, SCHED, (2000, 2), steps=100, eta=0.0, rng=2, progress=False))


def test_conditional_sampling_and_guidance():
    gmm = default_gmm()
    eps = gmm.eps_model(SCHED)
    y = np.array([0, 1, 2] * 100)
    x = sample_ddim(eps, SCHED, (300, 2), steps=50, rng=0, y=y, progress=False)
    assert np.mean(_assign(gmm, x) == y) > 0.99
    # guidance formula: (1 + w) ε(y) − w ε(∅)
    xt = np.random.default_rng(0).standard_normal((6, 2))
    t = np.full(6, 500)
    yy = np.arange(6) % 3
    got = guided_eps(eps, xt, t, yy, guidance=2.0)
    assert np.allclose(got, 3 * eps(xt, t, yy) - 2 * eps(xt, t, None))
    with pytest.raises(ValueError, match="guidance needs class labels"):
        sample_ddim(eps, SCHED, (3, 2), steps=5, guidance=1.0, progress=False)


def test_ddim_eta0_is_deterministic_and_eta_adds_noise():
    gmm = GaussianMixture(means=[[-1.0], [1.0]], stds=0.2)
    eps = gmm.eps_model(SCHED)
    a = sample_ddim(eps, SCHED, (50, 1), steps=20, eta=0.0, rng=3, progress=False)
    b = sample_ddim(eps, SCHED, (50, 1), steps=20, eta=0.0, rng=3, progress=False)
    assert np.array_equal(a, b)
    # η = 0: the map x_T → x_0 is deterministic; with η = 1 the same x_T gives other samples
    c = sample_ddim(eps, SCHED, (50, 1), steps=20, eta=1.0, rng=3, progress=False)
    assert not np.allclose(a, c)


def test_trajectory_shapes_and_timesteps():
    gmm = default_gmm()
    eps = gmm.eps_model(SCHED)
    x, traj = sample_ddpm(eps, SCHED, (4, 2), rng=0, return_trajectory=True, num_frames=6, progress=False)
    assert traj["t"][0] == 1000 and traj["t"][-1] == 0 and len(traj["t"]) == 7
    assert traj["x"].shape == (7, 4, 2) and traj["x0_pred"].shape == (7, 4, 2)
    assert np.array_equal(traj["x"][-1], x) and np.all(np.diff(traj["t"]) < 0)
    x, traj = sample_ddim(eps, SCHED, (3, 2), steps=5, rng=0, return_trajectory=True, num_frames=10,
                          progress=False)
    assert list(traj["t"]) == [1000, 750, 500, 251, 1, 0] and traj["x"].shape == (6, 3, 2)
    assert list(ddim_timesteps(1000, 1)) == [1000]
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError):
            ddim_timesteps(1000, bad)


def test_png_grid(tmp_path):
    imgs = np.linspace(-1, 1, 6 * 64).reshape(6, 1, 8, 8)
    g = image_grid(imgs, nrow=3, scale=2)
    assert g.shape == (2 * (2 * 9 + 1), 2 * (3 * 9 + 1)) and g.min() >= 0 and g.max() <= 1
    p = save_grid_png(imgs, str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").stat().st_size > 0 and p.endswith("g.png")
    with pytest.raises(ValueError):
        image_grid(np.zeros((2, 2, 8, 8)))


def test_grid_as_uint8_and_its_argument_checks():
    imgs = np.array([-1.0, 0.0, 1.0, 0.5]).reshape(1, 1, 2, 2)
    g = image_grid(imgs, nrow=1, scale=1, padding=1, pad_value=0.0, dtype=np.uint8)
    assert g.dtype == np.uint8
    assert g.tolist() == [[0, 0, 0, 0], [0, 0, 128, 0], [0, 255, 191, 0], [0, 0, 0, 0]]   # (v+1)/2·255, rounded
    assert image_grid(imgs, nrow=1, scale=2, padding=0, dtype=np.uint8).tolist() == \
        [[0, 0, 128, 128], [0, 0, 128, 128], [255, 255, 191, 191], [255, 255, 191, 191]]
    for bad, name in ((dict(pad_value=np.nan), "pad_value"), (dict(pad_value=2.0), "pad_value"),
                      (dict(padding=-1), "padding"), (dict(scale=0), "scale"), (dict(nrow=-2), "nrow")):
        with pytest.raises(ValueError, match=name):
            image_grid(imgs, **bad)
    with pytest.raises(ValueError, match="NaN"):
        image_grid(np.full((1, 1, 2, 2), np.nan))
    many = np.broadcast_to(np.zeros((1, 1, 8, 8), np.float32), (300_000, 1, 8, 8))
    with pytest.raises(ValueError, match="MAX_GRID_PIXELS"):
        image_grid(many)


def test_png_grid_holds_no_float_copy_of_the_images(tmp_path):
    """2000 digits at scale 4: the grid is 2.6 M pixels; a float64 RGBA grid would take 83 MB."""
    import tracemalloc

    imgs = np.random.default_rng(0).uniform(-1, 1, (2000, 1, 8, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        save_grid_png(imgs, str(tmp_path / "big.png"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12e6, peak
    from PIL import Image

    with Image.open(tmp_path / "big.png") as im:
        assert im.mode == "L" and im.size == (4 * (45 * 9 + 1), 4 * (45 * 9 + 1))
    assert not list(tmp_path.glob(".tmp-*"))
