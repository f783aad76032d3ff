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
        help="score the memory models on one or more learners' review logs",
        description="Replay review logs (CSV: card_id, review_rating, review_time, "
        "review_duration) through each memory model, srs-benchmark style: time-ordered "
        "folds per learner; log loss, RMSE(bins) and AUC with 95 %% bootstrap intervals; "
        "one block per learner and the mean across learners.",
    )
    parser.add_argument(
        "--reviews", required=True, nargs="+", type=Path, help="review log CSV(s), one per learner"
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated model names (default: every model of study.evaluate)",
    )
    parser.add_argument("--folds", type=int, default=5, help="time-ordered test folds (5)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from study.evaluate import evaluate_logs
    from study.review_log import load_review_log

    started = time.perf_counter()
    logs = [load_review_log(path) for path in args.reviews]
    report = evaluate_logs(
        logs,
        models=[m.strip() for m in args.models.split(",") if m.strip()] or None,
        folds=args.folds,
        bootstrap=args.bootstrap,
        seed=args.seed,
        progress=lambda line: print(line, file=sys.stderr),
    )
    print(report.table())
    print(f"total {time.perf_counter() - started:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def _add_quiz_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quiz-eval",
        help="generate quiz cards for a folder of notes and report the yield",
        description="Generate cards for every Markdown note under --notes with the quiz "
        "writer and write cards per note, rejection reasons, time per card, the writer's "
        "speed and every card, for a reader to judge. No database.",
    )
    parser.add_argument("--notes", required=True, type=Path, help="folder of Markdown notes")
    parser.add_argument("--out", required=True, type=Path, help="JSON report to write")
    parser.add_argument("--max-attempts", type=int, default=3, help="model calls per kind (3)")
    parser.add_argument(
        "--model",
        default="auto",
        help="the writer: a model name (bundled, an installed `make models` one, a Hugging "
        "Face id or folder) or auto (default): $SELFSPEC_MODEL where set, else the largest "
        "installed instruction model, else the bundled one; always with its fastest exact method",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.set_defaults(func=_run_quiz_eval)


def _run_quiz_eval(args: argparse.Namespace) -> int:
    import torch

    from study.quiz_eval import quiz_eval
    from study.quiz_model import (
        AUTO,
        QUIZ_MAX_NEW_TOKENS,
        load_writer,
        operator_model,
        writer_for,
        writer_for_setting,
    )

    if not args.notes.is_dir():
        raise ValueError(f"--notes {args.notes} is not a folder of Markdown notes")
    if args.threads:
        torch.set_num_threads(args.threads)
    writer = (
        writer_for_setting(None, operator_model()) if args.model == AUTO else writer_for(args.model)
    )
    print(f"quiz writer: {writer.describe()}", file=sys.stderr)
    evaluation = quiz_eval(
        args.notes,
        load_writer(writer),
        max_attempts=args.max_attempts,
        progress=lambda line: print(line, file=sys.stderr),
    )
    report = evaluation.as_dict()
    report["settings"] |= {
        "model_option": args.model,
        "threads": torch.get_num_threads(),
        "max_new_tokens": QUIZ_MAX_NEW_TOKENS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    share = report["share_of_notes_with_2_or_more_cards"]
    print(
        f"{report['cards']} card(s) from {report['notes']} note(s); {share:.0%} of notes gave 2 "
        f"or more; {report['seconds_per_card']} s per card; {writer.describe()} at "
        f"{report['tokens_per_s']} tokens/s; report in {args.out}"
    )
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_evaluate,
    _add_quiz_eval,
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
