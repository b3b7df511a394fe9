r"""Prompts for the digits: a tiny vocabulary, its tokenizer, the training prompts, and an ε-model for a prompt.

Layer: loop (imports the sampler's ``ModelEps`` and NumPy; nothing above).

Stable Diffusion conditions its U-Net on text: a tokenizer turns the prompt into token ids, a text
encoder turns the ids into a sequence of vectors, and the U-Net's cross-attention blocks read that
sequence (Rombach et al. 2022, sec. 3.3). Here the same path in miniature:

* **the vocabulary** ``PROMPT_VOCAB``: 13 words — "digit", the ten digit names and two words for the
  stroke, "thick" and "thin" — and a padding token "<pad>" (id 0): 14 tokens;
* **the tokenizer** ``tokenize``: split on spaces, look each word up, pad to ``PROMPT_LENGTH`` (3)
  tokens with the padding token (id 0). The empty prompt is all padding: that is the "null"
  prompt of classifier-free guidance, as Stable Diffusion's is the empty string;
* **the text encoder**: a learned table of token embeddings in the U-Net (``prompt_emb.table``,
  ``ddpm_ref.models.cross_attention_block.token_embedding_forward``). No positional code: the
  prompt is a bag of words, so "thick seven" and "seven thick" are the same prompt.

**Training prompts** (``training_tokens``) are made from what the digits tell us: the label gives the
class word, and the ink of the digit (its mean grey level), compared with the other digits of its
class, gives the stroke word — "thick" for the third of each class with the most ink, "thin" for
the third with the least (``thickness_classes``). For each example:

* with probability ``p_uncond`` the whole prompt is dropped (all padding), so that one network learns
  ε(x_t, t, prompt) and ε(x_t, t, ∅) for classifier-free guidance (Ho & Salimans 2021);
* otherwise the class word, replaced by "digit" with probability ``P_DIGIT_WORD`` (so "digit" means
  "any digit"), and the stroke word, if the digit has one, kept with probability ``P_STROKE_WORD``
  (so "seven" alone covers every seven: half of its captions come from the middle third, a quarter
  from each of the others).

Attention over the padding tokens is not masked: the null prompt is the padding, and Stable
Diffusion's U-Net, too, attends to all 77 of CLIP's output tokens, padding included.

**Sampling** (``PromptEps``): the samplers pass integer "labels" y; for a prompt model, label j is
the j-th of the prompts given, and y = None is the null prompt, so every sampler and classifier-free
guidance (``ddpm_ref.sample.guided_eps``) work unchanged.
"""

from __future__ import annotations

import numpy as np

from ddpm_ref.sample import ModelEps

__all__ = ["PROMPT_VOCAB", "PROMPT_LENGTH", "DIGIT_WORDS", "PAD", "P_DIGIT_WORD", "P_STROKE_WORD",
           "tokenize", "detokenize", "ink", "thickness_classes", "training_tokens", "PromptEps", "has_prompts",
           "sample_prompts"]

PAD = "<pad>"
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROMPT_VOCAB = (PAD, "digit", *DIGIT_WORDS, "thick", "thin")
PROMPT_LENGTH = 3          # tokens per prompt: at most 3 words, padded
P_DIGIT_WORD = 0.2         # P(the class word is replaced by "digit") in a training prompt
P_STROKE_WORD = 0.5        # P(the stroke word is kept | the digit is thick or thin)


def has_prompts(config) -> bool:
    """Whether a model's config says it reads prompts (a U-Net built with ``prompt_vocab``)."""
    return config.get("prompt_vocab") is not None


def tokenize(prompt: str, vocab=PROMPT_VOCAB, length: int = PROMPT_LENGTH) -> np.ndarray:
    """Token ids (length,) int64 of ``prompt``: its words looked up in ``vocab``, padded with id 0.

    Words are split on white space and lower-cased; "" gives all padding (the null prompt). The
    padding token itself is accepted but never needed (the error message leaves it out of the list).

    Raises:
        ValueError: a word outside ``vocab`` (the message lists the vocabulary), or more than
            ``length`` words.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    words = prompt.lower().split()
    unknown = [w for w in words if w not in vocab]
    if unknown:
        raise ValueError(f"prompt {prompt!r}: unknown word(s) {', '.join(map(repr, unknown))}; this model knows "
                         f"{', '.join(w for w in vocab if w != PAD)}")
    if len(words) > length:
        raise ValueError(f"prompt {prompt!r} has {len(words)} words; this model reads at most {length}")
    ids = [list(vocab).index(w) for w in words]
    return np.array(ids + [0] * (length - len(ids)), dtype=np.int64)


def detokenize(tokens, vocab=PROMPT_VOCAB) -> str:
    """The prompt of token ids, padding left out: ``detokenize(tokenize(p)) == p`` for a prompt p of
    lower-case words separated by single spaces (without "<pad>")."""
    return " ".join(vocab[int(i)] for i in tokens if int(i) != 0)


def ink(x) -> np.ndarray:
    """The ink of each image (N,): the mean of (x + 1)/2 over its pixels, images x (N, C, H, W) in [−1, 1]."""
    return ((np.clip(np.asarray(x, dtype=np.float64), -1, 1) + 1) / 2).mean(axis=(1, 2, 3))


def thickness_classes(x, y) -> np.ndarray:
    """−1 (thin), 0 or +1 (thick) per image: the tercile of its ink among the images of its class.

    ``x``: images (N, C, H, W) in [−1, 1]; ink = the mean of (x + 1)/2, the mean grey level (``ink``).
    ``y``: labels (N,). Within each class, the images with ink above the class's 2/3
    quantile are thick and those below its 1/3 quantile thin; the middle third has no stroke word.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be images (N, C, H, W) and y labels (N,), got {x.shape} and {y.shape}")
    amount = ink(x)
    out = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = y == c
        lo, hi = np.quantile(amount[members], [1 / 3, 2 / 3])
        out[members & (amount > hi)] = 1
        out[members & (amount < lo)] = -1
    return out


def training_tokens(labels, thickness, rng, p_uncond: float, vocab=PROMPT_VOCAB,
                    length: int = PROMPT_LENGTH) -> np.ndarray:
    """Token ids (N, length) of the training prompts of a batch (module docstring), drawn from ``rng``.

    ``labels`` (N,) in 0..9, ``thickness`` (N,) in {−1, 0, +1} (``thickness_classes``). Three
    vectors of N uniform draws, always all three and in this order (so the Generator's stream does
    not depend on the outcomes): prompt dropout, "digit" for the class word, keep the stroke word.
    """
    labels, thickness = np.asarray(labels), np.asarray(thickness)
    n = len(labels)
    drop, as_digit, keep_stroke = rng.random(n), rng.random(n), rng.random(n)
    index = {w: i for i, w in enumerate(vocab)}
    class_word = np.array([index[w] for w in DIGIT_WORDS])[labels]
    first = np.where(as_digit < P_DIGIT_WORD, index["digit"], class_word)
    stroke = np.where(thickness > 0, index["thick"], index["thin"])
    second = np.where((thickness != 0) & (keep_stroke < P_STROKE_WORD), stroke, 0)
    tokens = np.zeros((n, length), dtype=np.int64)
    tokens[:, 0], tokens[:, 1] = first, second
    tokens[drop < p_uncond] = 0                                   # the null prompt: all padding
    return tokens


class PromptEps(ModelEps):
    """A prompt-conditioned U-Net as the ε-model the samplers take: label j means ``prompts[j]``.

    ``PromptEps(net, ["thick seven", "thin seven"])(x_t, t, y)`` runs the network with the tokens of
    prompt y[i] for sample i; y = None runs it with the null prompt (all padding). So
    ``sample_ddim(PromptEps(net, prompts), ..., y=labels, guidance=w)`` is classifier-free guidance
    towards the prompts. ``num_classes`` is the number of prompts.
    """

    def __init__(self, net, prompts, **kwargs):
        super().__init__(net, **kwargs)
        cfg = net.config
        if not has_prompts(cfg):
            raise ValueError("prompts were given but this model reads no prompts (it has no cross-attention: "
                             "train one with --prompts)")
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        self.prompts = list(prompts)
        self.tokens = np.stack([tokenize(p, cfg["prompt_vocab"], cfg["prompt_length"]) for p in self.prompts])
        self.num_classes = len(self.prompts)

    def _forward(self, x, t, y):
        """One chunk (``ModelEps.__call__`` splits the batch): label j → the tokens of prompt j."""
        return self.net.forward(x, t, tokens=None if y is None else self.tokens[y], keep_cache=False)


def sample_prompts(net, sched, prompts, n_each: int, *, steps: int = 50, guidance: float = 1.0, rng=0,
                   progress: bool = False) -> dict:
    """{prompt: samples (n_each, C, H, W)}: DDIM (η = 0, ``steps`` steps, on the run's schedule
    ``sched``) from a prompt model, every prompt in one batch, with classifier-free guidance
    w = ``guidance`` towards each (w = 0: none; for the empty prompt "", the null prompt, guidance
    changes nothing). ``rng``: seed or Generator."""
    from ddpm_ref.sample import sample_ddim

    if isinstance(n_each, bool) or not isinstance(n_each, (int, np.integer)) or n_each < 1:
        raise ValueError(f"n_each must be an integer >= 1, got {n_each!r}")
    eps = PromptEps(net, prompts)
    y = np.repeat(np.arange(len(prompts)), n_each)
    cfg = net.config
    shape = (len(y), cfg["in_channels"], cfg["image_size"], cfg["image_size"])
    x = sample_ddim(eps, sched, shape, steps=steps, rng=rng, y=y, guidance=guidance,
                    progress=progress)
    return {p: x[y == j] for j, p in enumerate(prompts)}
