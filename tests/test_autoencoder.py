"""Autoencoder: gradients (finite differences in float64, a PyTorch twin), the KL term, the scale factor.

fd tolerance and step as in tests/nn/conftest.py (h = 1e-6, tol 1e-6). The loss is checked with a
fixed ε (same rng seed on every call), so the reparameterised sample is a deterministic function of
the parameters and the centred difference measures exactly what the backward pass computes.
"""

import numpy as np
import pytest

from ddpm_ref.models.autoencoder import Autoencoder, fit_scale_factor
from tests.nn.conftest import FD_TOL, numerical_check


def _ae(kl_weight=0.3, seed=0):
    # a large KL weight here so that the KL's gradient is not lost under the MSE's
    return Autoencoder(in_channels=1, hidden_channels=3, latent_channels=2, kl_weight=kl_weight,
                       dtype="float64", seed=seed)


@pytest.mark.parametrize("sample", [True, False])
def test_gradients_match_finite_differences(sample, rng):
    ae = _ae()
    x = rng.standard_normal((2, 1, 6, 8))                    # odd-ish shape: H ≠ W, H/2 = 3
    loss, _, grads, dx = ae.loss_and_grads(x, rng=7, sample=sample)
    errors = numerical_check(lambda: ae.loss_and_grads(x, rng=7, sample=sample)[0],
                             dict(ae.params, x=x), dict(grads, x=dx), rng, max_entries=20)
    worst = max(errors, key=errors.get)
    print(f"worst relative error {errors[worst]:.1e} ({worst})")
    assert errors[worst] <= FD_TOL, {k: v for k, v in errors.items() if v > FD_TOL}


def test_matches_a_torch_twin(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ae = _ae()
    x = rng.standard_normal((3, 1, 8, 8))
    loss, parts, grads, dx = ae.loss_and_grads(x, rng=5)
    eps = torch.tensor(np.random.default_rng(5).standard_normal((3, 2, 4, 4)))   # the same ε
    P = {k: torch.tensor(v, requires_grad=True) for k, v in ae.params.items()}
    tx = torch.tensor(x, requires_grad=True)
    h = F.silu(F.conv2d(tx, P["enc.conv0.w"], P["enc.conv0.b"], padding=1))
    h = F.silu(F.conv2d(h, P["enc.down.w"], P["enc.down.b"], stride=2, padding=1))
    h = F.conv2d(h, P["enc.out.w"], P["enc.out.b"], padding=1)
    mu, logvar = h[:, :2], h[:, 2:]
    z = mu + torch.exp(0.5 * logvar) * eps
    h = F.silu(F.conv2d(z, P["dec.conv0.w"], P["dec.conv0.b"], padding=1))
    h = F.interpolate(h, scale_factor=2, mode="nearest")
    h = F.silu(F.conv2d(h, P["dec.up.w"], P["dec.up.b"], padding=1))
    x_hat = F.conv2d(h, P["dec.out.w"], P["dec.out.b"], padding=1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum() / 3
    tloss = F.mse_loss(x_hat, tx) + 0.3 * kl
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-12 and abs(parts["kl"] - kl.item()) < 1e-12
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for k in ae.params:
        np.testing.assert_allclose(grads[k], P[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_kl_is_zero_exactly_at_the_standard_normal():
    """KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²): 0 at μ = 0, log σ² = 0, by hand elsewhere."""
    ae = _ae()
    for k in ("enc.out.w", "enc.out.b"):
        ae.params[k][:] = 0.0                                  # μ = 0, log σ² = 0 for every input
    _, parts, _, _ = ae.loss_and_grads(np.ones((2, 1, 4, 4)))
    assert parts["kl"] == 0.0
    ae.params["enc.out.b"][:] = [1.0, 0.0, 0.0, np.log(4.0)]  # μ = (1, 0), σ² = (1, 4)
    _, parts, _, _ = ae.loss_and_grads(np.ones((2, 1, 4, 4)))
    per_pixel = 0.5 * (1.0 + 0.0) + 0.5 * (4.0 - 1.0 - np.log(4.0))
    assert abs(parts["kl"] - 4 * per_pixel) < 1e-12            # 2×2 latent pixels per image


def test_training_reduces_the_reconstruction_error_and_the_scale_factor_whitens():
    g = np.random.default_rng(0)
    ae = Autoencoder(hidden_channels=8, latent_channels=2, kl_weight=1e-4, dtype="float64")
    x = np.repeat(np.repeat(g.choice([-1.0, 1.0], (16, 1, 4, 4)), 2, axis=2), 2, axis=3)   # blocky 8×8
    first = ae.loss_and_grads(x, rng=0)[1]["mse"]
    for i in range(60):
        _, parts, grads, _ = ae.loss_and_grads(x, rng=i)
        for k in ae.params:
            ae.params[k] -= 0.2 * grads[k]
    assert parts["mse"] < 0.5 * first, (first, parts["mse"])
    z = ae.encode(x)
    s = fit_scale_factor(z)
    assert abs((ae.encode(x, s)).std() - 1.0) < 1e-12
    np.testing.assert_allclose(ae.decode(ae.encode(x, s), s), ae.decode(z), rtol=1e-12, atol=1e-12)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="kl_weight"):
        Autoencoder(kl_weight=-1.0)
    with pytest.raises(ValueError, match="latent_channels"):
        Autoencoder(latent_channels=0)
    ae = Autoencoder()
    with pytest.raises(ValueError, match="x must"):
        ae.encode(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="even"):
        ae.encode(np.zeros((2, 1, 7, 8), np.float32))
    with pytest.raises(ValueError, match="z must"):
        ae.decode(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="latents"):
        fit_scale_factor(np.ones(5))
