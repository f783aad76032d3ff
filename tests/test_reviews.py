"""The review service: idempotency, undo, isolation, bad input, concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from db import CardState, Review
from study.errors import (
    CardNotFoundError,
    InvalidRatingError,
    InvalidTimestampError,
    NothingToUndoError,
    StudyError,
)
from study.recall import card_memory, forgetting_curve, predicted_recall, replayed_schedule
from study.reviews import submit_review, undo_last_review
from study.settings import update_settings
from tests.study_helpers import T0, add_user_with_cards


def _counts(db):  # noqa: ANN001, ANN202
    with db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Review)),
            session.scalar(select(func.count()).select_from(CardState)),
        )


@pytest.fixture
def setup(db):
    user, cards = add_user_with_cards(db, "ann", 3)
    other, other_cards = add_user_with_cards(db, "bob", 2)
    return db, user, cards, other, other_cards


def test_same_submission_twice_counts_once(setup):
    db, user, cards, *_ = setup
    first = submit_review(db, user, cards[0], 3, idempotency_key="a1", duration_ms=1200, at=T0)
    again = submit_review(db, user, cards[0], 3, idempotency_key="a1", duration_ms=1200, at=T0)
    assert not first.duplicate and again.duplicate
    assert again.review_id == first.review_id and again.due == first.due
    assert _counts(db) == (1, 1)
    with pytest.raises(StudyError, match="another card"):
        submit_review(db, user, cards[1], 3, idempotency_key="a1", at=T0)
    assert _counts(db) == (1, 1)


def test_predicted_recall_is_stored_before_each_review(setup):
    db, user, cards, *_ = setup
    assert submit_review(db, user, cards[0], 4, idempotency_key="1", at=T0).predicted_recall is None
    later = T0 + timedelta(days=5)
    expected = predicted_recall(db, user, cards[0], later)
    result = submit_review(db, user, cards[0], 3, idempotency_key="2", at=later)
    assert result.predicted_recall == pytest.approx(expected)
    assert 0 < expected < 1


def test_undo_restores_the_previous_state_exactly(setup):
    db, user, cards, *_ = setup
    submit_review(db, user, cards[0], 3, idempotency_key="1", at=T0)
    submit_review(db, user, cards[0], 3, idempotency_key="2", at=T0 + timedelta(minutes=10))
    before = card_memory(db, user, cards[0]).schedule
    third = submit_review(db, user, cards[0], 1, idempotency_key="3", at=T0 + timedelta(days=4))
    assert card_memory(db, user, cards[0]).schedule.lapses == 1

    undone = undo_last_review(db, user)
    assert undone.review_id == third.review_id and undone.due == before.due
    assert card_memory(db, user, cards[0]).schedule == before
    # the undone key stays spent: a late retry does not re-apply the answer
    assert submit_review(db, user, cards[0], 1, idempotency_key="3", at=T0).duplicate
    assert card_memory(db, user, cards[0]).schedule == before

    undo_last_review(db, user)
    undo_last_review(db, user)
    assert card_memory(db, user, cards[0]).schedule is None  # new again
    with pytest.raises(NothingToUndoError):
        undo_last_review(db, user)


def test_users_cannot_touch_each_others_cards(setup):
    db, user, cards, other, other_cards = setup
    submit_review(db, other, other_cards[0], 3, idempotency_key="b", at=T0)
    for call in (
        lambda: submit_review(db, user, other_cards[0], 3, idempotency_key="x", at=T0),
        lambda: predicted_recall(db, user, other_cards[0]),
        lambda: forgetting_curve(db, user, other_cards[0]),
        lambda: card_memory(db, user, other_cards[0]),
    ):
        with pytest.raises(CardNotFoundError):
            call()
    with pytest.raises(NothingToUndoError):
        undo_last_review(db, user)  # bob's review is not ann's to undo
    assert _counts(db) == (1, 1)


@pytest.mark.parametrize("rating", [0, 5, -1, "3", 2.5, True, None])
def test_ratings_outside_one_to_four_are_refused(setup, rating):
    db, user, cards, *_ = setup
    with pytest.raises(InvalidRatingError, match="Again"):
        submit_review(db, user, cards[0], rating, idempotency_key="r", at=T0)
    assert _counts(db) == (0, 0)


def test_bad_times_unknown_cards_and_bad_fields_write_nothing(setup):
    db, user, cards, *_ = setup
    with pytest.raises(InvalidTimestampError, match="time zone"):
        submit_review(db, user, cards[0], 3, idempotency_key="t", at=datetime(2026, 1, 1))
    with pytest.raises(InvalidTimestampError, match="future"):
        submit_review(
            db, user, cards[0], 3, idempotency_key="t", at=datetime.now(UTC) + timedelta(days=1)
        )
    with pytest.raises(CardNotFoundError):
        submit_review(db, user, 999_999, 3, idempotency_key="t", at=T0)
    with pytest.raises(StudyError, match="idempotency_key"):
        submit_review(db, user, cards[0], 3, idempotency_key="", at=T0)
    with pytest.raises(StudyError, match="duration_ms"):
        submit_review(db, user, cards[0], 3, idempotency_key="t", duration_ms=-5, at=T0)
    assert _counts(db) == (0, 0)
    submit_review(db, user, cards[0], 3, idempotency_key="ok", at=T0 + timedelta(days=1))
    with pytest.raises(InvalidTimestampError, match="before the card's last review"):
        submit_review(db, user, cards[0], 3, idempotency_key="old", at=T0)
    assert _counts(db) == (1, 1)


def test_forgetting_curve_crosses_retention_near_due(setup):
    db, user, cards, *_ = setup
    submit_review(db, user, cards[0], 4, idempotency_key="1", at=T0)
    curve = forgetting_curve(db, user, cards[0], points=50)
    assert curve.points[0][1] == pytest.approx(1.0) and len(curve.points) == 50
    assert [r for _, r in curve.reviews] == [4]
    at_due = predicted_recall(db, user, cards[0], curve.due)
    assert 0.85 < at_due < 0.95  # 0.9 up to whole-day rounding and fuzz
    values = [p for _, p in curve.points]
    assert values == sorted(values, reverse=True)


def test_switching_to_fsrs_rebuilds_card_state_from_reviews(setup):
    db, user, cards, *_ = setup
    submit_review(db, user, cards[0], 3, idempotency_key="1", at=T0)
    submit_review(db, user, cards[0], 3, idempotency_key="2", at=T0 + timedelta(days=3))
    ebb = card_memory(db, user, cards[0])
    update_settings(db, user, memory_model="fsrs6")
    fsrs = card_memory(db, user, cards[0])
    assert fsrs.model_name == "fsrs6" and fsrs.schedule.reps == 2
    assert fsrs.schedule.memory.stability != ebb.schedule.memory.stability
    later = T0 + timedelta(days=9)
    expected = predicted_recall(db, user, cards[0], later)
    result = submit_review(db, user, cards[0], 3, idempotency_key="3", at=later)
    assert result.predicted_recall == pytest.approx(expected)
    with db.read() as session:
        assert session.scalar(select(CardState.memory_model)).startswith("fsrs6:")
    with pytest.raises(StudyError, match="memory_model"):
        update_settings(db, user, memory_model="sm2")


def test_twenty_threads_store_a_thousand_reviews_exactly_once(db):
    user, cards = add_user_with_cards(db, "crowd", 1000)
    threads_count, errors = 20, []
    per_thread = len(cards) // threads_count
    start = threading.Barrier(threads_count)

    def worker(index: int) -> None:
        mine = cards[index * per_thread : (index + 1) * per_thread]
        neighbour = (index + 1) % threads_count
        theirs = cards[neighbour * per_thread : (neighbour + 1) * per_thread][:10]
        start.wait()
        try:
            for card in mine + theirs:  # every neighbour key is sent by two threads
                submit_review(db, user, card, 3, idempotency_key=f"card-{card}", at=T0)
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Review)) == 1000
        assert session.scalar(select(func.count(func.distinct(Review.card_id)))) == 1000
        assert session.scalar(select(func.count()).select_from(CardState)) == 1000


def test_concurrent_reviews_of_the_same_cards_are_serialised_never_overwritten(db):
    """Two tabs rating one card at once: every accepted review is applied in turn, so each
    card's stored state equals a replay of its kept reviews, and none is lost or doubled."""
    user, cards = add_user_with_cards(db, "tabs", 3)
    threads_count, per_card = 8, 6
    start = threading.Barrier(threads_count)
    accepted: list[int] = []
    errors: list[Exception] = []

    def worker(index: int) -> None:
        start.wait()
        for round_ in range(per_card):
            for card in cards:
                rating = 1 if (index + round_) % 5 == 0 else 3
                try:
                    result = submit_review(
                        db, user, card, rating, idempotency_key=f"t{index}-{card}-{round_}"
                    )
                except Exception as error:  # noqa: BLE001 - collected and reported below
                    errors.append(error)
                else:
                    accepted.append(result.review_id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(accepted) == len(set(accepted)) == threads_count * per_card * len(cards)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Review)) == len(accepted)
    for card in cards:
        stored = card_memory(db, user, card).schedule
        assert stored.reps == threads_count * per_card
        assert stored == replayed_schedule(db, user, card)
