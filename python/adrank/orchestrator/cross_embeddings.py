"""The pooled rows of the request x creative crosses, per request, by cross group.

Glossary: ``C`` candidates; ``U_x`` the groups of cross ``x`` (creatives that agree on the
cross's creative sources, :class:`~adrank.orchestrator.features.CreativeFeatures`); ``d_x`` the
width of its table; ``L`` the length of a request-side bag.

A cross's pooled row for a candidate depends on the request's ids of the cross's request
sources and on the candidate's group only. So, for a cross with few groups, the rows of all
``U_x`` groups for one request-side key are computed once ([U_x, d_x]: hashed and looked up
with adrank's kernels) and kept in a memo owned by the catalog snapshot. When the crosses share
one width and sit side by side (the usual layout), the rows of all crosses without a bag are
also kept stacked in one table per request key, so a request costs a look-up or two and one
gather of [C, F_x * d]. A cross with a bag (interests x category) keeps one entry per bag id
and pools the bag's entries as the embedding kernel would (sum, mean, max).
A cross with more groups than ``MEMO_MAX_GROUPS`` is computed per request for the groups
present among the candidates.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.schema import FieldSpec
from adrank.orchestrator.features import CreativeFeatures, RequestFeatures, ServingFeatures

MEMO_MAX_GROUPS = 4096  # beyond this a cross's rows are computed per request
MEMO_CAPACITY = 1 << 16  # entries per snapshot; [U_x, d_x] each, so a few hundred MB at most
_LAYOUT = ("layout",)  # the memo's entry for the snapshot's group counts


class CrossEmbeddings:
    """Fills the crosses' columns of ``EMBEDDINGS`` (see the module docstring)."""

    def __init__(self, features: ServingFeatures, tables: Mapping[str, Any]) -> None:
        self.features = features
        self.specs = features.cross_fields
        self._tables = [tables[spec.table] for spec in self.specs]
        self._dims = [features.schema.tables[spec.table].dim for spec in self.specs]
        bags = features.bag_fields
        self._bag = [next((s for s in spec.sources if s in bags), None) for spec in self.specs]
        request = {f.name for f in features.request_fields}
        self._singles = [
            tuple(s for s in spec.sources if s in request and s not in bags) for spec in self.specs
        ]
        self._all_singles = sorted({s for singles in self._singles for s in singles})
        self._bag_crosses = [x for x, bag in enumerate(self._bag) if bag is not None]

    def fill(
        self,
        out: np.ndarray,
        columns: list[slice],
        creative: CreativeFeatures,
        rows: np.ndarray,
        request: RequestFeatures,
        memo: dict[tuple, np.ndarray],
    ) -> None:
        """Writes cross ``x``'s pooled rows for candidates ``rows`` into ``out[:, columns[x]]``."""
        if not self.specs:
            return
        groups = np.take(creative.cross_group, rows, axis=0)  # [C, F_x]
        layout = memo.get(_LAYOUT)
        if layout is None:  # once per snapshot: [U_x], and whether the one-gather path applies
            sizes = [len(g) for g in creative.group_rows]
            fast = self._one_block(columns) and max(sizes) <= MEMO_MAX_GROUPS
            starts = np.arange(len(self.specs), dtype=np.int64) * max(sizes)
            layout = memo[_LAYOUT] = (sizes, fast, starts)
        sizes, fast, starts = layout
        if fast:
            stacked = self._stacked(creative, sizes, request, memo)
            groups += starts
            block = slice(columns[0].start, columns[-1].stop)
            out[:, block] = np.take(stacked, groups.reshape(-1), axis=0).reshape(len(rows), -1)
            return
        for x, spec in enumerate(self.specs):
            group_rows = creative.group_rows[x]
            if len(group_rows) <= MEMO_MAX_GROUPS:
                pooled = self._memoized(x, spec, creative, group_rows, request, memo)
                out[:, columns[x]] = np.take(pooled, groups[:, x], axis=0)
                continue
            present, group = np.unique(groups[:, x], return_inverse=True)
            ids = {s: np.array([request.single_ids[s]]) for s in self._singles[x]}
            if self._bag[x] is not None:
                ids[self._bag[x]] = request.bags[self._bag[x]]
            pooled = self._pool(x, spec, creative, group_rows[present], ids)
            out[:, columns[x]] = np.take(pooled, group, axis=0)

    def _stacked(
        self,
        creative: CreativeFeatures,
        sizes: list[int],
        request: RequestFeatures,
        memo: dict[tuple, np.ndarray],
    ) -> np.ndarray:
        """Every cross's rows in one table [F_x * H, d], cross ``x`` from row ``x * H``.

        The crosses without a bag depend on the request's single ids only: their part is kept
        whole in the memo (one look-up per request); the bag crosses are filled in per request.
        """
        height = max(sizes)
        singles = tuple(request.single_ids[s] for s in self._all_singles)
        key = ("stacked", singles)
        stacked = memo.get(key)
        if stacked is None:
            stacked = np.zeros((len(self.specs) * height, self._dims[0]), dtype=np.float32)
            for x, spec in enumerate(self.specs):
                if self._bag[x] is None:
                    pooled = self._memoized(
                        x, spec, creative, creative.group_rows[x], request, memo
                    )
                    stacked[x * height : x * height + sizes[x]] = pooled
            _remember(memo, key, stacked)
        if not self._bag_crosses:
            return stacked
        stacked = stacked.copy()
        for x in self._bag_crosses:
            rows = creative.group_rows[x]
            pooled = self._memoized(x, self.specs[x], creative, rows, request, memo)
            stacked[x * height : x * height + sizes[x]] = pooled
        return stacked

    def _one_block(self, columns: list[slice]) -> bool:
        """Crosses of one width in adjacent columns (the usual layout)."""
        return len(set(self._dims)) == 1 and all(
            a.stop == b.start for a, b in itertools.pairwise(columns)
        )

    def _memoized(
        self,
        x: int,
        spec: FieldSpec,
        creative: CreativeFeatures,
        group_rows: np.ndarray,
        request: RequestFeatures,
        memo: dict[tuple, np.ndarray],
    ) -> np.ndarray:
        singles = tuple(request.single_ids[s] for s in self._singles[x])
        bag_name = self._bag[x]
        elements = [None] if bag_name is None else request.bags[bag_name].tolist()
        parts = []
        for element in elements:
            key = (x, singles, element)
            rows = memo.get(key)
            if rows is None:
                ids = {s: np.array([v]) for s, v in zip(self._singles[x], singles, strict=True)}
                if bag_name is not None:
                    ids[bag_name] = np.array([element], dtype=np.int64)
                rows = self._pool(x, spec, creative, group_rows, ids)
                _remember(memo, key, rows)
            parts.append(rows)
        if bag_name is None:
            return parts[0]
        if not parts:  # an empty bag pools to zeros
            return np.zeros((len(group_rows), self._dims[x]), dtype=np.float32)
        if spec.pooling == "max":
            return np.maximum.reduce(parts)
        pooled = np.add.reduce(parts)
        return pooled / np.float32(len(parts)) if spec.pooling == "mean" else pooled

    def _pool(
        self,
        x: int,
        spec: FieldSpec,
        creative: CreativeFeatures,
        group_rows: np.ndarray,
        request_ids: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """[len(group_rows), d_x]: the cross pooled for each group row, with the kernels."""
        values, per_row = self.features.cross_values(spec, creative, group_rows, request_ids)
        offsets = np.arange(len(group_rows), dtype=np.int64) * per_row
        return ops.embedding_bag(self._tables[x], values, offsets, mode=spec.pooling)


def _remember(memo: dict[tuple, Any], key: tuple, value: Any) -> None:
    if len(memo) >= MEMO_CAPACITY:
        memo.clear()  # bounded: start over rather than track recency on the request path
    memo[key] = value
