"""ddpm_ref.optim: Adam against a hand computation and torch.optim.Adam, clipping, warm-up, EMA."""

import math

import numpy as np
import pytest

from ddpm_ref.optim import EMA, Adam, clip_grad_norm, warmup_lr


def test_adam_two_steps_by_hand():
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(p, beta1=0.9, beta2=0.999, eps=1e-8)
    g1, g2 = np.array([0.5, -1.0]), np.array([0.1, 0.2])
    opt.update(p, {"w": g1.copy()}, lr=0.1)
    # step 1: m̂ = g, v̂ = g², so the step is lr * g/(|g| + eps) = lr * sign(g)
    assert np.allclose(p["w"], [1.0 - 0.1, -2.0 + 0.1], atol=1e-7)
    opt.update(p, {"w": g2.copy()}, lr=0.1)
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    mhat, vhat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    want = np.array([0.9, -1.9]) - 0.1 * mhat / (np.sqrt(vhat) + 1e-8)
    assert np.allclose(p["w"], want, rtol=1e-12)
    assert opt.step == 2


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    b0 = rng.standard_normal(4)
    p = {"w": w0.copy(), "b": b0.copy()}
    tw = torch.tensor(w0.copy(), requires_grad=True)
    tb = torch.tensor(b0.copy(), requires_grad=True)
    topt = torch.optim.Adam([tw, tb], lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    opt = Adam(p, beta1=0.9, beta2=0.99, eps=1e-8)
    for _ in range(20):
        gw, gb = rng.standard_normal((3, 4)), rng.standard_normal(4)
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        topt.step()
        opt.update(p, {"w": gw, "b": gb}, lr=1e-2)
    assert np.allclose(p["w"], tw.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert np.allclose(p["b"], tb.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_adam_is_in_place_and_keeps_dtype():
    w = np.ones(3, dtype=np.float32)
    p = {"w": w}
    Adam(p).update(p, {"w": np.ones(3, dtype=np.float32)}, lr=1e-3)
    assert p["w"] is w and w.dtype == np.float32 and np.all(w < 1)
    with pytest.raises(ValueError, match="keys"):
        Adam(p).update(p, {"v": np.ones(3)}, lr=1e-3)


def test_clip_grad_norm_matches_torch_rule():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = clip_grad_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    assert math.sqrt((g["a"] ** 2).sum() + (g["b"] ** 2).sum()) == pytest.approx(1.0, rel=1e-6)
    small = {"a": np.array([0.1])}
    clip_grad_norm(small, 1.0)
    assert small["a"][0] == 0.1                      # below the threshold: untouched


def test_warmup_and_ema():
    assert warmup_lr(1, 1e-3, 100) == pytest.approx(1e-5)
    assert warmup_lr(100, 1e-3, 100) == warmup_lr(5000, 1e-3, 100) == 1e-3
    assert warmup_lr(1, 1e-3, 0) == 1e-3
    p = {"w": np.zeros(2)}
    ema = EMA(p, decay=0.5, warmup=False)
    p["w"][:] = 1.0
    ema.update(p)
    assert np.allclose(ema.params["w"], 0.5)
    ema.update(p)
    assert np.allclose(ema.params["w"], 0.75)
    warm = EMA({"w": np.zeros(1)}, decay=0.999)
    assert warm.current_decay() == pytest.approx(2 / 11)      # (1 + s)/(10 + s) at s = 1
