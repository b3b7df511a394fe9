"""Prompts (ddpm_ref.prompts): the tokenizer, the strokes, the training prompts, training and sampling a prompt model."""

import dataclasses

import numpy as np
import pytest

from ddpm_ref.data import load_dataset
from ddpm_ref.models.unet import UNet
from ddpm_ref.prompts import (
    DIGIT_WORDS, P_DIGIT_WORD, P_STROKE_WORD, PROMPT_LENGTH, PROMPT_VOCAB, PromptEps, detokenize, ink,
    sample_prompts, thickness_classes, tokenize, training_tokens,
)
from ddpm_ref.schedules import make_schedule

TINY_PROMPTED = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                     attention_resolutions=(), groups=4, dtype="float32", seed=0,
                     prompt_vocab=list(PROMPT_VOCAB), prompt_length=PROMPT_LENGTH, context_dim=8)


def test_vocabulary_and_tokenizer():
    assert PROMPT_VOCAB[0] == "<pad>" and len(PROMPT_VOCAB) == 14 and len(set(PROMPT_VOCAB)) == 14
    np.testing.assert_array_equal(tokenize("thick seven"), [12, 9, 0])          # ids by hand from the vocabulary
    np.testing.assert_array_equal(tokenize("  Digit  "), [1, 0, 0])
    np.testing.assert_array_equal(tokenize(""), [0, 0, 0])                       # the null prompt
    for p in ("thin two", "digit", "thick nine digit", ""):
        assert detokenize(tokenize(p)) == p
    with pytest.raises(ValueError, match=r"unknown word\(s\) 'a'.*knows digit, zero"):
        tokenize("a seven")
    with pytest.raises(ValueError, match="has 4 words; this model reads at most 3"):
        tokenize("thick thin seven digit")
    with pytest.raises(ValueError, match="prompt must be a string"):
        tokenize(7)


def test_thickness_classes_are_class_terciles():
    """Images with a known ink: class 0 with ink 0.1..0.9 and class 1 with 0.55..0.65 (nine each);
    terciles within each class, so the thinnest of class 1 is 'thin' though it has more ink than
    class 0's thick ones."""
    levels0, levels1 = np.linspace(0.1, 0.9, 9), np.linspace(0.55, 0.65, 9)
    amounts = np.concatenate([levels0, levels1])
    x = np.broadcast_to((2 * amounts - 1)[:, None, None, None], (18, 1, 8, 8))   # ink = (x + 1)/2 everywhere
    y = np.repeat([0, 1], 9)
    np.testing.assert_allclose(ink(x), amounts)
    expected = np.tile([-1, -1, -1, 0, 0, 0, 1, 1, 1], 2)
    np.testing.assert_array_equal(thickness_classes(x, y), expected)
    with pytest.raises(ValueError, match=r"x must be images \(N, C, H, W\) and y labels"):
        thickness_classes(x[:, 0], y)


def test_digits_carry_their_strokes():
    data = load_dataset("digits")
    counts = np.bincount(data.thickness + 1)
    assert data.thickness.shape == data.y.shape and abs(counts / counts.sum() - 1 / 3).max() < 0.02
    thick, thin = ink(data.x[data.thickness > 0]).mean(), ink(data.x[data.thickness < 0]).mean()
    assert thick > thin + 0.05


def test_training_tokens_follow_their_probabilities():
    """Frequencies of 200,000 draws against the documented probabilities, within 5 standard errors."""
    n, p_uncond = 200_000, 0.1
    rng = np.random.default_rng(0)
    labels, thickness = rng.integers(0, 10, n), rng.integers(-1, 2, n)
    tok = training_tokens(labels, thickness, np.random.default_rng(1), p_uncond)
    assert tok.shape == (n, PROMPT_LENGTH) and not tok[:, 2].any()

    def close(freq, p, m):
        assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / m), (freq, p)

    null = (tok == 0).all(axis=1)
    close(null.mean(), p_uncond, n)
    kept = ~null
    first = tok[kept, 0]
    close(np.mean(first == PROMPT_VOCAB.index("digit")), P_DIGIT_WORD, kept.sum())
    named = first != PROMPT_VOCAB.index("digit")
    np.testing.assert_array_equal(first[named], [PROMPT_VOCAB.index(DIGIT_WORDS[c]) for c in labels[kept][named]])
    second, th = tok[kept, 1], thickness[kept]
    assert not second[th == 0].any()                                   # no stroke word for the middle third
    assert set(second[th > 0]) <= {0, PROMPT_VOCAB.index("thick")} and set(second[th < 0]) <= {0, PROMPT_VOCAB.index("thin")}
    close(np.mean(second[th != 0] != 0), P_STROKE_WORD, (th != 0).sum())
    # the same Generator state gives the same prompts (the run's stream is deterministic)
    np.testing.assert_array_equal(tok, training_tokens(labels, thickness, np.random.default_rng(1), p_uncond))


def test_prompt_eps_maps_labels_to_prompts(rng):
    net = UNet(**TINY_PROMPTED)
    for v in net.params.values():
        v += 0.3 * rng.standard_normal(v.shape).astype(v.dtype)
    eps = PromptEps(net, ["thick seven", "two"], batch_size=None)
    x, t = rng.standard_normal((3, 1, 8, 8)).astype(np.float32), np.array([5, 50, 500])
    y = np.array([1, 0, 1])
    want = net.forward(x, t, tokens=np.stack([tokenize("two"), tokenize("thick seven"), tokenize("two")]),
                       keep_cache=False)
    np.testing.assert_array_equal(eps(x, t, y), want)
    np.testing.assert_array_equal(eps(x, t), net.forward(x, t, keep_cache=False))   # None: the null prompt
    chunked = PromptEps(net, ["thick seven", "two"], batch_size=2)       # in batches of 2: float32 rounding only
    np.testing.assert_allclose(chunked(x, t, y), want, rtol=1e-5, atol=1e-5)
    assert eps.num_classes == 2
    with pytest.raises(ValueError, match="reads no prompts"):
        PromptEps(UNet(**{**TINY_PROMPTED, "prompt_vocab": None, "prompt_length": None, "context_dim": None}), ["two"])
    with pytest.raises(ValueError, match="unknown word"):
        PromptEps(net, ["twelve"])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        PromptEps(net, "two")
    out = sample_prompts(net, make_schedule("linear", 100), ["one", ""], 3, steps=4, rng=0)
    assert list(out) == ["one", ""] and out["one"].shape == (3, 1, 8, 8)


def test_train_step_with_prompts_is_deterministic_and_checked():
    import ddpm_ref.train as tr

    data = load_dataset("digits")
    config = tr.TrainConfig(prompts=True, cond=False, batch_size=8, steps=3, warmup=1).validate()
    kind, cfg = tr.default_model_config(data, config.cond, 0, dict(tr.QUICK_MODEL), prompts=True)
    assert cfg["num_classes"] is None and cfg["prompt_vocab"] == list(PROMPT_VOCAB) and cfg["context_dim"] == 16

    def run():
        state = tr.new_state(UNet(**cfg), config)
        sched = config.make_schedule()
        return [tr.train_step(state, data, sched, config) for _ in range(3)], state.model.params

    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2 and all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert not np.array_equal(p1["prompt_emb.table"], UNet(**cfg).params["prompt_emb.table"])   # the table learns
    state = tr.new_state(UNet(**cfg), config)
    with pytest.raises(ValueError, match="prompts=False in the training config but the model reads prompts"):
        tr.train_step(state, data, config.make_schedule(), dataclasses.replace(config, prompts=False))
    with pytest.raises(ValueError, match="instead of class labels: drop --cond"):
        tr.TrainConfig(prompts=True).validate()
    with pytest.raises(ValueError, match="has none"):
        tr.default_model_config(load_dataset("moons", n_points=10), False, prompts=True)


def test_evaluate_draws_a_prompt_models_samples_for_the_digit_words():
    """evaluate_run on a prompt model: label accuracy of samples drawn for "zero" ... "nine" (not the null prompt)."""
    from ddpm_ref.commands.evaluate import evaluate_run

    net = UNet(**TINY_PROMPTED)
    meta = {"step": 0, "train": {"schedule": "linear", "T": 20}}
    calls = []
    forward = net.forward

    def spy(x, t, y=None, **kw):
        calls.append(kw.get("tokens"))
        return forward(x, t, y, **kw)

    net.forward = spy
    r = evaluate_run(net, meta, n=20, steps=2, bpd=False, progress=False)
    assert r["prompts"] == list(DIGIT_WORDS) and 0 <= r["accuracy_samples"] <= 1
    np.testing.assert_array_equal(calls[0][:, 0], [PROMPT_VOCAB.index(DIGIT_WORDS[i % 10]) for i in range(20)])
