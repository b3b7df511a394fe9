"""ddpm_ref.train_extra and ddpm_ref.latent: the classifier/autoencoder loops save what they claim."""

import json

import numpy as np
import pytest

from ddpm_ref import train_extra
from ddpm_ref.data import load_digits_images
from ddpm_ref.latent import attach_autoencoder, decode_latents, latent_run_data
from ddpm_ref.models.noisy_classifier import NoisyClassifier
from ddpm_ref.runs import load_model


def test_classifier_run_is_deterministic_and_loads_its_ema(tmp_path):
    kw = dict(steps=3, batch_size=4, base_channels=8, T=10, progress=False)
    a, _, _ = train_extra.train_classifier(str(tmp_path / "a"), **kw)
    b, _, _ = train_extra.train_classifier(str(tmp_path / "b"), **kw)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    loaded, meta = load_model(str(tmp_path / "a"))
    assert meta["step"] == 3 and meta["train"]["T"] == 10 and len(meta["losses"]) == 3
    for k in a.params:
        np.testing.assert_array_equal(loaded.params[k], a.params[k])


def test_interrupt_saves_the_steps_done(tmp_path, monkeypatch):
    real, calls = NoisyClassifier.loss_and_grads, {"n": 0}

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(NoisyClassifier, "loss_and_grads", flaky)
    with pytest.raises(KeyboardInterrupt):
        train_extra.train_classifier(str(tmp_path / "c"), steps=10, batch_size=4, base_channels=8, T=10,
                                     progress=False)
    _, meta = load_model(str(tmp_path / "c"))
    assert meta["step"] == 2


def test_autoencoder_scale_factor_and_latent_run(tmp_path):
    ae, scale, mse, _ = train_extra.train_autoencoder(str(tmp_path / "ae"), steps=3, batch_size=8,
                                                      hidden_channels=8, progress=False)
    x, _ = load_digits_images("train")
    assert scale == pytest.approx(1 / ae.encode(x).astype(np.float64).std(), rel=1e-5)
    info = attach_autoencoder(str(tmp_path / "lat"), str(tmp_path / "ae"), seed=0)
    assert json.loads((tmp_path / "lat" / "latent.json").read_text())["scale_factor"] == info["scale_factor"] == scale
    data = latent_run_data(str(tmp_path / "lat"))
    assert data.x.shape == (len(x), 2, 4, 4) and data.x.std() == pytest.approx(1.0, rel=1e-4)   # unit variance
    np.testing.assert_allclose(decode_latents(str(tmp_path / "lat"), data.x[:5]), ae.decode(ae.encode(x[:5])),
                               atol=1e-5)                                                   # D(z/s) = D(μ)
    with pytest.raises(ValueError, match="no checkpoint"):              # a latent run is not an autoencoder run
        attach_autoencoder(str(tmp_path / "lat2"), str(tmp_path / "lat"))
