"""NoisyClassifier: every parameter's gradient and the input gradient ∇_x log p(y | x_t, t).

Routes: centred finite differences in float64 (tests/nn/conftest.py's fd_check: h = 1e-6, tol
1e-6, reasons there) and, test-only, a PyTorch twin built from torch.nn.functional with the same
weights. Every weight is redrawn at random first: the U-Net's initialisation zeroes the last conv
of each ResBlock, which would hide every term behind it from the check.
"""

import numpy as np
import pytest

from ddpm_ref.embeddings import sinusoidal_embedding
from ddpm_ref.models.noisy_classifier import NoisyClassifier, cross_entropy
from tests.nn.conftest import FD_TOL, numerical_check

CONFIGS = [
    dict(in_channels=1, image_size=8, base_channels=4, channel_mults=(1, 2), groups=2, num_classes=3),
    dict(in_channels=2, image_size=4, base_channels=6, channel_mults=(1,), groups=3, num_classes=5,
         attention_resolutions=(4,)),
]


def _net(cfg, rng):
    net = NoisyClassifier(**cfg, dtype="float64", seed=1)
    for k, v in net.params.items():
        net.params[k] = rng.standard_normal(v.shape) * 0.4 + (1.0 if k.endswith("gamma") else 0.0)
    return net


def _batch(net, rng, n=3):
    c, s = net.config["in_channels"], net.config["image_size"]
    x = rng.standard_normal((n, c, s, s))
    t = np.array([1, 37, 500])[:n]
    y = rng.integers(0, net.config["num_classes"], n)
    return x, t, y


@pytest.mark.parametrize("cfg", CONFIGS)
def test_loss_gradients_match_finite_differences(cfg, rng):
    net = _net(cfg, rng)
    x, t, y = _batch(net, rng)
    _, grads, dx = net.loss_and_grads(x, t, y)
    arrays = dict(net.params, x=x)
    errors = numerical_check(lambda: cross_entropy(net.forward(x, t, keep_cache=False), y)[0],
                             arrays, dict(grads, x=dx), rng, max_entries=12)
    worst = max(errors, key=errors.get)
    print(f"{len(errors)} arrays, worst relative error {errors[worst]:.1e} ({worst})")
    assert errors[worst] <= FD_TOL, {k: v for k, v in errors.items() if v > FD_TOL}


@pytest.mark.parametrize("cfg", CONFIGS)
def test_grad_log_prob_matches_finite_differences(cfg, rng):
    """∇_x log p(y | x_t, t) — what guidance uses — against differences of log_prob (summed over n)."""
    net = _net(cfg, rng)
    x, t, y = _batch(net, rng)
    g = net.grad_log_prob(x, t, y)
    errors = numerical_check(lambda: float(net.log_prob(x, t, y).sum()), {"x": x}, {"x": g}, rng, max_entries=40)
    assert errors["x"] <= FD_TOL, errors


def test_matches_a_torch_twin(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    cfg = CONFIGS[0]
    net = _net(cfg, rng)
    x, t, y = _batch(net, rng)
    loss, grads, dx = net.loss_and_grads(x, t, y)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    tx = torch.tensor(x, requires_grad=True)
    G = cfg["groups"]
    code = torch.tensor(sinusoidal_embedding(t, cfg["base_channels"]))
    e = F.linear(F.silu(F.linear(code, P["time.linear1.w"], P["time.linear1.b"])), P["time.linear2.w"], P["time.linear2.b"])
    e_act = F.silu(e)

    def res(h, n):
        a = F.silu(F.group_norm(h, G, P[f"{n}.norm1.gamma"], P[f"{n}.norm1.beta"]))
        a = F.conv2d(a, P[f"{n}.conv1.w"], P[f"{n}.conv1.b"], padding=1)
        a = a + F.linear(e_act, P[f"{n}.emb.w"], P[f"{n}.emb.b"])[:, :, None, None]
        a = F.silu(F.group_norm(a, G, P[f"{n}.norm2.gamma"], P[f"{n}.norm2.beta"]))
        a = F.conv2d(a, P[f"{n}.conv2.w"], P[f"{n}.conv2.b"], padding=1)
        skip = F.conv2d(h, P[f"{n}.skip.w"], P[f"{n}.skip.b"]) if f"{n}.skip.w" in P else h
        return skip + a

    h = F.conv2d(tx, P["in_conv.w"], P["in_conv.b"], padding=1)
    h = res(h, "down.0.res0")
    h = F.conv2d(h, P["down.0.downsample.w"], P["down.0.downsample.b"], stride=2, padding=1)
    h = res(res(h, "down.1.res0"), "mid.res0")
    h = F.silu(F.group_norm(h, G, P["out.norm.gamma"], P["out.norm.beta"])).mean(dim=(2, 3))
    logits = F.linear(h, P["head.w"], P["head.b"])
    tloss = F.cross_entropy(logits, torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-12
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg="x")
    for k in net.params:
        np.testing.assert_allclose(grads[k], P[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_a_few_sgd_steps_learn_a_noised_two_class_problem():
    """Class 0: bright left half, class 1: bright right half, noised at t ≤ 100: the loss falls."""
    g = np.random.default_rng(0)
    net = NoisyClassifier(base_channels=4, channel_mults=(1, 2), groups=2, num_classes=2, dtype="float64")
    y = g.integers(0, 2, 32)
    x0 = -np.ones((32, 1, 8, 8))
    for i, c in enumerate(y):
        x0[i, 0, :, 4 * c:4 * c + 4] = 1.0
    t = g.integers(1, 100, 32)
    ab = np.cos(np.linspace(0, 1, 1001) * np.pi / 2)[t] ** 2
    xt = np.sqrt(ab)[:, None, None, None] * x0 + np.sqrt(1 - ab)[:, None, None, None] * g.standard_normal(x0.shape)
    first, _, _ = net.loss_and_grads(xt, t, y)
    for _ in range(25):
        loss, grads, _ = net.loss_and_grads(xt, t, y)
        for k in net.params:
            net.params[k] -= 0.1 * grads[k]
    assert first > 0.5 and loss < 0.5 * first, (first, loss)


def test_bad_inputs_name_the_argument():
    net = NoisyClassifier(**CONFIGS[0])
    with pytest.raises(ValueError, match="x must"):
        net.forward(np.zeros((2, 1, 4, 4), np.float32), 3)
    with pytest.raises(ValueError, match="t must"):
        net.forward(np.zeros((2, 1, 8, 8), np.float32), 0)
    with pytest.raises(ValueError, match="y must"):
        net.grad_log_prob(np.zeros((2, 1, 8, 8), np.float32), 3, 3)
    with pytest.raises(ValueError, match="num_classes"):
        NoisyClassifier(num_classes=1)
    with pytest.raises(ValueError, match="backward needs"):
        NoisyClassifier(**CONFIGS[0]).backward(np.zeros((2, 3)))


def test_plugs_into_classifier_guided_ddim():
    """The classifier's grad_log_prob is the callable guidance takes; at s = 0 guidance changes nothing."""
    from ddpm_ref.guidance import sample_ddim_guided
    from ddpm_ref.sample import sample_ddim
    from ddpm_ref.schedules import make_schedule

    sched = make_schedule("cosine", 50)
    net = NoisyClassifier(**CONFIGS[0], dtype="float64")

    def eps_model(x, t, y=None):
        return 0.1 * x

    y = np.array([0, 1, 2, 0])
    guided = sample_ddim_guided(eps_model, net.grad_log_prob, sched, (4, 1, 8, 8), y, scale=3.0, steps=4, rng=0)
    plain = sample_ddim(eps_model, sched, (4, 1, 8, 8), steps=4, rng=0, dtype=np.float64, progress=False)
    same = sample_ddim_guided(eps_model, net.grad_log_prob, sched, (4, 1, 8, 8), y, scale=0.0, steps=4, rng=0)
    assert guided.shape == (4, 1, 8, 8) and np.all(np.isfinite(guided))
    np.testing.assert_allclose(same, plain, rtol=0, atol=1e-12)
    assert np.abs(guided - plain).max() > 1e-6
