"""The data-quality rules as pandera schemas: one whose failures are errors, one for warnings.

Glossary: *rule* a named check (``types``, ``nulls``, ``labels``, ``label rate``, ``duplicate
ids``, ``timestamps``, ``conversion after click``, ``attribution window``, ``drift``); a
rule reads its columns only when the log has them (a log without ``impression_id`` has no
duplicate-id rule to pass or fail). Element-wise checks report the failing rows; a whole-column
check (a rate, a PSI) reports the column.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa

from adrank.features.schema import FeatureSchema
from adrank.quality.settings import QualitySettings

__all__ = ["Rule", "build_rules", "rule_schemas"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One check: its name, severity, the column it reads (None: the whole frame), and the
    pandera check."""

    name: str
    severity: str  # "error" | "warning"
    column: str | None
    check: pa.Check


def _check(function: Callable, rule: str, text: str, element_wise: bool = False) -> pa.Check:
    # The check's name carries the rule, so a failure case says which rule it broke.
    # ignore_na=False: a null rate is a rule, so the checks see the nulls (pandera drops them
    # by default).
    return pa.Check(function, name=f"{rule}: {text}", element_wise=element_wise, ignore_na=False)


def _one_value(column: pd.Series) -> bool | pd.Series:
    """Per row: holds one value, not a list (only object columns can hold lists)."""
    if column.dtype != object:
        return True
    return ~column.map(lambda v: isinstance(v, (list, tuple, np.ndarray, dict))).astype(bool)


def build_rules(
    frame: pd.DataFrame,
    schema: FeatureSchema,
    settings: QualitySettings,
    psi: dict[str, float] | None = None,
) -> list[Rule]:
    """The rules that apply to ``frame``'s columns; ``psi`` each column's PSI against the
    reference log (the drift rule reads it)."""
    psi = psi or {}
    rules: list[Rule] = []
    s = settings
    for field in schema.fields:
        column = field.column
        if field.kind == "cross" or column not in frame.columns:
            continue
        if field.kind in ("numeric_dense", "numeric_bucketized"):
            check = _check(pd.api.types.is_numeric_dtype, "types", "numeric")
            rules.append(Rule("types", "error", column, check))
        elif field.kind == "categorical":
            check = _check(_one_value, "types", "one value")
            rules.append(Rule("types", "error", column, check))
        for severity, limit in (("error", s.null_rate_error), ("warning", s.null_rate_warning)):
            check = _check(
                lambda c, limit=limit: bool(c.isna().mean() <= limit), "nulls", f"rate <= {limit}"
            )
            rules.append(Rule("nulls", severity, column, check))
        if column in psi:
            for severity, limit in (("error", s.psi_error), ("warning", s.psi_warning)):
                check = _check(
                    lambda c, value=psi[column], limit=limit: bool(value <= limit),
                    "drift",
                    f"PSI <= {limit}",
                )
                rules.append(Rule("drift", severity, column, check))
    for column in schema.labels.values():
        if column not in frame.columns:
            continue
        check = _check(lambda c: c.isna() | c.isin([0, 1]), "labels", "0 or 1")
        rules.append(Rule("labels", "error", column, check))
        low, high = s.label_rate_min, s.label_rate_max
        check = _check(
            lambda c, low=low, high=high: bool(
                low <= pd.to_numeric(c, errors="coerce").mean() <= high
            ),
            "label rate",
            f"in [{low}, {high}]",
        )
        rules.append(Rule("label rate", "warning", column, check))
    if s.id_column in frame.columns:
        check = _check(lambda c: ~c.duplicated(keep="first"), "duplicate ids", "unique")
        rules.append(Rule("duplicate ids", "error", s.id_column, check))
    if s.timestamp_column in frame.columns:
        high = s.timestamp_max if s.timestamp_max is not None else time.time() + 86_400.0
        check = _check(
            lambda c: c.isna() | c.between(s.timestamp_min, high),
            "timestamps",
            f"in [{s.timestamp_min:.0f}, {high:.0f}]",
        )
        rules.append(Rule("timestamps", "error", s.timestamp_column, check))
    rules += _conversion_rules(frame, schema, settings)
    return rules


def _conversion_rules(frame: pd.DataFrame, schema: FeatureSchema, s: QualitySettings) -> list[Rule]:
    click, conversion = schema.labels.get("click"), schema.labels.get("conversion")
    rules: list[Rule] = []
    if click in frame.columns and conversion in frame.columns:
        check = _check(
            lambda f: ~((f[conversion] == 1) & (f[click] != 1)),
            "conversion after click",
            "no conversion without its click",
        )
        rules.append(Rule("conversion after click", "error", None, check))
    times = (s.click_time_column, s.conversion_time_column)
    if not all(t in frame.columns for t in times):
        return rules
    clicked_at, converted_at = times
    check = _check(
        lambda f: ~(f[converted_at] < f[clicked_at]),
        "conversion after click",
        "conversion time >= click time",
    )
    rules.append(Rule("conversion after click", "error", None, check))
    window = s.attribution_window_s

    def late(f: pd.DataFrame) -> pd.Series:
        return (f[converted_at] - f[clicked_at]) > window

    check = _check(lambda f: ~late(f), "attribution window", f"delay <= {window:.0f} s")
    rules.append(Rule("attribution window", "warning", None, check))
    limit = s.late_conversion_rate_error

    def late_share_ok(f: pd.DataFrame) -> bool:
        converted = f[converted_at].notna()
        return bool(converted.sum() == 0 or late(f)[converted].mean() <= limit)

    check = _check(late_share_ok, "attribution window", f"late share <= {limit}")
    rules.append(Rule("attribution window", "error", None, check))
    return rules


def rule_schemas(rules: list[Rule]) -> dict[str, pa.DataFrameSchema]:
    """``{severity: DataFrameSchema}`` holding the rules of that severity."""
    schemas = {}
    for severity in ("error", "warning"):
        mine = [r for r in rules if r.severity == severity]
        columns: dict[str, list[pa.Check]] = {}
        for rule in mine:
            if rule.column is not None:
                columns.setdefault(rule.column, []).append(rule.check)
        schemas[severity] = pa.DataFrameSchema(
            {name: pa.Column(checks=checks, nullable=True) for name, checks in columns.items()},
            checks=[r.check for r in mine if r.column is None],
        )
    return schemas
