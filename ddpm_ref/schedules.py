r"""Noise schedules: β_t, α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s, precomputed in float64.

Layer: math (imports NumPy and other math modules only; nothing above).

Convention (the paper's, Ho et al. 2020): timesteps are t = 1..T and every array of a
``Schedule`` has length T + 1 and is indexed by t. Index 0 means "no noise": β_0 = 0, α_0 = 1,
ᾱ_0 = 1, so that x_0 is the data. *diffusers* and *improved-diffusion* index their arrays 0..T−1:
their ``alphas_cumprod[i]`` is our ``alpha_bars[i + 1]``, their ``betas[i]`` our ``betas[i + 1]``.

Families (``make_schedule(name, T, **params)``):

* ``"linear"`` (Ho et al. 2020, sec. 4): β_t = linspace(β_start, β_end, T), 1e-4 to 0.02, exactly,
  for any T. Nothing is rescaled: with small T, ᾱ_T stays far from 0 (see ``prior_bpd``).
* ``"quadratic"``: β_t = linspace(√β_start, √β_end, T)².
* ``"cosine"`` (Nichol & Dhariwal 2021, eq. 17): f(t) = cos²(((t/T + s)/(1 + s))·π/2),
  ᾱ_t = f(t)/f(0), β_t = min(1 − ᾱ_t/ᾱ_{t−1}, max_beta).
* ``"sigmoid"`` (Chen 2023, a sigmoid on ᾱ): ᾱ_t = γ_sigmoid(t/T; start, end, τ), β from the ratio.
* ``"sigmoid_beta"`` (the other "sigmoid schedule", a sigmoid on β, e.g. GeoDiff):
  β_t = σ(linspace(−6, 6, T))·(β_end − β_start) + β_start.
* ``"cosine_chen"`` (Chen 2023): ᾱ_t = γ_cosine(t/T; start, end, τ), β from the ratio.

Whatever the family, the stored ``alpha_bars`` is the cumulative product of the stored (1 − β_t),
so that clipped βs and ᾱs agree (this is what improved-diffusion does too).

Every family also takes ``input_scale`` (Chen 2023's b, default 1): the forward process becomes
x_t = √ᾱ_t·b·x_0 + √(1 − ᾱ_t)·ε. The whole chain then lives in the scaled space; the chain's
"x_0" is b·x_0 (see ``ddpm_ref.diffusion``).

Why over 400 lines: every schedule family of the lessons (Ho's linear, quadratic, Nichol &
Dhariwal's cosine, both sigmoids, Chen's γ(t) with its input scale, the zero-terminal-SNR rescale)
feeds one ``Schedule`` whose named arrays are checked once, here; its checks sit at the end.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from ddpm_ref._checks import check_choice, check_positive_int

__all__ = [
    "Schedule",
    "make_schedule",
    "SCHEDULE_NAMES",
    "SCHEDULE_DEFAULTS",
    "gamma_linear",
    "gamma_cosine",
    "gamma_sigmoid",
    "logsnr",
    "GAMMA_MIN",
    "rescale_zero_terminal_snr",
]

GAMMA_MIN = 1e-9  # Chen 2023 clips every γ(t) to [1e-9, 1]

# name -> its parameters and their defaults (input_scale is accepted by every family).
SCHEDULE_DEFAULTS: dict[str, dict[str, float]] = {
    "linear": {"beta_start": 1e-4, "beta_end": 0.02},
    "quadratic": {"beta_start": 1e-4, "beta_end": 0.02},
    "cosine": {"s": 0.008, "max_beta": 0.999},
    "sigmoid": {"start": -3.0, "end": 3.0, "tau": 1.0, "max_beta": 0.999},
    "sigmoid_beta": {"beta_start": 1e-4, "beta_end": 0.02},
    "cosine_chen": {"start": 0.0, "end": 1.0, "tau": 1.0, "max_beta": 0.999},
}
SCHEDULE_NAMES = tuple(SCHEDULE_DEFAULTS)


# --------------------------------------------------------------------------------------------
# The Schedule: betas in, every derived array precomputed under a name that says what it is.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Schedule:
    r"""A discrete noise schedule, every array float64 of length T + 1 indexed by t (index 0: no noise).

    Build one with ``make_schedule`` or ``Schedule.from_betas``. Arrays (read-only):

    ====================================  ====================================================
    ``betas``                             β_t (β_0 = 0)
    ``alphas``                            α_t = 1 − β_t
    ``alpha_bars``                        ᾱ_t = ∏_{s=1}^t α_s (ᾱ_0 = 1)
    ``alpha_bars_prev``                   ᾱ_{t−1} (index 0 holds 1, like index 1)
    ``sqrt_alpha_bars``                   √ᾱ_t
    ``sqrt_one_minus_alpha_bars``         √(1 − ᾱ_t)
    ``sqrt_recip_alpha_bars``             1/√ᾱ_t
    ``sqrt_recipm1_alpha_bars``           √(1/ᾱ_t − 1)   (x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε, eq. 15)
    ``sqrt_recip_alphas``                 1/√α_t
    ``eps_coef``                          β_t/√(1 − ᾱ_t)  (Algorithm 2; index 0 holds 0)
    ``posterior_variance``                β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t (eq. 7); 0 at t = 0 and t = 1
    ``posterior_log_variance_clipped``    log β̃_t, with β̃_1 (= 0, log = −∞) replaced by β̃_2
    ``posterior_mean_coef_x0``            √ᾱ_{t−1}·β_t/(1 − ᾱ_t)   (coefficient of x_0 in μ̃_t, eq. 7)
    ``posterior_mean_coef_xt``            √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t)  (coefficient of x_t)
    ``logsnr``                            log(ᾱ_t/(1 − ᾱ_t)); +∞ at t = 0
    ====================================  ====================================================

    Why the clipped log variance exists: the posterior variance is 0 at the start of the chain
    (x_0 is known exactly given x_1 and x_0), so its log is −∞; the decoder p_θ(x_0|x_1) and the
    log-space formulas need a finite value, and improved-diffusion and Ho et al. use β̃_2. With
    T = 1 there is no β̃_2 and β_1 is used instead.

    At t = 0 the posterior coefficients are defined as 1 (x_0) and 0 (x_t) so that no entry is NaN.
    """

    name: str
    T: int
    betas: np.ndarray
    input_scale: float = 1.0
    params: dict = field(default_factory=dict)

    alphas: np.ndarray = field(init=False, repr=False)
    alpha_bars: np.ndarray = field(init=False, repr=False)
    alpha_bars_prev: np.ndarray = field(init=False, repr=False)
    sqrt_alpha_bars: np.ndarray = field(init=False, repr=False)
    sqrt_one_minus_alpha_bars: np.ndarray = field(init=False, repr=False)
    sqrt_recip_alpha_bars: np.ndarray = field(init=False, repr=False)
    sqrt_recipm1_alpha_bars: np.ndarray = field(init=False, repr=False)
    sqrt_recip_alphas: np.ndarray = field(init=False, repr=False)
    eps_coef: np.ndarray = field(init=False, repr=False)
    posterior_variance: np.ndarray = field(init=False, repr=False)
    posterior_log_variance_clipped: np.ndarray = field(init=False, repr=False)
    posterior_mean_coef_x0: np.ndarray = field(init=False, repr=False)
    posterior_mean_coef_xt: np.ndarray = field(init=False, repr=False)
    logsnr: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        T = check_positive_int("T", self.T)
        betas = np.asarray(self.betas)
        if betas.dtype == bool or not np.issubdtype(betas.dtype, np.number) or np.iscomplexobj(betas):
            raise ValueError(f"betas must be real numbers, got dtype {betas.dtype}")
        betas = betas.astype(np.float64)
        if betas.shape != (T + 1,):
            raise ValueError(f"betas must have shape (T + 1,) = ({T + 1},), indexed by t, got {betas.shape}")
        if betas[0] != 0.0:
            raise ValueError(f"betas[0] must be 0 (index 0 means no noise), got {betas[0]}")
        _check_betas(betas[1:])
        b = self.input_scale
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not np.isfinite(b) or b <= 0:
            raise ValueError(f"input_scale (Chen's b) must be a finite number > 0, got {b!r}")

        with np.errstate(divide="ignore", invalid="ignore"):
            arrays = _derived_arrays(betas)
        set_ = object.__setattr__  # the dataclass is frozen
        set_(self, "T", T)
        set_(self, "input_scale", float(b))
        set_(self, "params", dict(self.params))
        set_(self, "betas", betas)
        for key, value in arrays.items():
            set_(self, key, value)
        for key in ("betas", *arrays):
            getattr(self, key).setflags(write=False)

    @classmethod
    def from_betas(cls, betas, *, name: str = "custom", input_scale: float = 1.0) -> "Schedule":
        """A schedule from β_1..β_T (length T; β_0 = 0 is prepended). Each β must lie in (0, 1]."""
        arr = np.asarray(betas)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr) or arr.ndim != 1 or arr.size < 1:
            raise ValueError(f"betas must be a non-empty 1-D array of β_1..β_T, got shape {arr.shape}, dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        _check_betas(arr)
        return cls(name=name, T=arr.size, betas=np.concatenate([[0.0], arr]), input_scale=input_scale)

    def __repr__(self) -> str:
        extra = "" if self.input_scale == 1.0 else f", input_scale={self.input_scale}"
        return f"Schedule(name={self.name!r}, T={self.T}, params={self.params}{extra})"


def _check_betas(betas: np.ndarray) -> None:
    """β_1..β_T must be finite and in (0, 1] (Ho et al.'s `assert (betas > 0).all() and (betas <= 1).all()`)."""
    if not np.all(np.isfinite(betas)):
        raise ValueError("betas hold NaN or infinite values; each β_t must be in (0, 1]")
    bad = (betas <= 0) | (betas > 1) | (1.0 - betas == 1.0)   # the last: β_t below float64's resolution at 1
    if bad.any():
        t = int(np.argmax(bad)) + 1
        raise ValueError(
            f"betas must lie in (0, 1] for t = 1..T, and be at least 1.2e-16 so that 1 - beta_t < 1 in float64; "
            f"beta_{t} = {float(betas[t - 1])!r} ({int(bad.sum())} value(s) outside)"
        )


def _derived_arrays(betas: np.ndarray) -> dict[str, np.ndarray]:
    """Every precomputed array, from β_0..β_T (float64). Index 0 is given finite values."""
    alphas = 1.0 - betas                                        # α_t
    alpha_bars = np.cumprod(alphas)                             # ᾱ_t (ᾱ_0 = α_0 = 1)
    alpha_bars_prev = np.concatenate([[1.0], alpha_bars[:-1]])  # ᾱ_{t−1}
    one_minus = 1.0 - alpha_bars
    # β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t; 0/0 at t = 0 is defined as 0.
    post_var = np.where(one_minus > 0, betas * (1.0 - alpha_bars_prev) / one_minus, 0.0)
    T = betas.size - 1
    first = post_var[2] if T >= 2 else betas[1]
    post_logvar = np.log(np.concatenate([[first, first], post_var[2:]]))
    coef_x0 = np.where(one_minus > 0, np.sqrt(alpha_bars_prev) * betas / one_minus, 1.0)
    coef_xt = np.where(one_minus > 0, np.sqrt(alphas) * (1.0 - alpha_bars_prev) / one_minus, 0.0)
    return {
        "alphas": alphas,
        "alpha_bars": alpha_bars,
        "alpha_bars_prev": alpha_bars_prev,
        "sqrt_alpha_bars": np.sqrt(alpha_bars),
        "sqrt_one_minus_alpha_bars": np.sqrt(one_minus),
        "sqrt_recip_alpha_bars": 1.0 / np.sqrt(alpha_bars),          # +∞ where ᾱ_t = 0
        "sqrt_recipm1_alpha_bars": np.sqrt(1.0 / alpha_bars - 1.0),
        "sqrt_recip_alphas": 1.0 / np.sqrt(alphas),
        "eps_coef": np.where(one_minus > 0, betas / np.sqrt(one_minus), 0.0),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_logvar,
        "posterior_mean_coef_x0": coef_x0,
        "posterior_mean_coef_xt": coef_xt,
        "logsnr": np.log(alpha_bars) - np.log(one_minus),           # +∞ at t = 0
    }


# --------------------------------------------------------------------------------------------
# Chen 2023, "On the importance of noise scheduling for diffusion models": γ(t) on t ∈ [0, 1].
# --------------------------------------------------------------------------------------------
def gamma_linear(t):
    r"""Chen 2023's linear γ(t) = 1 − t, clipped to [1e-9, 1]. γ plays the role of ᾱ at t ∈ [0, 1]."""
    t = _check_unit_time(t)
    return np.clip(1.0 - t, GAMMA_MIN, 1.0)


def gamma_cosine(t, start: float = 0.0, end: float = 1.0, tau: float = 1.0):
    r"""Chen 2023's cosine γ(t), clipped to [1e-9, 1].

    .. math::

        \gamma(t) = \frac{v_{end} - v_u}{v_{end} - v_{start}}
                  = \frac{v_u}{v_{start}} \cdot \frac{1 - v_{end}/v_u}{1 - v_{end}/v_{start}},
        \qquad v_s = \cos(s\pi/2)^{2\tau}, \quad u = t(end - start) + start

    Needs 0 ≤ start < end ≤ 1 and τ > 0. start = 0, end = 1, τ = 1 gives cos²(tπ/2), which is
    Nichol & Dhariwal's cosine without their offset s. Computed in the second form, with the ratios
    v_a/v_b = exp(2τ(log cos(aπ/2) − log cos(bπ/2))) and 1 − e^x as −expm1(x): the first form is
    0/0 when v_start and v_end both round to 1 (τ = 1e-310) or both to 0 (large τ).
    """
    t, start, end, tau = _check_gamma_cosine(t, start, end, tau)

    def log_ratio(a, b):                                  # log(v_a / v_b), finite or −∞ (τ huge)
        return tau * (2.0 * (_log_cos_half_pi(a) - _log_cos_half_pi(b)))

    u = np.clip(t * (end - start) + start, start, end)    # rounding must not put u past end
    g = np.exp(log_ratio(u, start)) * -np.expm1(log_ratio(end, u)) / -np.expm1(log_ratio(end, start))
    return np.clip(g, GAMMA_MIN, 1.0)


def gamma_sigmoid(t, start: float = -3.0, end: float = 3.0, tau: float = 1.0):
    r"""Chen 2023's sigmoid γ(t), clipped to [1e-9, 1].

    .. math::

        \gamma(t) = \frac{\sigma(E) - \sigma(X)}{\sigma(E) - \sigma(S)}
                  = \frac{1 + e^{S}}{1 + e^{X}} \cdot \frac{1 - e^{X - E}}{1 - e^{S - E}},
        \qquad S = \frac{start}{\tau},\ E = \frac{end}{\tau},\ X = \frac{t(end - start) + start}{\tau}

    Needs start < end and τ > 0. Larger τ makes the middle flatter (more steps at mid noise).
    Computed in the second form, (1 + e^S)/(1 + e^X) = exp(softplus(S) − softplus(X)) and 1 − e^x
    = −expm1(x): the first is 0/0 when σ saturates (σ(48) = σ(64) = 1.0 in float64).
    """
    t, S, E = _check_gamma_sigmoid(t, start, end, tau)
    X = np.clip((1.0 - t) * S + t * E, S, E)              # t(E − S) + S, which cannot overflow this way
    g = np.exp(np.logaddexp(0.0, S) - np.logaddexp(0.0, X)) * -np.expm1(X - E) / -np.expm1(S - E)
    return np.clip(g, GAMMA_MIN, 1.0)


def logsnr(gamma):
    r"""log SNR = log(γ/(1 − γ)) for γ (or ᾱ_t) in [0, 1]; +∞ at γ = 1, −∞ at γ = 0."""
    g = _check_logsnr(gamma)
    with np.errstate(divide="ignore"):
        return np.log(g) - np.log1p(-g)


def _log_cos_half_pi(s):
    """log cos(sπ/2) for s in [0, 1]; finite, since cos(π/2) is 6.1e-17 in float64, not 0."""
    return np.log(np.cos(np.asarray(s, dtype=np.float64) * np.pi / 2))


# ------------------------------------------------------------------ their argument checks
def _check_unit_time(t) -> np.ndarray:
    arr = np.asarray(t)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"t must be real numbers in [0, 1] (continuous time), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise ValueError("t must be finite and in [0, 1] (continuous time; use t/T for step t)")
    return arr


def _check_real(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_gamma_cosine(t, start, end, tau):
    t = _check_unit_time(t)
    start, end = _check_real("start", start), _check_real("end", end)
    tau = _check_real("tau", tau, positive=True)
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"gamma_cosine needs 0 <= start < end <= 1, got start={start}, end={end}")
    if -np.expm1(tau * (2.0 * (_log_cos_half_pi(end) - _log_cos_half_pi(start)))) <= 0:   # 1 − v_end/v_start
        raise ValueError(f"gamma_cosine: cos(start*pi/2)^(2*tau) and cos(end*pi/2)^(2*tau) are equal in float64 "
                         f"for start={start}, end={end}, tau={tau}, so gamma is 0/0; use a larger tau or end - start")
    return t, start, end, tau


def _check_gamma_sigmoid(t, start, end, tau):
    """t, and S = start/τ, E = end/τ (finite and distinct in float64)."""
    t = _check_unit_time(t)
    start, end = _check_real("start", start), _check_real("end", end)
    tau = _check_real("tau", tau, positive=True)
    if not start < end:
        raise ValueError(f"gamma_sigmoid needs start < end, got start={start}, end={end}")
    with np.errstate(over="ignore", under="ignore"):
        S, E = np.float64(start) / tau, np.float64(end) / tau
    if not (np.isfinite(S) and np.isfinite(E) and S < E):
        raise ValueError(f"gamma_sigmoid needs start/tau < end/tau, both finite in float64; got start={start}, "
                         f"end={end}, tau={tau} (start/tau = {S}, end/tau = {E}): use a tau closer to end - start")
    return t, float(S), float(E)


def _check_logsnr(gamma) -> np.ndarray:
    g = np.asarray(gamma)
    if g.dtype == bool or not np.issubdtype(g.dtype, np.number) or np.iscomplexobj(g):
        raise ValueError(f"gamma must be real numbers in [0, 1], got dtype {g.dtype}")
    g = g.astype(np.float64)
    if not np.all(np.isfinite(g)) or np.any((g < 0) | (g > 1)):
        raise ValueError("gamma must be finite and in [0, 1] (a signal fraction, like ᾱ_t)")
    return g


def _sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


# --------------------------------------------------------------------------------------------
# make_schedule
# --------------------------------------------------------------------------------------------
def _betas_from_alpha_bars(alpha_bars: np.ndarray, max_beta: float) -> np.ndarray:
    """β_t = min(1 − ᾱ_t/ᾱ_{t−1}, max_beta) for t = 1..T, from ᾱ_0..ᾱ_T (Nichol & Dhariwal)."""
    return np.minimum(1.0 - alpha_bars[1:] / alpha_bars[:-1], max_beta)


def _family_betas(name: str, T: int, p: dict) -> np.ndarray:
    """β_1..β_T of one family (length T), float64."""
    if name == "linear":
        return np.linspace(p["beta_start"], p["beta_end"], T, dtype=np.float64)
    if name == "quadratic":
        return np.linspace(np.sqrt(p["beta_start"]), np.sqrt(p["beta_end"]), T, dtype=np.float64) ** 2
    if name == "sigmoid_beta":
        return _sigmoid(np.linspace(-6.0, 6.0, T)) * (p["beta_end"] - p["beta_start"]) + p["beta_start"]
    u = np.arange(T + 1, dtype=np.float64) / T  # t/T at t = 0..T
    if name == "cosine":
        s = p["s"]
        f = np.cos((u + s) / (1.0 + s) * np.pi / 2) ** 2   # Nichol & Dhariwal eq. 17
        alpha_bars = f / f[0]
    elif name == "sigmoid":
        alpha_bars = gamma_sigmoid(u, p["start"], p["end"], p["tau"])
    else:  # cosine_chen
        alpha_bars = gamma_cosine(u, p["start"], p["end"], p["tau"])
    return _betas_from_alpha_bars(alpha_bars, p["max_beta"])


def _check_params(name: str, p: dict) -> None:
    for key, value in p.items():
        _check_real(key, value)
    for key in ("beta_start", "beta_end", "max_beta"):
        if key in p and not 0 < p[key] <= 1:
            raise ValueError(f"{key} must lie in (0, 1] (it is a beta), got {p[key]!r}")
    if name == "cosine" and p["s"] < 0:
        raise ValueError(f"s (the cosine offset) must be >= 0, got {p['s']!r}")
    if "tau" in p and p["tau"] <= 0:
        raise ValueError(f"tau must be > 0, got {p['tau']!r}")


def make_schedule(name: str, T: int, **params) -> Schedule:
    r"""Build a named schedule with T steps (t = 1..T); arrays have length T + 1, indexed by t.

    ====================  ====================================================================
    name                  parameters (defaults)
    ====================  ====================================================================
    ``"linear"``          beta_start=1e-4, beta_end=0.02: β_t = linspace(β_start, β_end, T)
    ``"quadratic"``       beta_start=1e-4, beta_end=0.02: β_t = linspace(√β_start, √β_end, T)²
    ``"cosine"``          s=0.008, max_beta=0.999: ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T+s)/(1+s))·π/2)
                          (Nichol & Dhariwal 2021, eq. 17), β_t = min(1 − ᾱ_t/ᾱ_{t−1}, max_beta)
    ``"sigmoid"``         start=-3, end=3, tau=1, max_beta=0.999: ᾱ_t = γ_sigmoid(t/T) (Chen 2023)
    ``"sigmoid_beta"``    beta_start=1e-4, beta_end=0.02: β_t = σ(linspace(−6, 6, T))·(β_end − β_start) + β_start
    ``"cosine_chen"``     start=0, end=1, tau=1, max_beta=0.999: ᾱ_t = γ_cosine(t/T) (Chen 2023)
    ====================  ====================================================================

    Every family also accepts ``input_scale`` (Chen's b, default 1.0). The stored ``alpha_bars``
    is always cumprod(1 − β), so for the ᾱ-defined families it equals γ(t/T) except after a β
    clipped at max_beta (usually only t = T, where γ(1) is 0 or 1e-9).

    Raises:
        ValueError: unknown name (the message lists the valid ones), T not an integer >= 1,
            unknown or non-finite parameters, or any β_t outside (0, 1].
    """
    T, p, input_scale = _check_make_schedule(name, T, params)
    betas = _family_betas(name, T, p)
    _check_family_betas(name, T, p, betas)
    return Schedule(name=name, T=T, betas=np.concatenate([[0.0], betas]), input_scale=input_scale, params=p)


def _check_make_schedule(name, T, params):
    """T as an int, the family's parameters with their defaults filled in, and the input scale."""
    check_choice("name", name, SCHEDULE_NAMES)
    T = check_positive_int("T", T)
    params = dict(params)
    input_scale = params.pop("input_scale", 1.0)
    allowed = SCHEDULE_DEFAULTS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join([*allowed, "input_scale"])
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for schedule {name!r}; valid: {valid}")
    p = {**allowed, **params}
    _check_params(name, p)
    if name == "sigmoid":
        _check_gamma_sigmoid(0.0, p["start"], p["end"], p["tau"])
    if name == "cosine_chen":
        _check_gamma_cosine(0.0, p["start"], p["end"], p["tau"])
    return T, p, input_scale


def _check_family_betas(name, T, p, betas) -> None:
    """The βs that valid-looking parameters produced must still be valid (e.g. γ may be flat, giving β = 0)."""
    try:
        _check_betas(betas)
    except ValueError as e:
        given = ", ".join(f"{k}={v!r}" for k, v in p.items())
        raise ValueError(f"schedule {name!r} with T={T} and {given} gives invalid betas: {e}") from None


# ------------------------------------------------------------------ zero terminal SNR (Lin et al. 2024)
# Rescale a schedule so that ᾱ_T = 0 (Lin et al. 2024, Algorithm 1).
#
# Common schedules end with ᾱ_T > 0 (linear, T = 1000: ᾱ_T ≈ 4e-5, √ᾱ_T ≈ 0.0064), so x_T still
# holds a little of x₀, its mean brightness in particular, while sampling starts from pure noise.
# Lin et al. ("Common diffusion noise schedules and sample steps are flawed", 2024) shift and scale
# √ᾱ_t so that the last one is exactly 0 and the first one is unchanged:
#
# .. math::
#
#     \sqrt{\bar\alpha_t}' = \big(\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_T}\big)\,
#         \frac{\sqrt{\bar\alpha_1}}{\sqrt{\bar\alpha_1} - \sqrt{\bar\alpha_T}}   \qquad \text{(Algorithm 1)}
#
# then go back to β: α_t' = ᾱ_t'/ᾱ_{t−1}' (α_1' = ᾱ_1'), β_t' = 1 − α_t'. So β_T' = 1 and ᾱ_T' = 0
# exactly. The map is affine in √ᾱ, so it keeps the order of the steps (every β' stays in (0, 1]).
#
# The new ``Schedule`` holds β_T = 1 without trouble (β may be 1; ᾱ_T = 0, 1/√ᾱ_T = +∞ and
# logsnr_T = −∞ are stored as such). What cannot work with it is the ε-parameterisation at t = T:
# x₀ = (x_T − ε)/0. Use v- or x₀-prediction (``ddpm_ref.prediction``); Lin et al. train with v.

def _check_rescale_zero_terminal_snr(schedule) -> None:
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a Schedule (ddpm_ref.schedules), got {type(schedule).__name__}")
    if schedule.T < 2:
        raise ValueError("the rescale needs a schedule with T >= 2: it keeps alpha_bar_1 and sets alpha_bar_T = 0, "
                         f"which is impossible when they are the same step (T = {schedule.T})")
    if schedule.alpha_bars[schedule.T] == 0.0:
        raise ValueError("the schedule already has zero terminal SNR (alpha_bar_T = 0)")


def rescaled_betas(schedule: Schedule) -> np.ndarray:
    r"""β'_1..β'_T (length T, float64) of Algorithm 1 (module docstring); β'_T = 1."""
    _check_rescale_zero_terminal_snr(schedule)
    sqrt_ab = schedule.sqrt_alpha_bars[1:].copy()               # √ᾱ_1..√ᾱ_T (drop t = 0)
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab -= last                                             # shift: √ᾱ_T' = 0
    sqrt_ab *= first / (first - last)                           # scale: √ᾱ_1' = √ᾱ_1
    alpha_bars = sqrt_ab ** 2
    alphas = np.concatenate([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])   # undo the cumprod
    return 1.0 - alphas


def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    r"""A new ``Schedule`` with ᾱ_T = 0 and ᾱ_1 unchanged (Lin et al. 2024, Algorithm 1).

    Name, input scale and parameters are kept; the parameters gain ``zero_terminal_snr=True`` and
    the name the suffix ``"+zero_snr"``. Raises ValueError for T = 1 or a schedule already at ᾱ_T = 0.
    """
    betas = rescaled_betas(schedule)
    return Schedule(name=f"{schedule.name}+zero_snr", T=schedule.T, betas=np.concatenate([[0.0], betas]),
                    input_scale=schedule.input_scale, params={**schedule.params, "zero_terminal_snr": True})
