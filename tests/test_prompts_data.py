"""The built-in benchmark prompt set: schema, balance, and usable content."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from study.quiz import parse_cards

PROMPTS = Path(__file__).resolve().parents[1] / "selfspec" / "data" / "prompts.jsonl"
CATEGORIES = {"conversation", "translation", "summarization", "qa", "math", "quiz"}
PREFIXES = {
    "conversation": "conv",
    "translation": "trans",
    "summarization": "sum",
    "qa": "qa",
    "math": "math",
    "quiz": "quiz",
}


@pytest.fixture(scope="module")
def rows():
    lines = PROMPTS.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "blank line in prompts.jsonl"
    return [json.loads(line) for line in lines]


def test_schema_ids_and_categories(rows):
    assert len(rows) >= 30
    for row in rows:
        assert set(row) == {"id", "category", "prompt"}, row
        assert row["category"] in CATEGORIES
        assert isinstance(row["prompt"], str) and row["prompt"].strip()
        assert row["id"].startswith(PREFIXES[row["category"]] + "-"), row["id"]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    counts = Counter(row["category"] for row in rows)
    assert set(counts) == CATEGORIES and min(counts.values()) >= 5, counts


@pytest.mark.parametrize(("category", "marker"), [("summarization", "\n\n"), ("quiz", "Note: ")])
def test_passages_to_summarize_or_quiz_are_80_to_150_words(rows, category, marker):
    for row in (r for r in rows if r["category"] == category):
        passage = row["prompt"].split(marker, 1)[1]
        assert 80 <= len(passage.split()) <= 150, row["id"]


def test_quiz_prompts_ask_for_the_format_the_parser_reads(rows):
    for row in (r for r in rows if r["category"] == "quiz"):
        assert "Question: ..." in row["prompt"] and "Answer: ..." in row["prompt"]
    sample = "Question: What did Ebbinghaus time?\nAnswer: relearning"
    assert parse_cards(sample).cards
