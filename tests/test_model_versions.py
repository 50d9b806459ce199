"""ModelVersions' refusals that need no Triton: nothing to roll back to, a bad watch interval,
a version that is not exported (the switch itself is tested through Triton in
tests/test_model_swap.py)."""

from __future__ import annotations

import pytest

from adrank.service.model_versions import ActiveVersion, ModelVersions
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
