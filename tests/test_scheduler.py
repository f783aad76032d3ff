"""Scheduling: learning steps, intervals at the desired retention, limits, fuzz, due cards."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from fsrs import Card as FsrsCard
from fsrs import Rating as FsrsRating
from fsrs import Scheduler as FsrsScheduler

from study.errors import InvalidSettingError
from study.memory import EbbinghausModel, FSRS6Model, Rating
from study.reviews import submit_review
from study.scheduler import (
    Phase,
    SchedulingPolicy,
    due_cards,
    fuzz_interval,
    nothing_due_reason,
    schedule_review,
)
from study.settings import update_settings
from tests.study_helpers import T0, add_user_with_cards

NO_FUZZ = SchedulingPolicy(fuzz=False)


def _run(model, ratings_and_gaps, policy=NO_FUZZ):
    """Apply (rating, delay since previous review) pairs; return the schedules."""
    schedule, at, out = None, T0, []
    for rating, gap in ratings_and_gaps:
        at = at + gap
        schedule = schedule_review(schedule, rating, at, model, policy)
        out.append(schedule)
    return out


def test_new_card_walks_the_learning_steps_then_graduates():
    model = EbbinghausModel()
    s = _run(model, [(3, timedelta(0)), (3, timedelta(minutes=10))])
    assert (s[0].phase, s[0].step, s[0].due - T0) == (Phase.LEARNING, 1, timedelta(minutes=10))
    assert s[1].phase is Phase.REVIEW and s[1].step is None
    expected = round(model.interval_days(s[1].memory, 0.9))
    assert s[1].due - s[1].memory.last_review == timedelta(days=max(1, expected))


@pytest.mark.parametrize(
    ("rating", "phase", "delay"),
    [
        (Rating.AGAIN, Phase.LEARNING, timedelta(minutes=1)),
        (Rating.HARD, Phase.LEARNING, timedelta(minutes=5, seconds=30)),
        (Rating.GOOD, Phase.LEARNING, timedelta(minutes=10)),
    ],
)
def test_first_answer_sets_the_first_step(rating, phase, delay):
    (s,) = _run(EbbinghausModel(), [(rating, timedelta(0))])
    assert (s.phase, s.due - T0) == (phase, delay)


def test_easy_graduates_at_once():
    (s,) = _run(EbbinghausModel(), [(Rating.EASY, timedelta(0))])
    assert s.phase is Phase.REVIEW and s.due - T0 >= timedelta(days=1)


def test_lapse_goes_to_relearning_and_counts():
    s = _run(
        EbbinghausModel(),
        [
            (3, timedelta(0)),
            (3, timedelta(minutes=10)),
            (3, timedelta(days=3)),
            (1, timedelta(days=9)),
        ],
    )
    lapse = s[-1]
    assert (lapse.phase, lapse.step, lapse.lapses, lapse.reps) == (Phase.RELEARNING, 0, 1, 4)
    assert lapse.due - lapse.memory.last_review == timedelta(minutes=10)
    assert lapse.memory.stability < s[-2].memory.stability
    back = schedule_review(lapse, Rating.GOOD, lapse.due, EbbinghausModel(), NO_FUZZ)
    assert back.phase is Phase.REVIEW and back.due - back.memory.last_review >= timedelta(days=1)


def test_intervals_grow_with_successive_good_answers():
    gaps = [(3, timedelta(0)), (3, timedelta(minutes=10))]
    schedules = _run(EbbinghausModel(), gaps)
    for _ in range(5):
        last = schedules[-1]
        schedules.append(schedule_review(last, Rating.GOOD, last.due, EbbinghausModel(), NO_FUZZ))
    intervals = [s.due - s.memory.last_review for s in schedules[1:]]
    assert all(a <= b for a, b in zip(intervals, intervals[1:], strict=False))
    assert intervals[-1] >= 4 * intervals[1]


def test_higher_retention_means_shorter_interval_and_maximum_is_respected():
    model = EbbinghausModel()
    history = [(3, timedelta(0)), (4, timedelta(minutes=10))]
    strict = _run(model, history, SchedulingPolicy(desired_retention=0.97, fuzz=False))[-1]
    loose = _run(model, history, SchedulingPolicy(desired_retention=0.7, fuzz=False))[-1]
    assert strict.due < loose.due
    capped = _run(model, history, SchedulingPolicy(maximum_interval_days=2, fuzz=False))[-1]
    assert capped.due - capped.memory.last_review <= timedelta(days=2)


def test_due_is_when_recall_reaches_desired_retention():
    model = EbbinghausModel()
    s = _run(model, [(4, timedelta(0))])[-1]
    raw = model.interval_days(s.memory, 0.9)
    assert model.recall(s.memory, s.memory.last_review + timedelta(days=raw)) == pytest.approx(0.9)


def test_fsrs_schedule_equals_the_fsrs_package_without_fuzz():
    package = FsrsScheduler(enable_fuzzing=False)
    card = FsrsCard(card_id=1)
    ours, at = None, T0
    for rating, gap in [(3, 0), (3, 0.01), (3, 3), (1, 10), (3, 0.01), (4, 5), (2, 20)]:
        at = at + timedelta(days=gap)
        card, _ = package.review_card(card, FsrsRating(rating), review_datetime=at)
        ours = schedule_review(ours, rating, at, FSRS6Model(), NO_FUZZ)
        assert ours.due == card.due
        assert ours.phase.value == card.state.name.lower()


def test_fuzz_is_seedable_and_bounded():
    draws = [fuzz_interval(40, 36500, random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1
    spread = {fuzz_interval(40, 36500, random.Random(seed)) for seed in range(200)}
    assert min(spread) >= 37 and max(spread) <= 43 and len(spread) > 3
    assert fuzz_interval(2, 36500, random.Random(1)) == 2
    assert max(fuzz_interval(100, 101, random.Random(s)) for s in range(50)) <= 101


def test_invalid_policy_is_refused():
    with pytest.raises(InvalidSettingError, match="retention"):
        SchedulingPolicy(desired_retention=0.99)
    with pytest.raises(InvalidSettingError):
        SchedulingPolicy(maximum_interval_days=0)


def test_due_cards_respects_the_daily_new_limit_and_user(db):
    user, cards = add_user_with_cards(db, "ann", 6)
    other, _ = add_user_with_cards(db, "bob", 4)
    update_settings(db, user, daily_new_limit=3)
    now = T0 + timedelta(days=1)
    due = due_cards(db, user, now=now)
    assert [d.card_id for d in due] == cards[:3] and all(d.is_new for d in due)

    for i, card in enumerate(cards[:2]):
        submit_review(db, user, card, 3, idempotency_key=f"k{i}", at=now)
    later = now + timedelta(minutes=11)
    due = due_cards(db, user, now=later)
    # two learning cards are due again; one new card left for today
    assert [d.card_id for d in due if not d.is_new] == cards[:2]
    assert [d.card_id for d in due if d.is_new] == [cards[2]]
    assert all(d.card_id in cards for d in due_cards(db, user, now=later))
    assert not {d.card_id for d in due_cards(db, other, now=later)} & set(cards)


def test_an_empty_review_says_why_and_what_to_do(db):
    nobody, _ = add_user_with_cards(db, "cardless", 0)
    assert "Generate questions for this note" in nothing_due_reason(db, nobody, now=T0)
    user, cards = add_user_with_cards(db, "dana", 2)
    update_settings(db, user, daily_new_limit=1)
    submit_review(db, user, cards[0], 4, idempotency_key="k", at=T0)
    text = nothing_due_reason(db, user, now=T0 + timedelta(minutes=1))
    assert "1 new card(s) wait for tomorrow" in text and "next review is due" in text
