"""Bidding for incremental conversions: an exported uplift learner scored without torch, the
``ScoringConfig.value = "incremental"`` setting in the Ranker, and their errors.

The exported learner is checked against the torch learner and the serving encoder against the
training pipeline; the ranking under the setting against the documented formula
(``value = target_cpa * max(uplift, 0) * 1000`` for oCPM) on candidates whose uplift and
``p_ctr * p_cvr`` disagree.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch

from adrank import EmbeddingTable
from adrank.cli import main
from adrank.data import SyntheticConfig, generate_log
from adrank.data.catalog import catalog_table
from adrank.export import export_model
from adrank.features import FeaturePipeline, load_schema
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.model import TorchScriptModel
from adrank.orchestrator.ranker import Ranker, SelectionConfig
from adrank.orchestrator.request import RankRequest
from adrank.orchestrator.scoring import Objective, ScoringConfig, incremental_conversion_rate
from adrank.triton.testing import DemoDenseRanker
from adrank.uplift import (
    LinearWeights,
    TLearner,
    UpliftModel,
    UpliftScorer,
    XLearner,
    load_uplift,
    save_uplift,
)

WORLD = SyntheticConfig(
    num_advertisers=12, num_campaigns=40, num_creatives=400, num_users=200, num_categories=8
)


class InProcessModel:
    """The dense module run with torch in process (the orchestration is under test here;
    tests/test_service_e2e.py runs the model through Triton)."""

    version = "stand-in/1"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    def predict(self, embeddings, dense):
        with torch.no_grad():
            out = self.module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        return tuple(t.numpy().ravel() for t in out)

    def readiness(self):
        return (True, "stand-in")


@pytest.fixture(scope="module")
def world():
    log = generate_log(3000, seed=7, config=WORLD, treatment=True)
    schema = load_schema()
    rng = np.random.default_rng(0)
    tables = {
        name: EmbeddingTable(rng.normal(0, 0.3, (t.num_buckets, t.dim)).astype(np.float32))
        for name, t in schema.tables.items()
    }
    module = DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=3)
    catalog = Catalog.from_arrow(catalog_table(log, paused_share=0.0, seed=1))
    return log, schema, tables, module, catalog


@pytest.fixture(scope="module")
def learners(world):
    log, schema = world[0].impressions, world[1]
    batch = FeaturePipeline(schema)(log)
    t, y = log.column("treatment").to_numpy(), log.column("converted").to_numpy()
    fitted = {
        kind: learner(schema, epochs=1, learning_rate=0.05).fit(batch, t, y)
        for kind, learner in (("t", TLearner), ("x", XLearner))
    }
    return batch, fitted


def random_uplift(schema, seed: int) -> UpliftModel:
    """A T-learner whose uplift is unrelated to any ranking model's rates."""
    rng = np.random.default_rng(seed)

    def linear(bias: float) -> LinearWeights:
        return LinearWeights(
            tables={
                n: rng.normal(0, 0.6, t.num_buckets).astype(np.float32)
                for n, t in schema.tables.items()
            },
            dense=rng.normal(0, 0.1, schema.dense_dim).astype(np.float32),
            bias=bias,
            mean=np.zeros(schema.dense_dim),
            scale=np.ones(schema.dense_dim),
        )

    return UpliftModel("t", schema, (linear(-4.0), linear(-4.0)))


def make_request(world, candidates, *, k=5, scoring=None) -> RankRequest:
    row = world[0].users.slice(3, 1).to_pylist()[0]
    return RankRequest(
        request_id="r3",
        user=row,
        context={"placement": "feed", "hour": 20, "network": "wifi"},
        candidates=np.asarray(candidates, dtype=np.int64),
        k=k,
        region=row["country"],
        scoring=scoring,
    )


def pipeline_batch(world, request: RankRequest, rows: np.ndarray):
    """The training pipeline's batch of (user, context, candidate) rows: the reference."""
    schema, catalog = world[1], world[4]
    candidates = catalog.table.take(rows)
    columns = {name: candidates[name] for name in candidates.column_names}
    for key, value in {**request.user, **request.context}.items():
        columns[key] = pa.array([value] * len(rows))
    return FeaturePipeline(schema)(columns, with_labels=False)


def eligible_ocpm(world, region: str) -> np.ndarray:
    """Catalog rows of active oCPM creatives the region may see."""
    catalog = world[4]
    bit = catalog.region_bit(region)
    shown = (catalog.region_mask == np.uint64(2**64 - 1)) | ((catalog.region_mask & bit) != 0)
    return np.flatnonzero((catalog.objective == Objective.OCPM) & catalog.active & shown)


# --- the exported learner --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["t", "x"])
def test_the_exported_learner_scores_as_the_torch_learner(learners, kind, tmp_path):
    batch, fitted = learners
    exported = fitted[kind].exported()
    assert exported.learner == kind
    expected = fitted[kind].predict(batch)
    np.testing.assert_allclose(exported.predict(batch), expected, rtol=1e-4, atol=1e-6)
    loaded = load_uplift(save_uplift(tmp_path / "uplift", exported))
    assert (loaded.learner, loaded.propensity) == (kind, exported.propensity)
    np.testing.assert_allclose(loaded.predict(batch), expected, rtol=1e-4, atol=1e-6)


def test_the_scorer_reads_the_serving_encoder_as_training_hashes(world, learners):
    exported = learners[1]["t"].exported()
    scorer = UpliftScorer(exported)
    catalog = world[4]
    rows = np.arange(0, len(catalog), 7)
    request = make_request(world, catalog.creative_id[rows])
    served = scorer.uplift(request, catalog, rows)
    reference = exported.predict(pipeline_batch(world, request, rows))
    np.testing.assert_allclose(served, reference, rtol=1e-4, atol=1e-6)
    assert scorer.uplift(request, catalog, rows[:3]) == pytest.approx(served[:3])  # cached


# --- the setting in the Ranker ---------------------------------------------------------------


def rank_both_ways(world, uplift_model, candidates, k=5):
    _, schema, tables, module, catalog = world
    ranker = Ranker(
        schema,
        tables,
        InProcessModel(module),
        catalog,
        scoring_config=ScoringConfig(reserve_ecpm=0.0, neg_penalty=0.0),
        selection_config=SelectionConfig(max_per_advertiser=100),
        uplift=UpliftScorer(uplift_model),
    )
    request = make_request(world, candidates, k=k)
    incremental = dataclasses.replace(
        request, scoring=ScoringConfig(reserve_ecpm=0.0, neg_penalty=0.0, value="incremental")
    )
    return ranker, request, ranker.rank(request), ranker.rank(incremental)


def test_incremental_value_ranks_ocpm_by_uplift_not_by_conversions(world):
    catalog = world[4]
    user_region = world[0].users.slice(3, 1).to_pylist()[0]["country"]
    rows = eligible_ocpm(world, user_region)
    assert len(rows) >= 12
    model = random_uplift(world[1], seed=5)
    _, request, plain, incremental = rank_both_ways(world, model, catalog.creative_id[rows])

    uplift = UpliftScorer(model).uplift(request, catalog, rows)
    gain = np.maximum(uplift, 0.0)
    value = catalog.target_cpa[rows] * gain * 1000.0
    by_id = dict(zip(catalog.creative_id[rows].tolist(), value, strict=True))
    # Ranked by target CPA x incremental conversions, highest first, and scored at that value.
    assert incremental.ecpm == pytest.approx([by_id[c] for c in incremental.creative_id], rel=1e-5)
    positive = np.sort(value[value > 0])[::-1]
    assert incremental.ecpm == pytest.approx(positive[: len(incremental.ecpm)], rel=1e-5)
    # The two settings disagree here, and the plain ranking is unchanged by the uplift model.
    assert list(incremental.creative_id) != list(plain.creative_id)
    assert (np.diff(plain.ecpm) <= 0).all()
    # The reported rates stay the model's own.
    common = np.intersect1d(incremental.creative_id, plain.creative_id)
    for c in common:
        i, j = list(incremental.creative_id).index(c), list(plain.creative_id).index(c)
        assert incremental.p_cvr[i] == plain.p_cvr[j]


def test_a_candidate_the_ad_does_not_help_earns_nothing(world):
    catalog = world[4]
    user_region = world[0].users.slice(3, 1).to_pylist()[0]["country"]
    rows = eligible_ocpm(world, user_region)
    model = random_uplift(world[1], seed=5)
    request = make_request(world, catalog.creative_id[rows])
    uplift = UpliftScorer(model).uplift(request, catalog, rows)
    assert (uplift < 0).any()
    assert (uplift > 0).any()
    *_, incremental = rank_both_ways(world, model, catalog.creative_id[rows], k=len(rows))
    harmful = set(catalog.creative_id[rows][uplift <= 0].tolist())
    assert harmful.isdisjoint(incremental.creative_id[incremental.ecpm > 0].tolist())


def test_cpm_and_cpc_candidates_are_not_revalued(world):
    catalog = world[4]
    user_region = world[0].users.slice(3, 1).to_pylist()[0]["country"]
    bit = catalog.region_bit(user_region)
    shown = (catalog.region_mask == np.uint64(2**64 - 1)) | ((catalog.region_mask & bit) != 0)
    rows = np.flatnonzero((catalog.objective != Objective.OCPM) & catalog.active & shown)[:30]
    *_, plain, incremental = rank_both_ways(
        world, random_uplift(world[1], seed=5), catalog.creative_id[rows], k=10
    )
    assert list(incremental.creative_id) == list(plain.creative_id)
    np.testing.assert_array_equal(incremental.ecpm, plain.ecpm)


def test_incremental_conversion_rate_times_ctr_is_the_floored_uplift():
    uplift = np.array([0.02, -0.01, 0.0, 0.005, np.nan])
    p_ctr = np.array([0.1, 0.2, 0.3, 0.0, 0.1], dtype=np.float32)
    rate = incremental_conversion_rate(uplift, p_ctr)
    np.testing.assert_allclose(rate * p_ctr, [0.02, 0.0, 0.0, 0.0, 0.0], rtol=1e-7)
    with pytest.raises(ValueError, match="uplift has shape"):
        incremental_conversion_rate(uplift[:2], p_ctr)


# --- end to end: adrank train --uplift, export, the served ranker -----------------------------


def test_train_export_and_rank_for_incremental_conversions(tmp_path, capsys):
    checkpoint, metrics = tmp_path / "ranker.pt", tmp_path / "metrics.json"
    code = main(
        [
            *("train", "--generate", "6000", "--uplift", "x", "--out", str(checkpoint)),
            *("--batch-size", "256", "--no-progress", "--metrics-json", str(metrics)),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "uplift (X-learner, fitted on 4,800 rows)" in out
    report = json.loads(metrics.read_text())["uplift"]
    assert report["learner"] == "x"
    assert len(report["observed_by_decile"]) == 10
    result = export_model(checkpoint, repository=tmp_path / "repo", artifacts=tmp_path / "art")
    assert result.manifest["uplift"] == "x"

    log = generate_log(6000, seed=0, treatment=True)
    catalog = Catalog.from_arrow(catalog_table(log, paused_share=0.0))
    ranker = Ranker.from_export(
        result.artifacts_dir,
        catalog,
        TorchScriptModel(result.version_dir),
        scoring_config=ScoringConfig(reserve_ecpm=0.0, neg_penalty=0.0, value="incremental"),
        selection_config=SelectionConfig(max_per_advertiser=100),
    )
    assert isinstance(ranker.uplift, UpliftScorer)
    row = log.users.slice(0, 1).to_pylist()[0]
    rows = np.flatnonzero((catalog.objective == Objective.OCPM) & (catalog.region_mask != 0))
    request = RankRequest(
        request_id="e2e",
        user=row,
        context={"placement": "feed", "hour": 9, "network": "wifi"},
        candidates=catalog.creative_id[rows],
        k=len(rows),
        region=row["country"],
    )
    response = ranker.rank(request)
    assert len(response) > 0
    uplift = ranker.uplift.uplift(request, catalog, rows)
    worth = catalog.target_cpa[rows] * np.maximum(uplift, 0) * 1e3
    value = dict(zip(catalog.creative_id[rows].tolist(), worth, strict=True))
    assert response.ecpm == pytest.approx([value[c] for c in response.creative_id], rel=1e-5)


def test_scoring_uplift_at_serving_does_not_import_torch():
    code = (
        "import sys\n"
        "import adrank.orchestrator.ranker\n"
        "from adrank.uplift import UpliftScorer, load_uplift\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "False"


# --- errors -----------------------------------------------------------------------------------


def test_bad_settings_raise_naming_the_setting(world, tmp_path):
    _, schema, tables, module, catalog = world
    with pytest.raises(ValueError, match="value must be one of"):
        ScoringConfig(value="uplift")
    with pytest.raises(ValueError, match=r"scoring_config\.value 'incremental' needs an uplift"):
        Ranker(schema, tables, InProcessModel(module), catalog, ScoringConfig(value="incremental"))
    ranker = Ranker(schema, tables, InProcessModel(module), catalog)
    request = make_request(
        world, catalog.creative_id[:20], scoring=ScoringConfig(value="incremental")
    )
    with pytest.raises(ValueError, match="needs an uplift model"):
        ranker.rank(request)
    model = random_uplift(schema, seed=1)
    with pytest.raises(ValueError, match="learner must be one of"):
        dataclasses.replace(model, learner="s")
    with pytest.raises(ValueError, match="propensity must be in"):
        dataclasses.replace(model, propensity=1.0)
    with pytest.raises(ValueError, match="models must hold 2"):
        dataclasses.replace(model, models=model.models[:1])
    short = dataclasses.replace(model.models[0], tables={})
    with pytest.raises(ValueError, match="models lack weights for tables"):
        dataclasses.replace(model, models=(short, short))
    with pytest.raises(TypeError, match="model must be an UpliftModel"):
        UpliftScorer("uplift/")
    with pytest.raises(FileNotFoundError, match="no uplift model"):
        load_uplift(tmp_path / "missing")
    saved = save_uplift(tmp_path / "u", model)
    (saved / "uplift.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="format must be 'adrank-uplift-1'"):
        load_uplift(saved)


def test_train_uplift_errors(tmp_path, capsys):
    log = tmp_path / "log.parquet"
    import pyarrow.parquet as pq

    table = generate_log(500, seed=1, config=WORLD).impressions
    pq.write_table(table, log)
    out = str(tmp_path / "r.pt")
    assert main(["train", "--data", str(log), "--stream", "--uplift", "t", "--out", out]) != 0
    assert "--uplift is not supported with --stream" in capsys.readouterr().err
    assert main(["train", "--data", str(log), "--uplift", "t", "--out", out, "--no-progress"]) != 0
    assert "treatment" in capsys.readouterr().err
    bad = table.append_column("treatment", pa.array(np.full(500, 2, np.int8)))
    bad = bad.append_column("converted", pa.array(np.zeros(500, np.int8)))
    pq.write_table(bad, log)
    args = ["train", "--data", str(log), "--uplift", "t", "--out", out, "--no-progress"]
    assert main([*args, "--skip-check"]) != 0
    assert "the log's 'treatment' column must hold 0 or 1" in capsys.readouterr().err


@pytest.mark.triton
def test_the_serving_stack_bids_for_incremental_conversions_through_triton(
    serving_workspace, tmp_path
):
    """The uplift model exported beside a version, served by the real stack (embedded Triton):
    oCPM winners are scored at target CPA x max(uplift, 0) x 1000 (x their pacing)."""
    from adrank.service.stack import serving_stack
    from adrank.workspace import sample_requests
    from conftest import SERVING_WORLD

    log = generate_log(4000, seed=3, config=SERVING_WORLD, treatment=True).impressions
    schema = load_schema()
    learner = TLearner(schema, epochs=1, learning_rate=0.05).fit(
        FeaturePipeline(schema)(log),
        log.column("treatment").to_numpy(),
        log.column("converted").to_numpy(),
    )
    uplift_dir = save_uplift(tmp_path / "uplift", learner.exported())
    export = export_model(
        serving_workspace.root / "ranker.pt",
        repository=tmp_path / "models",
        artifacts=tmp_path / "artifacts",
        uplift=uplift_dir,
    )
    assert export.manifest["uplift"] == "t"
    request = sample_requests(serving_workspace, 1, candidates=300, k=300, seed=4)[0]
    with serving_stack(
        export.artifacts_dir,
        serving_workspace.catalog_path,
        repository=tmp_path / "models",
        scoring_config=ScoringConfig(reserve_ecpm=0.0, neg_penalty=0.0, value="incremental"),
        deadline_ms=5000,
    ) as stack:
        ranker = stack.ranker
        response = ranker.rank(request)
        catalog = ranker.catalog
        rows, _ = catalog.lookup(request.candidates)
        uplift = ranker.uplift.uplift(request, catalog, rows)
        pacing = np.asarray(ranker.pacing(catalog.campaign_id[rows]), dtype=np.float64)
    worth = catalog.target_cpa[rows] * np.maximum(uplift, 0) * 1e3 * pacing
    ocpm = catalog.objective[rows] == Objective.OCPM
    value = dict(zip(catalog.creative_id[rows][ocpm].tolist(), worth[ocpm], strict=True))
    answered = zip(response.creative_id.tolist(), response.ecpm, strict=True)
    scored = [(c, e) for c, e in answered if c in value]
    assert scored
    assert [e for _, e in scored] == pytest.approx([value[c] for c, _ in scored], rel=1e-5)


@pytest.mark.triton
def test_serve_bid_for_incremental_needs_an_exported_uplift_model(serving_workspace, capsys):
    code = main(
        [
            *("serve", "--artifacts", str(serving_workspace.artifacts_dir)),
            *("--catalog", str(serving_workspace.catalog_path)),
            *("--repository", str(serving_workspace.repository), "--port", "0"),
            *("--bid-for", "incremental"),
        ]
    )
    assert code != 0
    assert "scoring_config.value 'incremental' needs an uplift model" in capsys.readouterr().err
