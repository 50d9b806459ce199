"""What a rank request's feature values may be, field by field: :class:`FeatureRules`.

Glossary: a *request field* is a schema field of side ``user`` or ``context`` that the ranker
reads from the request (crosses are computed, not sent); its *kind* decides what it accepts:

    categorical                         an int64 integer or a string, or null
    multi_valued                        a list of int64 integers or of strings, or null
    text                                a string, or null
    numeric_bucketized, numeric_dense   a finite number, or null

Names the schema does not know are ignored by the ranker and only checked for size. Rows of
``candidate_rows`` (candidates given with their features, no catalog) are checked the same
way against every field of the schema, whatever its side. Checking
here, before encoding, turns a value the feature pipeline cannot encode into a 422 that names
the field, instead of an error deep inside the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adrank.features.schema import FeatureSchema
from adrank.service.limits import ServiceLimits

REQUEST_SIDES = ("user", "context")
NUMERIC_KINDS = ("numeric_bucketized", "numeric_dense")
ACCEPTS = {
    "categorical": "an integer or a string (categorical feature)",
    "multi_valued": "a list of integers or of strings (multi-valued feature)",
    "text": "a string (text feature)",
    "numeric_bucketized": "a finite number (numeric feature)",
    "numeric_dense": "a finite number (numeric feature)",
}


class FeatureRules:
    """Checks ``user`` and ``context`` of a rank body against the schema and the limits.

    ``schema`` None checks sizes only (a backend whose schema is unknown).
    """

    def __init__(self, schema: FeatureSchema | None, limits: ServiceLimits) -> None:
        self.limits = limits
        self.kinds: dict[str, str] = {}  # the request's user and context fields
        self.row_kinds: dict[str, str] = {}  # every field a candidate row may hold
        if schema is not None:
            for spec in schema.fields:
                if spec.kind in ACCEPTS:
                    self.row_kinds[spec.column] = spec.kind
                    if spec.side in REQUEST_SIDES:
                        self.kinds[spec.column] = spec.kind

    def problems(self, sides: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One validation issue (``loc``, ``msg``, ``type``) per bad value; empty when fine."""
        found: list[dict[str, Any]] = []
        for side, features in sides.items():
            if len(features) > self.limits.max_feature_values:
                found.append(_issue((side,), f"at most {self.limits.max_feature_values} features"))
                continue
            for name, value in features.items():
                message = self._problem(name, value)
                if message is not None:
                    found.append(_issue((side, name), message))
        return found

    def row_problems(self, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The issues of the feature values of ``candidate_rows`` (business columns are the
        body model's to check)."""
        found: list[dict[str, Any]] = []
        for i, row in enumerate(rows):
            for name, value in row.items():
                message = self._problem(name, value, self.row_kinds)
                if message is not None:
                    found.append(_issue(("candidate_rows", i, name), message))
        return found

    def _problem(self, name: str, value: Any, kinds: Mapping[str, str] | None = None) -> str | None:
        limits = self.limits
        if len(name) > limits.max_string_length:
            return f"a feature name has at most {limits.max_string_length} characters"
        kind = (self.kinds if kinds is None else kinds).get(name)
        if kind is not None and value is not None and not _accepts(kind, value):
            return f"must be {ACCEPTS[kind]} or null, got {type(value).__name__}"
        items = value if isinstance(value, list) else [value]
        if len(items) > limits.max_feature_values:
            return f"at most {limits.max_feature_values} values"
        if any(isinstance(v, str) and len(v) > limits.max_string_length for v in items):
            return f"a string value has at most {limits.max_string_length} characters"
        return None


def _accepts(kind: str, value: Any) -> bool:
    # The body's types already hold: ints in int64, floats finite, lists of one type, no bools.
    if kind == "categorical":
        return isinstance(value, (int, str))
    if kind == "multi_valued":
        return isinstance(value, list)
    if kind == "text":
        return isinstance(value, str)
    return isinstance(value, (int, float))


def _issue(where: tuple, message: str) -> dict[str, Any]:
    return {"loc": ("body", *where), "msg": message, "type": "value_error"}
