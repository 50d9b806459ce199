"""The statistics of an A/B test read per randomization unit (a user), in plain numpy.

Glossary: arm ``a`` is the control, ``b`` the treatment; per unit ``i`` a metric has a
numerator ``y_i`` (clicks, revenue) and, for a ratio metric, a denominator ``x_i``
(impressions, requests); ``n`` units per arm; ``z`` the normal quantile of the level.

* Mean metrics (per unit): the difference of means with the unequal-variance (Welch) standard
  error ``sqrt(s_a^2/n_a + s_b^2/n_b)`` and a normal interval (large samples).
* Ratio metrics ``R = sum y / sum x`` (CTR = clicks / impressions, with the user as unit):
  the delta method, ``Var(R) ~ (s_y^2 - 2 R s_xy + R^2 s_x^2) / (n mean(x)^2)``; the arms are
  independent, so the difference's variance is the sum.
* Sample-ratio mismatch: Pearson's chi-square of the units per arm against the configured
  shares; flagged below ``SRM_P`` (a split that broken is rarely chance).
* CUPED: ``y - theta (x - mean x)`` with ``x`` the unit's same metric in the pre-period and
  ``theta = cov(x, y) / var(x)`` pooled over both arms; it keeps the difference's expectation
  and removes the share ``corr(x, y)^2`` of the variance.
* Sequential testing: the mixture SPRT (mSPRT) of Johari et al. with a normal mixture of
  variance ``tau^2`` over the effect; its p-value ``min(1, 1 / Lambda)`` is valid at any look,
  so the report may be read every day. The fixed-horizon interval beside it is valid only at
  the planned end: reading it daily and stopping at the first significant day inflates false
  positives (the report says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

SRM_P = 1e-3


@dataclass(frozen=True)
class Delta:
    control: float
    treatment: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    std_error: float

    @property
    def relative(self) -> float:
        return self.delta / self.control if self.control else float("nan")

    @property
    def significant(self) -> bool:
        return not self.ci_low <= 0.0 <= self.ci_high


def _vector(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if len(array) < 2:
        raise ValueError(f"{name} needs at least 2 units, got {len(array)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _level(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return NormalDist().inv_cdf(1 - alpha / 2)


def _delta(control: float, treatment: float, se: float, alpha: float) -> Delta:
    z = _level(alpha)
    d = treatment - control
    p = 2 * (1 - NormalDist().cdf(abs(d) / se)) if se > 0 else float(d == 0)
    return Delta(control, treatment, d, d - z * se, d + z * se, p, se)


def mean_delta(a, b, alpha: float = 0.05) -> Delta:
    """Difference of per-unit means, treatment minus control (Welch standard error)."""
    a, b = _vector("control", a), _vector("treatment", b)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return _delta(float(a.mean()), float(b.mean()), se, alpha)


def ratio_variance(numerator, denominator) -> tuple[float, float]:
    """``sum y / sum x`` over units and its delta-method variance."""
    y, x = _vector("numerator", numerator), _vector("denominator", denominator)
    if len(y) != len(x):
        raise ValueError("numerator and denominator must have one length")
    if x.sum() <= 0:
        raise ValueError("denominator must have a positive sum")
    n, mx = len(x), x.mean()
    ratio = y.sum() / x.sum()
    cov = np.cov(y, x, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mx**2)
    return float(ratio), float(max(variance, 0.0))


def ratio_delta(num_a, den_a, num_b, den_b, alpha: float = 0.05) -> Delta:
    """Difference of ratio metrics (delta method), treatment minus control."""
    ra, va = ratio_variance(num_a, den_a)
    rb, vb = ratio_variance(num_b, den_b)
    return _delta(ra, rb, math.sqrt(va + vb), alpha)


def chi2_sf(statistic: float, df: int) -> float:
    """P(chi-square with ``df`` degrees of freedom > ``statistic``), closed forms by parity."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}")
    x = max(float(statistic), 0.0)
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return math.exp(-half) * total
    root = math.sqrt(x)
    total = math.erfc(root / math.sqrt(2))
    term = root * math.sqrt(2 / math.pi) * math.exp(-half) if x > 0 else 0.0
    for i in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * i + 1)
    return min(total, 1.0)


@dataclass(frozen=True)
class SampleRatio:
    counts: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_P


def sample_ratio_check(counts, shares) -> SampleRatio:
    """Pearson's chi-square of units per arm against the configured shares."""
    counts = np.asarray(counts, dtype=np.float64)
    shares = np.asarray(shares, dtype=np.float64)
    if counts.ndim != 1 or len(counts) < 2 or counts.shape != shares.shape:
        raise ValueError("counts and shares must be 1-D, of one length >= 2")
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("counts must be >= 0 with a positive sum")
    if (shares <= 0).any():
        raise ValueError("shares must be > 0")
    expected = counts.sum() * shares / shares.sum()
    statistic = float(((counts - expected) ** 2 / expected).sum())
    return SampleRatio(
        tuple(int(c) for c in counts),
        tuple(float(e) for e in expected),
        statistic,
        chi2_sf(statistic, len(counts) - 1),
    )


@dataclass(frozen=True)
class Cuped:
    theta: float
    variance_reduction: float  # 1 - var(adjusted) / var(raw), over both arms pooled


def cuped(y, x) -> tuple[np.ndarray, Cuped]:
    """``y`` adjusted by its pre-period covariate ``x`` (both per unit, both arms pooled)."""
    y, x = _vector("y", y), _vector("x", x)
    if len(y) != len(x):
        raise ValueError("y and x must have one length")
    vx = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    vy = y.var(ddof=1)
    reduction = float(1 - adjusted.var(ddof=1) / vy) if vy > 0 else 0.0
    return adjusted, Cuped(theta, reduction)


def msprt_p_value(delta: float, variance: float, tau2: float) -> float:
    """The always-valid p-value of the mixture SPRT at one look: ``min(1, 1 / Lambda)``,
    ``Lambda = sqrt(V / (V + tau2)) exp(tau2 delta^2 / (2 V (V + tau2)))``, ``V`` the variance
    of the difference. A caller that looks many times keeps the running minimum."""
    if not (variance > 0 and tau2 > 0):
        raise ValueError("variance and tau2 must be > 0")
    exponent = tau2 * delta**2 / (2 * variance * (variance + tau2))
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + exponent
    return float(min(1.0, math.exp(-log_lambda)))
