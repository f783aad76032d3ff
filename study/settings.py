"""A user's study settings as the services use them, and refitting of model parameters.

The ``UserSettings`` row stores the raw values; this module turns them into a memory
model and a scheduling policy, validates changes, and refits the user's parameters
from their own reviews (the background job calls ``refit_user``). Under the memory
model ``auto`` the refit also lets the user's reviews choose the model
(``study.memory.choice``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import Database, Review, UserSettings, get_settings, utcnow
from study.errors import InvalidSettingError
from study.memory import (
    MODEL_LABELS,
    SCHEDULING_MODELS,
    MemoryModel,
    Rating,
    ReviewEvent,
    get_model,
)
from study.memory.choice import AUTO_MODEL, DEFAULT_MODEL, ModelChoice, choose_model
from study.memory.validation import FitDecision, fit_validated
from study.quiz_model import AUTO, quiz_model_choices
from study.scheduler import RETENTION_RANGE, SchedulingPolicy

__all__ = [
    "StudySettings",
    "load_settings",
    "read_settings",
    "model_tag",
    "choose_parameters",
    "refit_parameters",
    "refit_user",
    "review_histories",
    "user_review_histories",
    "kept_review_count",
    "update_settings",
]


@dataclass(frozen=True)
class StudySettings:
    """What scheduling needs for one user: the model (with fitted parameters) and policy."""

    model: MemoryModel
    policy: SchedulingPolicy
    daily_new_limit: int
    daily_job_time: str
    fit_reason: str = ""
    quiz_model: str = AUTO
    """The model that writes the user's cards (``auto``: the best installed, ``study.quiz_model``)."""
    memory_model: str = AUTO_MODEL
    """The setting: a scheduling model's name, or ``auto`` (``model`` is what it resolved to)."""
    choice_reason: str = ""
    """Under ``auto``, why ``model`` was chosen (the last refit's verdict)."""

    def describe(self) -> str:
        """Which model and parameters schedule the cards, and why, for the user to read."""
        label = MODEL_LABELS.get(self.model.name, self.model.name)
        own = self.model.params != type(self.model).default_params()
        which = "parameters fitted to your reviews" if own else "population defaults"
        why = self.fit_reason or (
            "no refit has run yet; a fit is adopted only if it predicts your latest "
            "reviews better than the parameters in use"
        )
        if self.memory_model != AUTO_MODEL:
            return f"{label} with {which}: {why}."
        chosen = self.choice_reason or (
            f"no refit has compared the models yet, so {MODEL_LABELS[DEFAULT_MODEL]}, the "
            "default, schedules; the one that predicts your latest reviews better will"
        )
        return (
            f"{label} with {which}, chosen by your reviews (auto): {chosen}. Its parameters: {why}."
        )


def model_tag(model: MemoryModel) -> str:
    """Name plus a short hash of the parameters, stored with each card's state.

    A card state made under other parameters (after a refit or a change of model) has
    another tag, which tells the services to rebuild it from the card's reviews.
    """
    digest = hashlib.sha1(json.dumps([round(p, 10) for p in model.params]).encode()).hexdigest()
    return f"{model.name}:{digest[:10]}"


def _from_row(row: UserSettings | None) -> StudySettings:
    row = row or UserSettings(
        memory_model=AUTO_MODEL,
        desired_retention=0.9,
        daily_new_limit=20,
        maximum_interval_days=36_500,
        daily_job_time="03:00",
        fitted_params={},
    )
    auto = row.memory_model == AUTO_MODEL
    name = (row.chosen_model or DEFAULT_MODEL) if auto else row.memory_model
    reasons = row.fit_reasons or {}
    return StudySettings(
        fit_reason=reasons.get(name, ""),
        memory_model=row.memory_model,
        choice_reason=reasons.get(AUTO_MODEL, "") if auto else "",
        model=get_model(name, (row.fitted_params or {}).get(name)),
        policy=SchedulingPolicy(
            desired_retention=row.desired_retention,
            maximum_interval_days=row.maximum_interval_days,
        ),
        daily_new_limit=row.daily_new_limit,
        daily_job_time=row.daily_job_time,
        quiz_model=row.quiz_model or AUTO,
    )


def load_settings(session: Session, user_id: int) -> StudySettings:
    """The user's settings (defaults when no row exists yet; nothing is written)."""
    return _from_row(session.get(UserSettings, user_id))


def read_settings(db: Database, user_id: int) -> StudySettings:
    """``load_settings`` in its own read session, for callers that hold none (the UI)."""
    with db.read() as session:
        return load_settings(session, user_id)


_VALIDATORS: dict[str, Any] = {
    "memory_model": lambda v: v == AUTO_MODEL or v in SCHEDULING_MODELS,
    "desired_retention": lambda v: RETENTION_RANGE[0] <= float(v) <= RETENTION_RANGE[1],
    "daily_new_limit": lambda v: isinstance(v, int) and 0 <= v <= 10_000,
    "maximum_interval_days": lambda v: isinstance(v, int) and 1 <= v <= 36_500,
    "daily_job_time": lambda v: bool(re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(v))),
    "quiz_model": lambda v: v == AUTO or v in quiz_model_choices(),
}
_HINTS = {
    "memory_model": f"auto (your reviews choose) or one of {', '.join(SCHEDULING_MODELS)}",
    "desired_retention": f"between {RETENTION_RANGE[0]} and {RETENTION_RANGE[1]}",
    "daily_new_limit": "a whole number from 0 to 10000",
    "maximum_interval_days": "a whole number of days from 1 to 36500",
    "daily_job_time": "a 24-hour time HH:MM",
    "quiz_model": "auto (the best installed model), bundled, or a model installed by `make models`",
}


def update_settings(db: Database, user_id: int, **changes: Any) -> StudySettings:
    """Change some settings of ``user_id`` in one transaction; all are checked first."""
    for key, value in changes.items():
        if key not in _VALIDATORS:
            raise InvalidSettingError(f"unknown setting {key!r}: use one of {sorted(_VALIDATORS)}")
        if not _VALIDATORS[key](value):
            raise InvalidSettingError(f"{key} = {value!r} is invalid: use {_HINTS[key]}")

    def work(session: Session) -> StudySettings:
        row = get_settings(session, user_id)
        for key, value in changes.items():
            setattr(row, key, value)
        session.flush()
        return _from_row(row)

    return db.write(work)


def review_histories(session: Session, user_id: int) -> dict[int, list[ReviewEvent]]:
    """Every card's kept (not undone) reviews of ``user_id``, in time order."""
    rows = session.execute(
        select(Review.card_id, Review.reviewed_at, Review.rating)
        .where(Review.user_id == user_id, Review.undone_at.is_(None))
        .order_by(Review.card_id, Review.reviewed_at, Review.id)
    ).all()
    histories: dict[int, list[ReviewEvent]] = defaultdict(list)
    for card_id, at, rating in rows:
        histories[card_id].append(ReviewEvent(at=at, rating=Rating(rating)))
    return dict(histories)


def user_review_histories(db: Database, user_id: int) -> dict[int, list[ReviewEvent]]:
    """``review_histories`` in its own read session, for callers that hold none (the UI)."""
    with db.read() as session:
        return review_histories(session, user_id)


def _store_fits(
    db: Database,
    user_id: int,
    decisions: dict[str, FitDecision],
    review_count: int,
    choice: ModelChoice | None = None,
) -> None:
    """Store each model's kept parameters and verdict (and ``auto``'s choice, if any)."""

    def work(session: Session) -> None:
        settings = get_settings(session, user_id)
        params = {name: list(decision.model.params) for name, decision in decisions.items()}
        reasons = {name: decision.reason for name, decision in decisions.items()}
        if choice is not None:
            reasons[AUTO_MODEL] = choice.reason
            settings.chosen_model = choice.name
        settings.fitted_params = {**(settings.fitted_params or {}), **params}
        settings.fit_reasons = {**(settings.fit_reasons or {}), **reasons}
        settings.fitted_at = utcnow()
        settings.fitted_review_count = review_count

    db.write(work)


def refit_parameters(db: Database, user_id: int, model_name: str | None = None) -> FitDecision:
    """Refit ``model_name`` (default: the user's named model) and keep it only if it earns it.

    ``fit_validated`` fits on the user's earlier reviews and adopts the fit only if it
    predicts their latest reviews better than the parameters in use; the verdict, in
    words, is stored with the parameters so the user can see why they are scheduled so.
    A user on ``auto`` names no model: ``choose_parameters`` refits theirs.
    """
    with db.read() as session:
        row = session.get(UserSettings, user_id)
        name = model_name or (row.memory_model if row else DEFAULT_MODEL)
        if name == AUTO_MODEL:
            raise ValueError("memory_model auto names no model to refit: use choose_parameters")
        current = ((row.fitted_params or {}) if row else {}).get(name)
        histories = list(review_histories(session, user_id).values())
    decision = fit_validated(get_model(name, current), histories)
    _store_fits(db, user_id, {name: decision}, sum(len(h) for h in histories))
    return decision


def choose_parameters(db: Database, user_id: int) -> ModelChoice:
    """Refit every scheduling model and let the user's latest reviews choose (``auto``).

    ``choose_model`` fits each from its defaults on the earlier reviews and compares them
    on the same latest ones; every model's kept parameters and verdict are stored, and
    the winner with its verdict, in words, for Review and Settings to show.
    """
    histories = list(user_review_histories(db, user_id).values())
    choice = choose_model(histories)
    _store_fits(db, user_id, choice.decisions, sum(len(h) for h in histories), choice)
    return choice


def refit_user(db: Database, user_id: int) -> str:
    """The refit job's step for one user, by their setting; returns the verdict in words."""
    if read_settings(db, user_id).memory_model == AUTO_MODEL:
        return choose_parameters(db, user_id).reason
    return refit_parameters(db, user_id).reason


def kept_review_count(session: Session, user_id: int) -> int:
    """Reviews of ``user_id`` that count (not undone): the refit job compares it to the last fit."""
    return int(
        session.scalar(
            select(func.count()).where(Review.user_id == user_id, Review.undone_at.is_(None))
        )
        or 0
    )
