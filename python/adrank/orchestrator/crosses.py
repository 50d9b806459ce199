"""The pooled rows of the request x creative crosses, computed per cross group.

Glossary: ``R`` catalog creatives; ``C`` candidates; ``F_x`` crosses; ``U_x`` the groups of
cross ``x``: creatives that agree on the cross's creative sources; ``H`` the most groups of any
cross; ``d`` a cross table's width; ``L`` the length of a request-side bag.

A cross's pooled row for a candidate depends on the request's ids of the cross's request
sources and on the candidate's group only. So per request the rows of all ``U_x`` groups are
computed once, hashed with ``ops.hash_cross`` and pooled with ``ops.embedding_bag`` exactly as
the training pipeline hashes a cross and the model pools its bag, and every candidate takes its
group's row. The rows are remembered per request key in a memo owned by the catalog snapshot
(bounded in bytes). When the crosses share one width and sit side by side in ``EMBEDDINGS``
(the usual layout), every cross's rows are kept stacked in one table ``[F_x * H, d]``, so a
request costs one look-up and one gather ``[C, F_x * d]``; crosses with a request-side bag
(interests x category: each of the bag's ids crossed with the group, pooled by the kernel) are
filled into a copy of that table. A cross with more than ``MEMO_MAX_GROUPS`` groups is computed
per request for the groups among the candidates.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from adrank import ops
from adrank.features.schema import FeatureSchema, FieldSpec
from adrank.orchestrator.request_fields import RequestFeatures

MEMO_MAX_GROUPS = 4096  # beyond this a cross's rows are computed per request
MEMO_MAX_BYTES = 256 << 20  # pooled rows remembered per catalog snapshot


class CrossMemo:
    """Pooled rows by request key, bounded in bytes: full, it starts over (no recency
    bookkeeping on the request path)."""

    def __init__(self) -> None:
        self.max_bytes = MEMO_MAX_BYTES
        self._rows: dict[tuple, np.ndarray] = {}
        self._bytes = 0

    def get(self, key: tuple) -> np.ndarray | None:
        return self._rows.get(key)

    def put(self, key: tuple, rows: np.ndarray) -> np.ndarray:
        if self._bytes + rows.nbytes > self.max_bytes:
            self._rows.clear()
            self._bytes = 0
        self._rows[key] = rows
        self._bytes += rows.nbytes
        return rows

    def __len__(self) -> int:
        return len(self._rows)


@dataclasses.dataclass(frozen=True)
class CrossGroups:
    """The crosses' groups in one catalog snapshot."""

    group: np.ndarray  # int64 [R, F_x]: each creative's group in each cross, in [0, U_x)
    group_ids: tuple[np.ndarray, ...]  # F_x arrays int64 [U_x, S_x]: ids of the creative sources
    memo: CrossMemo


class Crosses:
    """Fills the crosses' columns of ``EMBEDDINGS`` (see the module docstring).

    ``creative_column`` maps each creative field to its column in the snapshot's creative ids;
    ``columns[x]`` is cross ``x``'s slice of ``EMBEDDINGS``.
    """

    def __init__(
        self,
        schema: FeatureSchema,
        specs: Sequence[FieldSpec],
        creative_column: Mapping[str, int],
        bag_fields: set[str],
        tables: Mapping[str, Any],
        columns: Sequence[slice],
    ) -> None:
        self.specs = tuple(specs)
        self._columns = list(columns)
        self._hashing = [
            (schema.tables[s.table].slot, schema.tables[s.table].num_buckets, schema.hash_seed)
            for s in self.specs
        ]
        self._tables = [tables[s.table] for s in self.specs]
        self._dims = [schema.tables[s.table].dim for s in self.specs]
        self._creative_sources = [
            [creative_column[name] for name in s.sources if name in creative_column]
            for s in self.specs
        ]
        self._bag = [next((n for n in s.sources if n in bag_fields), None) for s in self.specs]
        self._singles = [
            tuple(n for n in s.sources if n not in creative_column and n not in bag_fields)
            for s in self.specs
        ]
        self._all_singles = sorted({name for names in self._singles for name in names})
        self._bag_crosses = [x for x, bag in enumerate(self._bag) if bag is not None]
        self._one_block = bool(self.specs) and (
            len(set(self._dims)) == 1
            and all(a.stop == b.start for a, b in itertools.pairwise(self._columns))
        )

    # --- per catalog snapshot --------------------------------------------------------------

    def groups(self, creative_ids: np.ndarray) -> CrossGroups:
        """Groups the snapshot's creatives (``creative_ids`` int64 [R, F_c]) in every cross."""
        group = np.zeros((len(creative_ids), len(self.specs)), dtype=np.int64)
        group_ids = []
        for x, sources in enumerate(self._creative_sources):
            if len(creative_ids):
                unique, inverse = np.unique(creative_ids[:, sources], axis=0, return_inverse=True)
                group[:, x] = inverse.reshape(-1)
            else:
                unique = np.empty((0, len(sources)), dtype=np.int64)
            group_ids.append(np.ascontiguousarray(unique, dtype=np.int64))
        return CrossGroups(group, tuple(group_ids), CrossMemo())

    # --- per request -----------------------------------------------------------------------

    def fill(
        self, out: np.ndarray, groups: CrossGroups, rows: np.ndarray, request: RequestFeatures
    ) -> None:
        """Writes cross ``x``'s pooled rows for catalog ``rows`` into ``out[:, columns[x]]``."""
        if not self.specs or not len(rows):
            return
        candidate_groups = np.take(groups.group, rows, axis=0)  # [C, F_x]
        sizes = [len(ids) for ids in groups.group_ids]
        if self._one_block and max(sizes) <= MEMO_MAX_GROUPS:
            height = max(sizes)
            stacked = self._stacked(groups, height, request)
            candidate_groups += np.arange(len(self.specs), dtype=np.int64) * height
            block = slice(self._columns[0].start, self._columns[-1].stop)
            out[:, block] = np.take(stacked, candidate_groups.reshape(-1), axis=0).reshape(
                len(rows), -1
            )
            return
        for x in range(len(self.specs)):
            if sizes[x] <= MEMO_MAX_GROUPS:
                pooled = self._memoized(x, groups, request)
                out[:, self._columns[x]] = np.take(pooled, candidate_groups[:, x], axis=0)
            else:
                present, inverse = np.unique(candidate_groups[:, x], return_inverse=True)
                pooled = self._pool(x, groups.group_ids[x][present], request)
                out[:, self._columns[x]] = np.take(pooled, inverse.reshape(-1), axis=0)

    def _stacked(self, groups: CrossGroups, height: int, request: RequestFeatures) -> np.ndarray:
        """Every cross's rows in one table [F_x * H, d], cross ``x`` from row ``x * H``.

        The crosses without a bag depend on the request's single ids only: that table is
        remembered whole; the bag crosses are filled into a copy per request.
        """
        key = ("stacked", *(int(request.ids[name][0]) for name in self._all_singles))
        stacked = groups.memo.get(key)
        if stacked is None:
            stacked = np.zeros((len(self.specs) * height, self._dims[0]), dtype=np.float32)
            for x in range(len(self.specs)):
                if self._bag[x] is None:
                    pooled = self._memoized(x, groups, request)
                    stacked[x * height : x * height + len(pooled)] = pooled
            groups.memo.put(key, stacked)
        if not self._bag_crosses:
            return stacked
        stacked = stacked.copy()
        for x in self._bag_crosses:
            pooled = self._memoized(x, groups, request)
            stacked[x * height : x * height + len(pooled)] = pooled
        return stacked

    def _memoized(self, x: int, groups: CrossGroups, request: RequestFeatures) -> np.ndarray:
        """Cross ``x``'s rows for all its groups [U_x, d], from the memo or computed."""
        key: tuple = (x, *(int(request.ids[name][0]) for name in self._singles[x]))
        if self._bag[x] is not None:
            key = (*key, tuple(request.ids[self._bag[x]].tolist()))
        pooled = groups.memo.get(key)
        if pooled is None:
            pooled = groups.memo.put(key, self._pool(x, groups.group_ids[x], request))
        return pooled

    def _pool(self, x: int, group_ids: np.ndarray, request: RequestFeatures) -> np.ndarray:
        """[U, d]: cross ``x`` hashed and pooled for groups with creative ids ``group_ids``."""
        spec, bag_name = self.specs[x], self._bag[x]
        bag = None if bag_name is None else request.ids[bag_name]
        per_group = 1 if bag is None else len(bag)
        num = len(group_ids)
        columns, creative = [], iter(range(group_ids.shape[1]))
        for name in spec.sources:
            if name == bag_name:
                columns.append(np.tile(bag, num))
            elif name in self._singles[x]:
                columns.append(np.full(num * per_group, request.ids[name][0], dtype=np.int64))
            else:
                columns.append(np.repeat(group_ids[:, next(creative)], per_group))
        values = ops.hash_cross(columns, *self._hashing[x])
        offsets = np.arange(num, dtype=np.int64) * per_group
        return ops.embedding_bag(self._tables[x], values, offsets, mode=spec.pooling)
