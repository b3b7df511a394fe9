"""ddpm_ref.data: the digits, the toy sets, the Gaussian mixture's optimal denoiser, user files."""

import gzip
import struct

import numpy as np
import pytest

from ddpm_ref import data
from ddpm_ref.schedules import make_schedule


def test_digits_scaled_split_and_deterministic():
    xtr, ytr = data.load_digits_images("train", seed=0)
    xte, yte = data.load_digits_images("test", seed=0)
    assert xtr.shape[1:] == (1, 8, 8) and xtr.dtype == np.float32
    assert len(xtr) + len(xte) == 1797 and len(xte) == pytest.approx(0.2 * 1797, abs=10)
    assert xtr.min() == -1.0 and xtr.max() == 1.0
    # grey levels 0..16 map to the 17 values level/16*2-1 exactly
    assert np.allclose(np.unique(xtr), np.arange(17) / 16 * 2 - 1)
    assert set(np.unique(yte)) == set(range(10))           # stratified: every class in test
    # no image is shared between the splits (compare raw bytes)
    tr = {r.tobytes() for r, _ in zip(xtr, ytr)}
    allx, _ = data.load_digits_images("all")
    assert len(allx) == 1797
    again, _ = data.load_digits_images("test", seed=0)
    assert np.array_equal(again, xte)
    other, _ = data.load_digits_images("test", seed=1)
    assert not np.array_equal(other, xte)
    assert sum(r.tobytes() in tr for r in xte) <= 5          # only byte-identical duplicate digits
    with pytest.raises(ValueError, match="split"):
        data.load_digits_images("valid")


def test_toy_sets_deterministic_and_scaled():
    x1, y1 = data.make_moons(500, rng=3)
    x2, y2 = data.make_moons(500, rng=np.random.default_rng(3))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (500, 2) and set(np.unique(y1)) == {0, 1}
    assert np.abs(x1).max() < 1.5
    s, none = data.make_swiss_roll(500, rng=0)
    assert none is None and s.shape == (500, 2) and np.abs(s).max() < 1.5
    with pytest.raises(ValueError):
        data.make_moons(0)
    with pytest.raises(ValueError):
        data.make_moons(10, rng="seed")


def test_gmm_optimal_eps_matches_monte_carlo_and_bayes():
    """E[eps | x_t] in closed form vs. a direct computation of the posterior by quadrature."""
    sched = make_schedule("linear", 100)
    gmm = data.GaussianMixture(means=[[-1.0], [1.5]], stds=[0.3, 0.5], weights=[0.7, 0.3])
    t = np.array([5, 40, 90])
    xt = np.array([[0.2], [-0.5], [1.0]])
    eps = gmm.optimal_eps(sched, xt, t)
    # brute force: posterior over x0 on a fine grid, eps = (xt - sqrt(abar) x0)/sqrt(1-abar)
    grid = np.linspace(-5, 6, 200001)
    prior = sum(w * np.exp(-0.5 * ((grid - m) / s) ** 2) / s
                for w, m, s in zip(gmm.weights, gmm.means[:, 0], gmm.stds))
    for i in range(3):
        ab = sched.alpha_bars[t[i]]
        lik = np.exp(-0.5 * (xt[i, 0] - np.sqrt(ab) * grid) ** 2 / (1 - ab))
        post = prior * lik
        e_x0 = (grid * post).sum() / post.sum()
        want = (xt[i, 0] - np.sqrt(ab) * e_x0) / np.sqrt(1 - ab)
        assert eps[i, 0] == pytest.approx(want, rel=1e-6, abs=1e-8)


def test_gmm_conditional_and_shapes():
    sched = make_schedule("linear", 50)
    gmm = data.default_gmm()
    x, k = gmm.sample(1000, rng=0)
    assert x.shape == (1000, 2) and np.bincount(k, minlength=3).sum() == 1000
    xt = np.zeros((4, 2))
    e_marg = gmm.optimal_eps(sched, xt, 10)
    e_cond = gmm.optimal_eps(sched, xt, np.full(4, 10), y=np.array([0, 1, 2, 0]))
    assert e_marg.shape == e_cond.shape == (4, 2)
    assert not np.allclose(e_cond[0], e_cond[1])
    assert np.allclose(gmm.posterior_components(sched, xt, 10).sum(1), 1)
    with pytest.raises(ValueError):
        gmm.optimal_eps(sched, xt, 0)
    with pytest.raises(ValueError):
        gmm.optimal_eps(sched, np.zeros((4, 3)), 5)


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_idx_loader_plain_gz_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0], dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(imgs))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    x, y = data.load_image_file(str(tmp_path / "train-images-idx3-ubyte"))
    assert x.shape == (5, 1, 6, 7) and x.dtype == np.float32
    assert np.allclose(x[:, 0], imgs / 255 * 2 - 1, atol=1e-6)
    assert np.array_equal(y, labels)
    gz = tmp_path / "imgs.gz"
    gz.write_bytes(gzip.compress(_idx_bytes(imgs)))
    xg, yg = data.load_image_file(str(gz))
    assert np.array_equal(xg, x) and yg is None
    ds = data.load_dataset(str(tmp_path / "train-images-idx3-ubyte"))
    assert ds.num_classes == 3 and ds.is_image


@pytest.mark.parametrize("content, match", [
    (b"\x00\x00\x08\x03" + struct.pack(">3I", 5, 6, 7) + b"\x01" * 10, "truncated"),
    (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
    (b"\x01\x02\x03\x04" * 8, "not an IDX"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc", "unknown IDX element type"),
    (gzip.compress(b"\x00" * 100)[:20], "gzip"),
    (b"PK\x03\x04 this is not really a zip", "npz"),
])
def test_bad_user_files_raise_valueerror(tmp_path, content, match):
    p = tmp_path / "bad-file"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        data.load_image_file(str(p))


def test_npz_loader(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, images=np.full((3, 4, 4), 0.5, dtype=np.float32), labels=np.array([0, 1, 1]))
    x, y = data.load_image_file(str(p))
    assert x.shape == (3, 1, 4, 4) and np.allclose(x, 0.0) and list(y) == [0, 1, 1]
    np.savez(p, something=np.zeros(3))
    with pytest.raises(ValueError, match="no image array"):
        data.load_image_file(str(p))
    np.savez(p, x=np.full((3, 4, 4), 7.0))
    with pytest.raises(ValueError, match="float images"):
        data.load_image_file(str(p))


def test_load_dataset_names_and_unknown():
    assert data.load_dataset("moons", n_points=100).num_classes == 2
    assert data.load_dataset("swissroll", n_points=100).y is None
    assert data.load_dataset("gmm", n_points=100).x.shape == (100, 2)
    with pytest.raises(ValueError, match="neither a known data set"):
        data.load_dataset("cifar10")


@pytest.mark.parametrize("call, match", [
    (lambda: data.make_moons(3, noise=float("nan")), "noise"),
    (lambda: data.make_swiss_roll(3, noise=float("nan")), "noise"),
    (lambda: data.make_moons(3, noise=None), "noise"),
    (lambda: data.make_moons(100, noise=1e308), "noise is too large"),
    (lambda: data.GaussianMixture([[0.0]], [1.0], weights=[float("nan")]), "weights"),
    (lambda: data.GaussianMixture([[0.0]], [float("inf")]), "stds"),
    (lambda: data.GaussianMixture([["a"]], [1.0]), "means"),
    (lambda: data.default_gmm().optimal_eps(make_schedule("linear", 10), np.full((2, 2), np.nan), 3), "xt"),
    (lambda: data.default_gmm().optimal_eps(make_schedule("linear", 10), np.zeros((2, 2)), 3.7), "t must be"),
    (lambda: data.load_digits_images("train", seed=-1), "seed"),
    (lambda: data.load_digits_images("train", test_fraction=None), "test_fraction"),
    (lambda: data.load_dataset("moons", n_points=0), "n_points"),
    (lambda: data.load_dataset(None), "name"),
    (lambda: data.load_image_file(None), "path"),
])
def test_bad_arguments_raise_valueerror_naming_them(call, match):
    """Issue 9: each of these was accepted (NaN out), or raised TypeError/NumPy's message."""
    with pytest.raises(ValueError, match=match):
        call()


def test_npz_of_objects_or_no_images_is_refused(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="cannot be read"):
        data.load_image_file(str(p))
    np.savez(p, x=np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match="no images"):
        data.load_image_file(str(p))
