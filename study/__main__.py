"""Command line of the study companion: ``python -m study <command>``.

Each command is a subparser whose handler is stored in ``func``; another part adds its
own commands (e.g. ``jobs run-now NAME``) by registering a function in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from db import DatabaseUnavailableError
from study.cli import add_export, add_import, add_jobs, add_worker
from study.errors import StudyError

__all__ = ["COMMANDS", "build_parser", "main"]


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score the memory models on a review log",
        description="Replay a review log (CSV: card_id, review_rating, review_time, "
        "review_duration) through each memory model; report log loss, RMSE over bins "
        "and AUC on a time-ordered split.",
    )
    parser.add_argument("--reviews", required=True, type=Path, help="review log CSV")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--models",
        default="ebbinghaus,fsrs6,fsrs6-default,sm2,hlr",
        help="comma-separated model names (default: all five)",
    )
    parser.add_argument(
        "--train-fraction", type=float, default=0.7, help="share of the log used to fit"
    )
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from study.evaluate import evaluate, load_review_log

    started = time.perf_counter()
    histories = load_review_log(args.reviews)
    report = evaluate(
        histories,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        train_fraction=args.train_fraction,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(report.table())
    print(f"total {time.perf_counter() - started:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_evaluate,
    add_jobs,
    add_worker,
    add_export,
    add_import,
]
"""Functions that each add one subcommand to the parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (StudyError, ValueError, DatabaseUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
