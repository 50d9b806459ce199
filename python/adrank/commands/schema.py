"""``adrank schema infer DATA`` writes a schema TOML for a log; ``adrank schema check SCHEMA
DATA`` reads the log through a schema and says what does not fit."""

from __future__ import annotations

import argparse
from pathlib import Path

from adrank.commands.train import add_log_arguments, open_log_from

HELP = "infer a feature schema from a log (infer), or check a schema against a log (check)"


def _label(text: str) -> tuple[str, str]:
    task, sep, column = text.partition("=")
    if not sep or not task or not column:
        raise argparse.ArgumentTypeError(f"expected TASK=COLUMN (click=clk), got {text!r}")
    return task, column


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    infer = actions.add_parser("infer", help="write a schema TOML for a log")
    infer.add_argument("data", type=Path, help="the log")
    add_log_arguments(infer)
    infer.add_argument("--out", type=Path, help="write the schema here (default: print it)")
    infer.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="TASK=COLUMN",
        help="a label column (click, conversion, negative); default: found by name",
    )
    infer.add_argument("--sample-rows", type=int, default=100_000, help="rows to look at")
    infer.add_argument("--name", help="the schema's name (default: the log's file name)")
    check = actions.add_parser("check", help="read a log through a schema, report what fails")
    check.add_argument("schema", type=Path)
    check.add_argument("data", type=Path)
    add_log_arguments(check)


def run(args: argparse.Namespace) -> int:
    from adrank.data.log_errors import BadRowBudget
    from adrank.features import load_schema, parse_schema

    reader = open_log_from(args, args.data)
    budget = BadRowBudget(args.skip_bad_rows)
    if args.action == "infer":
        from adrank.features.infer import infer_schema

        text = infer_schema(
            reader,
            labels=dict(args.label) or None,
            sample_rows=args.sample_rows,
            name=args.name,
            budget=budget,
        )
        schema = parse_schema(text, source="the inferred schema")  # it must load as written
        if args.out is None:
            print(text, end="")
            return 0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(
            f"{args.out}: {len(schema.fields)} fields, tasks {', '.join(schema.tasks)}, "
            f"{schema.embedding_dim} embedding and {schema.dense_dim} dense inputs"
        )
        return 0
    from adrank.training.log_data import encode_log

    schema = load_schema(args.schema)
    encoded = encode_log(reader, schema, budget=budget)
    print(
        f"{reader.path}: {len(encoded):,} rows fit schema {schema.name!r} "
        f"({len(encoded.skipped)} bad rows skipped)"
    )
    return 0
