"""FM, DeepFM and post-hoc calibration: trained, checkpointed, exported and served alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adrank import Ranker, RankRequest
from adrank.cli import main
from adrank.data import generate_log
from adrank.data.layouts import write_layout
from adrank.data.readers import open_log
from adrank.export import export_model
from adrank.features import FeaturePipeline, load_schema, parse_schema
from adrank.features.infer import infer_schema
from adrank.models import MultiTaskRanker, RankerConfig, load_checkpoint, save_checkpoint
from adrank.models.calibration import (
    CalibratedHeads,
    IsotonicMap,
    PlattMap,
    SplineMap,
    build_map,
    check_calibration,
    fit_isotonic,
    fit_platt,
    fit_spline,
)
from adrank.orchestrator.model import TorchScriptModel
from adrank.training.calibrate import apply_entry, choose_calibration, fit_calibration
from adrank.training.loop import TrainConfig, evaluate, split_holdout, to_torch, train
from adrank.training.metrics import log_loss
from adrank.training.streaming import heldout_mask, train_streaming
from conftest import SERVING_WORLD
from test_export import (
    FORM_BOUNDS,
    WORLD,
    assert_python_variants_serve,
    served_forms,
    split_embeddings,
)


@pytest.fixture(scope="module")
def log():
    return generate_log(30_000, seed=5, config=WORLD).impressions


@pytest.fixture(scope="module", params=["fm", "deepfm"])
def calibrated(request, log):
    config = TrainConfig(batch_size=256, calibration="auto", seed=1)
    result = train(
        log, load_schema(), model_config=RankerConfig(model=request.param), config=config
    )
    heldout = FeaturePipeline(result.model.schema)(log.take(result.heldout_rows))
    return result, heldout


def test_platt_recovers_a_planted_logit_map():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.01, 0.99, 50_000)
    logit = np.log(scores / (1 - scores))
    labels = rng.random(50_000) < 1 / (1 + np.exp(-(0.5 * logit - 1.0)))
    entry = fit_platt(labels, scores)
    assert entry["a"] == pytest.approx(0.5, abs=0.05)
    assert entry["b"] == pytest.approx(-1.0, abs=0.05)


def test_isotonic_is_monotone_and_matches_its_torch_op():
    rng = np.random.default_rng(1)
    scores = rng.random(5000)
    labels = rng.random(5000) < scores**2
    entry = fit_isotonic(labels, scores, max_knots=32)
    assert len(entry["knots"]) <= 32
    assert np.all(np.diff(entry["values"]) >= 0)
    grid = np.linspace(0, 1, 101)
    mapped = build_map(entry)(torch.tensor(grid, dtype=torch.float32).reshape(-1, 1)).numpy()
    expected = np.interp(grid, entry["knots"], entry["values"])
    np.testing.assert_allclose(mapped.ravel(), expected, atol=1e-5)
    assert isinstance(build_map(entry), IsotonicMap)
    assert isinstance(build_map({"kind": "platt", "a": 1.0, "b": 0.0}), PlattMap)


def test_spline_bends_where_platt_cannot_and_matches_its_torch_op():
    """A model too low in its bottom tail only: the truth is ``z + 0.8 * relu(-2.25 - z)`` of
    the model's logit ``z`` (flatter below its 40% quantile, a knot). Platt's one line misses
    one end or the other; the spline's hinge follows it, stays non-decreasing, and its torch op
    computes the fitted formula."""
    rng = np.random.default_rng(2)
    logit = rng.normal(-2.0, 1.0, 200_000)
    scores = 1 / (1 + np.exp(-logit))
    truth = 1 / (1 + np.exp(-(logit + 0.8 * np.maximum(-2.25 - logit, 0))))
    labels = rng.random(len(scores)) < truth
    spline, platt = fit_spline(labels, scores), fit_platt(labels, scores)
    assert spline["kind"] == "spline"
    assert spline["a"] > 0
    grid = np.linspace(0.001, 0.999, 400)
    mapped = build_map(spline)(torch.tensor(grid, dtype=torch.float32).reshape(-1, 1)).numpy()
    assert np.all(np.diff(mapped.ravel()) >= -1e-7)
    z = np.log(grid / (1 - grid))
    hinges = sum(
        c * np.maximum(z - k, 0) for k, c in zip(spline["knots"], spline["slopes"], strict=True)
    )
    expected = 1 / (1 + np.exp(-(spline["a"] * z + spline["b"] + hinges)))
    np.testing.assert_allclose(mapped.ravel(), expected, rtol=1e-4, atol=1e-6)
    assert isinstance(build_map(spline), SplineMap)

    def worst_decile(entry) -> float:
        predicted = apply_entry(entry, scores)
        parts = np.array_split(np.argsort(predicted), 10)
        return max(abs(predicted[p].mean() / truth[p].mean() - 1) for p in parts)

    assert worst_decile(spline) < 0.04  # the labels' own noise at 200,000 rows
    assert worst_decile(platt) > 0.15


def test_auto_keeps_a_calibrated_head_and_maps_a_miscalibrated_one():
    """A head whose rates are already right keeps them (a flexible map beats identity on the
    calibration rows only by their noise, within one standard error); one whose logits are
    off by 0.3 gets a map."""
    rng = np.random.default_rng(3)
    truth = rng.beta(2, 12, 40_000)
    labels = rng.random(len(truth)) < truth
    entry, losses = choose_calibration(labels, truth, "auto")
    assert entry["kind"] == "identity"
    assert set(losses) == {"identity", "platt", "spline", "isotonic"}
    shifted = 1 / (1 + np.exp(-(np.log(truth / (1 - truth)) + 0.3)))
    entry, _ = choose_calibration(labels, shifted, "auto")
    assert entry["kind"] != "identity"


def test_calibration_errors():
    with pytest.raises(ValueError, match="differ in length"):
        fit_platt([0, 1], [0.5])
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_isotonic([1], [0.5])
    with pytest.raises(ValueError, match="choice must be one of"):
        choose_calibration(np.array([0, 1]), np.array([0.2, 0.8]), "beta")
    with pytest.raises(TypeError, match="calibration must be a mapping"):
        check_calibration([1], ("click",))
    with pytest.raises(ValueError, match="not one of the model's"):
        check_calibration({"conversion": {"kind": "platt"}}, ("click",))
    with pytest.raises(ValueError, match="kind in"):
        check_calibration({"click": {"kind": "beta"}}, ("click",))
    with pytest.raises(ValueError, match="spline needs as many knots as slopes"):
        check_calibration({"click": {"kind": "spline", "knots": [0.0], "slopes": []}}, ("click",))
    with pytest.raises(ValueError, match="isotonic needs >= 2 knots"):
        check_calibration(
            {"click": {"kind": "isotonic", "knots": [0.5], "values": [0.1]}}, ("click",)
        )
    with pytest.raises(ValueError, match="model must be one of"):
        RankerConfig(model="xgboost")
    with pytest.raises(ValueError, match="fm_dim must be >= 1"):
        RankerConfig(fm_dim=0)
    with pytest.raises(ValueError, match="calibration must be one of"):
        TrainConfig(calibration="beta")
    with pytest.raises(ValueError, match="calibration_fraction must be in"):
        TrainConfig(calibration_fraction=1.0)


def test_calibration_repairs_a_deliberately_miscalibrated_model(log):
    """A trained DCN whose click and negative logits are shifted by +1 (rates ~2.5x too high):
    calibration on held-back training rows brings held-out log loss down and the overall
    predicted / observed ratio of every head back near 1."""
    schema = load_schema()
    batch = FeaturePipeline(schema)(log)
    train_rows, heldout_rows = split_holdout(len(batch), 0.3, 0)
    fit_rows, calibration_rows = (
        train_rows[: len(train_rows) // 2],
        train_rows[len(train_rows) // 2 :],
    )
    result = train(batch.take(fit_rows), schema, config=TrainConfig(batch_size=256))
    model = result.model
    with torch.no_grad():
        for tower in model.dense.towers:
            tower[-1].bias += 1.0
    heldout = batch.take(heldout_rows)
    before = evaluate(model, heldout)
    chosen = fit_calibration(model, batch.take(calibration_rows), "auto")
    after = evaluate(model, heldout)
    for task in ("click", "negative"):
        assert chosen[task]["kind"] in ("platt", "spline", "isotonic")
        assert before[task]["calibration"] > 1.5
        assert after[task]["log_loss"] < before[task]["log_loss"] - 0.01
        assert after[task]["calibration"] == pytest.approx(1.0, abs=0.1)
        assert after[task]["auc"] == pytest.approx(before[task]["auc"], abs=0.01)
    assert log_loss(heldout.labels["conversion"], _ctcvr(model, heldout)) == pytest.approx(
        after["conversion"]["log_loss"]
    )


def _ctcvr(model, batch):
    with torch.no_grad():
        rates = model(*to_torch(batch))
    return (rates["click"] * rates["conversion"]).numpy().ravel()


def test_fm_and_deepfm_train_calibrate_and_round_trip(calibrated, tmp_path):
    result, heldout = calibrated
    model = result.model
    assert model.config.model in ("fm", "deepfm")
    assert set(result.calibration) == {"click", "conversion", "negative"}
    for task, m in result.metrics.items():
        assert m["auc"] > (0.6 if task == "click" else 0.52), task
        assert m["log_loss"] <= result.uncalibrated_metrics[task]["log_loss"] + 0.005, task
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded, _, _ = load_checkpoint(path)
    assert loaded.config.model == model.config.model
    assert loaded.calibration == model.calibration
    with torch.no_grad():
        for task, expected in model(*to_torch(heldout)).items():
            got = loaded(*to_torch(heldout))[task]
            assert float((expected - got).abs().max()) <= 1e-6, task


def test_calibrated_models_export_every_form_within_its_bound(calibrated, tmp_path):
    result, heldout = calibrated
    model = result.model
    spline = {"kind": "spline", "a": 0.9, "b": 0.4, "knots": [-3.0, -2.0], "slopes": [0.3, -0.2]}
    model.set_calibration(
        {
            **(model.calibration or {}),
            "click": {"kind": "platt", "a": 0.5, "b": -1.0},
            "negative": spline,  # every kind traces into every form
        }
    )
    export = export_model(model, repository=tmp_path / "models", artifacts=tmp_path / "art")
    assert export.manifest["architecture"] == model.config.model
    assert export.manifest["calibration"] == model.calibration
    with torch.no_grad():
        unsplit = [t.numpy() for t in model(*to_torch(heldout)).values()]
        raw = [
            t.numpy() for t in model.dense(model.sparse(to_torch(heldout)[0]), to_torch(heldout)[1])
        ]
    embeddings = split_embeddings(export, heldout, "fp32")
    for name, outputs in served_forms(export, embeddings, heldout.dense).items():
        max_diff, _ = FORM_BOUNDS[name]
        for task, expected, got in zip(model.tasks, unsplit, outputs, strict=True):
            assert float(np.abs(expected - got).max()) <= max_diff, (name, task)
        # the calibration is in the served file: it answers the calibrated rates, not the raw
        assert float(np.abs(raw[0] - outputs[0]).max()) > 0.1, name
        negative = model.tasks.index("negative")
        assert float(np.abs(raw[negative] - outputs[negative]).max()) > 0.01, name


def test_train_command_takes_model_and_calibration(tmp_path, capsys):
    checkpoint = tmp_path / "fm.pt"
    metrics = tmp_path / "metrics.json"
    code = main(
        [
            *("train", "--generate", "6000", "--out", str(checkpoint), "--model", "deepfm"),
            *("--calibration", "platt", "--metrics-json", str(metrics), "--no-progress"),
            *("--batch-size", "256"),
        ]
    )
    assert code == 0
    assert "calibration" in capsys.readouterr().out
    report = json.loads(metrics.read_text())
    assert {entry["kind"] for entry in report["calibration"].values()} == {"platt"}
    model, _, _ = load_checkpoint(checkpoint)
    assert model.config.model == "deepfm"
    assert {entry["kind"] for entry in model.calibration.values()} == {"platt"}


@pytest.fixture(scope="module")
def stream_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "log.parquet"
    write_layout("aliexpress", path, 12_000, seed=3, format="parquet")
    return path


def test_streaming_calibrates_on_rows_it_never_trains_on(stream_log):
    reader = open_log(stream_log, batch_rows=3_000)
    schema = parse_schema(infer_schema(reader))
    trained: list[int] = []
    config = TrainConfig(batch_size=64, seed=1, calibration="auto", calibration_fraction=0.2)
    result = train_streaming(
        reader,
        schema,
        config=config,
        total_rows=reader.count_rows(),
        on_chunk=lambda rows, _: trained.append(rows),
    )
    rows = np.arange(12_000)
    held = heldout_mask(rows, 0.2, 1)
    np.testing.assert_array_equal(result.heldout_rows, np.flatnonzero(held))
    assert 0.15 * 12_000 < 12_000 - held.sum() - trained[-1] < 0.25 * 12_000  # held back
    assert set(result.calibration) == set(result.model.tasks)
    assert result.model.calibration is not None
    assert set(result.uncalibrated_metrics) == set(result.metrics)
    for task, entry in result.calibration.items():
        assert entry["kind"] in ("identity", "platt", "spline", "isotonic")
        assert set(entry["cross_fitted_log_loss"]) == {"identity", "platt", "spline", "isotonic"}
        assert result.metrics[task]["auc"] == pytest.approx(
            result.uncalibrated_metrics[task]["auc"], abs=0.01
        )  # a monotone map keeps the order (isotonic only ties some)


def test_train_stream_with_calibration_agrees_with_evaluate(stream_log, tmp_path, capsys):
    checkpoint = tmp_path / "ranker.pt"
    code = main(
        [
            *("train", "--data", str(stream_log), "--stream", "--chunk-rows", "4000"),
            *("--batch-size", "64", "--out", str(checkpoint), "--no-progress"),
            *("--calibration", "platt"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    trained = capsys.readouterr().out
    assert "calibration" in trained
    model, _, _ = load_checkpoint(checkpoint)
    assert {entry["kind"] for entry in model.calibration.values()} == {"platt"}
    code = main(["evaluate", str(checkpoint), str(stream_log), "--json", "--bootstrap", "0"])
    report = json.loads(capsys.readouterr().out)
    for task in ("click", "conversion"):  # the calibrated model's held-out figures, to 4 places
        assert f"{task:<12}{report['tasks'][task]['auc']:8.4f}" in trained
        assert f"{report['tasks'][task]['log_loss']:10.4f}" in trained


def test_an_uncalibrated_model_has_no_calibration():
    model = MultiTaskRanker(load_schema(), RankerConfig(model="fm"))
    assert model.calibration is None
    model.set_calibration({"click": {"kind": "identity"}})
    model.set_calibration(None)
    assert model.calibration is None


@pytest.mark.triton
def test_fm_and_deepfm_serve_calibrated_through_the_real_triton(calibrated, tmp_path):
    """adrank's lookup + each Python-backend variant of a calibrated FM / DeepFM on the embedded
    Triton = the unsplit calibrated module, within the variant's bound."""
    result, heldout = calibrated
    model = result.model
    rows = heldout.take(np.arange(1000))
    export = export_model(model, repository=tmp_path / "export", artifacts=tmp_path / "art")
    with torch.no_grad():
        unsplit = [t.numpy().ravel() for t in model(*to_torch(rows)).values()]
    assert_python_variants_serve(export, model.tasks, rows, unsplit, tmp_path / "models")


class _Recording:
    """The in-process exported model, keeping what the Ranker asked and got."""

    def __init__(self, model):
        self.model, self.version, self.calls = model, model.version, []

    def predict(self, embeddings, dense):
        rates = self.model.predict(embeddings, dense)
        self.calls.append((embeddings.copy(), dense.copy(), rates))
        return rates

    def readiness(self):
        return self.model.readiness()


def test_the_ranker_scores_with_an_exported_calibrated_deepfm(serving_workspace, tmp_path):
    """The same Ranker, given an exported DeepFM with a calibration: its model stage answers
    the calibrated module's rates for the inputs the request encoder built."""
    ws = serving_workspace
    log = generate_log(20_000, seed=0, config=SERVING_WORLD).impressions
    config = TrainConfig(batch_size=256, calibration="platt")
    model = train(
        log, load_schema(), model_config=RankerConfig(model="deepfm"), config=config
    ).model
    export = export_model(model, repository=tmp_path / "models", artifacts=tmp_path / "art")
    served = _Recording(TorchScriptModel(export.version_dir))
    ranker = Ranker.from_export(export.artifacts_dir, ws.catalog_path, served)
    request = RankRequest(
        request_id="r1",
        user={"user_id": 10000001, "age_bucket": 3, "country": "US", "interests": [3, 17]},
        context={"placement": "feed", "hour": 20, "network": "wifi"},
        candidates=ranker.catalog.creative_id[:300],
        k=5,
        region="US",
    )
    response = ranker.rank(request)
    assert len(response.creative_id) == 5
    (embeddings, dense, rates), *_ = served.calls
    with torch.no_grad():
        raw = model.dense(torch.from_numpy(embeddings), torch.from_numpy(dense))
        expected = CalibratedHeads(model.tasks, model.calibration)(raw)
    np.testing.assert_allclose(rates.p_ctr, expected[0].numpy().ravel(), atol=1e-5)
    np.testing.assert_allclose(rates.p_cvr, expected[1].numpy().ravel(), atol=1e-5)
    assert float(np.abs(raw[0].numpy().ravel() - rates.p_ctr).max()) > 1e-4  # calibrated
    assert set(response.p_ctr) <= {float(p) for p in rates.p_ctr}
