"""The whole U-Net: its gradient against finite differences and PyTorch autograd, and its API."""

import json

import numpy as np
import pytest

from ddpm_ref.models.unet import UNet

TINY = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(4, 8), groups=4, num_classes=3, dtype="float64", seed=0)


def _randomised(net, rng, scale=0.3):
    """Perturb every parameter, including the zero-initialised ones (else their gradients
    would hide behind zeros: a zero last conv makes every upstream gradient zero)."""
    for k, v in net.params.items():
        v += scale * rng.standard_normal(v.shape)
    return net


def _batch(rng, n=2, classes=3):
    x = rng.standard_normal((n, 1, 8, 8))
    t = rng.integers(1, 1001, n)
    y = np.array([0, classes][:n])                    # one real label, one null label
    return x, t, y


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_unet_gradient_finite_differences(learn_sigma, rng, fd_check):
    """Every parameter tensor (3 random entries each) and dL/dx, attention and classes on, dropout on.

    The dropout mask is fixed by re-seeding its generator for every evaluation, so the loss is a
    smooth function of the parameters and the dropout backward is checked in place as well.
    h = 1e-4, not the layers' 1e-6: the whole network's loss carries rounding noise of ~1e-13
    (thousands of float64 operations), which divided by h dominates for small h, and some
    gradient entries are small (~1e-4). Measured: relative error 3e-7 at h = 1e-6 and 2e-9 at
    h = 1e-4 for the same entries (truncation, O(h²), stays far below the tolerance).
    """
    net = _randomised(UNet(**TINY, dropout=0.2, learn_sigma=learn_sigma), rng)
    x, t, y = _batch(rng)
    eps = net.forward(x, t, y, rng=np.random.default_rng(5))
    assert eps.shape == (2, 2 if learn_sigma else 1, 8, 8)        # [prediction | v_σ] with learn_sigma
    G = rng.standard_normal(eps.shape)
    grads = net.backward(G)
    assert list(grads) == list(net.params)
    grads["input"] = net.d_input
    arrays = dict(net.params) | {"input": x}

    def loss():
        # keep_cache=True: dropout acts only in training mode (and the caches are dropped anyway)
        return float(np.sum(net.forward(x, t, y, rng=np.random.default_rng(5)) * G))

    errors = fd_check(loss, arrays, grads, rng, h=1e-4, max_entries=3)
    assert len(errors) == len(net.params) + 1
    print(f"U-Net finite differences: worst relative error {max(errors.values()):.2e} "
          f"over {len(errors)} tensors")


@pytest.mark.parametrize("workers, learn_sigma", [(1, False), (2, False), (1, True)])
def test_unet_matches_torch_autograd(workers, learn_sigma, rng):
    """Forward and every gradient against the same architecture built from torch.nn, float64
    (also with the batch split over 2 threads)."""
    torch = pytest.importorskip("torch")
    from ddpm_ref.bench.torch_twin import torch_unet

    net = _randomised(UNet(**TINY, workers=workers, learn_sigma=learn_sigma), rng)
    module = torch_unet(net)
    x, t, y = _batch(rng, n=3)
    y = np.array([0, 2, 3])
    eps = net.forward(x, t, y)
    xt = torch.tensor(x, requires_grad=True)
    eps_t = module(xt, torch.tensor(t), torch.tensor(y))
    np.testing.assert_allclose(eps, eps_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    G = rng.standard_normal(eps.shape)
    grads = net.backward(G)
    eps_t.backward(torch.tensor(G))
    for name, g in grads.items():
        ref = module.param(name).grad.numpy()
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-10 * np.abs(ref).max(), err_msg=name)
    np.testing.assert_allclose(net.d_input, xt.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_default_demo_net_float32_against_torch(rng):
    """The demo's shape (float32, batch 4): same outputs as torch to float32 rounding."""
    torch = pytest.importorskip("torch")
    from ddpm_ref.bench.torch_twin import torch_unet

    net = UNet(num_classes=10)
    _randomised(net, rng, scale=0.02)
    module = torch_unet(net)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    t, y = rng.integers(1, 1001, 4), np.array([0, 3, 9, 10])
    eps = net.forward(x, t, y)
    assert eps.dtype == np.float32 and eps.shape == x.shape
    with torch.no_grad():
        ref = module(torch.from_numpy(x), torch.tensor(t), torch.tensor(y)).numpy()
    np.testing.assert_allclose(eps, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_starts_as_zero_predictor():
    """Ho et al.'s zero init of the last conv: ε̂ = 0 at step 0, so the first loss is E[ε²] = 1."""
    net = UNet(num_classes=10)
    eps = net.forward(np.ones((2, 1, 8, 8), np.float32), np.array([1, 500]), np.array([3, 10]))
    assert not eps.any()


def test_keep_cache_false_matches_and_backward_then_raises(rng):
    net = _randomised(UNet(**TINY), rng)
    x, t, y = _batch(rng)
    a = net.forward(x, t, y)
    b = net.forward(x, t, y, keep_cache=False)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="keep_cache=True"):
        net.backward(np.ones_like(b))


def test_learn_sigma_config_round_trip_and_old_configs(rng):
    """learn_sigma is in the config (what a checkpoint saves); a config without it (saved before
    issue 11) builds the C-channel net; both halves of the output get gradients."""
    net = UNet(**TINY, learn_sigma=True)
    assert net.config["learn_sigma"] is True and net.params["out.conv.w"].shape[0] == 2
    again = UNet(**json.loads(json.dumps(net.config)))
    assert again.params["out.conv.w"].shape == net.params["out.conv.w"].shape
    old = {k: v for k, v in UNet(**TINY).config.items() if k != "learn_sigma"}
    assert UNet(**old).params["out.conv.w"].shape[0] == 1
    _randomised(net, rng)
    x, t, y = _batch(rng)
    out = net.forward(x, t, y)
    g_first = net.backward(np.concatenate([np.ones_like(out[:, :1]), np.zeros_like(out[:, 1:])], axis=1))
    net.forward(x, t, y)
    g_second = net.backward(np.concatenate([np.zeros_like(out[:, :1]), np.ones_like(out[:, 1:])], axis=1))
    w1, w2 = g_first["out.conv.w"], g_second["out.conv.w"]
    assert np.any(w1[0] != 0) and np.all(w1[1] == 0) and np.any(w2[1] != 0) and np.all(w2[0] == 0)
    with pytest.raises(ValueError, match="learn_sigma"):
        UNet(**TINY, learn_sigma="yes")


def test_determinism_and_config_round_trip(rng):
    a, b = UNet(**TINY), UNet(**TINY)
    assert list(a.params) == list(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    c = UNet(**(TINY | {"seed": 1}))
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)
    config = json.loads(json.dumps(a.config))
    d = UNet(**config)
    assert {k: v.shape for k, v in d.params.items()} == {k: v.shape for k, v in a.params.items()}
    assert d.num_params == a.num_params == sum(v.size for v in a.params.values())
    x, t, y = _batch(rng)
    _randomised(a, np.random.default_rng(3))
    d.load_params(a.params)
    np.testing.assert_array_equal(a.forward(x, t, y), d.forward(x, t, y))


def test_labels_null_and_unconditional(rng):
    net = _randomised(UNet(**TINY), rng)
    x, t, _ = _batch(rng)
    null = net.forward(x, t, np.array([3, 3]))
    np.testing.assert_array_equal(net.forward(x, t), null)           # y=None: all null
    assert not np.allclose(net.forward(x, t, np.array([0, 1])), null)
    plain = UNet(**(TINY | {"num_classes": None}))
    assert "class_emb.table" not in plain.params
    with pytest.raises(ValueError, match="num_classes=None"):
        plain.forward(x, t, np.array([0, 1]))


@pytest.mark.parametrize("bad,match", [
    (dict(groups=3), "divide"),
    (dict(image_size=6, channel_mults=(1, 2, 2)), "divisible"),
    (dict(attention_resolutions=(5,)), "among"),
    (dict(dropout=1.0), "dropout"),
    (dict(dtype="float16"), "dtype"),
    (dict(channel_mults=()), "channel_mults"),
    (dict(channel_mults=None), "channel_mults"),
    (dict(attention_resolutions=None), "attention_resolutions"),
    (dict(dtype="nonsense"), "dtype"),
    (dict(seed=-1), "seed"),
    (dict(num_classes=0), "num_classes"),
])
def test_bad_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        UNet(**(TINY | bad))


def test_bad_inputs_raise(rng):
    net = UNet(**TINY)
    x, t, y = _batch(rng)
    with pytest.raises(ValueError, match="shape"):
        net.forward(x[:, :, :4], t, y)
    with pytest.raises(ValueError, match="float"):
        net.forward(x.astype(np.int64), t, y)
    with pytest.raises(ValueError, match="t must be an integer"):
        net.forward(x, t.astype(float), y)
    with pytest.raises(ValueError, match="t must be an integer"):
        net.forward(x, t[:1], y)
    with pytest.raises(ValueError, match="y must lie"):
        net.forward(x, t, np.array([0, 4]))
    net.forward(x, t, y)
    with pytest.raises(ValueError, match="d_eps"):
        net.backward(np.ones((2, 1, 4, 4)))


def test_convert_params_applies_to_every_parameter(rng):
    """The model knows no devices: the caller converts its parameters (cupy.asarray on a GPU)."""
    net = _randomised(UNet(**TINY), rng)
    x, t, y = _batch(rng)
    before = net.forward(x, t, y)
    seen = []

    def convert(a):
        seen.append(a.shape)
        return np.array(a, dtype=np.float32)         # a stand-in for cupy.asarray: new arrays

    assert net.convert_params(convert) is net
    assert len(seen) == len(net.params) and all(v.dtype == np.float32 for v in net.params.values())
    with pytest.raises(ValueError, match="keep_cache=True"):    # the old tape is dropped
        net.backward(np.ones_like(before))
    net.convert_params(lambda a: a.astype(np.float64))
    np.testing.assert_allclose(net.forward(x, t, y), before, rtol=1e-5, atol=1e-5 * np.abs(before).max())


def test_model_does_not_import_a_device_library():
    """ddpm_ref.models holds no device code: no module of it mentions cupy in an import."""
    import pathlib

    import ddpm_ref.models.unet as unet_module

    for path in pathlib.Path(unet_module.__file__).parent.glob("*.py"):
        code = [line for line in path.read_text().splitlines() if "import" in line]
        assert not any("cupy" in line for line in code), path


def test_load_params_copies_and_checks(rng):
    a, b = UNet(**TINY), UNet(**(TINY | {"seed": 1}))
    b.load_params(a.params)
    b.params["in_conv.w"] += 1.0                       # an in-place update of b ...
    assert not np.array_equal(a.params["in_conv.w"], b.params["in_conv.w"])   # ... leaves a alone
    bad = dict(a.params)
    bad["in_conv.w"] = bad["in_conv.w"][:1]
    with pytest.raises(ValueError, match="shape"):
        b.load_params(bad)
    with pytest.raises(ValueError, match="do not match"):
        b.load_params({k: v for k, v in a.params.items() if k != "in_conv.b"})


@pytest.mark.parametrize("n", [2, 3, 5])
def test_workers_give_the_same_numbers(n, rng):
    """Splitting the batch over threads changes nothing but the rounding of gradient sums."""
    one = _randomised(UNet(**TINY), rng)
    two = UNet(**TINY, workers=2)
    two.load_params(one.params)
    x = rng.standard_normal((n, 1, 8, 8))
    t, y = rng.integers(1, 1001, n), rng.integers(0, 4, n)
    np.testing.assert_allclose(two.forward(x, t, y), one.forward(x, t, y), rtol=1e-13, atol=1e-13)
    G = rng.standard_normal(x.shape)
    g1, g2 = one.backward(G), two.backward(G)
    assert list(g2) == list(g1)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-11, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(two.d_input, one.d_input, rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(two.forward(x, t, y, keep_cache=False), two.forward(x, t, y))


def test_workers_dropout_is_deterministic(rng):
    net = _randomised(UNet(**TINY, dropout=0.3, workers=2), rng)
    x, t, y = _batch(rng, n=2)
    a = net.forward(x, t, y, rng=np.random.default_rng(7))
    b = net.forward(x, t, y, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, net.forward(x, t, y))              # no rng: no dropout
    with pytest.raises(ValueError, match="workers"):
        UNet(**TINY, workers=0)


def test_forward_refuses_non_finite_input_and_parameters(rng):
    """NaN/inf in x (or float64 values beyond float32's range) are refused before the network
    runs; NaN in the parameters (a diverged run) is refused after it, instead of an all-NaN ε̂."""
    net = _randomised(UNet(**TINY), rng)
    x, t, y = _batch(rng)
    for bad in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[1, 0, 3, 4] = bad
        with pytest.raises(ValueError, match="x must be finite"):
            net.forward(xb, t, y)
    net32 = UNet(**(TINY | {"dtype": "float32"}))
    with pytest.raises(ValueError, match="x must be finite in float32"):
        net32.forward(np.full((1, 1, 8, 8), 1e300), np.array([1]))
    eps = net.forward(x, t, y)
    with pytest.raises(ValueError, match="d_eps must be finite"):
        net.backward(np.full_like(eps, np.nan))
    net.params["out.conv.b"][0] = np.nan
    with pytest.raises(ValueError, match="parameters"):
        net.forward(x, t, y)


def test_plan_is_named_records():
    """The plan reads as named steps; forward and __init__ both follow it."""
    from ddpm_ref.models import unet_plan as up

    net = UNet(**TINY)
    kinds = [type(s).__name__ for s in net.plan]
    assert kinds[:3] == ["InConvStep", "PushSkip", "ResBlockStep"] and kinds[-1] == "OutStep"
    assert net.plan[0] == up.InConvStep("in_conv", 1, 8)
    assert up.DownsampleStep("down.0.downsample", 8) in net.plan
    assert up.UpsampleStep("up.1.upsample", 16) in net.plan
    # every skip pushed is popped once, and each ConcatSkip knows the width it joins
    assert sum(isinstance(s, up.PushSkip) for s in net.plan) == sum(isinstance(s, up.ConcatSkip) for s in net.plan)
    for i, s in enumerate(net.plan):
        if isinstance(s, up.ConcatSkip):
            assert net.plan[i + 1].c_in == s.channels + s.skip_channels
    named = {s.name for s in net.plan if hasattr(s, "name")}
    for key in net.params:                                     # every parameter belongs to a step
        assert key.startswith(("time.", "class_emb.")) or any(key.startswith(n + ".") for n in named), key
    with pytest.raises(AttributeError):
        net.plan[0].c_in = 3                                   # frozen records
