"""Population stability index: how far a column's distribution moved from a reference's.

Glossary: bins are the reference's quantiles (numbers) or its values (categories, the rest in
one "other" bin); ``PSI = sum (p_cur - p_ref) * ln(p_cur / p_ref)`` with each share floored at
1e-4. Rules of thumb: < 0.1 stable, 0.1-0.25 moved, > 0.25 shifted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["population_stability_index"]

_FLOOR = 1e-4


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=float)
    return np.maximum(shares, _FLOOR)


def population_stability_index(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` (nulls dropped; list values are skipped: NaN)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    reference, current = reference.dropna(), current.dropna()
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    if isinstance(reference.iloc[0], (list, np.ndarray)):
        return float("nan")  # sequences: no single value to bin
    numeric = pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(current)
    if numeric and reference.nunique() > bins:
        edges = np.unique(np.quantile(reference.to_numpy(float), np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        ref_counts = np.histogram(reference.to_numpy(float), edges)[0]
        cur_counts = np.histogram(current.to_numpy(float), edges)[0]
    else:
        values = reference.astype(str).value_counts().index[: bins * 10]
        ref_counts = _category_counts(reference.astype(str), values)
        cur_counts = _category_counts(current.astype(str), values)
    p_ref, p_cur = _shares(ref_counts.astype(float)), _shares(cur_counts.astype(float))
    return float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))


def _category_counts(series: pd.Series, values: pd.Index) -> np.ndarray:
    counts = series.value_counts()
    known = counts.reindex(values, fill_value=0).to_numpy()
    return np.append(known, counts.sum() - known.sum())  # the "other" bin
