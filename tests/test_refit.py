"""Refitting a user's memory model: adopted only on later reviews, and the reason stored."""

from __future__ import annotations

from datetime import timedelta

from db import Review
from study.memory import EbbinghausModel, Rating
from study.settings import load_settings, refit_parameters, update_settings
from tests.study_helpers import T0, add_user_with_cards


def _add_reviews(db, user: int, cards: list[int], days: int) -> None:  # noqa: ANN001
    """Daily reviews of each card, mostly Good, so the population defaults are off."""

    def work(session):  # noqa: ANN001, ANN202
        for index, card in enumerate(cards):
            for day in range(days):
                rating = Rating.AGAIN if (day + index) % 7 == 3 else Rating.GOOD
                session.add(
                    Review(
                        user_id=user,
                        card_id=card,
                        reviewed_at=T0 + timedelta(days=day, minutes=index),
                        rating=int(rating),
                        idempotency_key=f"{card}-{day}",
                    )
                )

    db.write(work)


def _settings(db, user: int):  # noqa: ANN001, ANN202
    with db.read() as session:
        return load_settings(session, user)


def test_few_reviews_keep_the_defaults_and_say_why(db):
    user, cards = add_user_with_cards(db, "ann", 3)
    update_settings(db, user, memory_model="ebbinghaus")
    _add_reviews(db, user, cards, days=5)
    decision = refit_parameters(db, user)
    assert not decision.adopted
    settings = _settings(db, user)
    assert settings.model.params == EbbinghausModel.default_params()
    text = settings.describe()
    assert "population defaults" in text and "are needed before one is tried" in text


def test_a_fit_that_predicts_later_reviews_better_is_adopted_and_explained(db):
    user, cards = add_user_with_cards(db, "bob", 40)
    update_settings(db, user, memory_model="ebbinghaus")
    _add_reviews(db, user, cards, days=20)
    decision = refit_parameters(db, user)
    settings = _settings(db, user)
    assert decision.adopted, decision.reason
    assert settings.model.params == decision.model.params != EbbinghausModel.default_params()
    assert "fitted to your reviews" in settings.describe()
    assert "predicted your" in settings.describe()
