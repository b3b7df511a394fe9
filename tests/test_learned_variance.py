"""Learned variance (Nichol & Dhariwal eq. 15), L_{t−1} with it, its hand-written gradient, the hybrid loss.

Independent routes:
* eq. 15 at v = 0, 1, ½ against β̃_t and β_t computed here from the betas (eq. 7 by hand);
* L_{t−1} at v = 0 / v = 1 against ``ddpm_ref.elbo.vb_term_bpd`` with fixed_small / fixed_large
  (already tested against Ho et al.'s formulas), including the decoder at t = 1;
* ∂L/∂v by centred finite differences in float64 (h = 1e-6; truncation O(h²·L''') ≈ 1e-12, round-off
  ≈ 1e-16/h = 1e-10 relative to O(1) terms: tolerance 1e-6 relative), and by PyTorch autograd
  (float64, test-only, skipped without torch) on a torch re-implementation of the KL and of the
  discretized Gaussian (torch.special.ndtr / log_ndtr), tolerance 1e-9.
"""

import math

import numpy as np
import pytest

from ddpm_ref.diffusion import p_mean_variance, q_sample
from ddpm_ref.elbo import vb_term_bpd
from ddpm_ref.learned_variance import (
    HYBRID_LAMBDA,
    ImportanceSampler,
    hybrid_loss,
    learned_log_variance,
    vlb_term_learned,
    vlb_term_learned_backward,
    vlb_term_learned_forward,
)
from ddpm_ref.prediction import v_target
from ddpm_ref.schedules import make_schedule

LIN = make_schedule("linear", 50)
SCALED = make_schedule("cosine", 30, input_scale=0.7)


def _grid(rng, shape):
    """Data on the 256-level grid of [−1, 1], with both edge levels present."""
    x = rng.integers(0, 256, shape) / 255.0 * 2 - 1
    x.reshape(-1)[:2] = [-1.0, 1.0]
    return x


def _beta_tilde_by_hand(sched, t):
    ab = np.cumprod(1 - sched.betas[1:])
    ab_prev = 1.0 if t == 1 else ab[t - 2]
    return (1 - ab_prev) / (1 - ab[t - 1]) * sched.betas[t]


@pytest.mark.parametrize("t", [1, 2, 17, 50])
def test_learned_log_variance_interpolates_beta_tilde_and_beta(t):
    v = np.array([[0.0, 1.0, 0.5, 2.0]])
    bt = _beta_tilde_by_hand(LIN, max(t, 2))              # β̃_1 = 0 is replaced by β̃_2
    beta = LIN.betas[t]
    expected = [math.log(bt), math.log(beta), 0.5 * (math.log(bt) + math.log(beta)), 2 * math.log(beta) - math.log(bt)]
    np.testing.assert_allclose(learned_log_variance(LIN, t, v)[0], expected, rtol=1e-13)
    assert learned_log_variance(LIN, t, v.astype(np.float32)).dtype == np.float32


def _batch(sched, rng, n=6, shape=(2, 3, 3), ts=None):
    t = np.array(ts) if ts is not None else rng.integers(1, sched.T + 1, n)
    n = len(t)
    x0 = _grid(rng, (n, *shape))
    noise = rng.standard_normal(x0.shape)
    xt = q_sample(sched, x0, t, noise)
    eps = noise + 0.3 * rng.standard_normal(x0.shape)     # an imperfect ε-model
    return x0, xt, t, noise, eps


@pytest.mark.parametrize("sched", [LIN, SCALED])
@pytest.mark.parametrize("v_value, variance", [(0.0, "fixed_small"), (1.0, "fixed_large")])
def test_vlb_term_at_the_ends_equals_the_fixed_variance_bound(sched, v_value, variance, rng):
    x0, xt, t, _, eps = _batch(sched, rng, ts=[1, 2, 3, 9, sched.T, 1, 20])
    mean, _ = p_mean_variance(sched, xt, t, eps, variance)
    got = vlb_term_learned(sched, x0, xt, t, mean, np.full(x0.shape, v_value))
    ref = vb_term_bpd(sched, x0, xt, t, eps, variance)
    rows = t > 1 if v_value == 1.0 else slice(None)       # the fixed-variance decoder always uses β̃_2 (v = 0)
    np.testing.assert_allclose(got[rows], ref[rows], rtol=1e-10)


def _fd_grad(f, v, h=1e-6):
    g = np.zeros_like(v)
    for j in np.ndindex(v.shape):
        vp, vm = v.copy(), v.copy()
        vp[j] += h
        vm[j] -= h
        g[j] = (f(vp) - f(vm)) / (2 * h)
    return g


@pytest.mark.parametrize("sched", [LIN, SCALED])
def test_vlb_gradient_by_finite_differences(sched, rng):
    x0, xt, t, _, eps = _batch(sched, rng, ts=[1, 1, 2, 7, sched.T], shape=(2, 2))
    mean, _ = p_mean_variance(sched, xt, t, eps)
    v = rng.uniform(-0.5, 1.5, x0.shape)
    dL = rng.standard_normal(len(t))                       # a random upstream gradient per example
    _, cache = vlb_term_learned_forward(sched, x0, xt, t, mean, v)
    analytic = vlb_term_learned_backward(dL, cache)
    numeric = _fd_grad(lambda vv: float(dL @ vlb_term_learned(sched, x0, xt, t, mean, vv)), v)
    rel = np.abs(analytic - numeric).max() / np.abs(numeric).max()
    assert rel < 1e-6, f"relative error {rel:.2e}"
    assert np.all(np.abs(analytic[0]) > 0)                  # the decoder rows have a gradient too


def _torch_vlb(torch, sched, x0, xt, t, mean, v):
    """L_{t−1} in bits/dim re-implemented in torch (float64) from the papers' formulas."""
    T = torch.tensor
    betas = T(sched.betas)
    ab = torch.cumprod(1 - betas, 0)                       # ᾱ_0 = 1 because β_0 = 0
    out = []
    for i, ti in enumerate(t):
        ti = int(ti)
        bt = (1 - ab[max(ti, 2) - 1]) / (1 - ab[max(ti, 2)]) * betas[max(ti, 2)]
        logvar = v[i] * torch.log(betas[ti]) + (1 - v[i]) * torch.log(bt)
        if ti > 1:
            m1 = (torch.sqrt(ab[ti - 1]) * betas[ti] / (1 - ab[ti]) * sched.input_scale * T(x0[i])
                  + torch.sqrt(1 - betas[ti]) * (1 - ab[ti - 1]) / (1 - ab[ti]) * T(xt[i]))
            kl = 0.5 * (-1 + logvar - torch.log(bt) + torch.exp(torch.log(bt) - logvar)
                        + (m1 - T(mean[i])) ** 2 * torch.exp(-logvar))
            out.append(kl.mean() / math.log(2))
        else:
            x, mu = T(x0[i]), T(mean[i]) / sched.input_scale
            sigma = torch.exp(0.5 * logvar) / sched.input_scale
            hi = torch.special.ndtr((x - mu + 1 / 255) / sigma)
            lo = torch.special.ndtr((x - mu - 1 / 255) / sigma)
            p = torch.where(x < -0.999, hi, torch.where(x > 0.999, 1 - lo, hi - lo))
            out.append(-torch.log(p).mean() / math.log(2))
    return torch.stack(out)


@pytest.mark.parametrize("sched", [LIN, SCALED])
def test_vlb_and_gradient_against_torch_autograd(sched, rng):
    torch = pytest.importorskip("torch")
    x0, xt, t, _, eps = _batch(sched, rng, ts=[1, 2, 5, 11, sched.T, 1])
    mean, _ = p_mean_variance(sched, xt, t, eps)
    v = rng.uniform(0, 1, x0.shape)
    dL = rng.standard_normal(len(t))
    vt = torch.tensor(v, requires_grad=True)
    L_torch = _torch_vlb(torch, sched, x0, xt, t, mean, vt)
    (torch.tensor(dL) @ L_torch).backward()
    L, cache = vlb_term_learned_forward(sched, x0, xt, t, mean, v)
    np.testing.assert_allclose(L, L_torch.detach().numpy(), rtol=1e-9)
    np.testing.assert_allclose(vlb_term_learned_backward(dL, cache), vt.grad.numpy(), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_hybrid_loss_gradients_and_stop_gradient(prediction, rng):
    sched = SCALED
    x0, xt, t, noise, _ = _batch(sched, rng, ts=[1, 4, 12, 30], shape=(3, 2))
    target = {"eps": noise, "x0": x0, "v": v_target(sched, x0, t, noise)}[prediction]
    pred = target + 0.2 * rng.standard_normal(x0.shape)
    v = rng.uniform(0, 1, x0.shape)
    out = hybrid_loss(sched, x0, xt, t, noise, pred, v, prediction)
    M, N = x0.size, len(t)
    np.testing.assert_allclose(out["loss_simple"], np.mean((pred - target) ** 2), rtol=1e-14)
    np.testing.assert_allclose(out["loss"], out["loss_simple"] + HYBRID_LAMBDA * sched.T * out["vlb_bpd"].mean(),
                               rtol=1e-14)
    # ε̂ (pred) gets L_simple's gradient only ...
    np.testing.assert_allclose(out["d_pred"], 2 * (pred - target) / M, rtol=1e-14)

    def total(p, vv):
        return hybrid_loss(sched, x0, xt, t, noise, p, vv, prediction)["loss"]

    # ... although the loss value does depend on pred through the mean of L_vlb: a full derivative differs
    full = _fd_grad(lambda p: total(p, v), pred)
    assert np.abs(full - out["d_pred"]).max() > 1e-6
    # v gets λ·∂L_vlb/∂v: the finite difference of the whole loss in v
    # (round-off of a centred difference: about 1e-16·|loss|/h per entry, h = 1e-6: atol 10× that)
    fd_v = _fd_grad(lambda vv: total(pred, vv), v)
    np.testing.assert_allclose(out["d_v_sigma"], fd_v, rtol=1e-6, atol=10 * 2.2e-16 * out["loss"] / 1e-6)
    assert out["d_v_sigma"].shape == v.shape and N == 4


def test_importance_sampler_is_uniform_until_ready_then_unbiased(rng):
    T = 5
    s = ImportanceSampler(T, history=10)
    np.testing.assert_allclose(s.probabilities(), 0.2)
    L = np.array([4.0, 1.0, 0.5, 0.25, 0.1])               # a fixed loss per t
    for _ in range(10):
        s.update(np.arange(1, T + 1), L)
    assert s.ready()
    p = s.probabilities()
    expected = 0.999 * L / L.sum() + 0.001 / T             # √E[L²] = L for a constant loss
    np.testing.assert_allclose(p, expected, rtol=1e-13)
    t, w = s.sample(200000, rng)
    # E[w·L_t] = mean_t L_t; standard error from the sample, 5σ
    est = w * L[t - 1]
    assert abs(est.mean() - L.mean()) < 5 * est.std() / math.sqrt(len(est))
    s.update(np.array([1]), np.array([8.0]))                # the oldest value is dropped
    assert s._losses[0, -1] == 8.0 and s._counts[0] == 10


@pytest.mark.parametrize("call, match", [
    (lambda x: learned_log_variance(LIN, 0, x), "t=0"),
    (lambda x: vlb_term_learned(LIN, x, x, 3, x, x[:, :1]), "shapes"),
    (lambda x: hybrid_loss(LIN, x, x, 3, x, x, x, "sample"), "prediction"),
    (lambda x: hybrid_loss(LIN, x, x, 3, x, x, x, lam=-1.0), "lam"),
    (lambda x: hybrid_loss(LIN, x, x, 3, x, x, x, weights=np.ones(2)), "weights"),
    (lambda x: ImportanceSampler(0), "T"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.zeros((3, 4)))


def test_hybrid_loss_at_zero_terminal_snr_with_v_prediction(rng):
    """At ᾱ_T = 0 (β_T = 1, log β_T = 0) the loss and its gradient stay finite with v-prediction;
    the gradient in v still matches finite differences. ε-prediction cannot give x̂₀ there: ValueError."""
    from ddpm_ref.schedules import rescale_zero_terminal_snr

    sched = rescale_zero_terminal_snr(make_schedule("linear", 20))
    x0, xt, t, noise, _ = _batch(sched, rng, ts=[20, 20, 19, 1], shape=(2, 2))
    pred = v_target(sched, x0, t, noise) + 0.1 * rng.standard_normal(x0.shape)
    v = rng.uniform(0, 1, x0.shape)
    out = hybrid_loss(sched, x0, xt, t, noise, pred, v, "v")
    assert np.isfinite(out["loss"]) and np.all(np.isfinite(out["d_v_sigma"]))
    fd_v = _fd_grad(lambda vv: hybrid_loss(sched, x0, xt, t, noise, pred, vv, "v")["loss"], v)
    np.testing.assert_allclose(out["d_v_sigma"], fd_v, rtol=1e-6, atol=10 * 2.2e-16 * out["loss"] / 1e-6)
    with pytest.raises(ValueError, match="alpha_bar_t = 0"):
        hybrid_loss(sched, x0, xt, t, noise, noise, v, "eps")
