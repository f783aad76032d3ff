"""Memory-model maths: curves, update laws, fitting, and FSRS-6 against the fsrs package."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fsrs import Card as FsrsCard
from fsrs import Rating as FsrsRating
from fsrs import Scheduler as FsrsScheduler
from fsrs.scheduler import DEFAULT_PARAMETERS as FSRS_DEFAULTS

from study.memory import (
    EbbinghausModel,
    FSRS6Model,
    HLRModel,
    MemoryModel,
    MemoryState,
    Rating,
    ReviewEvent,
    SM2Model,
    get_model,
)
from study.memory.ebbinghaus import PARAM_NAMES, _Batch, fit_map, priors_from_fsrs6
from study.memory.validation import fit_validated
from tests.study_helpers import simulate_reviews

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
ALL_MODELS = [EbbinghausModel(), FSRS6Model(), SM2Model(), HLRModel()]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.name)
def test_recall_decays_monotonically_from_one(model):
    state = model.review(None, Rating.GOOD, T0)
    values = [model.recall(state, T0 + timedelta(days=d)) for d in range(0, 200, 3)]
    assert values[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < values[0]


@pytest.mark.parametrize(
    "model", [EbbinghausModel(), FSRS6Model(), SM2Model()], ids=lambda m: m.name
)
def test_recall_is_ninety_percent_at_the_stability_point(model):
    state = MemoryState(stability=10.0, difficulty=5.0, last_review=T0, extra=(2,))
    assert model.recall(state, T0 + timedelta(days=10)) == pytest.approx(0.9)
    assert model.interval_days(state, 0.9) == pytest.approx(10.0)
    assert model.interval_days(state, 0.8) > 10.0 > model.interval_days(state, 0.95)


def test_ebbinghaus_is_exponential_per_card_and_a_mixture_when_uncertain():
    """A large shape (certain rate) gives one exponential; the default, its heavy tail."""
    params = list(EbbinghausModel.default_params())
    params[PARAM_NAMES.index("log_shape")] = math.log(1e4)
    certain = EbbinghausModel(params)
    state = MemoryState(stability=4.0, difficulty=0.0, last_review=T0)
    r1 = certain.recall(state, T0 + timedelta(days=4))
    r2 = certain.recall(state, T0 + timedelta(days=8))
    assert r1 == pytest.approx(0.9) and r2 == pytest.approx(r1 * r1, abs=1e-4)
    mixture = EbbinghausModel()
    assert mixture.recall(state, T0 + timedelta(days=40)) > 0.9**10 + 0.3


def test_ebbinghaus_stability_grows_on_success_and_shrinks_on_lapse():
    model = EbbinghausModel()
    state = model.review(None, Rating.GOOD, T0)
    later = T0 + timedelta(days=state.stability)
    grown = model.review(state, Rating.GOOD, later)
    lapsed = model.review(state, Rating.AGAIN, later)
    assert grown.stability > state.stability > lapsed.stability
    easy = model.review(state, Rating.EASY, later)
    hard = model.review(state, Rating.HARD, later)
    assert easy.stability > grown.stability > hard.stability
    # spacing effect: succeeding later (lower recall) strengthens memory more
    much_later = model.review(state, Rating.GOOD, T0 + timedelta(days=3 * state.stability))
    assert much_later.stability > grown.stability


def _simulate(model, cards: int, seed: int) -> list[list[ReviewEvent]]:
    return simulate_reviews(model, cards, seed, start=T0)


def test_ebbinghaus_fit_recovers_simulated_parameters():
    """Identifiable parameters come back, and the fitted curve predicts like the true one.

    Growth gain and spacing trade off against each other (for recall near 0.9 only their
    product matters much), so those are judged by predictions on fresh simulated cards.
    """
    true_params = list(EbbinghausModel.default_params())
    true_params[PARAM_NAMES.index("log_s0_good")] = math.log(4.0)
    true_params[PARAM_NAMES.index("log_s0_again")] = math.log(0.8)
    true_params[PARAM_NAMES.index("log_gain")] = math.log(3.0)
    truth = EbbinghausModel(true_params)
    default = EbbinghausModel()
    fitted = default.fit(_simulate(truth, cards=600, seed=1))

    for name, tolerance in (("log_s0_good", 0.2), ("log_s0_again", 0.35)):
        i = PARAM_NAMES.index(name)
        assert abs(fitted.params[i] - truth.params[i]) < tolerance, name
        assert abs(default.params[i] - truth.params[i]) > 0.4, name

    fresh = _Batch.from_histories(_simulate(truth, cards=300, seed=9))
    true_loss = fresh.log_loss(np.asarray(truth.params))[0]
    assert fresh.log_loss(np.asarray(fitted.params))[0] < true_loss + 0.005
    assert fresh.log_loss(np.asarray(default.params))[0] > true_loss + 0.01


def test_vectorised_likelihood_matches_the_scalar_replay():
    model = EbbinghausModel()
    histories = _simulate(model, cards=40, seed=3)
    total, count = 0.0, 0
    for history in histories:
        for prediction, previous, event in zip(
            model.replay(history)[1:], history[:-1], history[1:], strict=True
        ):
            if (event.at - previous.at) >= timedelta(days=1):
                y = event.rating.recalled
                total -= math.log(prediction if y else 1 - prediction)
                count += 1
    batch = _Batch.from_histories(histories)
    assert batch.log_loss(np.asarray(model.params))[0] == pytest.approx(total / count, rel=1e-7)


def test_likelihood_gradient_matches_finite_differences():
    histories = _simulate(EbbinghausModel(), cards=40, seed=5)
    batch = _Batch.from_histories(histories)
    params = np.asarray(EbbinghausModel.default_params())
    _, grad = batch.log_loss(params)
    step = 1e-6
    for i in range(len(params)):
        up, down = params.copy(), params.copy()
        up[i] += step
        down[i] -= step
        numeric = (batch.log_loss(up)[0] - batch.log_loss(down)[0]) / (2 * step)
        # abs 1e-3: min() and clip() in the laws have kinks that a difference can straddle
        assert grad[i] == pytest.approx(numeric, rel=0.05, abs=1e-3), PARAM_NAMES[i]


def test_map_fit_stays_closer_to_the_defaults_than_maximum_likelihood():
    """On a small log the prior holds the fit near the population defaults."""
    truth = EbbinghausModel()
    histories = _simulate(truth, cards=25, seed=6)
    defaults = np.asarray(EbbinghausModel.default_params())
    map_fit = np.asarray(EbbinghausModel().fit(histories).params)
    ml_fit = np.asarray(fit_map(histories, defaults, defaults, None))
    assert np.linalg.norm(map_fit - defaults) < 0.5 * np.linalg.norm(ml_fit - defaults)


def test_defaults_come_from_fsrs6_population_parameters_not_a_log():
    """First-answer stabilities and the curve's shape are FSRS-6's, which mean the same."""
    translated = priors_from_fsrs6(FSRS_DEFAULTS)
    assert np.exp(translated[:4]) == pytest.approx(FSRS_DEFAULTS[:4])
    assert EbbinghausModel.default_params() == translated
    ours, fsrs = EbbinghausModel(), FSRS6Model()
    state = MemoryState(stability=3.0, difficulty=5.0, last_review=T0)
    for days in (1, 3, 10, 40, 200):  # the same curve: the gamma mixture is the power law
        at = T0 + timedelta(days=days)
        assert ours.recall(state, at) == pytest.approx(fsrs.recall(state, at), abs=1e-12)


HISTORY = [
    (0, 0.0, 3),
    (0, 0.007, 3),
    (2, 0.0, 3),
    (9, 0.0, 1),
    (9, 0.01, 3),
    (12, 0.5, 2),
    (30, 0.0, 4),
    (95, 0.2, 3),
]


def test_fsrs6_states_and_recall_equal_the_fsrs_package():
    scheduler = FsrsScheduler(enable_fuzzing=False)
    card = FsrsCard(card_id=1)
    model = FSRS6Model()
    state = None
    for days, fraction, rating in HISTORY:
        at = T0 + timedelta(days=days + fraction)
        if state is not None:
            probe = at + timedelta(days=1.5)
            assert model.recall(state, probe) == pytest.approx(
                scheduler.get_card_retrievability(card, probe), abs=1e-12
            )
        card, _ = scheduler.review_card(card, FsrsRating(rating), review_datetime=at)
        state = model.review(state, Rating(rating), at)
        assert state.stability == pytest.approx(card.stability, rel=1e-12)
        assert state.difficulty == pytest.approx(card.difficulty, rel=1e-12)


def test_fsrs6_with_fitted_parameters_equals_package_too():
    params = list(FSRS6Model.default_params())
    params[20] = 0.35
    params[0] = 0.5
    scheduler = FsrsScheduler(parameters=params, enable_fuzzing=False)
    card = FsrsCard(card_id=1)
    model = FSRS6Model(params)
    state = None
    for days, fraction, rating in HISTORY:
        at = T0 + timedelta(days=days + fraction)
        card, _ = scheduler.review_card(card, FsrsRating(rating), review_datetime=at)
        state = model.review(state, Rating(rating), at)
    assert (state.stability, state.difficulty) == pytest.approx((card.stability, card.difficulty))


def test_fsrs6_fit_keeps_defaults_with_too_few_reviews():
    histories = _simulate(FSRS6Model(), cards=5, seed=2)
    assert FSRS6Model().fit(histories).params == FSRS6Model.default_params()


def test_sm2_counts_only_reviews_a_day_or_more_apart():
    """SuperMemo's same-day re-drills are not repetitions: I, EF and n stay as they were."""
    model = SM2Model()
    state = model.review(None, Rating.GOOD, T0)
    drilled = model.review(state, Rating.GOOD, T0 + timedelta(minutes=10))
    assert (drilled.stability, drilled.difficulty, drilled.extra) == (1.0, state.difficulty, (1,))
    again = model.review(drilled, Rating.AGAIN, T0 + timedelta(minutes=20))
    assert again.extra == (1,) and again.stability == 1.0
    next_day = model.review(again, Rating.GOOD, T0 + timedelta(days=1, minutes=30))
    assert next_day.stability == 6.0 and next_day.extra == (2,)


def test_sm2_intervals_follow_the_published_rules():
    model = SM2Model()
    state = model.review(None, Rating.GOOD, T0)
    assert state.stability == 1.0
    state = model.review(state, Rating.GOOD, T0 + timedelta(days=1))
    assert state.stability == 6.0
    state = model.review(state, Rating.GOOD, T0 + timedelta(days=7))
    assert state.stability == round(6 * state.difficulty)
    lapsed = model.review(state, Rating.AGAIN, T0 + timedelta(days=30))
    assert (lapsed.stability, lapsed.extra) == (1.0, (0,))
    assert lapsed.difficulty == state.difficulty


def test_hlr_fit_improves_likelihood_and_learns_that_successes_help():
    truth = HLRModel((1.2, -0.8, 0.5))
    histories = _simulate(truth, cards=300, seed=4)
    fitted = HLRModel((0.0, 0.0, 0.0)).fit(histories)
    assert fitted.params[0] > 0 > fitted.params[1]
    assert fitted.params == pytest.approx(truth.params, abs=0.35)


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown memory model"):
        get_model("sm17")


def test_curve_points_start_at_last_review():
    model = EbbinghausModel()
    state = model.review(None, Rating.GOOD, T0)
    points = model.curve(state, T0 + timedelta(days=10), points=11)
    assert points[0] == (T0, 1.0)
    assert len(points) == 11 and points[-1][0] == T0 + timedelta(days=10)


class _Constant(MemoryModel):
    """Recall is ``params[0]`` whatever happened; ``fit`` returns ``params[1]``'s model."""

    name = "constant"

    @classmethod
    def default_params(cls) -> tuple[float, ...]:
        return (0.5, 0.5)

    def review(self, state, rating, at):
        return MemoryState(stability=1.0, difficulty=None, last_review=at)

    def recall(self, state, at):
        return self.params[0]

    def interval_days(self, state, retention):
        return 1.0

    def fit(self, histories):
        self.fitted_on = sum(len(h) for h in histories)
        return _Constant((self.params[1], self.params[1]))


def _steady_log(cards: int, recall_every: int = 5) -> list[list[ReviewEvent]]:
    """Cards reviewed daily; every ``recall_every``-th answer is a lapse (80 % recall)."""
    return [
        [
            ReviewEvent(
                T0 + timedelta(days=day, minutes=card),
                Rating.AGAIN if day % recall_every == 2 else Rating.GOOD,
            )
            for day in range(10)
        ]
        for card in range(cards)
    ]


def test_a_fit_is_adopted_only_when_later_reviews_agree():
    log = _steady_log(cards=80)
    better = fit_validated(_Constant((0.5, 0.8)), log)
    assert better.adopted and better.model.params == (0.8, 0.8)
    assert better.loss_fitted < better.loss_current and "better" in better.reason
    worse = fit_validated(_Constant((0.8, 0.3)), log)
    assert not worse.adopted and worse.model.params == (0.8, 0.3)
    assert "no better" in worse.reason


def test_no_fit_is_tried_without_enough_later_reviews():
    current = _Constant((0.5, 0.8))
    decision = fit_validated(current, _steady_log(cards=5))
    assert not decision.adopted and decision.model is current
    assert not hasattr(current, "fitted_on") and "needed" in decision.reason


def test_the_candidate_fit_sees_only_the_earlier_reviews():
    current = _Constant((0.5, 0.8))
    log = _steady_log(cards=80)
    fit_validated(current, log)
    assert current.fitted_on == len(log) * 10  # the final refit, on everything
    probe = _Constant((0.5, 0.8))
    seen: list[int] = []
    probe.fit = lambda histories: (
        seen.append(sum(len(h) for h in histories)) or _Constant((0.8, 0.8))
    )
    fit_validated(probe, log)
    assert seen[0] == pytest.approx(0.8 * len(log) * 10, abs=len(log))
