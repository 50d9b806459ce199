"""Publications of an online learner, and the serving follower that applies them in place.

Glossary: ``publication`` a folder ``OUT/publications/NNNNNNNN`` holding files per field and
``dense.json`` (the bias, the fields, the dim, the kind); every publication but number 0 holds
deltas (``FIELD.delta``: rows written and ids removed since the previous publication); number 0
and every ``snapshot_every``-th one are *snapshot* publications and also hold every row
(``FIELD.snap``). A publication is written as ``.NNNNNNNN.tmp`` and renamed, so a follower sees
it whole or not at all. When a snapshot publication is written, the publications before the
previous snapshot are deleted: the folder holds at most two snapshot windows.

A follower starts from the newest snapshot publication and then applies each later one, in
order, to its tables in place (each row atomic; lookups keep running); a publication is never
skipped. A follower whose next publication was deleted (it fell a whole window behind) starts
over from the newest snapshot, into new tables.

Freshness: a publication records ``source_time``, when the newest data it learned from landed
(the file's modification time), and ``sources``, the names of the files it learned from; the
follower records, per publication it applies, the seconds from then until the serving copy had
applied it (:attr:`DeltaFollower.freshness_s`, the last 10,000).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from adrank.dynamic_table import DynamicEmbeddingTable
from adrank.online.learner import FMLearner, predict_rows
from adrank.ops._checks import check_int

FORMAT = "adrank-online-1"


def _folder(out: Path, number: int) -> Path:
    return out / "publications" / f"{number:08d}"


def _numbers(out: Path) -> list[int]:
    """The publications there, in order (folders being written are named ``.N.tmp``)."""
    folder = out / "publications"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def _dense(folder: Path) -> dict:
    dense = json.loads((folder / "dense.json").read_text())
    if dense.get("format") != FORMAT:
        raise ValueError(f"{folder} is not an adrank online publication")
    return dense


class Publisher:
    """Writes a learner's publications to ``out``: call :meth:`publish` after each few steps.
    ``snapshot_every``: every that many publications, a snapshot publication (0: only the
    first, and nothing is ever deleted)."""

    def __init__(self, learner: FMLearner, out: str | Path, snapshot_every: int = 0) -> None:
        self.snapshot_every = check_int("snapshot_every", snapshot_every, minimum=0)
        self.learner = learner
        self.out = Path(out)
        if (self.out / "publications").exists():
            raise ValueError(f"out {self.out} already holds publications: use a new folder")
        (self.out / "publications").mkdir(parents=True)
        self.number = -1

    def publish(self, source_time: float | None = None, sources: Sequence[str] = ()) -> Path:
        """The next publication (module docstring). ``source_time``: when the newest data it
        learned from landed (unix seconds), for the freshness figure; ``sources``: the names of
        the files it learned from."""
        number = self.number + 1
        snapshot = number == 0 or (self.snapshot_every and number % self.snapshot_every == 0)
        final = _folder(self.out, number)
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.mkdir()
        rows = {}
        for field, table in self.learner.tables.items():
            if number > 0:  # what a running follower applies, snapshot publication or not
                rows[field] = table.export_delta(tmp / f"{field}.delta").rows
            if snapshot:  # where a new follower starts
                table.save(tmp / f"{field}.snap")
                rows[field] = len(table)
        dense = {
            "format": FORMAT,
            "kind": "snapshot" if snapshot else "delta",
            "fields": list(self.learner.config.fields),
            "dim": self.learner.config.dim,
            "bias": self.learner.bias,
            "examples": self.learner.examples,
            "rows": rows,
            "source_time": source_time,
            "sources": list(sources),
            "published_at": time.time(),
        }
        (tmp / "dense.json").write_text(json.dumps(dense))
        os.rename(tmp, final)
        self.number = number
        if snapshot and number > 0:  # keep two snapshot windows for followers that lag
            for old in _numbers(self.out):
                if old < number - self.snapshot_every:
                    shutil.rmtree(_folder(self.out, old), ignore_errors=True)
        return final


class DeltaFollower:
    """A serving copy of a learner's tables, kept current by :meth:`poll`."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.tables: dict[str, DynamicEmbeddingTable] = {}
        self.fields: tuple[str, ...] = ()
        self.bias = 0.0
        self.applied = -1  # the last publication applied
        # data landed -> applied here, per publication (bounded: a follower runs for days)
        self.freshness_s: deque[float] = deque(maxlen=10_000)

    def poll(self) -> int:
        """Apply every publication not yet applied; returns how many (a start from a snapshot
        counts one)."""
        count = 0
        if self.applied < 0 or not _folder(self.out, self.applied + 1).is_dir():
            numbers = _numbers(self.out)
            if not numbers or numbers[-1] <= self.applied:
                return 0  # nothing new
            count += self._start_from_snapshot(numbers)  # the first poll, or a gap
        while True:
            folder = _folder(self.out, self.applied + 1)
            if not folder.is_dir():
                return count
            dense = _dense(folder)
            for f in self.fields:
                self.tables[f].apply_delta(folder / f"{f}.delta")
            self._applied(dense)
            count += 1

    def _start_from_snapshot(self, numbers: list[int]) -> int:
        for number in reversed(numbers):
            folder = _folder(self.out, number)
            try:
                dense = _dense(folder)
            except (OSError, ValueError):  # an older snapshot may do; this one fails in order
                continue
            if dense["kind"] == "snapshot":
                fields = tuple(dense["fields"])
                self.tables = {f: DynamicEmbeddingTable.load(folder / f"{f}.snap") for f in fields}
                self.fields = fields
                self.applied = number - 1
                self._applied(dense)
                return 1
        raise ValueError(f"{self.out} holds no snapshot publication to start from")

    def _applied(self, dense: dict) -> None:
        self.bias = float(dense["bias"])
        if dense.get("source_time") is not None:
            self.freshness_s.append(time.time() - float(dense["source_time"]))
        self.applied += 1

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.tables:
            raise ValueError(f"no publication applied yet from {self.out}")
        rows = [
            self.tables[f].lookup(np.ascontiguousarray(columns[f], dtype=np.int64))
            for f in self.fields
        ]
        return predict_rows(self.bias, rows)
