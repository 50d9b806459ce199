"""Running the data-quality rules on a log and reporting what they found.

Glossary: *finding* one broken rule on one column: its severity, how many rows broke it (or 1
for a whole-column rule), a few examples; *report* the findings and the PSI of every column.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors

from adrank.features.schema import FeatureSchema
from adrank.quality.psi import population_stability_index
from adrank.quality.rules import build_rules, rule_schemas
from adrank.quality.settings import QualitySettings

__all__ = ["Finding", "QualityError", "QualityReport", "check_frame", "to_frame"]


class QualityError(ValueError):
    """The log broke an error rule; ``report`` says which."""

    def __init__(self, report: QualityReport) -> None:
        super().__init__(report.format())
        self.report = report


@dataclasses.dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    column: str | None
    check: str
    rows: int
    examples: tuple[Any, ...]

    def format(self) -> str:
        where = self.column or "(rows)"
        head = f"{self.severity:<8}{self.rule:<24}{where:<18}{self.check}"
        if all(isinstance(e, (bool, np.bool_)) for e in self.examples):  # a whole-column check
            return f"{head} (the column)"
        shown = ", ".join(repr(e) for e in self.examples)
        return f"{head} ({self.rows} rows: {shown})"


@dataclasses.dataclass
class QualityReport:
    rows: int
    findings: list[Finding]
    psi: dict[str, float]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def format(self) -> str:
        lines = [f"data quality: {self.rows:,} rows, {len(self.errors)} error(s), "
                 f"{len(self.warnings)} warning(s)"]  # fmt: skip
        lines += [f.format() for f in self.findings]
        if self.psi:
            worst = sorted(self.psi.items(), key=lambda kv: -kv[1])[:5]
            lines.append("largest drift (PSI): " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A bar chart of every column's PSI and the rows each finding counted (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        names = list(self.psi)
        left.barh(names, [self.psi[n] for n in names])
        left.set_xlabel("PSI against the reference")
        labels = [f"{f.rule} {f.column or ''}" for f in self.findings]
        right.barh(labels, [f.rows for f in self.findings],
                   color=["tab:red" if f.severity == "error" else "tab:orange"
                          for f in self.findings])  # fmt: skip
        right.set_xlabel("rows breaking the rule")
        figure.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        return path


def to_frame(table: Any) -> pd.DataFrame:
    """A pandas frame of a pyarrow table (or a frame itself)."""
    return table if isinstance(table, pd.DataFrame) else table.to_pandas()


def check_frame(
    frame: Any,
    schema: FeatureSchema,
    settings: QualitySettings | None = None,
    reference: Any = None,
) -> QualityReport:
    """Every rule on ``frame`` (a pandas frame or pyarrow table); ``reference`` a log of the
    same columns to measure drift against."""
    settings = settings or QualitySettings()
    if not isinstance(schema, FeatureSchema):
        raise TypeError(f"schema must be a FeatureSchema, got {type(schema).__name__}")
    frame = to_frame(frame)
    reference = None if reference is None else to_frame(reference)
    psi = {}
    if reference is not None:
        for field in schema.fields:
            name = field.column
            if name in frame.columns and name in reference.columns:
                value = population_stability_index(reference[name], frame[name], settings.psi_bins)
                if value == value:  # not NaN (a list column has no PSI)
                    psi[name] = value
    rules = build_rules(frame, schema, settings, psi)
    findings: list[Finding] = []
    for severity, pandera_schema in rule_schemas(rules).items():
        try:
            pandera_schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as failed:
            findings += _findings(failed.failure_cases, severity)
    return QualityReport(len(frame), findings, psi)


def _findings(cases: pd.DataFrame, severity: str) -> list[Finding]:
    found = []
    # A whole-frame check reports every column of a failing row: one finding per check.
    wide = cases["schema_context"] == "DataFrameSchema"
    cases = cases.assign(column=cases["column"].where(~wide, "").fillna(""))
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        rule = str(check).split(":", 1)[0]
        index = group["index"].dropna().unique()
        rows = len(index) if len(index) else 1
        examples = tuple(group["failure_case"].head(3).tolist()) if column else tuple(index[:3])
        if not len(index):
            examples = (False,)
        found.append(Finding(rule, severity, column or None, str(check), rows, examples))
    return found
