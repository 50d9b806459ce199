"""DCN-v2, FM and DeepFM trained on one synthetic log: held-out AUC, log loss and calibration
per task beside the oracle, before and after post-hoc calibration, and the model-stage time of
each at 1,000 candidates.

Glossary: *oracle* the AUC of the log's true probabilities (the ceiling); *calib* predicted /
observed rate over the held-out rows; *worst decile* the largest |ratio - 1| of the ten
calibration deciles (against the labels; *vs truth*: mean prediction / mean true probability,
free of label noise); *model stage* one call of the exported dense model (TorchScript fp32 and
ONNX int8 under ONNX Runtime, the default Triton deployment's file), 1 thread, on 1,000
candidates, median of the timed calls, without Triton's transport.

    .venv/bin/python bench/compare_models.py                      # 200,000 rows, bounded
    .venv/bin/python bench/compare_models.py --rows 2000000 --epochs 2 \
        --embedding-weight-decay 3e-4 --json out.json
    .venv/bin/python bench/compare_models.py --rows 2000000 --epochs 2 \
        --embedding-weight-decay 3e-4 --schema bench/schemas/demo_wide_buckets.toml \
        --table-weight-decay creative=1e-3    # README's 2nd model table (1st: without this flag)

Every model gets the same log, split, seed and optimizer settings (``adrank train``'s, as the
flags here set them) and ``--calibration auto``. ``bench/click_ceiling.py`` measures what a
model that knew the truth's terms could reach on the same split. ``bench/schemas/`` holds the
demo schema with tables wide enough that the world's values keep their own rows (the demo
schema's sizes merge some the truth tells apart), and ablations without the signal-free fields.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from adrank.commands.train import parse_table_weight_decay
from adrank.data import generate_log
from adrank.export import onnx_dense_model, quantize_onnx_int8, script_dense_model
from adrank.features import FeaturePipeline, load_schema
from adrank.models import RankerConfig
from adrank.training.loop import TrainConfig, train
from adrank.training.report import oracle_for
from adrank.workspace import DEMO_WORLD

MODELS = ("dcn", "fm", "deepfm")
CANDIDATES = 1_000


def model_stage_ms(model, embeddings: np.ndarray, dense: np.ndarray, calls: int) -> dict:
    """Median ms of one dense-model call, TorchScript fp32 and ONNX int8, 1 thread."""
    import onnxruntime as ort

    torch.set_num_threads(1)
    scripted = script_dense_model(model)
    inputs = (torch.from_numpy(embeddings), torch.from_numpy(dense))
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = onnx_dense_model(model, Path(scratch) / "model.onnx")
        int8 = quantize_onnx_int8(fp32, Path(scratch) / "model.int8.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    feeds = {"EMBEDDINGS": embeddings, "DENSE": dense}

    def timed(call) -> float:
        call()  # warm
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    with torch.no_grad():
        torchscript = timed(lambda: scripted(*inputs))
    return {
        "torchscript_fp32_ms": torchscript,
        "onnx_int8_ms": timed(lambda: session.run(None, feeds)),
    }


def worst_decile(metrics: dict) -> float:
    return max(abs(b["ratio"] - 1.0) for b in metrics["calibration_deciles"])


def deciles_against_truth(predicted: np.ndarray, truth: np.ndarray) -> list[float]:
    """Mean predicted / mean true probability in each of the ten deciles of the prediction
    (lowest first): calibration without the labels' own sampling noise."""
    parts = np.array_split(np.argsort(predicted, kind="stable"), 10)
    return [float(predicted[p].mean() / truth[p].mean()) for p in parts]


def truth_deciles(model, table, rows: np.ndarray, batch) -> dict[str, list[float]]:
    """``deciles_against_truth`` per task on the held-out rows of a synthetic log."""
    from adrank.training.loop import predict

    held = table.take(rows)
    p_click = held.column("p_click").to_numpy()
    truth = {
        "click": p_click,
        "conversion": p_click * held.column("p_conversion").to_numpy(),
        "negative": held.column("p_negative").to_numpy(),
    }
    predicted = predict(model, batch.take(rows))
    scores = {
        "click": predicted["ctr"],
        "conversion": predicted["ctcvr"],
        "negative": predicted["neg"],
    }
    return {task: deciles_against_truth(scores[task], truth[task]) for task in model.tasks}


def worst(ratios: list[float]) -> float:
    return max(abs(r - 1.0) for r in ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--embedding-weight-decay", type=float, default=0.0, help="as adrank train's flag"
    )
    parser.add_argument(
        "--table-weight-decay",
        action="append",
        default=[],
        metavar="TABLE=DECAY",
        help="as adrank train's flag",
    )
    parser.add_argument(
        "--calibration",
        choices=("auto", "platt", "spline", "isotonic"),
        default="auto",
        help="as adrank train's flag",
    )
    parser.add_argument(
        "--calibration-fraction", type=float, default=0.1, help="training rows held for calibration"
    )
    parser.add_argument("--calls", type=int, default=50, help="timed model-stage calls")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    parser.add_argument(
        "--schema",
        type=Path,
        help="feature schema (default: the demo one; bench/schemas/ holds wider tables, ablations)",
    )
    args = parser.parse_args()

    table = generate_log(args.rows, seed=args.seed, config=DEMO_WORLD).impressions
    schema = load_schema(args.schema)
    batch = FeaturePipeline(schema)(table)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
        embedding_weight_decay=args.embedding_weight_decay,
        table_weight_decay=parse_table_weight_decay(args.table_weight_decay),
        calibration=args.calibration,
        calibration_fraction=args.calibration_fraction,
    )
    results = {}
    oracle = None
    for name in args.models:
        start = time.perf_counter()
        result = train(batch, schema, model_config=RankerConfig(model=name), config=config)
        seconds = time.perf_counter() - start
        truth_after = truth_deciles(result.model, table, result.heldout_rows, batch)
        calibration = result.model.calibration
        result.model.set_calibration(None)
        truth_before = truth_deciles(result.model, table, result.heldout_rows, batch)
        result.model.set_calibration(calibration)
        oracle = oracle or oracle_for(table, result.heldout_rows)
        sample = batch.take(np.arange(CANDIDATES))
        with torch.no_grad():
            embeddings = result.model.sparse(
                {k: (torch.from_numpy(f.values), torch.from_numpy(f.offsets))
                 for k, f in sample.sparse.items()}
            ).numpy()  # fmt: skip
        timing = model_stage_ms(
            result.model, embeddings, np.ascontiguousarray(sample.dense), args.calls
        )
        results[name] = {
            "train_s": seconds,
            "model_stage": timing,
            "calibration": {t: c["kind"] for t, c in result.calibration.items()},
            "raw": result.uncalibrated_metrics,
            "calibrated": result.metrics,
            "deciles_vs_truth": {"raw": truth_before, "calibrated": truth_after},
        }
    print(
        f"{args.rows:,} rows, {args.epochs} epoch(s), batch {args.batch_size}, seed {args.seed}, "
        f"embedding weight decay {args.embedding_weight_decay:g} "
        f"{' '.join(args.table_weight_decay)}, calibration {args.calibration}, "
        f"schema {args.schema or 'default'}"
    )
    header = (
        f"{'model':<8}{'task':<12}{'AUC':>8}{'oracle':>8}{'logloss raw':>13}{'cal':>9}"
        f"{'calib raw':>11}{'cal':>7}{'worst dec':>11}{'vs truth raw':>14}{'cal':>7}{'kind':>10}"
    )
    print(header)
    for name, r in results.items():
        for task, m in r["calibrated"].items():
            raw = r["raw"][task]
            print(
                f"{name:<8}{task:<12}{m['auc']:8.4f}{oracle[task]:8.4f}{raw['log_loss']:13.5f}"
                f"{m['log_loss']:9.5f}{raw['calibration']:11.3f}{m['calibration']:7.3f}"
                f"{worst_decile(m):11.3f}{worst(r['deciles_vs_truth']['raw'][task]):14.3f}"
                f"{worst(r['deciles_vs_truth']['calibrated'][task]):7.3f}"
                f"{r['calibration'][task]:>10}"
            )
    print("\ncalibrated / true probability by decile of the prediction (lowest first)")
    for name, r in results.items():
        for task, ratios in r["deciles_vs_truth"]["calibrated"].items():
            print(f"{name:<8}{task:<12}" + " ".join(f"{x:.3f}" for x in ratios))
    print(
        f"\n{'model':<8}{'train s':>9}{'TorchScript fp32 ms':>21}{'ONNX int8 ms':>14}"
        "  (1,000 candidates)"
    )
    for name, r in results.items():
        t = r["model_stage"]
        print(
            f"{name:<8}{r['train_s']:9.1f}{t['torchscript_fp32_ms']:21.3f}{t['onnx_int8_ms']:14.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"oracle_auc": oracle, "models": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
