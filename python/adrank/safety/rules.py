"""Safety rules per region, read from TOML.

Glossary: a *region* is a request's ``region`` (a country code in the synthetic world); a
*text field* is a catalog column of strings (or lists of strings) the keyword rules and the
classifier read; an *age bucket* is the user's ``age_bucket`` feature (an int, higher: older).

The file::

    text_fields = ["caption", "hashtags"]   # optional; default: those of the two the catalog has

    [regions.DE]
    keywords = ["casino", "gamble"]          # whole words, any case, in any text field
    blocked_categories = [7]
    banned_advertisers = [1003]
    age_gated_categories = { 5 = 3 }         # category -> the least age bucket it is shown to
    classifier_threshold = 0.8               # offensive-language probability that blocks

Every key of a region is optional; a region the file does not name has no rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

DEFAULT_TEXT_FIELDS = ("caption", "hashtags")
_REGION_KEYS = {
    "keywords",
    "blocked_categories",
    "banned_advertisers",
    "age_gated_categories",
    "classifier_threshold",
}


@dataclass(frozen=True)
class RegionRules:
    """The rules of one region."""

    keywords: tuple[str, ...] = ()
    blocked_categories: frozenset[int] = frozenset()
    banned_advertisers: frozenset[int] = frozenset()
    age_gated_categories: Mapping[int, int] = field(default_factory=dict)
    classifier_threshold: float | None = None

    def __post_init__(self) -> None:
        for word in self.keywords:
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"keywords must be non-empty strings, got {word!r}")
        for name in ("blocked_categories", "banned_advertisers"):
            for value in getattr(self, name):
                _check_int(name, value)
        for category, bucket in self.age_gated_categories.items():
            _check_int("age_gated_categories key", category)
            _check_int(f"age_gated_categories[{category}]", bucket)
        threshold = self.classifier_threshold
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise TypeError(
                    f"classifier_threshold must be a number, got {type(threshold).__name__}"
                )
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"classifier_threshold must be in [0, 1], got {threshold}")

    @property
    def keyword_pattern(self) -> re.Pattern[str] | None:
        """One case-insensitive regex of the keywords as whole words; None without keywords."""
        if not self.keywords:
            return None
        words = "|".join(re.escape(w.strip()) for w in sorted(self.keywords, key=len)[::-1])
        return re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class SafetyRules:
    """Rules by region, and the text fields they read (None: caption and hashtags if present)."""

    regions: Mapping[str, RegionRules] = field(default_factory=dict)
    text_fields: tuple[str, ...] | None = None

    @property
    def uses_classifier(self) -> bool:
        return any(r.classifier_threshold is not None for r in self.regions.values())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SafetyRules:
        """From the TOML's tables; TypeError/ValueError naming the bad key."""
        unknown = set(data) - {"regions", "text_fields"}
        if unknown:
            raise ValueError(f"unknown safety rules keys: {', '.join(sorted(unknown))}")
        fields = data.get("text_fields")
        if fields is not None and (
            not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields)
        ):
            raise TypeError("text_fields must be a list of column names")
        regions = data.get("regions", {})
        if not isinstance(regions, Mapping):
            raise TypeError("regions must be a table of region tables")
        parsed = {}
        for region, table in regions.items():
            if not isinstance(table, Mapping):
                raise TypeError(f"regions.{region} must be a table")
            bad = set(table) - _REGION_KEYS
            if bad:
                raise ValueError(f"regions.{region}: unknown keys {', '.join(sorted(bad))}")
            gates = table.get("age_gated_categories", {})
            if not isinstance(gates, Mapping):
                raise TypeError(f"regions.{region}.age_gated_categories must be a table")
            try:
                parsed[region] = RegionRules(
                    keywords=tuple(_list(table, "keywords")),
                    blocked_categories=frozenset(_list(table, "blocked_categories")),
                    banned_advertisers=frozenset(_list(table, "banned_advertisers")),
                    age_gated_categories={_int_key(k): v for k, v in gates.items()},
                    classifier_threshold=table.get("classifier_threshold"),
                )
            except (TypeError, ValueError) as error:
                raise type(error)(f"regions.{region}: {error}") from None
        return cls(parsed, None if fields is None else tuple(fields))

    @classmethod
    def from_toml(cls, path: str | Path) -> SafetyRules:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"safety rules file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"safety rules {path}: {error}") from None
        return cls.from_mapping(data)


def _list(table: Mapping[str, Any], key: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list, got {type(value).__name__}")
    return value


def _int_key(key: Any) -> int:
    try:
        return int(key)
    except ValueError:
        raise ValueError(f"age_gated_categories keys must be category ids, got {key!r}") from None


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must hold integers, got {value!r}")
