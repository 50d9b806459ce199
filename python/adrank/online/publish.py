"""Publications of an online learner, and the serving follower that applies them in place.

Glossary: ``publication`` a folder ``OUT/publications/NNNNNNNN`` holding one file per field
and ``dense.json`` (the bias, the fields, the dim, the kind); number 0 holds snapshots
(``FIELD.snap``), every later one deltas (``FIELD.delta``: rows written and ids removed since
the previous publication). A publication is written as ``.NNNNNNNN.tmp`` and renamed, so a
follower sees it whole or not at all.

A follower loads publication 0 and then applies each later one, in order, to its tables in place
(each row atomic; lookups keep running); a publication is never skipped.

Freshness: a publication records ``source_time``, when the newest data it learned from landed
(the file's modification time), and ``sources``, the names of the files it learned from; the
follower records, per publication it applies, the seconds from then until the serving copy had
applied it (:attr:`DeltaFollower.freshness_s`, the last 10,000).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from adrank.dynamic_table import DynamicEmbeddingTable
from adrank.online.learner import FMLearner, predict_rows

FORMAT = "adrank-online-1"


def _folder(out: Path, number: int) -> Path:
    return out / "publications" / f"{number:08d}"


class Publisher:
    """Writes a learner's publications to ``out``: call :meth:`publish` after each few steps."""

    def __init__(self, learner: FMLearner, out: str | Path) -> None:
        self.learner = learner
        self.out = Path(out)
        if (self.out / "publications").exists():
            raise ValueError(f"out {self.out} already holds publications: use a new folder")
        (self.out / "publications").mkdir(parents=True)
        self.number = -1

    def publish(self, source_time: float | None = None, sources: Sequence[str] = ()) -> Path:
        """The next publication: snapshots the first time, deltas after. ``source_time``: when
        the newest data it learned from landed (unix seconds), for the freshness figure;
        ``sources``: the names of the files it learned from."""
        number = self.number + 1
        final = _folder(self.out, number)
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.mkdir()
        rows = {}
        for field, table in self.learner.tables.items():
            if number == 0:
                table.save(tmp / f"{field}.snap")
                rows[field] = len(table)
            else:
                rows[field] = table.export_delta(tmp / f"{field}.delta").rows
        dense = {
            "format": FORMAT,
            "kind": "snapshot" if number == 0 else "delta",
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
        """Apply every publication not yet applied; returns how many."""
        count = 0
        while True:
            folder = _folder(self.out, self.applied + 1)
            if not folder.is_dir():
                return count
            dense = json.loads((folder / "dense.json").read_text())
            if dense.get("format") != FORMAT:
                raise ValueError(f"{folder} is not an adrank online publication")
            if self.applied < 0:
                self.fields = tuple(dense["fields"])
                self.tables = {
                    f: DynamicEmbeddingTable.load(folder / f"{f}.snap") for f in self.fields
                }
            else:
                for f in self.fields:
                    self.tables[f].apply_delta(folder / f"{f}.delta")
            self.bias = float(dense["bias"])
            if dense.get("source_time") is not None:
                self.freshness_s.append(time.time() - float(dense["source_time"]))
            self.applied += 1
            count += 1

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        if not self.tables:
            raise ValueError(f"no publication applied yet from {self.out}")
        rows = [
            self.tables[f].lookup(np.ascontiguousarray(columns[f], dtype=np.int64))
            for f in self.fields
        ]
        return predict_rows(self.bias, rows)
