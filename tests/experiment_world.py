"""The small simulated world the experiment tests share: a workspace built once per process
(a few seconds) and a Ranker over its exported model, run in process."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.simulation import make_world, simulation_world
from adrank.workspace import prepare_workspace

CAMPAIGNS, ROWS = 6, 3000


@functools.cache
def world():
    root = Path(tempfile.mkdtemp(prefix="adrank-experiment-world-"))
    workspace = prepare_workspace(
        root,
        rows=ROWS,
        world=simulation_world(CAMPAIGNS),
        repository=root / "repository",
        say=lambda _: None,
    )
    return make_world(workspace, seed=1)


def ranker(**settings) -> Ranker:
    w = world()
    return Ranker.from_export(
        w.artifacts_dir, w.catalog, TorchScriptModel(w.version_dir), **settings
    )
