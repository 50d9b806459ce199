"""ModelVersions' refusals that need no Triton: nothing to roll back to, a bad watch interval,
a version that is not exported or cannot be served (the switch itself is tested through Triton in
tests/test_model_swap.py)."""

from __future__ import annotations

import shutil

import pytest

from adrank.orchestrator.errors import ModelUnavailableError
from adrank.service.model_versions import ActiveVersion, ModelVersions, SwapError
from service_world import build_world


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> ModelVersions:
    root = tmp_path_factory.mktemp("versions")
    world = build_world(root)
    current = ActiveVersion(1, root / "ranker" / "1", world.ranker.model)
    return ModelVersions(world.ranker, root / "ranker", current, connect=lambda _: None)


def test_refusals_name_what_is_missing(versions: ModelVersions) -> None:
    with pytest.raises(LookupError, match="there is no previous version to roll back to"):
        versions.rollback()
    with pytest.raises(LookupError, match="version 7 is not exported in"):
        versions.activate(7)
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        versions.watch(0)
    assert versions.activate(1)["version"] == 1  # already serving: nothing to do


class _Unanswering:
    """A model client whose server never answers (as a Triton that cannot run the version)."""

    closed = False

    def warm_up(self, *_: object) -> None:
        raise ModelUnavailableError("ranking model unavailable: deadline exceeded")

    def close(self) -> None:
        self.closed = True


def test_a_version_that_cannot_be_served_leaves_the_old_one(serving_workspace, tmp_path) -> None:
    from adrank.orchestrator.model import TorchScriptModel
    from adrank.orchestrator.ranker import Ranker

    ws = serving_workspace
    root = tmp_path / "artifacts"
    shutil.copytree(ws.artifacts_dir, root / "2")  # the same export, as a second version
    model = TorchScriptModel(ws.repository / ws.model_name / str(ws.version))
    ranker = Ranker.from_export(ws.artifacts_dir, ws.catalog_path, model)
    unanswering = _Unanswering()
    versions = ModelVersions(
        ranker, root, ActiveVersion(1, ws.artifacts_dir, model), connect=lambda _: unanswering
    )
    with pytest.raises(SwapError, match="version 2 could not be served: ranking model unavail"):
        versions.activate(2)
    assert unanswering.closed
    assert ranker.model is model
    assert versions.status()["version"] == 1
