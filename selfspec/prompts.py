"""Benchmark prompt sets: the built-in one and user JSONL files (`id`, `category`, `prompt`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from selfspec.errors import BadInputError

__all__ = ["BenchPrompt", "load_prompts", "BUILTIN_PROMPTS"]

BUILTIN_PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    category: str
    prompt: str


def load_prompts(path: str | Path | None = None) -> list[BenchPrompt]:
    """Read a prompt file, naming the line and the problem when one is malformed."""
    path = Path(path) if path else BUILTIN_PROMPTS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read the prompt file {path}: {exc}") from exc
    prompts, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}, line {n}: not valid JSON ({exc.msg}).") from exc
        if not isinstance(row, dict):
            raise BadInputError(f"{path}, line {n}: expected a JSON object.")
        missing = [k for k in ("id", "category", "prompt") if not str(row.get(k, "")).strip()]
        if missing:
            raise BadInputError(
                f"{path}, line {n}: missing or empty {', '.join(missing)}. Each line needs "
                '{"id": ..., "category": ..., "prompt": ...}.'
            )
        if row["id"] in seen:
            raise BadInputError(f"{path}, line {n}: duplicate id '{row['id']}'.")
        seen.add(row["id"])
        prompts.append(BenchPrompt(str(row["id"]), str(row["category"]), str(row["prompt"])))
    if not prompts:
        raise BadInputError(f"{path} holds no prompts.")
    return prompts
