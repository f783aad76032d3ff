"""Quiz cards from notes: prompt, tolerant parser, checks, and the generation loop."""

from study.quiz.cards import BLANK, CardDraft, CardKind, GeneratedCard
from study.quiz.generate import Completion, QuizOutcome, generate_cards
from study.quiz.parse import ParseResult, parse_cards
from study.quiz.prompt import NoteLike, build_prompt, note_excerpts, plain_text
from study.quiz.validate import DEFAULT_RULES, Rules, content_words, similarity, validate_card

__all__ = [
    "BLANK",
    "DEFAULT_RULES",
    "CardDraft",
    "CardKind",
    "Completion",
    "GeneratedCard",
    "NoteLike",
    "ParseResult",
    "QuizOutcome",
    "Rules",
    "build_prompt",
    "content_words",
    "generate_cards",
    "note_excerpts",
    "parse_cards",
    "plain_text",
    "similarity",
    "validate_card",
]
