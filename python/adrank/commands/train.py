"""``adrank train``: train the multi-task ranker on a log and report held-out metrics.

Beside the checkpoint it writes ``<checkpoint>.heldout.json`` (the log, the seed, the held-out
fraction, the row count) and ``<checkpoint>.heldout.npy`` (the held-out rows), which
``adrank evaluate`` uses to score exactly those rows; and, when the schema was inferred,
``<checkpoint>.schema.toml``. Before training an in-memory log it runs the data-quality gates
of ``adrank check`` (an error stops it, a warning is printed; ``--skip-check`` skips them).

With ``--uplift t|x`` it also fits a T- or X-learner uplift model (:mod:`adrank.uplift`) on the
log's ``treatment`` and ``converted`` columns (``--generate`` draws them), on the ranker's
training rows, reports its Qini and AUUC on the held-out rows, and writes it to
``<checkpoint>.uplift/``, which ``adrank export`` puts beside the version for
``ScoringConfig(value="incremental")``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HELP = "train the multi-task ranker on a log (CSV, TSV, JSON lines, Parquet, Criteo) or a drawn one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data", type=Path, help="a log: CSV/TSV/JSON-lines file, Parquet file or directory"
    )
    source.add_argument(
        "--generate", type=int, metavar="ROWS", help="draw a synthetic log of ROWS rows (default)"
    )
    parser.add_argument(
        "--content",
        action="store_true",
        help="with --generate: creatives carry captions, hashtags and visual/audio tags, users "
        "topic interests, and the content schema is the default",
    )
    add_log_arguments(parser)
    parser.add_argument(
        "--schema", type=Path, help="feature schema (default: the format's own, or inferred)"
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/ranker.pt"), help="checkpoint")
    parser.add_argument("--metrics-json", type=Path, help="also write the metrics here as JSON")
    parser.add_argument(
        "--model",
        choices=("dcn", "fm", "deepfm"),
        default="dcn",
        help="dense architecture: DCN-v2 (default), a factorization machine, or DeepFM",
    )
    parser.add_argument(
        "--calibration",
        choices=("none", "auto", "platt", "spline", "isotonic"),
        default="none",
        help="post-hoc calibration per head on held-back training rows, saved and exported "
        "with the model (auto: identity, Platt, spline or isotonic by cross-fitted log loss)",
    )
    parser.add_argument(
        "--uplift",
        choices=("t", "x"),
        help="also fit a T- or X-learner uplift model on the log's treatment and converted "
        "columns, written to <out>.uplift/ (bid for incremental conversions)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam, dense part")
    parser.add_argument("--embedding-lr", type=float, default=1e-1, help="Adagrad, tables")
    parser.add_argument(
        "--embedding-weight-decay",
        type=float,
        default=0.0,
        help="L2 on the tables (Adagrad weight decay): ids without an effect fit less noise",
    )
    parser.add_argument(
        "--table-weight-decay",
        action="append",
        default=[],
        metavar="TABLE=DECAY",
        help="one table's own decay, in place of --embedding-weight-decay (repeatable; a "
        "large id table, e.g. creative=1e-3, shrinks its rarely seen rows more)",
    )
    parser.add_argument("--holdout", type=float, default=0.2, help="held-out fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="stream the log chunk by chunk (a log larger than memory); held-out rows by hash",
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=262_144, help="rows per chunk with --stream"
    )
    from adrank.commands.check import add_quality_arguments

    add_quality_arguments(parser)
    parser.add_argument(
        "--skip-check",
        action="store_true",
        help="do not run the data-quality gates (adrank check) before training",
    )


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every command that reads a log shares."""
    from adrank.data.readers import FORMATS

    parser.add_argument(
        "--format", choices=FORMATS, default="auto", help="format of the log (default: from it)"
    )
    parser.add_argument("--delimiter", help="field delimiter of a text log (default: found)")
    parser.add_argument(
        "--no-header", action="store_true", help="the text log's first line is a row"
    )
    parser.add_argument(
        "--skip-bad-rows",
        type=int,
        default=0,
        metavar="N",
        help="skip up to N bad rows, reporting each (default: stop at the first)",
    )


def open_log_from(args: argparse.Namespace, path: Path, batch_rows: int = 65_536):
    """The reader ``args`` describe for ``path``; a synthetic log directory reads its
    impressions file."""
    from adrank.data.readers import open_log
    from adrank.data.synthetic import IMPRESSION_FILE

    if path.is_dir() and (path / IMPRESSION_FILE).exists():
        path = path / IMPRESSION_FILE
    header = False if args.no_header else None
    return open_log(
        path, args.format, delimiter=args.delimiter, header=header, batch_rows=batch_rows
    )


def _schema_for(args: argparse.Namespace, reader):
    from adrank.features import criteo_schema_path, default_schema_path, load_schema, parse_schema
    from adrank.features.infer import infer_schema

    if args.schema is not None:
        return load_schema(args.schema)
    if reader.format == "criteo":
        return load_schema(criteo_schema_path())
    if "p_click" in reader.column_names:  # a synthetic log, as adrank writes it
        return load_schema(default_schema_path())
    text = infer_schema(reader)
    path = Path(f"{args.out}.schema.toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"no --schema: inferred one from the log, written to {path} (edit it, pass --schema)")
    return parse_schema(text, source=str(path))


def _gate(report) -> None:
    """Stop on an error of the data-quality report, print its warnings and go on."""
    from adrank.quality import QualityError

    if report.errors:
        raise QualityError(report)
    if report.warnings:
        print(report.format(), file=sys.stderr)


def _fit_uplift(args, schema, batch, arms, heldout_rows) -> dict:
    """Fit ``args.uplift``'s learner on the ranker's training rows, print its held-out report,
    write it to ``<out>.uplift/``."""
    from adrank.uplift.fit import OUTCOME_COLUMN, TREATMENT_COLUMN, fit_uplift, format_uplift
    from adrank.uplift.serving import save_uplift

    treatment, outcome = arms[TREATMENT_COLUMN], arms[OUTCOME_COLUMN]
    for name, values in ((TREATMENT_COLUMN, treatment), (OUTCOME_COLUMN, outcome)):
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"--uplift: the log's {name!r} column must hold 0 or 1")
    learner, report = fit_uplift(
        args.uplift, schema, batch, treatment, outcome, heldout_rows, seed=args.seed
    )
    print(format_uplift(report))
    directory = save_uplift(f"{args.out}.uplift", learner.exported())
    print(f"uplift model: {directory}")
    return report


def parse_table_weight_decay(entries: list[str]) -> dict[str, float]:
    """``["creative=1e-3", ...]`` -> ``{"creative": 0.001}``; ValueError naming the flag."""
    decays: dict[str, float] = {}
    for entry in entries:
        table, sep, value = entry.partition("=")
        try:
            decay = float(value) if sep and table else None
        except ValueError:
            decay = None
        if decay is None:
            raise ValueError(f"--table-weight-decay wants TABLE=DECAY, got {entry!r}")
        decays[table.strip()] = decay
    return decays


def run(args: argparse.Namespace) -> int:
    from adrank.data import SyntheticConfig, generate_log
    from adrank.data.log_errors import BadRowBudget
    from adrank.features import content_schema_path, load_schema
    from adrank.features.pipeline import FeaturePipeline
    from adrank.models import RankerConfig, save_checkpoint
    from adrank.training.heldout import save_heldout
    from adrank.training.log_data import encode_log
    from adrank.training.loop import TrainConfig, train
    from adrank.training.report import format_calibration, format_report, oracle_for
    from adrank.uplift.fit import OUTCOME_COLUMN, TREATMENT_COLUMN

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        embedding_learning_rate=args.embedding_lr,
        embedding_weight_decay=args.embedding_weight_decay,
        table_weight_decay=parse_table_weight_decay(args.table_weight_decay),
        holdout=args.holdout,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
        calibration=args.calibration,
    )
    model_config = RankerConfig(model=args.model)
    if args.stream and args.uplift is not None:
        raise ValueError("--uplift is not supported with --stream: it fits on the log in memory")
    if args.stream and args.data is None:
        raise ValueError("--stream reads a log: pass --data")
    if args.content and args.data is not None:
        raise ValueError("--content draws the synthetic log's content: it goes with --generate")
    if args.stream:
        from adrank.training.streaming import train_streaming

        reader = open_log_from(args, args.data, batch_rows=args.chunk_rows)
        schema = _schema_for(args, reader)
        total = reader.count_rows()
        result = train_streaming(
            reader,
            schema,
            config=config,
            model_config=model_config,
            budget=BadRowBudget(args.skip_bad_rows),
            total_rows=total,
        )
        oracle = None
        data_path, num_rows = reader.path, total if total is not None else -1
    elif args.data is not None:
        reader = open_log_from(args, args.data)
        schema = _schema_for(args, reader)
        if not args.skip_check:
            from adrank.commands.check import quality_report

            _gate(quality_report(args, reader, schema))
        experiment = () if args.uplift is None else (TREATMENT_COLUMN, OUTCOME_COLUMN)
        encoded = encode_log(
            reader, schema, budget=BadRowBudget(args.skip_bad_rows), extra_columns=experiment
        )
        print(f"{reader.path}: {len(encoded):,} rows ({len(encoded.skipped)} bad rows skipped)")
        batch = encoded.batch
        arms = {c: encoded.extra[c].astype(np.float64) for c in experiment}
        result = train(batch, schema, model_config=model_config, config=config)
        oracle = None
        data_path, num_rows = reader.path, len(encoded)
    else:
        rows = args.generate or 200_000
        print(f"drawing a synthetic log of {rows:,} rows (seed {args.seed})")
        world = SyntheticConfig(content=True) if args.content else None
        table = generate_log(
            rows, seed=args.seed, config=world, treatment=args.uplift is not None
        ).impressions
        default = content_schema_path() if args.content else None
        schema = load_schema(default if args.schema is None else args.schema)
        if not args.skip_check:
            from adrank.quality import check_frame, load_settings

            settings = load_settings(args.quality_settings)
            _gate(check_frame(table, schema, settings))
        batch = FeaturePipeline(schema)(table)
        arms = {}
        if args.uplift is not None:
            arms = {c: table.column(c).to_numpy() for c in (TREATMENT_COLUMN, OUTCOME_COLUMN)}
        result = train(batch, schema, model_config=model_config, config=config)
        oracle = oracle_for(table, result.heldout_rows)
        data_path, num_rows = None, table.num_rows
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_report(result.metrics, oracle))
    if result.calibration is not None:
        print(format_calibration(result.calibration, result.uncalibrated_metrics, result.metrics))
    save_checkpoint(args.out, result.model, metrics=result.metrics)
    save_heldout(args.out, result.heldout_rows, data=data_path, num_rows=num_rows, config=config)
    print(f"checkpoint: {args.out} (held-out rows: {args.out}.heldout.npy)")
    uplift_report = None
    if args.uplift is not None:
        uplift_report = _fit_uplift(args, schema, batch, arms, result.heldout_rows)
    if args.metrics_json:
        args.metrics_json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"heldout": result.metrics, "oracle_auc": oracle, "history": result.history}
        if uplift_report is not None:
            payload["uplift"] = uplift_report
        if result.calibration is not None:
            payload["calibration"] = result.calibration
            payload["heldout_uncalibrated"] = result.uncalibrated_metrics
        args.metrics_json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0
