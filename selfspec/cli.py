"""Command line: `python -m selfspec {generate,bench,table,search,train-adapter}`.

The library modules are imported inside the command that needs them: they pull in torch,
transformers or optuna (seconds), which `--help` and a mistyped argument should not wait
for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from selfspec.errors import BadInputError, SelfSpecError

__all__ = ["main"]


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="bundled", help="bundled, tiny-*, a HF id or a folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto, int8 (GGUF blocks times 8-bit activations), float32, bfloat16, float16, float64",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the engine's layer stack (slow to compile, minutes on a CPU)",
    )


def _sampling_args(p: argparse.ArgumentParser, max_new: int) -> None:
    p.add_argument("--max-new-tokens", type=int, default=max_new)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)


def _sampling(args):
    from selfspec.sampling import SamplingConfig

    return SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m selfspec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="stream one reply to stdout")
    _model_args(gen)
    _sampling_args(gen, 128)
    gen.add_argument("--method", default="vanilla")
    gen.add_argument("prompt")

    bench = sub.add_parser("bench", help="time methods on a prompt set, write a JSON report")
    _model_args(bench)
    _sampling_args(bench, 128)
    bench.add_argument("--methods", default="vanilla,hf", help="comma-separated method names")
    bench.add_argument("--prompts", default=None, help="JSONL file (default: built-in set)")
    bench.add_argument("--categories", default=None, help="only these categories (comma list)")
    bench.add_argument("--limit", type=int, default=None, help="at most this many prompts")
    bench.add_argument("--out", default=None, help="where to write the JSON report")
    table = sub.add_parser("table", help="print a bench report as Markdown tables")
    table.add_argument("report", help="JSON report written by bench --out")
    search = sub.add_parser("search", help="find the sub-layers to skip (optuna)")
    _model_args(search)
    search.add_argument("--trials", type=int, default=200)
    search.add_argument("--objective", default="proxy", choices=["proxy", "speed"])
    search.add_argument("--calibration-prompts", type=int, default=4)
    search.add_argument("--calibration-tokens", type=int, default=32)
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--storage", default=None, help="optuna SQLite file (resumable)")
    search.add_argument("--out", default=None, help="profile path (default: data/profiles/)")
    train = sub.add_parser("train-adapter", help="train a Kangaroo adapter (self-distillation)")
    _model_args(train)
    train.set_defaults(dtype="float32")
    train.add_argument("--exit-layer", type=int, required=True)
    train.add_argument("--steps", type=int, default=300)
    train.add_argument("--loss", default="ce", choices=["ce", "kl"])
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--max-new-tokens", type=int, default=96, help="per corpus prompt")
    train.add_argument("--head-tokens", type=int, default=0, help="restricted draft head size")
    train.add_argument("--eta", type=float, default=0.6, help="draft-exit threshold to record")
    train.add_argument("--init", default="layer", choices=["layer", "random"])
    train.add_argument("--corpus", default=None, help="extra prompts: JSONL set or one a line")
    train.add_argument(
        "--notes",
        default=None,
        metavar="DIR",
        help="a folder of notes (.md, .txt) turned into summary and question requests; "
        "study/notes/seed holds the app's seed notes",
    )
    train.add_argument(
        "--generated-only",
        action="store_true",
        help="learn only at generated tokens, not also at the prompts' text",
    )
    train.add_argument(
        "--no-builtin-prompts",
        action="store_true",
        help="leave the built-in (benchmark) prompt set out of the corpus",
    )
    train.add_argument(
        "--self-instruct",
        type=int,
        default=0,
        metavar="TOPICS",
        help="add the model's own text on this many shipped topics (slow: docs/kangaroo.md)",
    )
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    train.add_argument("--out", required=True, help="adapter path (.safetensors)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "table":
            return _table(args.report)
        cfg = _sampling(args) if args.command in ("generate", "bench") else None
        if args.command == "bench":
            _check_methods(args.methods)
        if args.command == "search":
            from selfspec.search import SearchSettings

            settings = SearchSettings(
                trials=args.trials,
                objective=args.objective,
                prompts=args.calibration_prompts,
                tokens=args.calibration_tokens,
                seed=args.seed,
            )
        from selfspec.loading import load_model

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)

        lm = load_model(args.model, device=args.device, dtype=args.dtype)
        if args.compile:
            lm.engine.compile()
        if args.command == "search":
            return _search(args, lm, settings)
        if args.command == "train-adapter":
            return _train_adapter(args, lm)
        return {"generate": _generate, "bench": _bench}[args.command](args, lm, cfg)
    except SelfSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _table(path: str) -> int:
    from selfspec.bench_tables import markdown_table

    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        print(markdown_table(report))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(
            f"Cannot read a bench report from {path} ({exc.__class__.__name__}: {exc}). "
            "Give the JSON file that `python -m selfspec bench --out` wrote."
        ) from exc
    return 0


def _check_methods(spec: str) -> list[str]:
    from selfspec.methods import get_method

    names = [m.strip() for m in spec.split(",") if m.strip()]
    for name in names:
        get_method(name)
    return names


def _generate(args, lm, cfg) -> int:
    from selfspec.decoding import GenerationResult, Piece, generate
    from selfspec.methods import get_method

    info = get_method(args.method)
    for event in generate(lm, args.prompt, info.run, cfg, name=args.method, **info.options):
        if isinstance(event, Piece):
            print(event.text, end="", flush=True)
        elif isinstance(event, GenerationResult):
            print(
                f"\n\n[{event.method}] {len(event.tokens)} tokens in {event.seconds:.2f}s = "
                f"{event.tokens_per_s:.1f} tokens/s ({event.stop_reason})",
                file=sys.stderr,
            )
    return 0


def _bench(args, lm, cfg) -> int:
    from selfspec.bench import run_bench, write_report
    from selfspec.bench_tables import format_table
    from selfspec.prompts import load_prompts

    prompts = load_prompts(args.prompts)
    if args.categories:
        wanted = {c.strip() for c in args.categories.split(",")}
        prompts = [p for p in prompts if p.category in wanted]
        if not prompts:
            raise BadInputError(f"No prompts in categories {sorted(wanted)}.")
    if args.limit:
        prompts = prompts[: args.limit]
    report = run_bench(
        lm,
        prompts,
        _check_methods(args.methods),
        cfg,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(report.to_json()))
    if args.out:
        write_report(report, args.out)
        print(f"report written to {args.out}", file=sys.stderr)
    return 0


def _search(args, lm, settings) -> int:
    from selfspec.search import run_search

    start = time.perf_counter()
    profile = run_search(
        lm,
        settings,
        storage=args.storage,
        out=Path(args.out) if args.out else None,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(
        f"skip attention {profile.attn}, MLP {profile.mlp}; {profile.note} "
        f"({profile.trials} trials, {time.perf_counter() - start:.0f}s)"
    )
    return 0


def _train_adapter(args, lm) -> int:
    from selfspec.adapter_corpus import read_notes
    from selfspec.train_adapter import TrainSettings, train_adapter

    settings = TrainSettings(
        exit_layer=args.exit_layer,
        steps=args.steps,
        loss=args.loss,
        lr=args.lr,
        seed=args.seed,
        batch=args.batch,
        max_new_tokens=args.max_new_tokens,
        head_tokens=args.head_tokens,
        eta=args.eta,
        init=args.init,
        corpus=args.corpus,
        notes=tuple(read_notes(args.notes)) if args.notes else (),
        prompt_text=not args.generated_only,
        builtin=not args.no_builtin_prompts,
        topics=args.self_instruct,
    )
    adapter = train_adapter(lm, settings, args.out, resume=args.resume)
    s = adapter.settings
    print(
        f"adapter written to {args.out}: held-out {s.loss} {s.held_out_loss:.4f}, expected "
        f"acceptance {s.expected_acceptance:.3f}, {s.seconds:.0f}s"
    )
    return 0
