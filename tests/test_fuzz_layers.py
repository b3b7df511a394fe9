"""Property-based fuzzing (hypothesis) of every public function of ddpm_ref.nn, ddpm_ref.models and
ddpm_ref.data (issue 9, items 5 and 6).

The property, for every call: either it returns, and every number in the result is finite, or it
raises ``ValueError``/``TypeError`` whose message names one of the function's arguments (as a
word: ``x``, ``w1``, ``noise``, ...; for a file, the file's path). Any other exception
(ZeroDivisionError, AttributeError, KeyError, IndexError, NumPy's UFuncTypeError without a
name, MemoryError) fails the test, and so does a non-finite number from finite inputs.

One documented exception: the layers (``ddpm_ref.nn``) do not scan values
(``ddpm_ref/nn/_validate.py`` says why), so NaN or ±inf *in* may give NaN or ±inf *out*, and so
may finite inputs so large that a sum of products overflows the dtype. For those two input
regimes ("special" and "huge" below) only the exception half of the property is checked for the
layers. The model checks its input and its output (``UNet.forward``), and the data functions
check their arguments, so for them the whole property holds in every regime.

Inputs: random shapes, including empty axes; dtypes float32, float64, float16, int64, bool and
complex128; values of three regimes: "moderate" (|v| ≲ 30: no exact result here can overflow
float32, so a non-finite output is a bug), "huge" (1e15 .. 1e300 and 1e-300) and "special" (a
few NaN / ±inf entries). Arguments that are not arrays get the same treatment with odd Python
values (None, strings, booleans, NaN, negative and huge numbers).

One file of about 500 lines, past the house's ~400: it states one property once and then
enumerates the public functions of three packages; split, the property and its strategies would
have to be read in one place and applied in another.

Settings: ``derandomize=True`` (the same examples on every run: a failure is reproducible and
CI is not flaky), ``deadline=None`` (a shared 2-core machine stalls at random), and a number of
examples per test chosen to keep the file at about a minute on 2 cores.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ddpm_ref.nn as nn
from ddpm_ref import data
from ddpm_ref.models.mlp import MLP
from ddpm_ref.models.parallel import map_shards, shard_slices
from ddpm_ref.models.unet import UNet
from ddpm_ref.models.unet_plan import build_plan, check_config
from ddpm_ref.nn.init import fans
from ddpm_ref.schedules import make_schedule

# NaN, ±inf and overflowing inputs are the point here: NumPy's RuntimeWarnings about them are noise
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FUZZ = settings(derandomize=True, deadline=None, max_examples=60, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FEW = settings(FUZZ, max_examples=25)

DTYPES = ["float32", "float64", "float16", "int64", "bool", "complex128"]
FLOATS = ["float32", "float64"]          # what the layers accept: drawn half the time, so that the
                                         # examples reach the arithmetic and not only the type checks
ODD = [None, "x", True, False, float("nan"), float("inf"), -1, 0, 1, 2, 3, 2.5, -0.5, 1e300, 10**30, [1, 2], ()]


# ---------------------------------------------------------------- the property

def _numbers(obj):
    """Every NumPy array / Python number inside a (nested) result."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (float, int, np.number)) and not isinstance(obj, bool):
        yield np.asarray(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)


def _names_an_argument(message, names, values=()):
    if any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in names):
        return True
    return any(isinstance(v, str) and v and v in message for v in values)


def outcome(fn, *args, names, finite_required=True, **kwargs):
    """Call fn; assert the property; return the result (None when it raised as allowed)."""
    try:
        result = fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert _names_an_argument(message, names, (*args, *kwargs.values())), (
            f"{fn.__name__} raised {type(err).__name__} naming none of {names}: {message!r}")
        return None
    if finite_required:
        for a in _numbers(result):
            if a.dtype.kind in "fc":
                assert np.all(np.isfinite(a)), f"{fn.__name__} returned a non-finite value from finite inputs"
    return result


# ---------------------------------------------------------------- strategies

@st.composite
def arrays(draw, shape=None, dtypes=DTYPES, regimes=("moderate", "huge", "special"), max_side=4, ndim=None):
    """(array, regime): random shape (with empty axes), dtype and values."""
    if shape is None:
        nd = draw(st.integers(0, 4)) if ndim is None else ndim
        shape = tuple(draw(st.integers(0, max_side)) for _ in range(nd))
    dtype = np.dtype(draw(st.sampled_from(dtypes if draw(st.booleans()) else FLOATS)))
    regime = draw(st.sampled_from(regimes))
    g = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = g.standard_normal(shape) * 3
    if regime == "huge":
        v = v * draw(st.sampled_from([1e15, 1e30, 1e100, 1e300, 1e-300]))
    elif regime == "special" and v.size:
        idx = g.integers(0, v.size, max(1, v.size // 5))
        v.reshape(-1)[idx] = g.choice([np.nan, np.inf, -np.inf], len(idx))
    with np.errstate(all="ignore"):
        if dtype.kind == "b":
            a = v > 0
        elif dtype.kind in "iu":
            a = np.nan_to_num(v, nan=0, posinf=0, neginf=0).clip(-1e9, 1e9).astype(dtype)
        elif dtype.kind == "c":
            a = (v + 1j * v).astype(dtype)
        else:
            a = v.astype(dtype)
    finite = dtype.kind in "biu" or bool(np.all(np.isfinite(a)))
    return a, regime if finite and regime != "special" else "special"


def _finite_moderate(*regimes):
    return all(r == "moderate" for r in regimes)


def anything():
    return st.one_of(st.sampled_from(ODD), arrays().map(lambda ar: ar[0]))


# ---------------------------------------------------------------- nn: element-wise and small layers

@FUZZ
@given(arrays(), st.sampled_from([-1, 0, 1, 5, None, "a"]))
def test_sigmoid_and_softmax(xr, axis):
    x, regime = xr
    outcome(nn.sigmoid, x, names=["x"], finite_required=_finite_moderate(regime))
    outcome(nn.softmax, x, axis, names=["s", "axis"], finite_required=_finite_moderate(regime))


@FUZZ
@given(st.sampled_from([None, "x", 3, [1.0, 2.0]]))
def test_sigmoid_softmax_non_arrays(x):
    outcome(nn.sigmoid, x, names=["x"])
    outcome(nn.softmax, x, names=["s"])


@FUZZ
@given(arrays(), arrays())
def test_silu(xr, dyr):
    (x, rx), (dy, rdy) = xr, dyr
    res = outcome(nn.silu_forward, x, names=["x"], finite_required=_finite_moderate(rx))
    if res is not None:
        outcome(nn.silu_backward, dy, res[1], names=["dy", "cache"], finite_required=_finite_moderate(rx, rdy))
        dy2 = np.ones_like(res[0])
        outcome(nn.silu_backward, dy2, res[1], names=["dy", "cache"], finite_required=_finite_moderate(rx))


@FUZZ
@given(arrays(max_side=3), arrays(ndim=2, max_side=3), st.one_of(st.none(), arrays(ndim=1, max_side=3)))
def test_linear(xr, wr, br):
    (x, rx), (w, rw) = xr, wr
    b, rb = br if br is not None else (None, "moderate")
    fin = _finite_moderate(rx, rw, rb)
    res = outcome(nn.linear_forward, x, w, b, names=["x", "w", "b"], finite_required=fin)
    if res is not None:
        outcome(nn.linear_backward, np.ones_like(res[0]), res[1], names=["dy", "cache"], finite_required=fin)


@FUZZ
@given(arrays(ndim=4, max_side=4), st.sampled_from([1, 2, 3, 0, -1, 2.0, None]),
       st.sampled_from([1e-5, 0.0, -1e-5, 1e-300, float("nan"), float("inf"), None]), st.booleans(),
       st.booleans())
def test_groupnorm_and_fused(xr, groups, eps, constant, valid_groups):
    x, rx = xr
    if valid_groups and x.ndim == 4 and x.shape[1]:
        groups = x.shape[1]                            # a divisor of C: the arithmetic runs
    if constant and x.size:
        x = np.full_like(x, x.reshape(-1)[0])          # σ² = 0: only eps keeps 1/√(σ² + eps) finite
    C = x.shape[1]
    gamma, beta = np.ones(C, x.dtype) if x.dtype.kind == "f" else np.ones(C), np.zeros(C, x.dtype)
    for fwd, bwd in [(nn.groupnorm_forward, nn.groupnorm_backward),
                     (nn.groupnorm_silu_forward, nn.groupnorm_silu_backward)]:
        res = outcome(fwd, x, gamma, beta, groups, eps, names=["x", "gamma", "beta", "groups", "eps"],
                      finite_required=_finite_moderate(rx))
        if res is not None:
            outcome(bwd, np.ones_like(res[0]), res[1], names=["dy", "cache"], finite_required=_finite_moderate(rx))


@FUZZ
@given(arrays(), st.sampled_from([0.0, 0.3, 0.99, 1.0, -0.1, float("nan"), None, True]),
       st.sampled_from(["gen", None, 3]))
def test_dropout(xr, p, rng):
    x, rx = xr
    g = np.random.default_rng(0) if rng == "gen" else rng
    res = outcome(nn.dropout_forward, x, p, g, names=["x", "p", "rng"], finite_required=_finite_moderate(rx))
    if res is not None:
        outcome(nn.dropout_backward, np.ones_like(res[0]), res[1], names=["dy", "cache"])
        outcome(nn.dropout_backward, None, res[1], names=["dy", "cache"])


@FUZZ
@given(arrays(ndim=4, max_side=3), arrays(ndim=4, max_side=3))
def test_add_concat_upsample(ar, br):
    (a, ra), (b, rb) = ar, br
    fin = _finite_moderate(ra, rb)
    for fwd, bwd, args in [(nn.add_forward, nn.add_backward, (a, b)), (nn.add_forward, nn.add_backward, (a, a)),
                           (nn.concat_forward, nn.concat_backward, (a, b)),
                           (nn.upsample_forward, nn.upsample_backward, (a,))]:
        names = ["a", "b"] if len(args) == 2 else ["x"]
        res = outcome(fwd, *args, names=names, finite_required=fin)
        if res is not None:
            outcome(bwd, np.ones_like(res[0]), res[1], names=["dy", "cache"])
            outcome(bwd, None, res[1], names=["dy", "cache"])


# ---------------------------------------------------------------- nn: convolution and attention

@FUZZ
@given(arrays(ndim=4, max_side=4), arrays(ndim=4, max_side=3), st.booleans(),
       st.sampled_from([1, 2, 0, -1, 1.0, None]), st.sampled_from([0, 1, 2, -1, None]))
def test_conv2d(xr, wr, bias, stride, padding):
    (x, rx), (w, rw) = xr, wr
    b = np.zeros(w.shape[0], w.dtype) if bias else None
    fin = _finite_moderate(rx, rw)
    res = outcome(nn.conv2d_forward, x, w, b, stride, padding, names=["x", "w", "b", "stride", "padding"],
                  finite_required=fin)
    if res is not None:
        outcome(nn.conv2d_backward, np.ones_like(res[0]), res[1], names=["dy", "cache"], finite_required=fin)
        foreign = {"op": "conv2d"} if x.size % 2 else {k: v for k, v in res[1].items() if k != "xpad"}
        outcome(nn.conv2d_backward, np.ones_like(res[0]), foreign, names=["dy", "cache"])
    if x.ndim == 4 and w.ndim == 4 and x.size <= 48 and w.size <= 36:      # the loops: small shapes
        res = outcome(nn.conv2d_forward_plain, x, w, b, stride, padding,
                      names=["x", "w", "b", "stride", "padding"], finite_required=fin)
        if res is not None:
            outcome(nn.conv2d_backward_plain, np.ones_like(res[0]), res[1], names=["dy", "cache"],
                    finite_required=fin)


@FUZZ
@given(anything(), anything(), anything(), anything())
def test_conv2d_output_size(size, kernel, stride, padding):
    outcome(nn.conv2d_output_size, size, kernel, stride, padding, names=["size", "kernel", "stride", "padding"])


@FUZZ
@given(arrays(ndim=3, max_side=4), st.sampled_from(["same", "k_short", "v_f32"]))
def test_attention(qr, variant):
    q, rq = qr
    k, v = q.copy(), q[::-1].copy()
    if variant == "k_short":
        k = k[:, :-1]
    elif variant == "v_f32" and v.dtype != np.float32:
        v = v.astype(np.float32)
    fin = _finite_moderate(rq)
    for fwd, bwd in [(nn.attention_forward, nn.attention_backward),
                     (nn.attention_forward_plain, nn.attention_backward_plain)]:
        res = outcome(fwd, q, k, v, names=["q", "k", "v"], finite_required=fin)
        if res is not None:
            outcome(bwd, np.ones_like(res[0]), res[1], names=["do", "cache"], finite_required=fin)
            if fwd is nn.attention_forward:        # the plain version: see test_plain_hand_made_cache
                outcome(bwd, np.ones_like(res[0]), {"op": res[1]["op"]}, names=["do", "cache"])


@FUZZ
@given(arrays(ndim=4, max_side=3), st.sampled_from([(2, None, 3, 3), (2, None, 2, 3), (0, None, 3, 3)]),
       st.booleans(), st.sampled_from(["nn", None]))
def test_upsample_conv(xr, wshape, bias, ops):
    x, rx = xr
    C = x.shape[1]
    w = np.ones((wshape[0], C, *wshape[2:]), dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    b = np.zeros(wshape[0], w.dtype) if bias else None
    res = outcome(nn.upsample_conv_forward, x, w, b, nn if ops == "nn" else ops, names=["x", "w", "b", "ops"],
                  finite_required=_finite_moderate(rx))
    if res is not None:
        outcome(nn.upsample_conv_backward, np.ones_like(res[0]), res[1], names=["dy", "cache"],
                finite_required=_finite_moderate(rx))


# ---------------------------------------------------------------- nn: embeddings and init

@FUZZ
@given(anything(), st.sampled_from([(4, 6), (4, 5), (4, 0), (0, 6)]), st.sampled_from([(3, 4), (3, 5)]),
       st.sampled_from(["float64", "float32", "int64"]))
def test_time_mlp(t, w1_shape, w2_shape, dtype):
    w1, b1 = np.ones(w1_shape, dtype), np.zeros(w1_shape[0], dtype)
    w2, b2 = np.ones(w2_shape, dtype), np.zeros(w2_shape[0], dtype)
    names = ["t", "w1", "b1", "w2", "b2"]
    res = outcome(nn.time_mlp_forward, t, w1, b1, w2, b2, names=names)
    if res is not None:
        outcome(nn.time_mlp_backward, np.ones_like(res[0]), res[1], names=["de", "cache"])
        outcome(nn.time_mlp_backward, None, res[1], names=["de", "cache"])


@FUZZ
@given(anything(), arrays(ndim=2, max_side=4))
def test_class_embedding(y, tr):
    table, rt = tr
    res = outcome(nn.class_embedding_forward, y, table, names=["y", "table"], finite_required=_finite_moderate(rt))
    if res is not None:
        outcome(nn.class_embedding_backward, np.ones_like(res[0]), res[1], names=["de", "cache"])


@FUZZ
@given(st.sampled_from(["gen", None, 1]), st.one_of(st.sampled_from(ODD), st.lists(st.integers(-1, 4), max_size=4)),
       st.sampled_from([1.0, 0.0, -1.0, float("nan"), float("inf"), None, "1"]),
       st.sampled_from(["float32", "float64", "int64", "nonsense", None]))
def test_variance_scaling_and_fans(rng, shape, scale, dtype):
    g = np.random.default_rng(0) if rng == "gen" else rng
    outcome(nn.variance_scaling, g, shape, scale, dtype, names=["rng", "shape", "scale", "dtype"])
    outcome(fans, shape, names=["shape"])


def test_array_module_and_numpy_ops():
    """Not value functions: they return the module that a layer computes with."""
    assert nn.array_module(None) is np and nn.array_module(np.zeros(1)) is np
    assert nn.numpy_ops() is nn


# ---------------------------------------------------------------- models

TINY = dict(in_channels=1, image_size=4, base_channels=4, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(2,), groups=2, dropout=0.0, num_classes=2, dtype="float32", seed=0)
CONFIG_NAMES = ["in_channels", "image_size", "base_channels", "channel_mults", "num_res_blocks",
                "attention_resolutions", "groups", "dropout", "num_classes", "dtype", "seed", "ops", "workers"]
# TINY | {"dropout": 0.0} holds the first ten, in check_config's order


@FEW
@given(st.sampled_from(CONFIG_NAMES), st.one_of(st.sampled_from(ODD + ["float16", (1, 2, 2), (0,), (3,)]),
                                                st.integers(-2, 9)))
def test_unet_config(key, value):
    # a value can break a rule between two arguments (image_size=6 and attention at 2): any
    # argument may then be the one named
    net = outcome(UNet, **(TINY | {key: value}), names=CONFIG_NAMES)
    if net is not None:
        assert build_plan(net.config)[-1].name == "out"
    cfg = TINY | {"dropout": 0.0} | ({key: value} if key not in ("seed", "ops", "workers") else {})
    outcome(check_config, *(cfg[k] for k in CONFIG_NAMES[:10]), names=CONFIG_NAMES[:10])


_UNETS = {}


def _unet(dtype, workers):
    """A tiny U-Net with randomised weights (the zero-initialised last conv would make every
    output 0 and hide everything): built once per (dtype, workers)."""
    if (dtype, workers) not in _UNETS:
        net = UNet(**(TINY | {"dtype": dtype}), workers=workers)
        g = np.random.default_rng(0)
        net.load_params({k: v + 0.3 * g.standard_normal(v.shape) for k, v in net.params.items()})
        _UNETS[dtype, workers] = net
    return _UNETS[dtype, workers]


@FUZZ
@given(arrays(shape=None, ndim=4, max_side=4), anything(), st.one_of(st.none(), anything()),
       st.sampled_from(["float32", "float64"]), st.sampled_from([1, 2]), st.booleans())
def test_unet_forward_backward(xr, t, y, dtype, workers, good_shape):
    x, _ = xr
    if good_shape:
        x = np.resize(x, (x.shape[0], 1, 4, 4)).astype(x.dtype) if x.size else np.zeros((0, 1, 4, 4), x.dtype)
    net = _unet(dtype, workers)
    eps = outcome(net.forward, x, t, y, names=["x", "t", "y"])
    if eps is not None:
        outcome(net.backward, np.ones_like(eps), names=["d_eps"])
        d_bad = np.full_like(eps, np.nan)
        outcome(net.backward, d_bad, names=["d_eps"])


@FUZZ
@given(arrays(ndim=4, max_side=4))
def test_unet_good_shapes_any_values(xr):
    """The right shape, any dtype and values: ε̂ is finite or x is refused (one check at the
    input, one at the output: no layer scans values)."""
    x, _ = xr
    x = np.resize(x, (2, 1, 4, 4)).astype(x.dtype)
    net = _unet("float32", 1)
    eps = outcome(net.forward, x, np.array([1, 500]), np.array([0, 2]), names=["x", "t", "y"])
    if eps is not None:
        grads = outcome(net.backward, np.ones_like(eps), names=["d_eps"])
        assert grads is None or set(grads) == set(net.params)


@FEW
@given(st.sampled_from(["missing", "extra", "shape", "nan", "none", "good"]))
def test_unet_load_and_convert_params(case):
    net = UNet(**TINY)
    params = dict(net.params)
    if case == "missing":
        params.pop("in_conv.w")
    elif case == "extra":
        params["nonsense"] = np.zeros(1)
    elif case == "shape":
        params["in_conv.w"] = np.zeros(3)
    elif case == "nan":
        params = {k: np.full_like(v, np.nan) for k, v in params.items()}
    elif case == "none":
        params = None
    outcome(net.load_params, params, names=["params"])
    outcome(net.convert_params, None if case == "none" else (lambda a: a), names=["convert"])


@FEW
@given(st.sampled_from(["dim", "hidden", "depth", "emb_dim", "num_classes", "dtype", "seed"]),
       st.one_of(st.sampled_from(ODD + ["float16", "float32"]), st.integers(-2, 9)))
def test_mlp_config(key, value):
    outcome(MLP, **({"dim": 2, "hidden": 4, "depth": 1, "emb_dim": 4, "num_classes": 2} | {key: value}), names=[key])


@FUZZ
@given(arrays(ndim=2, max_side=4), anything(), st.one_of(st.none(), anything()), st.booleans())
def test_mlp_forward_backward(xr, t, y, good_shape):
    x, _ = xr
    if good_shape:
        x = np.resize(x, (3, 2)).astype(x.dtype)
        t = np.array([1, 2, 3]) if t is None else t
    net = MLP(dim=2, hidden=4, depth=1, emb_dim=4, num_classes=2, seed=0)
    net.params["out.w"][...] = 0.5                       # not the zero init: outputs depend on x
    out = outcome(net.forward, x, t, y, names=["x", "t", "y"])
    if out is not None:
        outcome(net.backward, np.ones_like(out), names=["d_out"])
        net.forward(np.zeros((out.shape[0], 2)), np.ones(out.shape[0], int), None)
        outcome(net.backward, None, names=["d_out"])


@FUZZ
@given(anything(), anything())
def test_shards(n, workers):
    slices = outcome(shard_slices, n, workers, names=["n", "workers"])
    if slices is not None:
        assert sum(s.stop - s.start for s in slices) == n
    if not isinstance(n, int) or n <= 64:      # one thread per shard: the U-Net asks for <= its batch
        outcome(map_shards, lambda i: i, n, names=["fn", "count"])


# ---------------------------------------------------------------- data

@FUZZ
@given(anything(), st.sampled_from([0, 3, -1, None, "seed", 1.5]), anything(),
       st.sampled_from(["float32", "float64", "int64", None, "nonsense"]))
def test_toy_sets(n, rng, noise, dtype):
    n = n if not isinstance(n, int) or n < 10**4 else 10**4 + 1      # no MemoryError by design here
    for fn in (data.make_moons, data.make_swiss_roll):
        outcome(fn, n, rng, noise, dtype, names=["n", "rng", "noise", "dtype"])


@FUZZ
@given(st.one_of(anything(), arrays(ndim=2, max_side=3).map(lambda ar: ar[0])), anything(),
       st.one_of(st.none(), anything()))
def test_gaussian_mixture_construction(means, stds, weights):
    outcome(data.GaussianMixture, means, stds, weights, names=["means", "stds", "weights"])


SCHED = make_schedule("linear", 20)


@FUZZ
@given(arrays(ndim=2, max_side=3), anything(), st.one_of(st.none(), anything()), st.booleans())
def test_gaussian_mixture_denoiser(xtr, t, y, good_shape):
    xt, _ = xtr
    gmm = data.GaussianMixture(means=[[-1.0, 0.0], [1.0, 0.5]], stds=[0.2, 0.3], weights=[0.4, 0.6])
    if good_shape:
        xt = np.resize(xt, (3, 2)).astype(xt.dtype)
    for fn, args in [(gmm.posterior_components, (SCHED, xt, t)), (gmm.optimal_x0, (SCHED, xt, t, y)),
                     (gmm.optimal_eps, (SCHED, xt, t, y)), (gmm.eps_model(SCHED), (xt, t, y))]:
        outcome(fn, *args, names=["sched", "xt", "t", "y"])
    outcome(gmm.posterior_components, None, xt, 3, names=["sched", "xt"])
    n = t if not isinstance(t, int) or t < 10**4 else 10**4 + 1       # no MemoryError by design here
    outcome(gmm.sample, n, 0, "float32", names=["n", "rng", "dtype"])


@FEW
@given(st.sampled_from(["train", "test", "all", "valid", None]), anything(), anything(),
       st.sampled_from(["float32", "float64", "int64"]))
def test_digits(split, seed, test_fraction, dtype):
    outcome(data.load_digits_images, split, seed, test_fraction, dtype,
            names=["split", "seed", "test_fraction", "dtype"])


@FEW
@given(st.sampled_from(["moons", "swissroll", "gmm", "cifar10", None, 3]), anything(), anything())
def test_load_dataset(name, seed, n_points):
    n_points = n_points if not isinstance(n_points, int) or n_points < 10**5 else 10**5 + 1
    ds = outcome(data.load_dataset, name, seed, n_points, names=["name", "seed", "n_points"])
    if ds is not None:
        assert ds.x.shape[0] == n_points


@FUZZ
@given(st.binary(max_size=64), st.sampled_from(["idx", "gz", "npz", "npz_obj", "npz_empty", "npz_bool"]))
def test_user_files(tmp_path_factory, raw, kind):
    import gzip

    d = tmp_path_factory.mktemp("fuzz")
    path = d / "file"
    if kind == "idx":
        path.write_bytes(b"\x00\x00" + raw)
    elif kind == "gz":
        path.write_bytes(gzip.compress(b"\x00\x00" + raw))
    else:
        path = d / "file.npz"
        arr = {"npz": np.frombuffer(raw, dtype=np.uint8)[: len(raw) // 16 * 16].reshape(-1, 4, 4),
               "npz_obj": np.array([None, 1], dtype=object), "npz_empty": np.zeros((0, 4, 4)),
               "npz_bool": np.ones((2, 4, 4), bool)}[kind]
        np.savez(path, x=arr)
    for fn in (data.load_image_file, data.read_idx):
        outcome(fn, str(path), names=["path"])
    outcome(data.load_image_file, None, names=["path"])
    outcome(data.load_image_file, str(path), str(d / "missing"), names=["path", "labels_path"])


@pytest.mark.parametrize("backward, op, dy", [
    (nn.conv2d_backward_plain, "conv2d_plain", np.ones((1, 1, 1, 1))),
    (nn.attention_backward_plain, "attention_plain", np.ones((1, 1, 1))),
])
def test_plain_hand_made_cache(backward, op, dy):
    outcome(backward, dy, {"op": op}, names=["dy", "do", "cache"])
