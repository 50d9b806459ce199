"""The A/B report of one experiment from the request log and its events: per-arm metrics, the
differences with intervals, the sample-ratio check, CUPED and the sequential test; Markdown
with plots (``adrank experiment report``).

Glossary: a *unit* is a user (the experiment's ``unit`` field of the logged user); *events*
are a table of ``request_id``, ``creative_id``, ``event`` (``click``, ``conversion``,
``negative`` or ``impression``) and ``revenue`` (the money charged for that event, 0 if none);
an impression is a creative the log shows was served; the *pre-period* is a log and events of
the same units before the experiment (CUPED's covariate).

Metrics per arm, each a ratio over the units' sums (delta method, :mod:`.statistics`):
impressions (a count), CTR = clicks / impressions, CVR = conversions / clicks, revenue per
1000 requests, ad load = impressions / requests, negative-feedback rate = negatives /
impressions, and spend against budget (given budgets: the arm's spend on each budgeted
campaign over the arm's share of its budget). Revenue per unit is also read CUPED-adjusted,
with the variance reduction reached, and with the always-valid mSPRT p-value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adrank.experiments import statistics as st

EVENT_KINDS = ("impression", "click", "conversion", "negative")
COUNTS = ("requests", "impressions", "clicks", "conversions", "negatives", "revenue")
RATIOS = {  # metric -> (numerator, denominator, scale)
    "CTR": ("clicks", "impressions", 1.0),
    "CVR": ("conversions", "clicks", 1.0),
    "revenue per 1000 requests": ("revenue", "requests", 1000.0),
    "ad load (ads per request)": ("impressions", "requests", 1.0),
    "negative-feedback rate": ("negatives", "impressions", 1.0),
}
MSPRT_TAU = 0.1  # the mSPRT's mixture: effects of about 10 % of the control's mean


@dataclass(frozen=True)
class UnitTotals:
    """Per unit sums of one arm: name -> float64 [units], and the unit ids."""

    units: np.ndarray
    sums: Mapping[str, np.ndarray]


def unit_totals(
    log: pa.Table, events: pa.Table, experiment: str, unit: str = "user_id"
) -> dict[str, UnitTotals]:
    """Arm -> per-unit sums of the requests logged in ``experiment``'s arms."""
    _check_events(events)
    arms = [json.loads(a).get(experiment) for a in log.column("arms").to_pylist()]
    users = [json.loads(u).get(unit) for u in log.column("user").to_pylist()]
    request_ids = log.column("request_id").to_pylist()
    shown = [len(s or ()) for s in log.column("shown_creative_id").to_pylist()]
    by_request = {
        kind: _per_request(events, kind, request_ids)
        for kind in ("click", "conversion", "negative")
    }
    revenue = _per_request(events, None, request_ids)
    out: dict[str, UnitTotals] = {}
    names = sorted({a for a in arms if a is not None})
    for name in names:
        rows = np.asarray([i for i, a in enumerate(arms) if a == name and users[i] is not None])
        ids = np.asarray([str(users[i]) for i in rows])
        unique, index = np.unique(ids, return_inverse=True)
        values = {
            "requests": np.ones(len(rows)),
            "impressions": np.asarray(shown, dtype=np.float64)[rows],
            "clicks": by_request["click"][rows],
            "conversions": by_request["conversion"][rows],
            "negatives": by_request["negative"][rows],
            "revenue": revenue[rows],
        }
        out[name] = UnitTotals(
            unique, {k: np.bincount(index, v, minlength=len(unique)) for k, v in values.items()}
        )
    if not out:
        raise ValueError(f"no logged request is in experiment {experiment!r}")
    return out


def _check_events(events: pa.Table) -> None:
    missing = {"request_id", "event", "revenue"} - set(events.column_names)
    if missing:
        raise ValueError(f"events lack the columns {sorted(missing)}")
    kinds = set(events.column("event").to_pylist()) - set(EVENT_KINDS)
    if kinds:
        raise ValueError(f"events.event must be among {EVENT_KINDS}, got {sorted(kinds)}")


def _per_request(events: pa.Table, kind: str | None, request_ids: list[str]) -> np.ndarray:
    """Per logged request: the count of ``kind`` events, or (None) the revenue summed."""
    if kind is not None:
        events = events.filter(pc.equal(events.column("event"), kind))
    position = {r: i for i, r in enumerate(request_ids)}
    index = np.asarray([position.get(r, -1) for r in events.column("request_id").to_pylist()])
    values = (
        np.ones(len(index))
        if kind is not None
        else np.asarray(events.column("revenue").to_numpy(zero_copy_only=False), dtype=np.float64)
    )
    known = index >= 0  # events of requests outside the log (rotated away) do not count
    return np.bincount(index[known], values[known], minlength=len(request_ids))


@dataclass
class ABReport:
    experiment: str
    control: str
    arms: dict[str, dict[str, float]]  # arm -> metric -> value
    deltas: dict[str, dict[str, st.Delta]]  # treatment arm -> metric -> delta vs control
    sample_ratio: st.SampleRatio
    cuped: dict[str, tuple[st.Delta, st.Delta, st.Cuped]] = field(default_factory=dict)
    msprt: dict[str, float] = field(default_factory=dict)
    spend_vs_budget: dict[str, float] = field(default_factory=dict)

    def markdown(self, plots: Sequence[str] = ()) -> str:
        arms = list(self.arms)
        lines = [f"# Experiment {self.experiment}", ""]
        srm = self.sample_ratio
        verdict = (
            f"**SAMPLE-RATIO MISMATCH** (p = {srm.p_value:.2e} < {st.SRM_P}): the split is "
            "broken; do not read the differences below until it is explained."
            if srm.mismatch
            else f"no sample-ratio mismatch (p = {srm.p_value:.3f})"
        )
        lines += [
            "## Split",
            "",
            "| arm | units | expected |",
            "|---|---|---|",
            *(
                f"| {a} | {c} | {e:.0f} |"
                for a, c, e in zip(arms, srm.counts, srm.expected, strict=True)
            ),
            "",
            f"Chi-square {srm.statistic:.2f}: {verdict}",
            "",
            "## Metrics per arm",
            "",
            "| metric | " + " | ".join(arms) + " |",
            "|---|" + "---|" * len(arms),
        ]
        for metric in next(iter(self.arms.values())):
            lines.append(
                f"| {metric} | " + " | ".join(f"{self.arms[a][metric]:.5g}" for a in arms) + " |"
            )
        lines += ["", f"## Differences against {self.control} (95 % intervals)", ""]
        lines += ["| arm | metric | delta | relative | interval | p |", "|---|---|---|---|---|---|"]
        for arm, deltas in self.deltas.items():
            for metric, d in deltas.items():
                mark = " **" if d.significant else ""
                lines.append(
                    f"| {arm} | {metric} | {d.delta:+.5g}{mark} | {d.relative:+.2%} | "
                    f"[{d.ci_low:+.5g}, {d.ci_high:+.5g}] | {d.p_value:.3g} |"
                )
        if self.cuped:
            lines += ["", "## CUPED (pre-period covariate, per user)", ""]
            lines += [
                "| arm | metric | raw interval | CUPED interval | variance reduction |",
                "|---|---|---|---|---|",
            ]
            for key, (raw, adjusted, info) in self.cuped.items():
                lines.append(
                    f"| {key} | [{raw.ci_low:+.5g}, {raw.ci_high:+.5g}] | "
                    f"[{adjusted.ci_low:+.5g}, {adjusted.ci_high:+.5g}] | "
                    f"{info.variance_reduction:.1%} |"
                )
        lines += [
            "",
            "## Peeking",
            "",
            "The intervals above are fixed-horizon: valid once, at the planned end. Reading them "
            "every day and stopping at the first significant one inflates false positives. The "
            "always-valid mSPRT p-value (normal mixture, tau = "
            f"{MSPRT_TAU:.0%} of the control's mean) may be read at any look:",
            "",
        ]
        for key, p in self.msprt.items():
            lines.append(f"- {key}: always-valid p = {p:.3g}")
        if self.spend_vs_budget:
            lines += ["", "## Spend against budget (budgeted campaigns, per arm's share)", ""]
            for arm, share in self.spend_vs_budget.items():
                lines.append(f"- {arm}: {share:.1%} of its share of the budgets")
        for plot in plots:
            lines += ["", f"![{plot}]({plot})"]
        return "\n".join(lines) + "\n"


def analyze(
    log: pa.Table,
    events: pa.Table,
    experiment: str,
    shares: Mapping[str, float] | None = None,
    control: str | None = None,
    pre: tuple[pa.Table, pa.Table] | None = None,
    budgets: Mapping[int, float] | None = None,
    unit: str = "user_id",
    alpha: float = 0.05,
) -> ABReport:
    """The report's numbers (see the module docstring). ``shares``: the configured share of
    each arm (default equal); ``control``: the control arm (default: the first by name)."""
    totals = unit_totals(log, events, experiment, unit)
    arms = sorted(totals)
    control = arms[0] if control is None else control
    if control not in totals:
        raise ValueError(f"control arm {control!r} is not in the log (arms: {arms})")
    if len(arms) < 2:
        raise ValueError(f"experiment {experiment!r} has one arm in the log: {arms}")
    shares = shares or {a: 1.0 for a in arms}
    missing = set(arms) - set(shares)
    if missing:
        raise ValueError(f"shares lack the arms {sorted(missing)}")
    srm = st.sample_ratio_check([len(totals[a].units) for a in arms], [shares[a] for a in arms])
    values = {a: _arm_metrics(totals[a]) for a in arms}
    deltas: dict[str, dict[str, st.Delta]] = {}
    base = totals[control].sums
    if len(totals[control].units) < 2:
        raise ValueError(f"control arm {control!r} needs at least 2 units in the log")
    for arm in arms:
        if arm == control or len(totals[arm].units) < 2:  # one unit has no variance
            continue
        sums = totals[arm].sums
        deltas[arm] = {}
        for metric, (num, den, scale) in RATIOS.items():
            if base[den].sum() <= 0 or sums[den].sum() <= 0:
                continue
            d = st.ratio_delta(base[num], base[den], sums[num], sums[den], alpha)
            deltas[arm][metric] = _scaled(d, scale)
        deltas[arm]["revenue per user"] = st.mean_delta(base["revenue"], sums["revenue"], alpha)
    report = ABReport(experiment, control, values, deltas, srm)
    if pre is not None:
        _add_cuped(report, totals, control, pre, experiment, unit, alpha)
    for arm, by_metric in deltas.items():
        d = by_metric["revenue per user"]
        tau2 = (MSPRT_TAU * abs(d.control)) ** 2 or 1e-12
        report.msprt[f"{arm} revenue per user"] = st.msprt_p_value(d.delta, d.std_error**2, tau2)
    if budgets:
        report.spend_vs_budget = _spend_vs_budget(log, events, experiment, shares, budgets)
    return report


def _arm_metrics(t: UnitTotals) -> dict[str, float]:
    s = {k: float(v.sum()) for k, v in t.sums.items()}
    out = {"units": float(len(t.units)), "requests": s["requests"], "impressions": s["impressions"]}
    for metric, (num, den, scale) in RATIOS.items():
        out[metric] = scale * s[num] / s[den] if s[den] > 0 else float("nan")
    out["revenue per user"] = s["revenue"] / max(len(t.units), 1)
    return out


def _scaled(d: st.Delta, scale: float) -> st.Delta:
    return st.Delta(
        d.control * scale,
        d.treatment * scale,
        d.delta * scale,
        d.ci_low * scale,
        d.ci_high * scale,
        d.p_value,
        d.std_error * scale,
    )


def _add_cuped(report, totals, control, pre, experiment, unit, alpha) -> None:
    """Revenue and clicks per user adjusted by the same unit's pre-period value (0 if absent)."""
    pre_log, pre_events = pre
    _check_events(pre_events)
    before = _pre_totals(pre_log, pre_events, unit)
    for metric in ("revenue", "clicks"):
        ys, xs, arm_of = [], [], []
        for arm, t in totals.items():
            ys.append(t.sums[metric])
            xs.append(np.asarray([before.get(u, {}).get(metric, 0.0) for u in t.units]))
            arm_of += [arm] * len(t.units)
        y, x = np.concatenate(ys), np.concatenate(xs)
        adjusted, info = st.cuped(y, x)
        arm_of = np.asarray(arm_of)
        for arm in report.deltas:
            raw = st.mean_delta(y[arm_of == control], y[arm_of == arm], alpha)
            adj = st.mean_delta(adjusted[arm_of == control], adjusted[arm_of == arm], alpha)
            report.cuped[f"{arm} | {metric} per user"] = (raw, adj, info)


def _pre_totals(log: pa.Table, events: pa.Table, unit: str) -> dict[str, dict[str, float]]:
    users = [str(json.loads(u).get(unit)) for u in log.column("user").to_pylist()]
    request_ids = log.column("request_id").to_pylist()
    revenue = _per_request(events, None, request_ids)
    clicks = _per_request(events, "click", request_ids)
    out: dict[str, dict[str, float]] = {}
    for user, r, c in zip(users, revenue.tolist(), clicks.tolist(), strict=True):
        entry = out.setdefault(user, {"revenue": 0.0, "clicks": 0.0})
        entry["revenue"] += r
        entry["clicks"] += c
    return out


def _spend_vs_budget(log, events, experiment, shares, budgets) -> dict[str, float]:
    arms = [json.loads(a).get(experiment) for a in log.column("arms").to_pylist()]
    arm_of = dict(zip(log.column("request_id").to_pylist(), arms, strict=True))
    campaign_of = {}
    for rid, creatives, campaigns in zip(
        log.column("request_id").to_pylist(),
        log.column("shown_creative_id").to_pylist(),
        log.column("shown_campaign_id").to_pylist(),
        strict=True,
    ):
        for creative, campaign in zip(creatives or (), campaigns or (), strict=True):
            campaign_of[rid, creative] = campaign
    spend: dict[str, float] = {}
    has_creative = "creative_id" in events.column_names
    creatives = events.column("creative_id").to_pylist() if has_creative else [None] * len(events)
    for rid, creative, money in zip(
        events.column("request_id").to_pylist(),
        creatives,
        events.column("revenue").to_pylist(),
        strict=True,
    ):
        arm, campaign = arm_of.get(rid), campaign_of.get((rid, creative))
        if arm is not None and campaign in budgets:
            spend[arm] = spend.get(arm, 0.0) + money
    total_share = sum(shares.values())
    budget = sum(budgets.values())
    return {
        arm: spend.get(arm, 0.0) / (budget * shares[arm] / total_share)
        for arm in sorted(set(a for a in arms if a is not None))
    }


def write_report(report: ABReport, out_dir: str | Path) -> Path:
    """``report.md`` and its plots under ``out_dir``; returns the Markdown's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(report, out)
    path = out / "report.md"
    path.write_text(report.markdown(plots))
    return path


def _plots(report: ABReport, out: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is in the bench extra
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (f"{arm}: {metric}", d)
        for arm, deltas in report.deltas.items()
        for metric, d in deltas.items()
        if d.control
    ]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    for i, (_, d) in enumerate(rows):
        low, high = d.ci_low / d.control, d.ci_high / d.control
        ax.plot([low * 100, high * 100], [i, i], color="tab:blue")
        ax.plot([d.relative * 100], [i], "o", color="tab:red" if d.significant else "tab:blue")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.set_xlabel(f"change against {report.control}, % (95 % interval)")
    fig.tight_layout()
    fig.savefig(out / "deltas.png", dpi=100)
    plt.close(fig)
    srm = report.sample_ratio
    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(report.arms)
    ax.bar(np.arange(len(names)) - 0.2, srm.counts, 0.4, label="units")
    ax.bar(np.arange(len(names)) + 0.2, srm.expected, 0.4, label="expected")
    ax.set_xticks(range(len(names)), names)
    ax.set_title(f"split (SRM p = {srm.p_value:.2g})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "split.png", dpi=100)
    plt.close(fig)
    return ["deltas.png", "split.png"]
