"""Off-policy evaluation: what a target policy would have earned, from a log of another
(the *logging* policy) that recorded its propensities.

Glossary, per logged request ``i`` of ``n``: ``r`` the reward of the shown action (a click,
a conversion, revenue); ``p`` its propensity under the logging policy; ``pi`` the target
policy's probability of that same action; ``w = pi / p`` the importance weight; ``q`` a reward
model's prediction for the logged action and ``v`` its expected reward under the target policy
(``sum_a pi(a) q(a)``).

* IPS    ``mean(w r)``: unbiased where the logging policy covers the target's actions.
* SNIPS  ``sum(w r) / sum(w)``: self-normalized; slightly biased, much lower variance.
* DR     ``mean(v + w (r - q))``: unbiased if either the propensities or the reward model are
  right; lower variance when the model is good.

Confidence intervals are percentile bootstraps over requests; the effective sample size is
``(sum w)^2 / sum(w^2)`` (``n`` when the policies agree, small when few logged actions carry
the target's weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OffPolicyEstimate:
    estimator: str
    value: float
    ci_low: float
    ci_high: float
    effective_sample_size: float

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high


def _arrays(**named: object) -> dict[str, np.ndarray]:
    arrays = {}
    for name, values in named.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite")
        arrays[name] = array
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"{', '.join(arrays)} must have one length, got {sorted(sizes)}")
    if "propensity" in arrays and (arrays["propensity"] <= 0).any():
        raise ValueError("propensity must be > 0 (a shown action had some chance)")
    if "target" in arrays and ((arrays["target"] < 0) | (arrays["target"] > 1)).any():
        raise ValueError("target probabilities must be in [0, 1]")
    return arrays


def ips(reward, propensity, target) -> float:
    a = _arrays(reward=reward, propensity=propensity, target=target)
    return float(np.mean(a["target"] / a["propensity"] * a["reward"]))


def snips(reward, propensity, target) -> float:
    a = _arrays(reward=reward, propensity=propensity, target=target)
    w = a["target"] / a["propensity"]
    return float(np.sum(w * a["reward"]) / np.sum(w)) if w.sum() > 0 else float("nan")


def doubly_robust(reward, propensity, target, q_logged, v_target) -> float:
    a = _arrays(
        reward=reward, propensity=propensity, target=target, q_logged=q_logged, v_target=v_target
    )
    w = a["target"] / a["propensity"]
    return float(np.mean(a["v_target"] + w * (a["reward"] - a["q_logged"])))


def effective_sample_size(weights) -> float:
    w = np.asarray(weights, dtype=np.float64)
    total = np.sum(w * w)
    return float(w.sum() ** 2 / total) if total > 0 else 0.0


def evaluate(
    reward,
    propensity,
    target,
    q_logged=None,
    v_target=None,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, OffPolicyEstimate]:
    """IPS, SNIPS and (given ``q_logged`` and ``v_target``) DR with bootstrap intervals."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a = _arrays(reward=reward, propensity=propensity, target=target)
    w = a["target"] / a["propensity"]
    wr = w * a["reward"]
    columns = {"IPS": wr}
    if (q_logged is None) != (v_target is None):
        raise ValueError("give q_logged and v_target together (DR needs both)")
    if q_logged is not None:
        b = _arrays(reward=reward, q_logged=q_logged, v_target=v_target)
        columns["DR"] = b["v_target"] + w * (a["reward"] - b["q_logged"])
    n = len(w)
    if n == 0:
        raise ValueError("reward must not be empty")
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    ess = effective_sample_size(w)
    quantiles = (alpha / 2, 1 - alpha / 2)
    out = {}
    for name, values in columns.items():
        boot = values[draws].mean(axis=1)
        low, high = np.quantile(boot, quantiles)
        out[name] = OffPolicyEstimate(name, float(values.mean()), float(low), float(high), ess)
    totals = w[draws].sum(axis=1)
    weighted = totals > 0  # a resample with no weight has no SNIPS value
    boot = wr[draws].sum(axis=1)[weighted] / totals[weighted]
    low, high = np.quantile(boot, quantiles) if len(boot) else (np.nan, np.nan)
    value = float(wr.sum() / w.sum()) if w.sum() > 0 else float("nan")
    out["SNIPS"] = OffPolicyEstimate("SNIPS", value, float(low), float(high), ess)
    return {name: out[name] for name in ("IPS", "SNIPS", "DR") if name in out}
