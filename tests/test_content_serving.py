"""Creative content served as trained: the content schema's bags (caption n-grams, tags) from
the serving encoder against the training pipeline over the log, byte for byte; the model's
inputs against the pipeline reference (text, tags, the relevance cross, a request-side text
field); a small model trained on content, exported and ranking in process as it predicted in
training.

Glossary: *world* a small synthetic world drawn with content; *reference* the training
pipeline over (user, context, candidate) rows, pooled in numpy (tests/reference.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from adrank import EmbeddingTable
from adrank.cli import main
from adrank.data import SyntheticConfig, generate_log
from adrank.data.catalog import catalog_table
from adrank.features import FeaturePipeline, content_schema_path, load_schema, parse_schema
from adrank.models import load_checkpoint
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.encoder import RequestEncoder
from adrank.orchestrator.ranker import Ranker
from adrank.orchestrator.request import RankRequest
from adrank.service.limits import ServiceLimits
from adrank.service.request_features import FeatureRules
from adrank.triton.testing import DemoDenseRanker
from reference import pooled_embeddings_ref

WORLD = SyntheticConfig(
    num_advertisers=12,
    num_campaigns=40,
    num_creatives=400,
    num_users=200,
    num_categories=8,
    content=True,
)
BAG_FIELDS = ("caption", "hashtags", "visual_tags", "audio_tags")
QUERY_FIELD = """
[fields.query]
kind = "text"
side = "context"
ngrams = 2
num_buckets = 512
dim = 4
"""


class InProcessModel:
    """The dense module run with torch; remembers its last inputs."""

    version = "stand-in/1"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    def predict(self, embeddings, dense):
        self.last_inputs = (embeddings.copy(), dense.copy())
        with torch.no_grad():
            out = self.module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        return tuple(t.numpy().ravel() for t in out)

    def readiness(self):
        return True, "stand-in"


def random_tables(schema, seed: int) -> dict[str, EmbeddingTable]:
    rng = np.random.default_rng(seed)
    return {
        name: EmbeddingTable(rng.normal(0, 0.3, (spec.num_buckets, spec.dim)).astype(np.float32))
        for name, spec in schema.tables.items()
    }


@pytest.fixture(scope="module")
def world():
    log = generate_log(2000, seed=5, config=WORLD)
    return log, Catalog.from_arrow(catalog_table(log, seed=1))


def request_of(log, user: int, candidates, **context) -> RankRequest:
    row = log.users.slice(user, 1).to_pylist()[0]
    return RankRequest(
        request_id=f"r{user}",
        user=row,
        context={"placement": "feed", "hour": 20, "network": "wifi", **context},
        candidates=np.asarray(candidates, dtype=np.int64),
        k=10,
        region=row["country"],
    )


def reference_inputs(schema, tables, catalog, request, rows):
    candidates = catalog.table.take(rows)
    columns = {name: candidates[name] for name in candidates.column_names}
    for key, value in {**request.user, **request.context}.items():
        columns[key] = pa.array([value] * len(rows))
    batch = FeaturePipeline(schema)(columns, with_labels=False)
    return pooled_embeddings_ref(tables, schema, batch), batch.dense


def test_creative_bags_are_the_training_pipelines_bytes(world):
    """Training hashes the content over the impressions log; serving hashes it once per
    creative of the catalog snapshot: the same ids, row for row."""
    log, catalog = world
    schema = load_schema(content_schema_path())
    encoding = RequestEncoder(schema, random_tables(schema, 0)).encode_catalog(catalog)
    training = FeaturePipeline(schema)(log.impressions)
    rows, known = catalog.lookup(log.impressions["creative_id"].to_numpy())
    assert known.all()
    for name in BAG_FIELDS:
        served = encoding.creative_bags[name].take(rows)
        assert served.values.tobytes() == training.sparse[name].values.tobytes(), name
        assert served.offsets.tobytes() == training.sparse[name].offsets.tobytes(), name
    assert (np.diff(encoding.creative_bags["caption"].offsets) >= 9).all()  # 5+ words, 4+ pairs
    again = RequestEncoder(schema, random_tables(schema, 1)).encode_catalog(catalog)
    for name in BAG_FIELDS:  # deterministic: another encoder, the same ids
        assert again.creative_bags[name].values.tobytes() == (
            encoding.creative_bags[name].values.tobytes()
        )


@pytest.mark.parametrize("query", [False, True])
def test_model_inputs_equal_the_training_pipeline(world, query):
    """Text, tags and the relevance cross from the snapshot; with ``query``, a request-side
    text field too (each request encodes it anew; repeats come from the memos)."""
    log, catalog = world
    text = content_schema_path().read_text() + (QUERY_FIELD if query else "")
    schema = parse_schema(text)
    tables = random_tables(schema, 2)
    model = InProcessModel(DemoDenseRanker(schema.embedding_dim, schema.dense_dim, seed=3))
    ranker = Ranker(schema, tables, model, catalog)
    rng = np.random.default_rng(4)
    queries = ["red running shoes", None, "", "Red running  SHOES!"]
    for i, user in enumerate([0, 1, 2, 0, 1]):
        candidates = rng.choice(catalog.creative_id, 150, replace=False)
        context = {"query": queries[i % len(queries)]} if query else {}
        request = request_of(log, user, candidates, **context)
        ranker.rank(request)
        embeddings, dense = reference_inputs(
            schema, tables, catalog, request, catalog.lookup(candidates)[0]
        )
        np.testing.assert_allclose(model.last_inputs[0], embeddings, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(model.last_inputs[1], dense)


def test_a_cross_with_a_creative_bag_is_refused_naming_it():
    text = content_schema_path().read_text() + (
        '\n[fields.age_x_hashtags]\nkind = "cross"\nsources = ["age_bucket", "hashtags"]\n'
        "num_buckets = 64\ndim = 4\n"
    )
    schema = parse_schema(text)
    with pytest.raises(ValueError, match=r"cross 'age_x_hashtags' has sources that are not "):
        RequestEncoder(schema, random_tables(schema, 0))


def test_a_request_text_field_takes_a_string_only():
    schema = parse_schema(content_schema_path().read_text() + QUERY_FIELD)
    rules = FeatureRules(schema, ServiceLimits())
    assert rules.problems({"context": {"query": "red shoes"}, "user": {}}) == []
    assert rules.problems({"context": {"query": None}}) == []
    (problem,) = rules.problems({"context": {"query": 3}})
    assert problem["loc"] == ("body", "context", "query")
    assert problem["msg"] == "must be a string (text feature) or null, got int"


def test_a_model_trained_on_content_ranks_as_it_predicted(world, tmp_path):
    """Train on the content log, export, serve in process: the served pCTR of each candidate
    is the trained module's prediction on the training pipeline's encoding of that row."""
    from adrank.export import export_model
    from adrank.orchestrator.model import TorchScriptModel
    from adrank.training.loop import TrainConfig, train

    log, catalog = world
    schema = load_schema(content_schema_path())
    bigger = generate_log(6000, seed=6, config=WORLD)
    result = train(bigger.impressions, schema, config=TrainConfig(seed=0, batch_size=128))
    assert result.metrics["click"]["auc"] > 0.5
    export = export_model(
        result.model, repository=tmp_path / "models", artifacts=tmp_path / "artifacts"
    )
    catalog_path = tmp_path / "catalog.parquet"
    pq.write_table(catalog.table, catalog_path)
    ranker = Ranker.from_export(
        export.artifacts_dir, catalog_path, TorchScriptModel(export.version_dir)
    )
    candidates = catalog.creative_id[:200]
    request = dataclasses.replace(request_of(log, 3, candidates), k=len(candidates))
    response = ranker.rank(request)
    assert len(response.creative_id) > 0

    shown = catalog.lookup(np.asarray(response.creative_id))[0]
    rows = catalog.table.take(shown)
    columns = {name: rows[name] for name in rows.column_names}
    for key, value in {**request.user, **request.context}.items():
        columns[key] = pa.array([value] * len(shown))
    batch = FeaturePipeline(schema)(columns, with_labels=False)
    sparse = {
        name: (torch.from_numpy(f.values), torch.from_numpy(f.offsets))
        for name, f in batch.sparse.items()
    }
    with torch.no_grad():
        trained = result.model.eval()(sparse, torch.from_numpy(batch.dense))["click"]
    np.testing.assert_allclose(response.p_ctr, trained.numpy().ravel(), rtol=1e-4, atol=1e-6)


def test_train_generate_content_trains_on_the_content_schema(tmp_path, capsys):
    checkpoint = tmp_path / "ranker.pt"
    code = main(
        [
            *("train", "--generate", "3000", "--content", "--out", str(checkpoint)),
            *("--no-progress", "--batch-size", "256"),
        ]
    )
    assert code == 0
    capsys.readouterr()
    _, schema, _ = load_checkpoint(checkpoint)
    assert schema == load_schema(content_schema_path())
    assert {"caption", "hashtags"} <= {field.name for field in schema.fields}


def test_train_content_goes_with_generate(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "log.csv"), "--content"]) == 1
    assert capsys.readouterr().err == (
        "adrank train: error: --content draws the synthetic log's content: it goes with "
        "--generate\n"
    )
