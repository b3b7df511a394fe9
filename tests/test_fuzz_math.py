"""Every public function of the math modules, fuzzed (issue 9, item 6): a finite result, or a
ValueError/TypeError whose message names one of the function's arguments. Never NaN, ±inf, a
NumPy warning, or another exception.

Inputs are drawn wide on purpose: shapes with empty axes, dtypes int/bool/complex/float16 beside
float32/float64, NaN and ±inf, magnitudes up to each dtype's limit, t outside 1..T, t as a float, a
bool, None or a string, mismatched shapes. Most draws are invalid; a share of them is valid (values
in [−1, 1], t in range) so that the math itself runs and its results are checked too.

derandomize=True: the examples are the same on every run, so CI is deterministic; a new failing
example appears only when the code (or this file) changes.
"""

import inspect
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ddpm_ref import diffusion, elbo, embeddings, likelihood, schedules
from ddpm_ref.schedules import Schedule, make_schedule

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SCHEDULES = [
    make_schedule("linear", 10),
    make_schedule("cosine", 6),
    make_schedule("sigmoid", 8, input_scale=0.5),
    Schedule.from_betas([0.3, 0.6, 1.0]),        # ᾱ_3 = 0: x_0 cannot be recovered at t = 3
    make_schedule("cosine_chen", 1),
    schedules.rescale_zero_terminal_snr(make_schedule("linear", 10)),   # ᾱ_10 = 0 exactly: x0/v steps run at T
]
SCHEDULE_ARRAYS = ("betas", "alphas", "alpha_bars", "alpha_bars_prev", "sqrt_alpha_bars", "sqrt_one_minus_alpha_bars",
                   "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef_x0",
                   "posterior_mean_coef_xt", "eps_coef")
DTYPES = [np.float64, np.float64, np.float32, np.float32, np.float16, np.int64, np.int8, np.bool_, np.complex128]


# ------------------------------------------------------------------ the property
def _leaves(out):
    if isinstance(out, dict):
        for v in out.values():
            yield from _leaves(v)
    elif isinstance(out, (tuple, list)):
        for v in out:
            yield from _leaves(v)
    elif isinstance(out, Schedule):
        for key in SCHEDULE_ARRAYS:
            yield getattr(out, key)
    else:
        yield out


def finite_or_named_error(call, names):
    """Run call(); it must return only finite numbers, or raise ValueError/TypeError naming one of ``names``.

    A NumPy overflow/invalid warning is accepted on the way to such an error (an intermediate went
    to ±inf and the function then refused the result), not beside a returned value, where it means
    an inf or NaN was hidden somewhere in the computation; a ComplexWarning (an imaginary part
    dropped) is never accepted.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
        except (ValueError, TypeError) as e:
            message = str(e)
            assert any(re.search(rf"(?<![\w.]){re.escape(n)}(?![\w])", message) for n in names), \
                f"{type(e).__name__} does not name any of {names}: {message}"
            assert not [w for w in caught if issubclass(w.category, np.exceptions.ComplexWarning)]
            return None
    assert not caught, [str(w.message) for w in caught]
    for leaf in _leaves(out):
        arr = np.asarray(leaf)
        assert arr.dtype.kind in "biuf", f"non-numeric result {arr.dtype}"
        assert np.all(np.isfinite(arr)), f"non-finite result: {arr}"
    return out


# ------------------------------------------------------------------ strategies
@st.composite
def arrays(draw, shape, kinds=("nice", "wild", "huge")):
    """An array of a drawn dtype: 'nice' values in [−1, 1], 'wild' anything the dtype holds (NaN, ±inf,
    subnormals), 'huge' values near the dtype's largest finite number."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    kind = draw(st.sampled_from(kinds + ("nice",) if "nice" in kinds else kinds))   # valid values more often
    elements = None
    if dtype.kind == "f":
        width = dtype.itemsize * 8
        big = float(np.finfo(dtype).max)
        if kind == "nice":
            elements = st.floats(-1, 1, width=width)
        elif kind == "huge":
            elements = st.sampled_from([big, -big, big / 3, -big / 3, float(np.float64(big) ** 0.5), 1e-300 if width == 64 else 0.0])
    elif dtype.kind in "iu" and kind == "nice":
        elements = st.integers(-1, 1)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def shapes(base):
    """Mostly the example's common shape, sometimes another one (including empty axes and 0-D)."""
    return st.one_of(st.just(base), st.just(base), st.just(base),
                     hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))


def timesteps(T, n, lowest=1):
    good_scalar = st.integers(lowest, max(T, lowest))
    return st.one_of(
        good_scalar, good_scalar,
        hnp.arrays(np.int64, (n,), elements=st.integers(lowest, max(T, lowest))),
        st.integers(-3, T + 3),
        hnp.arrays(np.int64, (n,), elements=st.integers(-3, T + 3)),
        hnp.arrays(np.int64, (n + 1,), elements=st.integers(lowest, max(T, lowest))),
        hnp.arrays(np.int64, (1, n), elements=st.integers(lowest, max(T, lowest))),
        st.floats(allow_nan=True, allow_infinity=True), st.just(2.0), st.booleans(), st.none(), st.just("3"),
        hnp.arrays(np.float64, (n,), elements=st.floats(0, T)),
    )


REALS = st.one_of(st.floats(-3, 3), st.floats(1e-3, 10), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([0.0, 1e-310, 5e-324, 1e308, -1e308, 1e154, 0.03125, 1.5, 2.0]),
                  st.integers(-3, 3), st.booleans(), st.none(), st.just("1"), st.just(1 + 2j))

EPS_MODELS = [
    lambda xt, t: np.zeros_like(xt),
    lambda xt, t: 0.5 * xt,
    lambda xt, t: np.full_like(xt, 1e300),
    lambda xt, t: np.full_like(xt, np.nan),
    lambda xt, t: np.zeros(xt.shape + (1,)),
    lambda xt, t: "not an array",
    "not callable",
]


def draw_argument(data, name, ctx):
    """One value for the parameter called ``name``; ctx holds the schedule's T and the common shape."""
    T, base, n = ctx["T"], ctx["shape"], ctx["n"]
    image_names = ("x0", "x_prev", "xt", "noise", "eps", "eps_pred", "z", "x", "mean",
                   "mean1", "logvar1", "mean2", "logvar2", "log_scale", "gamma", "pred", "v_sigma")
    if name in image_names:
        if name in ("z", "v_sigma") and data.draw(st.booleans()):
            return None
        return data.draw(arrays(data.draw(shapes(base))))
    draws = {
        "t": lambda: timesteps(T, n),
        "t_prev": lambda: timesteps(T, n, lowest=0),
        "eta": lambda: st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), REALS),
        "variance": lambda: st.sampled_from(["fixed_small", "fixed_large", "learned", None]),
        "clip_x0": lambda: st.booleans(),
        "eps_model": lambda: st.sampled_from(EPS_MODELS),
        "rng": lambda: st.one_of(st.integers(-1, 3), st.just(np.random.default_rng(0)), st.floats(), st.none()),
        "num_t": lambda: st.one_of(st.integers(-1, T + 2), st.floats(0, T), st.none()),
        "return_terms": lambda: st.booleans(),
        "progress": lambda: st.just(False),
        "k": lambda: st.one_of(arrays(data.draw(shapes((n,)))), hnp.arrays(np.int64, (n,), elements=st.integers(0, 5000))),
        "d": lambda: st.one_of(st.integers(-2, 12), st.sampled_from([2, 4, 6, 8]), st.floats(), st.booleans(), st.none()),
        "n": lambda: st.one_of(st.just(10000.0), REALS),
        "dtype": lambda: st.sampled_from(["float64", "float32", np.float16, "int32", "no-such-dtype", None]),
        "order": lambda: st.sampled_from(["sin_cos", "cos_sin", "sin|cos", None]),
        "frequency_spacing": lambda: st.sampled_from(["d", "d/2-1", "d-1"]),
        "prediction": lambda: st.sampled_from(["eps", "x0", "v", "x0", "v", "epsilon", None]),
        "clip_range": lambda: st.one_of(st.sampled_from([1.0, 0.5, 2.0]), REALS),
        "threshold": lambda: st.sampled_from([None, "dynamic", "dynamic", "static"]),
        "percentile": lambda: st.one_of(st.sampled_from([0.995, 0.5, 1.0]), REALS),
        "alpha_bar_prev": lambda: st.one_of(st.none(), st.floats(0, 1), REALS),
        "use_clipped_model_output": lambda: st.booleans(),
        "T": lambda: st.one_of(st.integers(-1, 20), st.just(T), REALS),
        "steps": lambda: st.one_of(st.integers(-1, T + 2), REALS),
        "spacing": lambda: st.sampled_from(["linspace", "leading", "trailing", "uniform", None]),
        "steps_offset": lambda: st.one_of(st.integers(-1, 3), REALS),
    }
    return data.draw(draws[name]())


def draw_sched(data):
    sched = data.draw(st.sampled_from(SCHEDULES + ["linear"]))
    return sched, (sched.T if isinstance(sched, Schedule) else 10)


# ------------------------------------------------------------------ the math modules' public functions
DIFFUSION = [diffusion.q_step, diffusion.q_sample, diffusion.q_posterior, diffusion.predict_x0,
             diffusion.p_mean_variance, diffusion.ddpm_step, diffusion.ddim_step, diffusion.ddim_sigma,
             diffusion.loss_simple, diffusion.loss_simple_grad, diffusion.training_target, diffusion.v_target,
             diffusion.eps_from_prediction, diffusion.x0_from_prediction, diffusion.sampling_timesteps,
             schedules.rescale_zero_terminal_snr]
ELBO = [elbo.prior_bpd, elbo.vb_term_bpd, elbo.vlb_terms, elbo.vlb_estimate]
LIKELIHOOD = [likelihood.normal_kl, likelihood.discretized_gaussian_log_likelihood, likelihood.log_ndtr]
EMBEDDINGS = [embeddings.embedding_frequencies, embeddings.sinusoidal_embedding,
              embeddings.sinusoidal_embedding_halves, embeddings.interleaved_to_halves]


def test_every_public_function_is_fuzzed():
    """A public function added to a math module must be added here too."""
    fuzzed = {f.__name__ for f in DIFFUSION + ELBO + LIKELIHOOD + EMBEDDINGS}
    fuzzed |= {"gamma_linear", "gamma_cosine", "gamma_sigmoid", "logsnr", "make_schedule", "Schedule"}
    fuzzed |= {"VARIANCES", "SCHEDULE_NAMES", "SCHEDULE_DEFAULTS", "GAMMA_MIN", "BIN_HALF_WIDTH",   # constants
               "PREDICTIONS", "THRESHOLDS"}
    for module in (diffusion, elbo, likelihood, embeddings, schedules):
        assert set(module.__all__) <= fuzzed, (module.__name__, set(module.__all__) - fuzzed)


def _call_with_drawn_arguments(data, fn, ctx):
    params = inspect.signature(fn).parameters
    kwargs = {}
    for name, p in params.items():
        if name in ("sched", "schedule"):
            kwargs[name] = ctx["sched"]
        elif p.default is inspect.Parameter.empty or data.draw(st.booleans()):
            kwargs[name] = draw_argument(data, name, ctx)
    return finite_or_named_error(lambda: fn(**kwargs), list(params))


@pytest.mark.parametrize("fn", DIFFUSION + ELBO + LIKELIHOOD + EMBEDDINGS, ids=lambda f: f.__name__)
@FUZZ
@given(data=st.data())
def test_fuzz(fn, data):
    sched, T = draw_sched(data)
    if fn in ELBO[2:]:                           # the whole bound calls the model T times: keep T small
        sched, T = data.draw(st.sampled_from([(s, s.T) for s in SCHEDULES if s.T <= 8] + [("linear", 10)]))
    n = data.draw(st.integers(0, 3))
    trailing = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    _call_with_drawn_arguments(data, fn, {"sched": sched, "T": T, "n": n, "shape": (n, *trailing)})


TAUS = st.one_of(st.floats(1e-320, 1e-300), st.floats(1e-3, 0.1), st.floats(0.1, 100), st.floats(1e300, 1e308))


@st.composite
def gamma_parameters(draw, fn):
    """(start, end, tau): mostly ordered and in range for fn (σ or cos^(2τ) saturating when τ is small or
    huge), sometimes anything at all."""
    if draw(st.integers(0, 3)) == 0:
        return draw(REALS), draw(REALS), draw(REALS)
    lo, hi = (0.0, 1.0) if fn is schedules.gamma_cosine else (-5.0, 5.0)
    start, end = sorted(draw(st.lists(st.floats(lo, hi), min_size=2, max_size=2, unique=True)))
    return start, end, draw(TAUS)


@FUZZ
@given(data=st.data(), fn=st.sampled_from([schedules.gamma_linear, schedules.gamma_cosine, schedules.gamma_sigmoid]),
       t=st.one_of(st.floats(0, 1), hnp.arrays(np.float64, st.integers(0, 4), elements=st.floats(0, 1)), REALS))
def test_fuzz_gamma(data, fn, t):
    if fn is schedules.gamma_linear:
        finite_or_named_error(lambda: fn(t), ["t"])
    else:
        start, end, tau = data.draw(gamma_parameters(fn))
        finite_or_named_error(lambda: fn(t, start, end, tau), ["t", "start", "end", "tau"])


@FUZZ
@given(gamma=st.one_of(st.floats(0, 1), REALS, hnp.arrays(np.float64, st.integers(0, 4), elements=st.floats(0, 1))))
def test_fuzz_logsnr(gamma):
    """logsnr is documented to give ±inf at γ = 1 and 0 (log of 0): only the open interval must be finite."""
    try:
        out = schedules.logsnr(gamma)
    except (ValueError, TypeError) as e:
        assert re.search(r"\bgamma\b", str(e)), str(e)
        return
    g = np.asarray(gamma, dtype=np.float64)
    assert np.all(np.isfinite(out[(g > 0) & (g < 1)] if out.ndim else (out if 0 < g < 1 else 0.0)))
    assert not np.any(np.isnan(out))


@FUZZ
@given(name=st.sampled_from(list(schedules.SCHEDULE_NAMES) + ["cosin", None]),
       T=st.one_of(st.integers(-1, 60), st.floats(), st.booleans(), st.none()),
       params=st.dictionaries(st.sampled_from(["beta_start", "beta_end", "s", "max_beta", "start", "end", "tau",
                                              "input_scale", "bogus"]), REALS, max_size=3))
def test_fuzz_make_schedule(name, T, params):
    finite_or_named_error(lambda: make_schedule(name, T, **params), ["name", "T", "betas", *params])


@FUZZ
@given(betas=st.one_of(hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]),
                                  hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5)),
                       hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(1e-20, 1)),
                       st.lists(REALS, max_size=4)),
       input_scale=REALS)
def test_fuzz_schedule_from_betas(betas, input_scale):
    finite_or_named_error(lambda: Schedule.from_betas(betas, input_scale=input_scale), ["betas", "input_scale"])
