"""An arm's model version is applied: its requests are scored by that version, pinned in the
Ranker beside the serving one (one model call per version in a batch), and every response names
the version that scored it; a version an arm names but nobody pinned, or that is not exported
or cannot be served, is refused before serving. In process here (two TorchScript versions with
different weights); over real HTTP with Triton in tests/test_experiment_version_http.py."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

from adrank.artifacts import MODEL_FILE
from adrank.experiments.assignment import ExperimentSet
from adrank.experiments.serving import ArmVersionError, ExperimentRanker
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.request import RankRequest
from adrank.service.model_versions import ActiveVersion, ModelVersions, SwapError
from adrank.service.stack import pin_arm_versions
from adrank.triton.testing import DemoDenseRanker
from service_world import build_world


def experiments(version: object = 2) -> ExperimentSet:
    return ExperimentSet.from_mapping(
        {
            "experiment": [
                {
                    "name": "model",
                    "layer": "model",
                    "salt": "model-v2",
                    "arm": [
                        {"name": "control", "share": 0.5},
                        {"name": "v2", "share": 0.5, "model_version": version},
                    ],
                }
            ]
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("arm-versions")
    world = build_world(root)
    version_dir = root / "ranker" / "2"  # version 2: the same towers, other weights
    version_dir.mkdir(parents=True)
    module = DemoDenseRanker(world.schema.embedding_dim, world.schema.dense_dim, seed=11).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
        torch.jit.script(module).save(str(version_dir / MODEL_FILE))
    return world, TorchScriptModel(version_dir), version_dir


def _ranker(world, model) -> Ranker:
    return Ranker(world.schema, world.tables, model, Catalog.from_arrow(world.catalog))


def _request(world, user_id: int, request_id: str) -> RankRequest:
    body = world.good_body(request_id)
    return RankRequest(
        request_id=request_id,
        user=body["user"] | {"user_id": user_id},
        context=body["context"],
        candidates=np.asarray(body["candidates"]),
        k=body["k"],
        region=body["region"],
    )


def test_each_request_is_scored_by_its_version_in_one_batch(world):
    w, v2, _ = world
    ranker = _ranker(w, w.ranker.model)
    ranker.pin_model(2, w.schema, w.tables, v2)
    assert ranker.pinned_versions == {2}
    only_v2 = _ranker(w, v2)
    requests = [_request(w, 10 + i, f"r{i}") for i in range(4)]
    requests[1] = dataclasses.replace(requests[1], model_version=2)
    requests[3] = dataclasses.replace(requests[3], model_version=2)
    answers = ranker.rank_batch(requests)
    assert [a.request_id for a in answers] == ["r0", "r1", "r2", "r3"]
    assert [a.model_version for a in answers] == [
        "ranker/1 (in process)",
        "ranker/2 (in process)",
        "ranker/1 (in process)",
        "ranker/2 (in process)",
    ]
    for answer, request in zip(answers, requests, strict=True):
        alone = (only_v2 if request.model_version == 2 else w.ranker).rank(
            dataclasses.replace(request, model_version=None)
        )
        np.testing.assert_array_equal(answer.creative_id, alone.creative_id)
        np.testing.assert_allclose(answer.p_ctr, alone.p_ctr)
    assert not np.allclose(answers[0].p_ctr, only_v2.rank(requests[0]).p_ctr)  # they differ

    # A catalog swap re-encodes the pinned version too; a model swap leaves it pinned.
    smaller = Catalog.from_arrow(w.catalog.slice(0, len(w.catalog) // 2))
    ranker.swap_catalog(smaller)
    ranker.swap_model(w.schema, w.tables, w.ranker.model)
    answer = ranker.rank(requests[1])
    assert answer.model_version == "ranker/2 (in process)"
    assert set(answer.creative_id) <= set(smaller.creative_id.tolist())
    with pytest.raises(LookupError, match="model version 3 is not pinned in this ranker"):
        ranker.rank(dataclasses.replace(requests[0], model_version=3))


def test_arms_name_the_version_that_scored_them(world):
    w, v2, _ = world
    ranker = _ranker(w, w.ranker.model)
    ranker.pin_model(2, w.schema, w.tables, v2)
    logged = []
    backend = ExperimentRanker(ranker, experiments(), log=lambda q, a: logged.append((q, a)))
    by_arm: dict[str, set[str]] = {}
    for user in range(40):
        answer = backend.rank(_request(w, user, f"u{user}"))
        by_arm.setdefault(answer.arms["model"], set()).add(answer.model_version)
    assert by_arm == {"control": {"ranker/1 (in process)"}, "v2": {"ranker/2 (in process)"}}
    for request, answer in logged:  # the request the log gets carries the arm's version
        assert request.model_version == (2 if answer.arms["model"] == "v2" else None)


def test_an_arm_version_nobody_pinned_is_refused(world):
    w, _, _ = world
    with pytest.raises(
        ArmVersionError,
        match=r"arm model/v2: model version 2 is not loaded beside the serving one \(loaded: "
        r"none\)",
    ):
        ExperimentRanker(_ranker(w, w.ranker.model), experiments())
    assert experiments().model_versions() == {2: ["model/v2"]}


@pytest.mark.parametrize("bad", ["2", 0, True, 1.5])
def test_model_version_must_be_an_exported_version_number(bad):
    with pytest.raises(ValueError, match="arm 'v2': model_version must be an exported version"):
        experiments(bad)


def test_the_service_refuses_an_arm_version_it_cannot_serve(world, tmp_path):
    w, _, _ = world
    ranker = _ranker(w, w.ranker.model)
    root = tmp_path / "ranker"
    (root / "1").mkdir(parents=True)
    versions = ModelVersions(
        ranker, root, ActiveVersion(1, root / "1", ranker.model), connect=lambda _: None
    )
    with pytest.raises(ArmVersionError, match="arm model/v2: version 2 is not exported in"):
        pin_arm_versions(versions, experiments())
    with pytest.raises(LookupError, match="version 2 is not exported"):
        versions.pin(2)
    (root / "2").mkdir()
    (root / "2" / "manifest.json").write_text("{}")  # exported, but not readable
    with pytest.raises(SwapError, match=r"version 2 could not be loaded: .* not an adrank export"):
        versions.pin(2)
    with pytest.raises(ArmVersionError, match="arm model/v2: version 2 could not be loaded"):
        pin_arm_versions(versions, experiments())
    assert ranker.pinned_versions == frozenset()
    assert versions.status()["pinned"] == []


class _InProcessClient(TorchScriptModel):
    """An export's dense model run in process, with the calls ModelVersions makes of a Triton
    client (warm-up: one call at serving size; close: nothing held)."""

    def warm_up(self, candidates: int, embedding_dim: int, dense_dim: int) -> None:
        self.predict(
            np.zeros((candidates, embedding_dim), np.float32),
            np.zeros((candidates, dense_dim), np.float32),
        )

    def close(self) -> None:
        pass


def _export(world, directory, version: int) -> None:
    """``world``'s schema and tables as exported version ``version`` (the format's files)."""
    from adrank.artifacts import FORMAT, MANIFEST_FILE, SCHEMA_FILE, TABLES_DIR, save_tables

    directory.mkdir(parents=True)
    (directory / SCHEMA_FILE).write_text(world.schema.text)
    (directory / TABLES_DIR).mkdir()
    save_tables(directory / TABLES_DIR, {n: t.to_float32() for n, t in world.tables.items()})
    manifest = {"format": FORMAT, "model": "ranker", "version": version}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_pinned_version_is_never_pushed_out_of_tritons_newest_two(world, tmp_path):
    w, _, v2_dir = world
    root = tmp_path / "ranker"
    for version in (1, 2):
        _export(w, root / str(version), version)
    v2 = _InProcessClient(v2_dir)
    ranker = _ranker(w, v2)
    versions = ModelVersions(
        ranker,
        root,
        ActiveVersion(2, root / "2", v2),
        connect=lambda _: _InProcessClient(v2_dir),
        load=lambda: None,  # as the embedded Triton's reload: the newest two versions
    )
    assert versions.pin(1)["pinned"] == [1]
    assert ranker.pinned_versions == {1}
    _export(w, root / "3", 3)
    message = (
        r"version 3 cannot be loaded: Triton serves the newest two exported versions \[2, 3\], "
        r"and pinned version\(s\) \[1\] would not be served"
    )
    with pytest.raises(SwapError, match=message):
        versions.activate(3)
    assert versions.current.version == 2
    others = ModelVersions(
        _ranker(w, v2), root, ActiveVersion(2, root / "2", v2), connect=None, load=lambda: None
    )
    with pytest.raises(SwapError, match=r"version 1 cannot be loaded: .* \[1\] would not be"):
        others.pin(1)
    versions.close()
