"""The safety gate: which of a request's candidates its region's rules block, decided once per
catalog snapshot, with an audit log of every block and a person's overrides.

Glossary: a *decision* is, per (creative, region), blocked or not, and the least age bucket the
creative is shown to (its age gate, 0: none); an *override* is a person's allow or deny of one
(creative, region); the *audit log* lists every block (creative, region, rule, score, time) and
every override (who, when, why), in an :class:`~adrank.stores.safety_audit.AuditStore` that
survives a restart (SQLite or PostgreSQL; in memory by default).

Decisions are computed the first time a catalog snapshot is served (one pass over its rows per
region with rules, the classifier once over all texts) and cached with the snapshot, so a
request costs a gather and two comparisons. A snapshot swapped in is decided anew (a changed
creative is checked again; so is a request's own inline catalog, each time); a block is logged
when it appears, not again while it holds (:mod:`adrank.stores.safety_audit`), so a restart
adds nothing to the log. Overrides are read from the store at start, and again when another
process wrote (checked at most every ``refresh_s``). A snapshot decided while the store does not
answer (a PostgreSQL outage) is served with its decisions all the same, and its blocks are
logged when the store answers again (at the next listing, override or snapshot decided).
Overrides apply on top at request time:
*deny* blocks the creative in the region; *allow* lifts the rule blocks (keywords, categories,
advertisers, the classifier) but not an age gate, which is the law, not a judgment.

A user without an ``age_bucket`` is taken to be under every age gate (gated creatives are not
shown). Keyword rules and the classifier read the rules' ``text_fields``, by default ``caption``
and ``hashtags``; a field the catalog lacks is skipped (a catalog without text has no text
blocks).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adrank.safety.rules import DEFAULT_TEXT_FIELDS, RegionRules, SafetyRules
from adrank.stores.postgres import StateUnavailableError
from adrank.stores.safety_audit import MAX_PAGE, AuditEntry, AuditStore, SQLiteAuditStore

DEFAULT_REFRESH_S = 0.5  # other processes' overrides are seen within this


@dataclass(frozen=True)
class _Decisions:
    """One snapshot's decisions, per region with rules: blocked [R] and the age gate [R]."""

    blocked: Mapping[str, np.ndarray]
    min_age: Mapping[str, np.ndarray]


class SafetyGate:
    """Blocks candidates by the rules of the request's region (see the module docstring).

    ``classifier``: texts -> offensive-language probabilities; None uses ``alt-profanity-check``
    when a region sets a ``classifier_threshold`` (ImportError naming it if not installed).
    ``store``: the audit log and overrides (:func:`adrank.stores.safety_audit.open_audit_store`
    opens one by ``--state``); None keeps them in memory. The gate closes it in :meth:`close`.
    ``refresh_s``: seconds between checks for overrides other processes wrote.
    """

    def __init__(
        self,
        rules: SafetyRules,
        *,
        clock: Callable[[], float] = time.time,
        classifier: Callable[[list[str]], Any] | None = None,
        store: AuditStore | None = None,
        refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        if not isinstance(rules, SafetyRules):
            raise TypeError(f"rules must be SafetyRules, got {type(rules).__name__}")
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, (int, float)):
            raise TypeError(f"refresh_s must be a number, got {type(refresh_s).__name__}")
        if not (math.isfinite(refresh_s) and refresh_s >= 0):
            raise ValueError(f"refresh_s must be a finite number >= 0, got {refresh_s}")
        if rules.uses_classifier and classifier is None:
            classifier = profanity_classifier()
        self.rules = rules
        self.clock = clock
        self.classifier = classifier
        self.store = store if store is not None else SQLiteAuditStore(":memory:")
        self.refresh_s = float(refresh_s)
        self._lock = threading.Lock()
        self._decided: weakref.WeakKeyDictionary[Any, _Decisions] = weakref.WeakKeyDictionary()
        self._unlogged: list[tuple[list[str], list[int], list[AuditEntry]]] = []
        self._version = self.store.version()
        self._overrides = self.store.overrides()  # region -> creative -> allow
        self._next_refresh = time.monotonic() + self.refresh_s

    # --- serving ----------------------------------------------------------------------------

    def blocked(
        self, catalog: Any, rows: np.ndarray, region: str | None, user: Mapping[str, Any]
    ) -> np.ndarray | None:
        """bool [C]: the candidates (catalog ``rows``) not to serve in ``region`` to ``user``;
        None when nothing can be blocked there (no rules and no overrides for the region)."""
        if region is None:
            return None
        overrides = self._region_overrides(region)
        if region not in self.rules.regions and not overrides:
            return None
        decisions = self.decide(catalog)
        if region in decisions.blocked:
            blocked = decisions.blocked[region][rows]
            min_age = decisions.min_age[region][rows]
        else:
            blocked = np.zeros(len(rows), dtype=bool)
            min_age = np.zeros(len(rows), dtype=np.int64)
        if overrides:
            ids = catalog.creative_id[rows]
            allowed = [c for c, allow in overrides.items() if allow]
            denied = [c for c, allow in overrides.items() if not allow]
            blocked = (blocked & ~np.isin(ids, allowed)) | np.isin(ids, denied)
        age = user.get("age_bucket")
        if isinstance(age, bool) or not isinstance(age, (int, np.integer)):
            return blocked | (min_age > 0)  # unknown: under every gate
        return blocked | (min_age > age)

    def decide(self, catalog: Any) -> _Decisions:
        """The snapshot's decisions, computed (and their blocks logged) on first use."""
        decisions = self._decided.get(catalog)
        if decisions is not None:
            return decisions
        with self._lock:
            decisions = self._decided.get(catalog)
            if decisions is None:
                decisions = self._compute(catalog)
                self._decided[catalog] = decisions
        return decisions

    # --- the audit log and overrides --------------------------------------------------------

    def audit(
        self, region: str | None = None, creative_id: int | None = None, limit: int = MAX_PAGE
    ) -> list[AuditEntry]:
        """The latest ``limit`` entries (at most ``MAX_PAGE``), oldest first, of a region and
        a creative if given."""
        self._log_unlogged()
        return self.store.latest(region, creative_id, limit)

    def page(
        self,
        region: str | None = None,
        creative_id: int | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries after the entry ``after`` (its id; 0: from the start), oldest
        first: the next page starts after the last entry's id."""
        self._log_unlogged()
        return self.store.entries(region, creative_id, after, limit)

    def override(
        self, creative_id: int, region: str, allow: bool, reason: str = "", by: str = ""
    ) -> AuditEntry:
        """A person's (``by``) decision on (creative, region) and why, audited; it holds across
        snapshots and restarts."""
        if isinstance(creative_id, bool) or not isinstance(creative_id, int):
            raise TypeError(f"creative_id must be an int, got {type(creative_id).__name__}")
        if not isinstance(region, str) or not region:
            raise ValueError(f"region must be a non-empty string, got {region!r}")
        for name, value in (("reason", reason), ("by", by)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        rule = "override:allow" if allow else "override:deny"
        entry = AuditEntry(creative_id, region, rule, None, self.clock(), reason, by)
        self._log_unlogged()
        with self._lock:
            stored = self.store.record_override(entry, bool(allow))
            self._overrides.setdefault(region, {})[creative_id] = bool(allow)
        return stored

    def close(self) -> None:
        self.store.close()

    def _region_overrides(self, region: str) -> dict[int, bool]:
        if time.monotonic() >= self._next_refresh and self._lock.acquire(blocking=False):
            try:  # another process's overrides (a thread finding the lock taken reads as is)
                self._next_refresh = time.monotonic() + self.refresh_s
                version = self.store.version()
                if version != self._version:
                    self._version = version
                    self._overrides = self.store.overrides()
            finally:
                self._lock.release()
        return dict(self._overrides.get(region, {}))

    # --- deciding a snapshot ----------------------------------------------------------------

    def _compute(self, catalog: Any) -> _Decisions:
        texts = _texts(catalog, self.rules.text_fields)
        scores = None
        if self.rules.uses_classifier and texts is not None:
            scores = np.zeros(len(texts))
            nonempty = [i for i, t in enumerate(texts) if t]
            if nonempty:
                probs = self.classifier([texts[i] for i in nonempty])  # type: ignore[misc]
                scores[nonempty] = np.asarray(probs, dtype=np.float64)
        now = self.clock()
        blocked, min_age, blocks = {}, {}, []
        for region, rules in self.rules.regions.items():
            blocked[region], min_age[region], entries = _decide_region(
                catalog, region, rules, texts, scores, now
            )
            blocks.extend(entries)
        self._unlogged.append((list(self.rules.regions), catalog.creative_id.tolist(), blocks))
        self._log_unlogged(locked=True)
        return _Decisions(blocked, min_age)

    def _log_unlogged(self, locked: bool = False) -> None:
        """Logs the decided snapshots' blocks not logged yet, oldest first; those the store
        cannot take now (an outage) wait for the next call."""
        if not self._unlogged:
            return
        with contextlib.nullcontext() if locked else self._lock:
            try:
                while self._unlogged:
                    self.store.record_decisions(*self._unlogged[0])
                    self._unlogged.pop(0)
            except StateUnavailableError:
                pass  # served all the same; logged when the store answers again


def _decide_region(
    catalog: Any,
    region: str,
    rules: RegionRules,
    texts: list[str] | None,
    scores: np.ndarray | None,
    now: float,
) -> tuple[np.ndarray, np.ndarray, list[AuditEntry]]:
    """One region's blocked [R], age gates [R], and the audit entries of its blocks."""
    size = len(catalog.creative_id)
    blocked = np.zeros(size, dtype=bool)
    entries: list[AuditEntry] = []

    def block(hits: np.ndarray, rule: Callable[[int], str], score: np.ndarray | None) -> None:
        for row in np.flatnonzero(hits):
            value = 1.0 if score is None else float(score[row])
            entries.append(AuditEntry(int(catalog.creative_id[row]), region, rule(row), value, now))
        blocked[hits] = True

    if rules.banned_advertisers:
        banned = np.isin(catalog.advertiser_id, list(rules.banned_advertisers))
        block(banned, lambda r: f"advertiser:{catalog.advertiser_id[r]}", None)
    if rules.blocked_categories:
        hits = np.isin(catalog.category, list(rules.blocked_categories))
        block(hits, lambda r: f"category:{catalog.category[r]}", None)
    pattern = rules.keyword_pattern
    if pattern is not None and texts is not None:
        found = [pattern.search(t) for t in texts]
        hits = np.array([m is not None for m in found], dtype=bool)
        block(hits, lambda r: f"keyword:{found[r].group(0).lower()}", None)  # type: ignore[union-attr]
    if rules.classifier_threshold is not None and scores is not None:
        block(scores >= rules.classifier_threshold, lambda r: "classifier", scores)
    min_age = np.zeros(size, dtype=np.int64)
    for category, bucket in rules.age_gated_categories.items():
        gated = catalog.category == category
        min_age[gated] = np.maximum(min_age[gated], bucket)
        block_entries = np.flatnonzero(gated)
        entries.extend(
            AuditEntry(int(catalog.creative_id[r]), region, f"age_gate:{bucket}", 1.0, now)
            for r in block_entries
        )
    return blocked, min_age, entries


def _texts(catalog: Any, fields: tuple[str, ...] | None) -> list[str] | None:
    """Each creative's text fields joined by spaces; None when the catalog has none of them."""
    table = getattr(catalog, "table", None)
    if table is None:
        return None
    present = [f for f in (fields or DEFAULT_TEXT_FIELDS) if f in table.column_names]
    if not present:
        return None
    columns = []
    for name in present:
        values = table[name].to_pylist()
        columns.append(
            [
                " ".join(str(x) for x in v if x is not None)
                if isinstance(v, list)
                else ("" if v is None else str(v))
                for v in values
            ]
        )
    return [" ".join(t for t in parts if t) for parts in zip(*columns, strict=True)]


def profanity_classifier() -> Callable[[list[str]], Any]:
    """``alt-profanity-check``'s packaged model (offline): texts -> probabilities."""
    try:
        from profanity_check import predict_prob
    except ImportError as error:
        raise ImportError(
            "classifier_threshold needs the alt-profanity-check package "
            "(pip install 'adrank[safety]')"
        ) from error
    return predict_prob
