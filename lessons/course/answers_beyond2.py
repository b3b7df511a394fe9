"""Checkers (and solutions) for the exercises of lessons 15-17: what DDPM grew into, part 2.

As in ``answers_beyond``: each checker computes the expected answer with ``ddpm_ref`` (the modules
``guidance``, ``inpaint``, ``nn.cross_attention``, ``models.autoencoder``); each solution writes the
formula out with NumPy; every exercise registers plausible wrong answers, which
``tests/test_lessons.py`` feeds to the checker and requires to be rejected.
"""

from __future__ import annotations

import numpy as np

from course import compare, compare_function, exercise
from course.answers_beyond import _as_fn, _col, _linear  # noqa: F401  (shared helpers of the checkers)


# --------------------------------------------------------------------------------------------
# Lesson 15: classifier guidance
# --------------------------------------------------------------------------------------------


def _solution_15_1():
    """The solution of exercise 15.1, as a student writes it (what hint() shows last)."""
    def my_guided_mean(mean, variance, grad, s):
        return mean + s * variance * grad                       # μ + s Σ ∇log p(y | x_t)  (D&N Alg. 1)
    return my_guided_mean


_GUIDED_MEAN_MISTAKES = {
    "μ − sΣ∇: the shift goes *up* the classifier's log-probability, not down":
        lambda mean, var, grad, s: mean - s * var * grad,
    "σ_t instead of σ_t² (Σ is the variance)": lambda mean, var, grad, s: mean + s * np.sqrt(var) * grad,
    "the scale s left out": lambda mean, var, grad, s: mean + var * grad,
    "Σ left out (the bare gradient added)": lambda mean, var, grad, s: mean + s * grad,
}


def _guided_mean_inputs():
    g = np.random.default_rng(151)
    inputs = []
    for shape, s in [((5, 2), 1.0), ((3, 1, 4, 4), 3.0), ((4, 2), 0.5)]:
        var = np.full(shape, g.uniform(1e-4, 0.02))              # σ_t² per element (one t for the batch)
        inputs.append((g.standard_normal(shape), var, g.standard_normal(shape), s))
    return inputs


@exercise("15.1", solution=_solution_15_1, wrong=_as_fn(_GUIDED_MEAN_MISTAKES),
          hints=("Algorithm 1 samples x_{t−1} from a Gaussian whose covariance is the unguided one and whose mean is "
                 "moved along the classifier's gradient, by an amount proportional to the covariance.",
                 "x_{t−1} ~ N(μ + s·Σ·∇_{x_t} log p_φ(y | x_t), Σ), Σ = σ_t² I: return mean + s·variance·grad."))
def _ex_15_1(answer):
    from ddpm_ref.guidance import guided_mean

    return compare_function(answer, guided_mean, _guided_mean_inputs(), rtol=1e-12, atol=1e-12,
                            mistakes=_GUIDED_MEAN_MISTAKES)


def _solution_15_2():
    """The solution of exercise 15.2, as a student writes it (what hint() shows last)."""
    def my_guided_eps(eps, sched, t, grad, s):
        c = np.sqrt(1 - sched.alpha_bars[t]).reshape(-1, *([1] * (eps.ndim - 1)))   # √(1 − ᾱ_t) per example
        return eps - s * c * grad                                                     # D&N Alg. 2
    return my_guided_eps


def _geps(fn):
    def wrong(eps, sched, t, grad, s):
        return fn(eps, _col(sched.alpha_bars[t], eps.ndim), _col(sched.alpha_bars[t - 1], eps.ndim), grad, s)
    return wrong


_GUIDED_EPS_MISTAKES = {
    "ε̂ + s√(1 − ᾱ_t)∇: ε points *away* from the data, so the classifier's score enters with a minus":
        _geps(lambda e, a, a1, g, s: e + s * np.sqrt(1 - a) * g),
    "(1 − ᾱ_t) without its square root": _geps(lambda e, a, a1, g, s: e - s * (1 - a) * g),
    "√ᾱ_t where √(1 − ᾱ_t) belongs": _geps(lambda e, a, a1, g, s: e - s * np.sqrt(a) * g),
    "ᾱ_{t−1} where ᾱ_t belongs (an off-by-one t)": _geps(lambda e, a, a1, g, s: e - s * np.sqrt(1 - a1) * g),
    "divided by √(1 − ᾱ_t) (the ε → score conversion turned the wrong way)":
        _geps(lambda e, a, a1, g, s: e - s * g / np.sqrt(1 - a)),
}


def _ex_15_2_reference(eps, sched, t, grad, s):
    from ddpm_ref.guidance import classifier_guided_eps

    return classifier_guided_eps(eps, sched, t, grad, s)


@exercise("15.2", solution=_solution_15_2, wrong=_as_fn(_GUIDED_EPS_MISTAKES),
          hints=("ε̂ is a scaled score: ε(x_t) ≈ −√(1 − ᾱ_t)·∇log q(x_t). Add s·∇log p(y | x_t) to the score and "
                 "convert back. t holds one timestep per example: reshape to (N, 1, ...).",
                 "ε̂' = ε̂ − s·√(1 − ᾱ_t)·∇_{x_t} log p_φ(y | x_t)  (Dhariwal & Nichol 2021, Algorithm 2)."))
def _ex_15_2(answer):
    g = np.random.default_rng(152)
    inputs = []
    for sched, n, shape, s in [(_linear(), 4, (2,), 1.0), (_linear(), 3, (1, 4, 4), 3.0), (_linear(50), 5, (2,), 0.7)]:
        t = g.integers(1, sched.T + 1, n)
        t[0] = 2
        inputs.append((g.standard_normal((n,) + shape), sched, t, g.standard_normal((n,) + shape), s))
    return compare_function(answer, _ex_15_2_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_GUIDED_EPS_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 16: inpainting and editing
# --------------------------------------------------------------------------------------------


def _solution_16_1():
    """The solution of exercise 16.1, as a student writes it (what hint() shows last)."""
    def my_repaint_down_step(sched, x, t, x0, mask, eps, z_known, z):
        ab, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t - 1]
        known = np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev) * z_known                     # q(x_{t−1} | x₀), eq. 4
        mean = (x - sched.betas[t] / np.sqrt(1 - ab) * eps) / np.sqrt(sched.alphas[t])       # μ_θ, eq. 11
        var = sched.betas[t] * (1 - ab_prev) / (1 - ab)                                      # β̃_t
        unknown = mean + (np.sqrt(var) * z if t > 1 else 0.0)
        return mask * known + (1 - mask) * unknown                                           # Lugmayr et al. eq. 8
    return my_repaint_down_step


def _repaint_variant(*, known_at_t=False, clean_known=False, swap_mask=False, var="small", abar_in_mean=False):
    def fn(sched, x, t, x0, mask, eps, z_known, z):
        ab, ab_prev = sched.alpha_bars[t], sched.alpha_bars[t - 1]
        a_k = ab if known_at_t else ab_prev
        known = x0 if clean_known else np.sqrt(a_k) * x0 + np.sqrt(1 - a_k) * z_known
        mean = (x - sched.betas[t] / np.sqrt(1 - ab) * eps) / np.sqrt(ab if abar_in_mean else sched.alphas[t])
        v = sched.betas[t] if var == "large" else sched.betas[t] * (1 - ab_prev) / (1 - ab)
        unknown = mean + (np.sqrt(v) * z if t > 1 else 0.0)
        m = 1 - mask if swap_mask else mask
        return m * known + (1 - m) * unknown
    return fn


_REPAINT_MISTAKES = {
    "the known region noised to level t, not t − 1 (it must match the x_{t−1} being built)": _repaint_variant(known_at_t=True),
    "the known pixels pasted in clean (x₀), not noised to the level of the chain": _repaint_variant(clean_known=True),
    "mask and 1 − mask swapped (mask = 1 marks the known pixels)": _repaint_variant(swap_mask=True),
    "σ_t² = β_t where the module's default, β̃_t, was asked for": _repaint_variant(var="large"),
    "μ_θ divided by √ᾱ_t, not √α_t (eq. 11 undoes one step, not all of them)": _repaint_variant(abar_in_mean=True),
}


def _ex_16_1_reference(sched, x, t, x0, mask, eps, z_known, z):
    from ddpm_ref.diffusion import p_mean_variance

    known = sched.sqrt_alpha_bars[t - 1] * x0 + sched.sqrt_one_minus_alpha_bars[t - 1] * z_known
    mean, var = p_mean_variance(sched, x, np.full(x.shape[0], t), eps, variance="fixed_small")
    unknown = mean + np.sqrt(var) * z if t > 1 else mean
    return mask * known + (1 - mask) * unknown


@exercise("16.1", solution=_solution_16_1, wrong=_as_fn(_REPAINT_MISTAKES),
          hints=("Two candidates for x_{t−1}: the known pixels sent forward from x₀ by q (to which level?), the unknown "
                 "ones one reverse step from x_t. The mask picks, pixel by pixel. Use σ_t² = β̃_t and no noise at t = 1.",
                 "known = √ᾱ_{t−1}·x₀ + √(1 − ᾱ_{t−1})·z_known;  unknown = (x_t − β_t/√(1 − ᾱ_t)·ε)/√α_t + σ_t·z "
                 "with σ_t² = β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t);  x_{t−1} = m·known + (1 − m)·unknown."))
def _ex_16_1(answer):
    g = np.random.default_rng(161)
    inputs = []
    for sched, t, shape in [(_linear(), 500, (3, 1, 4, 4)), (_linear(), 1, (4, 2)), (_linear(), 2, (2, 1, 4, 4)),
                            (_linear(50), 30, (5, 2))]:
        mask = (g.random((1,) + shape[1:]) < 0.5).astype(np.float64)
        mask.flat[0], mask.flat[-1] = 1.0, 0.0
        inputs.append((sched, g.standard_normal(shape), t, g.uniform(-1, 1, shape), mask,
                       g.standard_normal(shape), g.standard_normal(shape), g.standard_normal(shape)))
    return compare_function(answer, _ex_16_1_reference, inputs, rtol=1e-10, atol=1e-12, mistakes=_REPAINT_MISTAKES)


def _solution_16_2():
    """The solution of exercise 16.2, as a student writes it (what hint() shows last)."""
    def my_jump_back(sched, x, t, j, z):
        ratio = sched.alpha_bars[t + j] / sched.alpha_bars[t]          # ᾱ_{t+j}/ᾱ_t = α_{t+1}···α_{t+j}
        return np.sqrt(ratio) * x + np.sqrt(1 - ratio) * z             # q(x_{t+j} | x_t)
    return my_jump_back


_JUMP_MISTAKES = {
    "ᾱ_{t+j} in place of ᾱ_{t+j}/ᾱ_t (that is q(x_{t+j} | x₀), applied to x_t)":
        lambda sched, x, t, j, z: np.sqrt(sched.alpha_bars[t + j]) * x + np.sqrt(1 - sched.alpha_bars[t + j]) * z,
    "the ratio upside down, ᾱ_t/ᾱ_{t+j}":
        lambda sched, x, t, j, z: np.sqrt(sched.alpha_bars[t] / sched.alpha_bars[t + j]) * x
        + np.sqrt(np.abs(1 - sched.alpha_bars[t] / sched.alpha_bars[t + j])) * z,
    "only one step's α_{t+1}, whatever j": lambda sched, x, t, j, z: np.sqrt(sched.alphas[t + 1]) * x
        + np.sqrt(1 - sched.alphas[t + 1]) * z,
    "the noise's variance used as its standard deviation": lambda sched, x, t, j, z:
        np.sqrt(sched.alpha_bars[t + j] / sched.alpha_bars[t]) * x + (1 - sched.alpha_bars[t + j] / sched.alpha_bars[t]) * z,
}


def _ex_16_2_reference(sched, x, t, j, z):
    a = sched.alpha_bars[t + j] / sched.alpha_bars[t]
    # q(x_{t+j} | x_t) composed from j single steps q(x_{s+1} | x_s) = N(√α_{s+1} x_s, β_{s+1}): the means multiply,
    # the variances add as 1 − Π α — computed here by the product, not the ratio.
    prod = np.prod(sched.alphas[t + 1:t + j + 1])
    assert np.isclose(prod, a, rtol=1e-9)
    return np.sqrt(prod) * x + np.sqrt(1 - prod) * z


@exercise("16.2", solution=_solution_16_2, wrong=_as_fn(_JUMP_MISTAKES),
          hints=("The jump is j steps of the forward chain from x_t (not from x₀). Compose the single steps "
                 "q(x_{s+1} | x_s) = N(√α_{s+1}·x_s, β_{s+1}) j times: the means multiply, and the total must stay variance-preserving.",
                 "x_{t+j} = √(ᾱ_{t+j}/ᾱ_t)·x_t + √(1 − ᾱ_{t+j}/ᾱ_t)·z."))
def _ex_16_2(answer):
    g = np.random.default_rng(162)
    inputs = [(_linear(), g.standard_normal((3, 1, 4, 4)), 10, 10, g.standard_normal((3, 1, 4, 4))),
              (_linear(), g.standard_normal((4, 2)), 500, 1, g.standard_normal((4, 2))),
              (_linear(50), g.standard_normal((2, 2)), 20, 5, g.standard_normal((2, 2)))]
    return compare_function(answer, _ex_16_2_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_JUMP_MISTAKES)


# --------------------------------------------------------------------------------------------
# Lesson 17: latent diffusion and cross-attention
# --------------------------------------------------------------------------------------------


def _softmax(a, axis=-1):
    a = a - a.max(axis=axis, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=axis, keepdims=True)


def _solution_17_1():
    """The solution of exercise 17.1, as a student writes it (what hint() shows last)."""
    def my_cross_attention(x, ctx, wq, wk, wv, wo, bo):
        q, k, v = x @ wq.T, ctx @ wk.T, ctx @ wv.T                     # queries from the image, keys/values from ctx
        s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])           # (B, L, M)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s) / np.exp(s).sum(axis=-1, keepdims=True)         # softmax over the M tokens
        return (p @ v) @ wo.T + bo
    return my_cross_attention


def _xattn_variant(*, scale=True, axis=-1, self_attn=False, out_proj=True, sqrt_of="d"):
    def fn(x, ctx, wq, wk, wv, wo, bo):
        src = x if self_attn else ctx
        if self_attn:   # keys/values from the image, as if self-attention (only possible when the widths agree)
            wk_, wv_ = wq, wq
        else:
            wk_, wv_ = wk, wv
        q, k, v = x @ wq.T, src @ wk_.T, src @ wv_.T
        s = q @ k.transpose(0, 2, 1)
        if scale:
            s = s / (np.sqrt(q.shape[-1]) if sqrt_of == "d" else q.shape[-1])
        o = _softmax(s, axis=axis) @ v
        return o @ wo.T + bo if out_proj else o
    return fn


_XATTN_MISTAKES = {
    "no 1/√d scaling of the logits": _xattn_variant(scale=False),
    "the softmax over the queries (axis 1), not over the tokens each query attends to": _xattn_variant(axis=1),
    "divided by d, not √d": _xattn_variant(sqrt_of="full"),
    "keys and values from the image (self-attention), not from the context": _xattn_variant(self_attn=True),
}


def _ex_17_1_reference(x, ctx, wq, wk, wv, wo, bo):
    from ddpm_ref.nn.cross_attention import cross_attention_forward

    return cross_attention_forward(x, ctx, wq, wk, wv, wo, bo, heads=1)[0]


@exercise("17.1", solution=_solution_17_1, wrong=_as_fn(_XATTN_MISTAKES),
          hints=("Three projections: Q from x (B, L, C), K and V from ctx (B, M, E), all to width D. Each of the L queries "
                 "weighs the M tokens by a softmax of scaled dot products. Then project back to C and add the bias.",
                 "out = softmax(Q Kᵀ/√D, over the M tokens) V W_oᵀ + b_o with Q = x W_qᵀ, K = c W_kᵀ, V = c W_vᵀ."))
def _ex_17_1(answer):
    g = np.random.default_rng(171)
    inputs = []
    for B, L, M, C, E, D in [(2, 16, 3, 8, 5, 4), (1, 4, 7, 6, 6, 6), (3, 9, 2, 4, 3, 8)]:
        inputs.append((g.standard_normal((B, L, C)), g.standard_normal((B, M, E)), g.standard_normal((D, C)),
                       g.standard_normal((D, E)), g.standard_normal((D, E)), g.standard_normal((C, D)),
                       g.standard_normal(C)))
    return compare_function(answer, _ex_17_1_reference, inputs, rtol=1e-9, atol=1e-11, mistakes=_XATTN_MISTAKES)


def _solution_17_2():
    """The solution of exercise 17.2, as a student writes it (what hint() shows last)."""
    def my_kl_term(mu, logvar):
        n = mu.shape[0]
        return 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar) / n    # KL(N(μ, σ²) ‖ N(0, 1)), per image
    return my_kl_term


_KL_MISTAKES = {
    "the ½ left out": lambda mu, lv: np.sum(mu ** 2 + np.exp(lv) - 1 - lv) / mu.shape[0],
    "summed over the batch, not averaged per image": lambda mu, lv: 0.5 * np.sum(mu ** 2 + np.exp(lv) - 1 - lv),
    "averaged over every latent entry, not summed per image": lambda mu, lv: 0.5 * np.mean(mu ** 2 + np.exp(lv) - 1 - lv),
    "log σ² used as σ² (the exp forgotten)": lambda mu, lv: 0.5 * np.sum(mu ** 2 + lv - 1 - np.log(np.abs(lv))) / mu.shape[0],
    "+ log σ² where − log σ² belongs": lambda mu, lv: 0.5 * np.sum(mu ** 2 + np.exp(lv) - 1 + lv) / mu.shape[0],
}


def _ex_17_2_reference(mu, logvar):
    """The KL term read off the autoencoder's own loss (kl_weight = 1, so loss − mse = KL)."""
    return float(0.5 * np.sum(mu.astype(np.float64) ** 2 + np.exp(logvar) - 1 - logvar) / mu.shape[0])


@exercise("17.2", solution=_solution_17_2, wrong=_as_fn(_KL_MISTAKES),
          hints=("The encoder outputs a diagonal Gaussian N(μ, σ²) per latent entry; the KL to N(0, 1) is a sum over "
                 "entries of a closed form. The autoencoder reports it per image (divide by the batch size N).",
                 "KL = (1/N) Σ ½(μ² + σ² − 1 − log σ²), σ² = exp(logvar), the sum over every entry of the batch."))
def _ex_17_2(answer):
    from ddpm_ref.models.autoencoder import Autoencoder

    g = np.random.default_rng(172)
    ae = Autoencoder(hidden_channels=4, latent_channels=2, kl_weight=1.0, dtype="float64", seed=3)
    x = g.uniform(-1, 1, (3, 1, 4, 4))
    loss, parts, _, _ = ae.loss_and_grads(x, rng=0)
    mu, logvar, _ = ae._encode(x)
    assert np.isclose(_ex_17_2_reference(mu, logvar), parts["kl"], rtol=1e-9)    # the reference is the module's KL
    inputs = [(mu, logvar), (g.standard_normal((4, 2, 2, 2)), g.normal(-1, 0.5, (4, 2, 2, 2))),
              (g.standard_normal((2, 3, 4, 4)), g.normal(0.3, 1.0, (2, 3, 4, 4)))]
    return compare_function(answer, _ex_17_2_reference, inputs, rtol=1e-9, atol=1e-12, mistakes=_KL_MISTAKES)


def _solution_17_3():
    """The solution of exercise 17.3, as a student writes it (what hint() shows last)."""
    def my_token_embedding_backward(dctx, tokens, vocab_size):
        E = dctx.shape[-1]
        dtable = np.zeros((vocab_size, E))
        np.add.at(dtable, tokens.reshape(-1), dctx.reshape(-1, E))    # every use of a word adds its gradient
        return dtable
    return my_token_embedding_backward


def _assign_rows(dctx, tokens, vocab_size):
    dtable = np.zeros((vocab_size, dctx.shape[-1]))
    dtable[tokens.reshape(-1)] = dctx.reshape(-1, dctx.shape[-1])       # a repeated word keeps only its last use
    return dtable


def _mean_rows(dctx, tokens, vocab_size):
    E, flat = dctx.shape[-1], tokens.reshape(-1)
    dtable = np.zeros((vocab_size, E))
    np.add.at(dtable, flat, dctx.reshape(-1, E))
    counts = np.bincount(flat, minlength=vocab_size)
    return dtable / np.maximum(counts, 1)[:, None]


def _per_prompt_assign(dctx, tokens, vocab_size):
    dtable = np.zeros((vocab_size, dctx.shape[-1]))
    for b in range(tokens.shape[0]):
        dtable[tokens[b]] += dctx[b]                 # += with fancy indexing: a word twice in one prompt adds once
    return dtable


_TOKEN_MISTAKES = {
    "rows assigned (dtable[tokens] = dctx): a word used twice keeps only one of its gradients": _assign_rows,
    "dtable[tokens[b]] += dctx[b] prompt by prompt: NumPy's += with repeated indices adds a word used twice in one "
    "prompt only once (np.add.at adds every use)": _per_prompt_assign,
    "each row averaged over the word's uses instead of summed": _mean_rows,
    "the padding token's row left at zero (padding is a word like any other here)":
        lambda dctx, tokens, V: _solution_17_3()(dctx, tokens, V) * (np.arange(V) != 0)[:, None],
}


def _ex_17_3_reference(dctx, tokens, vocab_size):
    from ddpm_ref.models.cross_attention_block import token_embedding_backward, token_embedding_forward

    _, cache = token_embedding_forward(tokens, np.zeros((vocab_size, dctx.shape[-1])))
    return token_embedding_backward(dctx, cache)


@exercise("17.3", solution=_solution_17_3, wrong=_as_fn(_TOKEN_MISTAKES),
          hints=("The forward pass is c[b, m] = table[tokens[b, m]]: each row of the table is copied to every place its "
                 "word appears. A copy's backward adds the gradients of all the copies.",
                 "dtable[v] = Σ over (b, m) with tokens[b, m] = v of dctx[b, m]; np.add.at does that sum (plain "
                 "fancy-index assignment would not)."))
def _ex_17_3(answer):
    g = np.random.default_rng(173)
    inputs = []
    for B, M, E, V in [(2, 3, 4, 14), (4, 3, 5, 14), (3, 5, 2, 6)]:
        tokens = g.integers(0, V, (B, M))
        tokens[0, :2] = [0, 0]                        # padding used twice, and a repeated word in every case
        tokens[-1, -1] = tokens[0, -1]
        inputs.append((g.standard_normal((B, M, E)), tokens, V))
    # rtol 1e-6: a float32 accumulator is a right answer too (its rounding is ~1e-7); every named mistake is off by O(1)
    return compare_function(answer, _ex_17_3_reference, inputs, rtol=1e-6, atol=1e-9, mistakes=_TOKEN_MISTAKES)
