r"""The DDPM U-Net (Ho et al. 2020, App. B), in NumPy with a hand-written backward pass.

Layer: model (imports ddpm_ref.nn and the math layer; nothing above).

Architecture of the demo's model (base 32, ``channel_mults=(1, 2)``, ``num_res_blocks=1``,
attention at 4×4) on 8×8 inputs; ``[h | s]`` is a concatenation along channels, and the skips
s0..s3 are used last-in, first-out::

    x ─ conv3×3 (1→32) ................................................ s0   8×8
        ResBlock(32→32) ............................................... s1   8×8
        downsample: conv3×3, stride 2 ................................. s2   4×4
        ResBlock(32→64), attention .................................... s3   4×4
        middle: ResBlock(64→64), attention, ResBlock(64→64)                  4×4
        [h | s3] → ResBlock(128→64), attention                               4×4
        [h | s2] → ResBlock(96→64), attention                                4×4
        nearest upsampling ×2, conv3×3 (64→64)                               8×8
        [h | s1] → ResBlock(96→32)                                           8×8
        [h | s0] → ResBlock(64→32)                                           8×8
        GroupNorm → SiLU → conv3×3 (32→1) → ε̂

The timestep t (1..T, as is) becomes e = Linear(silu(Linear(P(t)))), P the interleaved sinusoidal
code of width ``base_channels``; e has width 4·base_channels. With ``num_classes`` set, a label
embedding (its last row the "null" label) is added to e. Every ResBlock adds Linear(silu(e)).

With ``prompt_vocab`` set (Stable Diffusion's text path in miniature, ``ddpm_ref.prompts``), the
U-Net reads a prompt instead of a label: its token ids (N, M) become a context c = table[tokens]
(N, M, E) once per forward pass, and a cross-attention block after every self-attention block lets
the pixels attend to it (``CrossAttentionStep``, ``cross_attention_block.py``)::

    ... ResBlock(32→64), attention, cross-attention(c) ... (every attention stage)

Initialisation follows Ho et al.: fan-average uniform weights, and zeros for the last conv of
each ResBlock, the output projection of each attention block and the final conv, so every
residual block starts as the identity and the network starts by predicting ε̂ = 0 (loss 1 at
step 0, the loss of the best constant guess).

The forward pass records a *tape*: the list of blocks it ran, with their caches. ``backward``
walks the tape in reverse; a skip connection's gradient is held on a stack until the backward
walk reaches the point where the skip was taken.

Why over 400 lines: one class, read top to bottom — parameters, the input checks (x, t, labels,
prompt tokens: each refused with a message naming it), forward and backward; the architecture
(``unet_plan.py``) and the blocks (``unet_blocks.py``, ``cross_attention_block.py``) are already apart.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

from ddpm_ref.models.cross_attention_block import (
    cross_attention_block_backward, cross_attention_block_forward, init_cross_attention,
    token_embedding_backward, token_embedding_forward,
)
from ddpm_ref.models.parallel import map_shards, shard_slices
from ddpm_ref.models.unet_blocks import (
    attention_block_backward, attention_block_forward, conv3x3_backward, conv3x3_forward,
    init_attention, init_conv, init_norm, init_resblock, out_block_backward, out_block_forward,
    resblock_backward, resblock_forward, upsample_block_backward, upsample_block_forward,
)
from ddpm_ref.models.unet_plan import (
    AttentionStep, ConcatSkip, CrossAttentionStep, DownsampleStep, InConvStep, OutStep, PushSkip,
    ResBlockStep, UpsampleStep, build_plan, check_config, check_prompt_config,
)
from ddpm_ref.nn.activations import silu_backward, silu_forward
from ddpm_ref.nn.backend import array_module, numpy_ops
from ddpm_ref.nn.class_embedding import class_embedding_backward, class_embedding_forward
from ddpm_ref.nn.init import variance_scaling
from ddpm_ref.nn.shape import concat_backward, concat_forward
from ddpm_ref.nn.time_mlp import time_mlp_backward, time_mlp_forward

__all__ = ["UNet"]


class UNet:
    """ε̂ = net.forward(x_t, t, y): the DDPM noise predictor, forward and backward by hand.

    Args:
        in_channels, image_size: the images, (N, in_channels, image_size, image_size).
        base_channels: channels at full resolution; level i has base_channels · channel_mults[i].
        channel_mults: one entry per resolution level (each but the last halves the size).
        num_res_blocks: ResBlocks per encoder level (the decoder has one more per level).
        attention_resolutions: the image sizes at which a self-attention block follows each
            ResBlock (the middle block always has one).
        groups: GroupNorm groups (must divide base_channels).
        dropout: dropout probability inside ResBlocks (training only, see ``forward``).
        num_classes: None (unconditional) or the number of labels; label num_classes is "null".
        learn_sigma: False (default): the output has the image's C channels (ε̂, x̂_0 or v̂).
            True: 2·C channels, [prediction | v_σ], v_σ the interpolation of the learned variance
            (Nichol & Dhariwal 2021, eq. 15; ``ddpm_ref.learned_variance``); ``backward`` then takes
            the gradient of both halves.
        prompt_vocab: None (default) or the words of the prompts the U-Net reads, the first the
            padding token (``ddpm_ref.prompts.PROMPT_VOCAB``); then ``num_classes`` must be None,
            ``prompt_length`` is the number M of tokens per prompt and ``context_dim`` the width E of
            a token's embedding, and a cross-attention block follows every attention block.
        dtype: "float32" or "float64" for parameters and activations.
        seed: initialisation seed (numpy.random.default_rng(seed)).
        ops: an ops object for conv2d/attention (default: ``ddpm_ref.nn``, the NumPy reference;
            see ``ddpm_ref.nn.backend.Ops``). The model knows nothing else about devices: to run
            on a GPU, give a GPU ops object and move the parameters with ``convert_params``.
        workers: threads that share a batch (data parallelism, ``ddpm_ref.models.parallel``); 2 on a
            2-core machine makes a training step ~20 % faster. Used only with the NumPy
            reference ops on NumPy arrays. Not part of ``config`` (it changes no shape and, but
            for rounding and the dropout stream, no number). May be changed at any time.

    Attributes:
        params: dict name -> array, in a stable order (``"down.1.res0.conv1.w"``, ...).
        config: JSON-serialisable dict; ``UNet(**config)`` rebuilds the same shapes.
        plan: the list of steps ``forward`` runs, named records such as
            ``ResBlockStep(name='down.0.res0', c_in=32, c_out=32)`` (see ``unet_plan.py``).
        d_input: after ``backward``, the gradient with respect to the input x_t.

    Activations are float ``dtype`` arrays with NCHW shapes stored channels-last in memory (see
    ``ddpm_ref.nn.conv``); ``forward`` returns a C-contiguous ε̂.

    Raises:
        ValueError: any argument outside what is listed above.
    """

    kind = "unet"   # the name a checkpoint stores (ddpm_ref.runs)

    def __init__(self, in_channels=1, image_size=8, base_channels=32, channel_mults=(1, 2),
                 num_res_blocks=1, attention_resolutions=(4,), groups=8, dropout=0.0,
                 num_classes=None, dtype="float32", seed=0, ops=None, workers=1, learn_sigma=False,
                 prompt_vocab=None, prompt_length=None, context_dim=None):
        mults, attn = check_config(in_channels, image_size, base_channels, channel_mults,
                                    num_res_blocks, attention_resolutions, groups, dropout,
                                    num_classes, dtype)
        prompts = check_prompt_config(prompt_vocab, prompt_length, context_dim, num_classes)
        self.config = {
            "in_channels": int(in_channels), "image_size": int(image_size),
            "base_channels": int(base_channels), "channel_mults": [int(m) for m in mults],
            "num_res_blocks": int(num_res_blocks), "attention_resolutions": list(attn),
            "groups": int(groups), "dropout": float(dropout),
            "num_classes": None if num_classes is None else int(num_classes),
            "dtype": np.dtype(dtype).name, "seed": int(seed), "learn_sigma": bool(learn_sigma),
        }
        if prompts is not None:          # only then: the configs (and checkpoints) of other U-Nets are unchanged
            self.config.update(zip(("prompt_vocab", "prompt_length", "context_dim"), prompts))
        for name in ("conv2d_forward", "conv2d_backward", "attention_forward", "attention_backward"):
            if ops is not None and not callable(getattr(ops, name, None)):
                raise ValueError(f"ops must provide {name} (see ddpm_ref.nn.backend.Ops)")
        self.ops = numpy_ops() if ops is None else ops
        if isinstance(workers, (bool, np.bool_)) or not isinstance(workers, numbers.Integral) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not isinstance(learn_sigma, (bool, np.bool_)):
            raise ValueError(f"learn_sigma must be True or False, got {learn_sigma!r}")
        self.workers = int(workers)
        self.dtype = np.dtype(dtype)
        self.emb_dim = 4 * base_channels
        self.plan = build_plan(self.config)
        self.params = self._init_params(np.random.default_rng(seed))
        self._tape = None

    # ------------------------------------------------------------ parameters

    def _init_params(self, rng):
        p, dt, base = {}, self.dtype, self.config["base_channels"]
        p["time.linear1.w"] = variance_scaling(rng, (self.emb_dim, base), 1.0, dt)
        p["time.linear1.b"] = np.zeros(self.emb_dim, dt)
        p["time.linear2.w"] = variance_scaling(rng, (self.emb_dim, self.emb_dim), 1.0, dt)
        p["time.linear2.b"] = np.zeros(self.emb_dim, dt)
        if self.config["num_classes"] is not None:
            rows = self.config["num_classes"] + 1                   # the last row: "null" label
            p["class_emb.table"] = rng.standard_normal((rows, self.emb_dim)).astype(dt)
        if "prompt_vocab" in self.config:                           # the "text encoder": one row per word
            shape = (len(self.config["prompt_vocab"]), self.config["context_dim"])
            p["prompt_emb.table"] = rng.standard_normal(shape).astype(dt)
        for step in self.plan:                  # the draws in plan order: the seed's numbers
            match step:
                case InConvStep(name=name, c_in=c_in, c_out=c_out):
                    init_conv(p, name, c_in, c_out, 3, rng, dt)
                case DownsampleStep(name=name, channels=c):
                    init_conv(p, name, c, c, 3, rng, dt)
                case ResBlockStep(name=name, c_in=c_in, c_out=c_out):
                    init_resblock(p, name, c_in, c_out, self.emb_dim, rng, dt)
                case AttentionStep(name=name, channels=c):
                    init_attention(p, name, c, rng, dt)
                case CrossAttentionStep(name=name, channels=c, context_dim=e):
                    init_cross_attention(p, name, c, e, rng, dt)
                case UpsampleStep(name=name, channels=c):
                    init_conv(p, f"{name}.conv", c, c, 3, rng, dt)
                case OutStep(name=name, c_in=c_in, c_out=c_out):
                    init_norm(p, f"{name}.norm", c_in, dt)
                    init_conv(p, f"{name}.conv", c_in, c_out, 3, rng, dt, scale=0.0)
        return p

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(v.size for v in self.params.values()))

    def load_params(self, params) -> None:
        """Set the parameters to copies of ``params`` (same keys and shapes; cast to the net's dtype).

        Copies, so that later in-place updates (Adam) never write into the caller's arrays
        (an EMA's, a checkpoint's). Values must be finite (a diverged run's NaN is refused here).
        """
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict name -> array, got {type(params).__name__}")
        missing = set(self.params) - set(params)
        extra = set(params) - set(self.params)
        if missing or extra:
            raise ValueError(f"params: the names do not match this U-Net: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(extra)[:5]}")
        new = {}
        for k, old in self.params.items():
            v = params[k]
            if tuple(getattr(v, "shape", ())) != tuple(old.shape) or getattr(v, "dtype", np.dtype(object)).kind not in "fiu":
                raise ValueError(f"params[{k!r}] must be a real array of shape {tuple(old.shape)}, got "
                                 f"{getattr(v, 'dtype', type(v).__name__)} {tuple(getattr(v, 'shape', ()))}")
            xp = array_module(old)
            new[k] = xp.array(v, dtype=self.dtype, copy=True)
            if not bool(xp.isfinite(new[k]).all()):
                raise ValueError(f"params[{k!r}] holds NaN or ±inf (in {self.dtype.name})")
        self.params = new
        self._tape = None

    def convert_params(self, convert) -> "UNet":
        """Replace every parameter ``a`` by ``convert(a)``; returns self.

        The model does not know about devices: its ops object does. To train or sample on a GPU,
        build the U-Net with a GPU ops object and move the parameters, e.g.
        ``UNet(ops=kernels.get_ops("cuda")).convert_params(cupy.asarray)``; ``convert_params(
        cupy.asnumpy)`` brings them back. The layers follow the arrays (``ddpm_ref.nn.backend``).
        """
        if not callable(convert):
            raise ValueError(f"convert must be a function array -> array, got {type(convert).__name__}")
        self.params = {k: convert(v) for k, v in self.params.items()}
        self._tape = None
        return self

    # ------------------------------------------------------------ forward

    def _check_inputs(self, x, t, y, tokens=None):
        """The checks of ``forward``: x, t, y, tokens as the network reads them, or ValueError naming one.

        x is checked for NaN/inf here, once (one pass over the input, cheap next to the network),
        and not in every layer: the layers check shapes and dtypes only (``ddpm_ref.nn._validate``).
        """
        cfg = self.config
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"x must be a float array, got dtype {x.dtype}")
        expected = (cfg["in_channels"], cfg["image_size"], cfg["image_size"])
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        N = x.shape[0]
        with np.errstate(over="ignore"):                  # float64 beyond float32's range: inf, refused below
            x = x.astype(self.dtype, copy=False)
        if not bool(array_module(x).isfinite(x).all()):
            raise ValueError(f"x must be finite in {self.dtype.name}; it holds NaN, ±inf or values beyond "
                             f"±{np.finfo(self.dtype).max:.3g}")
        t = np.asarray(t.get() if hasattr(t, "get") else t)
        if t.ndim == 0:
            t = np.full(N, t)
        if not np.issubdtype(t.dtype, np.integer) or t.shape != (N,):
            raise ValueError(f"t must be an integer array of shape ({N},), got {t.dtype} shape {t.shape}")
        if N and t.min() < 0:
            raise ValueError(f"t must be >= 0 (timesteps follow the paper, 1..T), got {t.min()}")
        nc = cfg["num_classes"]
        if y is not None:
            if nc is None:
                raise ValueError("y (class labels) was given but this U-Net has num_classes=None")
            y = np.asarray(y.get() if hasattr(y, "get") else y)
            if not np.issubdtype(y.dtype, np.integer) or y.shape != (N,):
                raise ValueError(f"y must be an integer array of shape ({N},), got {y.dtype} shape {y.shape}")
            if N and (y.min() < 0 or y.max() > nc):
                raise ValueError(f"y must lie in 0..{nc} ({nc} is the null label), got {y.min()}..{y.max()}")
        elif nc is not None:
            y = np.full(N, nc)                                   # all-null: unconditional
        return x, t, y, self._check_tokens(tokens, N)

    def _check_tokens(self, tokens, N):
        """Token ids (N, M) int64 for a prompt model (None: the null prompt, all padding), else None."""
        cfg = self.config
        if "prompt_vocab" not in cfg:
            if tokens is not None:
                raise ValueError("tokens (a prompt) were given but this U-Net reads no prompts (prompt_vocab=None)")
            return None
        M, V = cfg["prompt_length"], len(cfg["prompt_vocab"])
        if tokens is None:
            return np.zeros((N, M), dtype=np.int64)                # the null prompt: all padding
        tokens = np.asarray(tokens.get() if hasattr(tokens, "get") else tokens)
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.shape != (N, M):
            raise ValueError(f"tokens must be an integer array of shape ({N}, {M}), got {tokens.dtype} shape {tokens.shape}")
        if N and (tokens.min() < 0 or tokens.max() >= V):
            raise ValueError(f"tokens must lie in 0..{V - 1} (the vocabulary's ids), got {tokens.min()}..{tokens.max()}")
        return tokens.astype(np.int64, copy=False)

    def forward(self, x, t, y=None, *, tokens=None, keep_cache=True, rng=None):
        """ε̂(x_t, t[, y]) of shape (N, in_channels, image_size, image_size) (2·in_channels with learn_sigma).

        Args:
            x: (N, in_channels, image_size, image_size) float array (cast to the net's dtype).
            t: int array (N,) (or one int) of timesteps, passed to the embedding as is.
            y: None or int array (N,) of labels in 0..num_classes (num_classes = null label);
                None with num_classes set means all-null.
            tokens: a prompt model's token ids, int array (N, prompt_length) in 0..len(prompt_vocab)−1
                (``ddpm_ref.prompts.tokenize``); None means the null prompt (all padding, id 0).
            keep_cache: keep what ``backward`` needs (training). False for sampling: less memory,
                and ``backward`` then raises.
            rng: numpy.random.Generator for dropout; dropout acts only when keep_cache is True,
                rng is given and dropout > 0.

        With ``workers`` > 1 the batch is split into that many shards that run in parallel
        threads (see ``ddpm_ref.models.parallel``); dropout then draws each shard's mask from its own
        generator, seeded from ``rng``.
        """
        x, t, y, tokens = self._check_inputs(x, t, y, tokens)
        x = array_module(self.params["time.linear1.w"]).asarray(x)
        dropout_on = keep_cache and rng is not None and self.config["dropout"] > 0
        shards = self._shards(x.shape[0])
        rngs = [rng] * len(shards)
        if dropout_on and len(shards) > 1:
            rngs = [np.random.default_rng(s) for s in rng.integers(2 ** 63, size=len(shards))]

        def run(i):
            s = shards[i]
            return self._run(x[s], t[s], None if y is None else y[s], None if tokens is None else tokens[s],
                             keep_cache, rngs[i] if dropout_on else None)

        outs = map_shards(run, len(shards))
        eps = outs[0][0] if len(outs) == 1 else array_module(x).concatenate([e for e, _ in outs])
        self._tape = {"shards": shards, "tapes": [tape for _, tape in outs],
                      "out_shape": eps.shape} if keep_cache else None
        if not bool(array_module(eps).isfinite(eps).all()):     # one pass over ε̂: x's size
            raise ValueError("ε̂ is not finite although x is: the parameters (net.params) hold NaN or "
                             "±inf (did training diverge?), or |x| is too large for the network")
        return eps

    __call__ = forward

    def _shards(self, n):
        """Batch slices for the shards (one unless ``workers`` > 1 and the NumPy reference runs)."""
        parallel = (self.workers > 1 and self.ops is numpy_ops()
                    and array_module(self.params["time.linear1.w"]) is np)
        return shard_slices(n, self.workers) if parallel and n > 1 else [slice(0, n)]

    def _run(self, x, t, y, tokens, keep_cache, rng):
        """One pass through the plan: returns (ε̂, tape), the tape None without keep_cache.

        Each step of the plan is a named record (``unet_plan.py``) and each calls its block by
        name (``unet_blocks.py``); the skips are a stack, pushed in the encoder and popped by
        the decoder's concatenations.
        """
        p, ops, groups = self.params, self.ops, self.config["groups"]
        dropout = self.config["dropout"] if rng is not None else 0.0
        e, c_time = time_mlp_forward(t, p["time.linear1.w"], p["time.linear1.b"],
                                     p["time.linear2.w"], p["time.linear2.b"])
        c_class = None
        if y is not None:
            e_class, c_class = class_embedding_forward(y, p["class_emb.table"])
            e = e + e_class
        emb_act, c_act = silu_forward(e)                          # every ResBlock reads silu(e)
        ctx = c_prompt = None
        if tokens is not None:                                     # c = table[tokens]: (N, M, E)
            ctx, c_prompt = token_embedding_forward(tokens, p["prompt_emb.table"])

        h, skips, steps = x, [], []
        for step in self.plan:
            cache = None
            match step:
                case InConvStep(name=name):
                    h, cache = conv3x3_forward(h, p, name, ops=ops, stride=1)
                case DownsampleStep(name=name):
                    h, cache = conv3x3_forward(h, p, name, ops=ops, stride=2)
                case ResBlockStep(name=name):
                    h, cache = resblock_forward(h, emb_act, p, name, groups=groups, ops=ops,
                                                dropout=dropout, rng=rng)
                case AttentionStep(name=name):
                    h, cache = attention_block_forward(h, p, name, groups=groups, ops=ops)
                case CrossAttentionStep(name=name):                # every cross-attention reads c
                    h, cache = cross_attention_block_forward(p, name, h, ctx, groups=groups, ops=ops)
                case PushSkip():
                    skips.append(h)
                case ConcatSkip():
                    h, cache = concat_forward(h, skips.pop())     # [h | s], s the last skip pushed
                case UpsampleStep(name=name):
                    h, cache = upsample_block_forward(h, p, name, ops=ops)
                case OutStep(name=name):
                    h, cache = out_block_forward(h, p, name, groups=groups, ops=ops)
            if keep_cache:
                steps.append((step, cache))
        tape = ({"steps": steps, "time": c_time, "class": c_class, "act": c_act, "prompt": c_prompt}
                if keep_cache else None)
        return array_module(h).ascontiguousarray(h), tape

    # ------------------------------------------------------------ backward

    def backward(self, d_eps):
        """Gradients of sum(d_eps · ε̂) for the last ``forward``: a dict with the keys of ``params``.

        Also sets ``self.d_input``, the gradient with respect to x_t.

        Raises:
            ValueError: no cached forward pass (never run, or run with keep_cache=False), or
                d_eps does not have ε̂'s shape, is not a float array or is not finite.
        """
        if self._tape is None:
            raise ValueError("backward needs a forward pass run with keep_cache=True just before it")
        shards, tapes = self._tape["shards"], self._tape["tapes"]
        if not hasattr(d_eps, "shape") or tuple(d_eps.shape) != tuple(self._tape["out_shape"]):
            raise ValueError(f"d_eps must have ε̂'s shape {tuple(self._tape['out_shape'])}, "
                             f"got {tuple(getattr(d_eps, 'shape', ()))}")
        if not hasattr(d_eps, "dtype") or not np.issubdtype(d_eps.dtype, np.floating):
            raise ValueError(f"d_eps must be a float array, got {getattr(d_eps, 'dtype', type(d_eps).__name__)}")
        xp = array_module(self.params["time.linear1.w"])
        d_eps = xp.asarray(d_eps, dtype=self.dtype)
        if not bool(xp.isfinite(d_eps).all()):
            raise ValueError("d_eps must be finite; it holds NaN or ±inf")
        outs = map_shards(lambda i: self._backprop(tapes[i], d_eps[shards[i]]), len(shards))
        grads = outs[0][0]
        for g, _ in outs[1:]:                                 # parameters: sum over the shards
            for k in grads:
                grads[k] += g[k]
        self.d_input = outs[0][1] if len(outs) == 1 else xp.concatenate([d for _, d in outs])
        return grads

    def _backprop(self, tape, d_eps):
        """Walk one tape backwards: returns (parameter gradients, dL/dx)."""
        g = {}
        dh, d_skips, d_emb_act, d_ctx = d_eps, [], 0, 0
        for step, cache in reversed(tape["steps"]):
            match step:
                case OutStep():
                    dh = out_block_backward(dh, cache, g)
                case UpsampleStep():
                    dh = upsample_block_backward(dh, cache, g)
                case ConcatSkip():
                    dh, d_skip = concat_backward(dh, cache)
                    d_skips.append(d_skip)                   # held until we reach its PushSkip
                case PushSkip():
                    dh = dh + d_skips.pop()                  # the skip's path joins the main path
                case AttentionStep():
                    dh = attention_block_backward(dh, cache, g)
                case CrossAttentionStep(name=name):
                    dh, dc = cross_attention_block_backward(dh, cache, name, g)
                    d_ctx = d_ctx + dc                       # every cross-attention read c
                case ResBlockStep():
                    dh, d_e = resblock_backward(dh, cache, g)
                    d_emb_act = d_emb_act + d_e              # every ResBlock read silu(e)
                case InConvStep() | DownsampleStep():
                    dh = conv3x3_backward(dh, cache, g)
        d_e = silu_backward(d_emb_act, tape["act"])
        if tape["class"] is not None:
            g["class_emb.table"] = class_embedding_backward(d_e, tape["class"])
        if tape["prompt"] is not None:
            g["prompt_emb.table"] = token_embedding_backward(d_ctx, tape["prompt"])
        g["time.linear1.w"], g["time.linear1.b"], g["time.linear2.w"], g["time.linear2.b"] = \
            time_mlp_backward(d_e, tape["time"])
        return {k: g[k] for k in self.params}, dh
