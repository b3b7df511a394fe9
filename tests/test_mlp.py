"""ddpm_ref.models.mlp: the MLP ε-model's hand-written backward against centred finite differences."""

import numpy as np
import pytest

from ddpm_ref.models.mlp import MLP


def _loss_and_grads(net, x, t, y, w):
    out = net.forward(x, t, y)
    return float(np.sum(out * w)), net.backward(w)


@pytest.mark.parametrize("num_classes, learn_sigma", [(None, False), (3, False), (3, True)])
def test_gradients_match_finite_differences(num_classes, learn_sigma, rng):
    net = MLP(dim=2, hidden=8, depth=2, emb_dim=6, num_classes=num_classes, dtype="float64", seed=1,
              learn_sigma=learn_sigma)
    # W_out starts at zero; randomise it so every gradient path is exercised
    for k in net.params:
        net.params[k][...] = rng.standard_normal(net.params[k].shape) * 0.5
    x = rng.standard_normal((5, 2))
    t = np.array([1, 7, 50, 300, 1000])
    y = None if num_classes is None else np.array([0, 1, 2, 3, 1])     # 3 = the null label
    w = rng.standard_normal((5, 4 if learn_sigma else 2))             # L = Σ w ⊙ ε̂ ([ε̂ | v_σ] with learn_sigma)
    _, grads = _loss_and_grads(net, x, t, y, w)
    assert list(grads) == list(net.params)
    h = 1e-6
    for name, p in net.params.items():
        num = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            lp = float(np.sum(net.forward(x, t, y, keep_cache=False) * w))
            p[i] = old - h
            lm = float(np.sum(net.forward(x, t, y, keep_cache=False) * w))
            p[i] = old
            num[i] = (lp - lm) / (2 * h)
        # float64 centred differences: truncation ~h², rounding ~1e-16/h → ~1e-9 relative
        err = np.abs(num - grads[name]).max() / max(np.abs(num).max(), 1e-8)
        assert err < 1e-6, (name, err)


def test_starts_at_zero_and_checks_inputs():
    net = MLP(dim=2, dtype="float32")
    x = np.ones((3, 2), np.float32)
    assert np.all(net.forward(x, np.array([1, 2, 3])) == 0)       # ε̂ = 0 at initialisation
    with pytest.raises(ValueError, match="dtype"):
        net.forward(x.astype(np.float64), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        net.forward(np.ones((3, 3), np.float32), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="no classes"):
        net.forward(x, np.array([1, 2, 3]), np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="keep_cache"):
        net.forward(x, np.array([1, 2, 3]), keep_cache=False)
        net.backward(x)
    assert MLP(**net.config).config == net.config


def test_non_finite_input_and_parameters_are_refused():
    net = MLP(dim=2, hidden=4, depth=1, emb_dim=4, dtype="float64")
    t = np.array([1, 2])
    with pytest.raises(ValueError, match="x must be finite"):
        net.forward(np.array([[0.0, np.nan], [1.0, 2.0]]), t)
    out = net.forward(np.zeros((2, 2)), t)
    with pytest.raises(ValueError, match="d_out must be finite"):
        net.backward(np.full_like(out, np.inf))
    with pytest.raises(ValueError, match="d_out must be a float array"):
        net.backward(None)
    net.params["out.b"][0] = np.nan
    with pytest.raises(ValueError, match="parameters"):
        net.forward(np.zeros((2, 2)), t)
    with pytest.raises(ValueError, match="seed"):
        MLP(seed=-1)


def test_learn_sigma_outputs_two_halves_and_is_in_the_config():
    net = MLP(dim=2, hidden=8, depth=1, emb_dim=4, learn_sigma=True)
    assert net.forward(np.zeros((3, 2)), np.array([1, 2, 3])).shape == (3, 4)
    assert net.config["learn_sigma"] is True and MLP(**net.config).params["out.w"].shape == (4, 8)
    old = {k: v for k, v in MLP(dim=2).config.items() if k != "learn_sigma"}   # a config saved before issue 11
    assert MLP(**old).params["out.w"].shape == (2, 128)
    with pytest.raises(ValueError, match="learn_sigma"):
        MLP(learn_sigma=1)
