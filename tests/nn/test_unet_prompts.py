"""A U-Net that reads prompts (cross-attention to token embeddings): gradients and API.

Gradients are checked twice, by independent routes: central finite differences in float64 (as
tests/nn/test_unet.py does for the plain U-Net) and PyTorch autograd on the same network built from
torch.nn (ddpm_ref/bench/torch_twin.py, test-only).
"""

import json

import numpy as np
import pytest

from ddpm_ref.models.unet import UNet
from ddpm_ref.models.unet_plan import AttentionStep, CrossAttentionStep
from ddpm_ref.prompts import PROMPT_VOCAB, tokenize

PROMPTED = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), groups=4, dtype="float64", seed=0,
                prompt_vocab=list(PROMPT_VOCAB), prompt_length=3, context_dim=6)


def _randomised(net, rng, scale=0.3):
    """Every parameter perturbed, the zero-initialised output projections included."""
    for v in net.params.values():
        v += scale * rng.standard_normal(v.shape)
    return net


def _tokens(*prompts):
    return np.stack([tokenize(p) for p in prompts])


def test_plan_has_cross_attention_after_every_self_attention():
    plan = UNet(**PROMPTED).plan
    for i, step in enumerate(plan):
        if isinstance(step, AttentionStep):
            nxt = plan[i + 1]
            assert isinstance(nxt, CrossAttentionStep), f"{step} is not followed by cross-attention"
            assert nxt.name == step.name.replace("attn", "xattn") and nxt.context_dim == 6
    assert sum(isinstance(s, CrossAttentionStep) for s in plan) == 4     # down.1, mid, up.1 ×2
    assert UNet(**{**PROMPTED, "prompt_vocab": None, "prompt_length": None, "context_dim": None}).plan == \
        [s for s in plan if not isinstance(s, CrossAttentionStep)]


def test_gradient_finite_differences(rng, fd_check):
    """Every tensor (3 entries each, the token table's entries among the rows the prompts use) and
    dL/dx. h = 1e-4 as for the plain U-Net (rounding noise of the whole network, see test_unet.py)."""
    net = _randomised(UNet(**PROMPTED), rng)
    x, t = rng.standard_normal((3, 1, 8, 8)), np.array([3, 400, 999])
    tokens = _tokens("thick seven", "", "digit thin")
    eps = net.forward(x, t, tokens=tokens)
    G = rng.standard_normal(eps.shape)
    grads = net.backward(G)
    assert list(grads) == list(net.params)
    used = np.unique(tokens)
    unused = np.setdiff1d(np.arange(len(PROMPT_VOCAB)), used)
    assert np.all(grads["prompt_emb.table"][unused] == 0)                 # words not in the batch: no gradient
    grads["input"], grads["prompt_rows"] = net.d_input, grads["prompt_emb.table"][used]
    table = net.params["prompt_emb.table"]
    rows = table[used]                                                      # a copy, written back in loss()

    def loss():
        table[used] = rows
        return float(np.sum(net.forward(x, t, tokens=tokens, keep_cache=False) * G))

    arrays = {k: v for k, v in net.params.items() if k != "prompt_emb.table"} | {"input": x, "prompt_rows": rows}
    grads.pop("prompt_emb.table")
    errors = fd_check(loss, arrays, grads, rng, h=1e-4, max_entries=3)
    assert len(errors) == len(net.params) + 1


@pytest.mark.parametrize("workers", [1, 2])
def test_matches_torch_autograd(workers, rng):
    torch = pytest.importorskip("torch")
    from ddpm_ref.bench.torch_twin import torch_unet

    net = _randomised(UNet(**PROMPTED, workers=workers), rng)
    module = torch_unet(net)
    x, t = rng.standard_normal((3, 1, 8, 8)), rng.integers(1, 1001, 3)
    tokens = _tokens("thin two", "seven", "")
    eps = net.forward(x, t, tokens=tokens)
    xt = torch.tensor(x, requires_grad=True)
    eps_t = module(xt, torch.tensor(t), tokens=torch.tensor(tokens))
    np.testing.assert_allclose(eps, eps_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    G = rng.standard_normal(eps.shape)
    grads = net.backward(G)
    eps_t.backward(torch.tensor(G))
    for name, g in grads.items():
        ref = module.param(name).grad.numpy()
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-10 * np.abs(ref).max(), err_msg=name)
    np.testing.assert_allclose(net.d_input, xt.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_the_prompt_changes_the_output_and_none_is_the_null_prompt(rng):
    net = _randomised(UNet(**PROMPTED), rng)
    x, t = rng.standard_normal((2, 1, 8, 8)), np.array([10, 700])
    a = net.forward(x, t, tokens=_tokens("seven", "seven"), keep_cache=False)
    b = net.forward(x, t, tokens=_tokens("two", "thick seven"), keep_cache=False)
    assert np.abs(a - b).min() > 0                               # every output moves with the prompt
    np.testing.assert_array_equal(net.forward(x, t, keep_cache=False),
                                  net.forward(x, t, tokens=_tokens("", ""), keep_cache=False))
    # a bag of words: the order of the tokens does not matter (no positional code), to rounding
    np.testing.assert_allclose(net.forward(x, t, tokens=_tokens("thick seven", "thin two"), keep_cache=False),
                               net.forward(x, t, tokens=_tokens("seven thick", "two thin"), keep_cache=False),
                               rtol=1e-12, atol=1e-12)


def test_fresh_prompt_model_starts_as_zero_predictor_and_config_round_trips(rng):
    net = UNet(**{**PROMPTED, "dtype": "float32"})
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    assert not net.forward(x, np.array([1, 2]), tokens=_tokens("one", "two")).any()
    again = UNet(**json.loads(json.dumps(net.config)))
    assert again.config == net.config and all(np.array_equal(again.params[k], v) for k, v in net.params.items())
    assert "prompt_vocab" not in UNet(num_classes=10).config        # other U-Nets' configs are unchanged


@pytest.mark.parametrize("changes, match", [
    (dict(num_classes=10), "not both"),
    (dict(prompt_vocab="abc"), "prompt_vocab must be a list"),
    (dict(prompt_vocab=["<pad>", "a b"]), "without spaces"),
    (dict(prompt_vocab=["<pad>", "x", "x"]), "must not repeat"),
    (dict(prompt_length=0), "prompt_length must be an integer >= 1"),
    (dict(context_dim=2.5), "context_dim must be an integer >= 1"),
    (dict(prompt_vocab=None), "prompt_length is set but prompt_vocab is None"),
])
def test_bad_prompt_config_raises(changes, match):
    with pytest.raises(ValueError, match=match):
        UNet(**{**PROMPTED, **changes})


def test_bad_tokens_raise(rng):
    net = UNet(**PROMPTED)
    x, t = rng.standard_normal((2, 1, 8, 8)), np.array([1, 2])
    with pytest.raises(ValueError, match=r"tokens must be an integer array of shape \(2, 3\)"):
        net.forward(x, t, tokens=np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"tokens must lie in 0..13"):
        net.forward(x, t, tokens=np.full((2, 3), 14))
    with pytest.raises(ValueError, match="tokens must be an integer array"):
        net.forward(x, t, tokens=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reads no prompts"):
        UNet(**{**PROMPTED, "prompt_vocab": None, "prompt_length": None, "context_dim": None}).forward(
            x, t, tokens=np.zeros((2, 3), int))
