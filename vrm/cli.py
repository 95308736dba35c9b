"""The `vrm` command: data checks, scoring with an exported reward model, and the method registry."""

from __future__ import annotations

import argparse
import sys

from vrm.errors import UserError


def _data_check(args: argparse.Namespace) -> int:
    from vrm.data.check import check_main

    return check_main(args.path, args.format)


def _methods(args: argparse.Namespace) -> int:
    from vrm.methods import METHODS, load_builtin_methods, load_plugins

    load_builtin_methods()
    load_plugins(args.plugin or [])
    width = max(len(name) for name in METHODS)
    for name in sorted(METHODS):
        print(f"{name:<{width}}  {METHODS[name].summary}")
    return 0


def _score(args: argparse.Namespace) -> int:
    import logging

    from vrm.score import score_file

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    count = score_file(args.model, args.input, args.output, batch_size=args.batch_size, device=args.device)
    print(f"wrote {count} rows with rewards to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vrm", description="vrm-bench: reward-model benchmark harness.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect preference data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    check = data_commands.add_parser(
        "check", help="parse a data file or source folder, print pair counts and drops, fail on malformed input"
    )
    check.add_argument("path", help="a JSONL, JSON or Parquet file, or a data root folder for a named source")
    check.add_argument("--format", default=None,
                       help="a source name (e.g. rmb, autoj) or jsonl, json, parquet; default: from the file extension")
    check.set_defaults(handler=_data_check)

    score = commands.add_parser(
        "score", help="add a `reward` field to JSONL rows with `prompt` and `response`, using an exported model"
    )
    score.add_argument("--model", required=True, help="folder written by fine-tune mode (results/export/METHOD)")
    score.add_argument("--input", required=True, help="JSONL file, one object with prompt and response per line")
    score.add_argument("--output", required=True, help="JSONL file to write: the input rows with a reward field")
    score.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    score.add_argument("--device", default="cpu", help="torch device, for example cpu or cuda (default cpu)")
    score.set_defaults(handler=_score)

    methods = commands.add_parser("methods", help="list registered reward-model methods")
    methods.add_argument("--plugin", action="append", help="import this module first (repeatable)")
    methods.set_defaults(handler=_methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"vrm: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
