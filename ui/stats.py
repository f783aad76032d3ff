"""Stats tab: forgetting curves, due forecast, review heatmap, calibration, memory-model
comparison on the user's own reviews, and the decoding speed history.

The numbers come from ``study`` (curves, due dates, settings, evaluation) and ``db``'s
queries (through ``ui.queries``); this module only shapes them into frames for Gradio's
native plots and opens no database session itself.
"""

from datetime import UTC, datetime, timedelta

import gradio as gr
import numpy as np
import pandas as pd

from db import utcnow
from study.cards_service import list_cards
from study.errors import StudyError
from study.evaluate import evaluate
from study.recall import forgetting_curve
from study.settings import read_settings, user_review_histories
from ui.context import AppContext
from ui.plots import TIME_FORMAT, with_legend
from ui.queries import decode_history, review_predictions
from ui.queues import DB_EVENT

__all__ = ["build", "due_forecast", "heatmap_html", "calibration"]

FORECAST_DAYS = 30
HEATMAP_WEEKS = 20
COMPARED_MODELS = ["ebbinghaus", "fsrs6-default", "sm2", "hlr"]  # fitting FSRS-6 is slow here


def due_forecast(
    dues: list[datetime | None], now: datetime, days: int = FORECAST_DAYS
) -> pd.DataFrame:
    """Cards due per day for the next ``days`` days; overdue cards count today."""
    today = now.date()
    counts = dict.fromkeys(range(days), 0)
    for due in dues:
        if due is not None:
            offset = max(0, (due.date() - today).days)
            if offset < days:
                counts[offset] += 1
    return pd.DataFrame(
        {
            "day": [f"{today + timedelta(days=d):%m-%d}" for d in counts],
            "cards due": list(counts.values()),
        }
    )


def heatmap_html(times: list[datetime], now: datetime, weeks: int = HEATMAP_WEEKS) -> str:
    """Reviews per day as a GitHub-style grid (weeks across, weekdays down); numbers only."""
    per_day = pd.Series([t.date() for t in times]).value_counts().to_dict() if times else {}
    start = now.date() - timedelta(days=now.weekday() + 7 * (weeks - 1))
    peak = max(per_day.values(), default=0) or 1
    cells = []
    for week in range(weeks):
        for weekday in range(7):
            day = start + timedelta(days=7 * week + weekday)
            count = per_day.get(day, 0)
            shade = 0.08 + 0.92 * count / peak if count else 0.0
            cells.append(
                f'<div title="{day}: {count} review(s)" style="grid-column:{week + 1};grid-row:{weekday + 1};'
                f"width:12px;height:12px;border-radius:2px;background:rgba(34,139,34,{shade:.2f});"
                f'outline:1px solid #ddd"></div>'
            )
    return (
        f'<div class="heatmap" style="display:grid;gap:2px;grid-template-rows:repeat(7,12px);grid-template-columns:repeat({weeks},12px)">{"".join(cells)}</div>'
        f"<small>{sum(per_day.values())} review(s) in the last {weeks} weeks</small>"
    )


def calibration(frame: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Observed recall per bin of predicted recall, next to the ideal diagonal."""
    ideal = pd.DataFrame({"predicted": [0.0, 1.0], "recall": [0.0, 1.0], "series": "ideal"})
    scored = frame.dropna(subset=["predicted"])
    if scored.empty:
        return ideal
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scored["predicted"], edges) - 1, 0, bins - 1)
    grouped = scored.assign(bin=which, recalled=scored["rating"] > 1).groupby("bin")
    observed = pd.DataFrame(
        {
            "predicted": grouped["predicted"].mean(),
            "recall": grouped["recalled"].mean(),
            "series": "observed",
        }
    )
    return pd.concat([observed, ideal], ignore_index=True)


def _forecast_update(frame: pd.DataFrame) -> dict:
    """The forecast, with a hint instead of a flat empty chart when nothing is due. The
    axis reaches at least 4 so that its ticks are whole cards (0, 1, 2, ...)."""
    peak = int(frame["cards due"].max()) if len(frame) else 0
    hint = (
        "Nothing due in the next 30 days: add a note, generate questions for it in Notes, "
        "and review them."
        if peak == 0
        else ""  # "" clears an earlier hint; None would keep it
    )
    return gr.update(value=frame, caption=hint, y_lim=[0, max(4, peak)])


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def build(ctx: AppContext, tab: gr.Tab) -> None:
    """Lay out the Stats tab inside the current Blocks context; opening ``tab`` redraws it
    from the database (reviews and runs made since the page loaded)."""
    gr.Markdown(
        "**Start here:** these charts fill as you review cards (Review tab) and run the "
        "Playground; they are redrawn each time this tab opens."
    )
    refresh = gr.Button("Refresh", elem_id="stats-refresh")
    with gr.Row():
        card = gr.Dropdown([], label="Card for the forgetting curve", scale=3)
        draw = gr.Button("Draw curve", scale=0)
    with gr.Row():
        curve = gr.LinePlot(x="time", y="recall", color="series", title="Forgetting curve and desired retention",
                            y_lim=[0, 1], label="forgetting curve", elem_id="stats-curve",
                            x_axis_format=TIME_FORMAT)  # fmt: skip
        reviews = gr.ScatterPlot(
            x="time",
            y="rating",
            title="Reviews of this card (rating 1-4)",
            y_lim=[0.5, 4.5],  # the whole rating scale, also when every rating is the same
            x_axis_format=TIME_FORMAT,
            label="reviews",
            elem_id="stats-reviews",
        )
    with gr.Row():
        forecast = gr.BarPlot(
            x="day",
            y="cards due",
            title="Due in the next 30 days",
            label="forecast",
            x_label_angle=-60,
            sort=None,
            y_axis_format="d",  # whole cards (an empty axis read "0.000000")
            elem_id="stats-forecast",
        )
        calib = gr.LinePlot(x="predicted", y="recall", color="series", title="Calibration: predicted vs observed recall",
                            x_lim=[0, 1], y_lim=[0, 1], label="calibration", elem_id="stats-calibration")  # fmt: skip
    gr.Markdown("Reviews per day")
    heatmap = gr.HTML(elem_id="stats-heatmap")
    speed = gr.ScatterPlot(  # points: a series of one run is still visible
        x="time",
        x_axis_format=TIME_FORMAT,
        y="tokens/s",
        color="series",
        title="Decoding speed history",
        label="speed",
        elem_id="stats-speed",
    )
    with gr.Row():
        compare = gr.Button("Compare memory models on my reviews")
        comparison = gr.Markdown()

    def overview(request: gr.Request, profile: gr.OAuthProfile | None) -> tuple:
        uid = ctx.signed_in_user(request, profile)
        if uid is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        now = utcnow()
        cards = list_cards(ctx.db, uid)
        frame = review_predictions(ctx.db, uid)
        times = [t if t.tzinfo else t.replace(tzinfo=UTC) for t in frame["time"]]
        choices = [(f"{c.id}: {c.question[:70]}", c.id) for c in cards if c.due is not None]
        history = decode_history(ctx.db, uid)
        return (
            gr.update(choices=choices, value=choices[0][1] if choices else None),
            _forecast_update(due_forecast([c.due for c in cards], now)),
            calibration(frame),
            heatmap_html(times, now),
            with_legend(history, "series"),
        )

    def draw_curve(
        card_id: int | None, request: gr.Request, profile: gr.OAuthProfile | None
    ) -> tuple:
        uid = ctx.user(request, profile)
        if not card_id:
            return gr.skip(), gr.skip()
        try:
            fc = forgetting_curve(ctx.db, uid, int(card_id))
        except StudyError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip()
        retention = read_settings(ctx.db, uid).policy.desired_retention
        points = pd.DataFrame(
            [(_naive(t), r, "predicted recall") for t, r in fc.points],
            columns=["time", "recall", "series"],
        )
        if len(points):
            line = pd.DataFrame({"time": [points["time"].min(), points["time"].max()], "recall": retention,
                                 "series": f"desired retention {retention:.2f}"})  # fmt: skip
            points = pd.concat([points, line], ignore_index=True)
        marks = pd.DataFrame(
            [(_naive(t), rating) for t, rating in fc.reviews], columns=["time", "rating"]
        )
        return points, marks

    def compare_models(request: gr.Request, profile: gr.OAuthProfile | None) -> str:
        uid = ctx.user(request, profile)
        histories = {str(k): v for k, v in user_review_histories(ctx.db, uid).items()}
        try:
            result = evaluate(histories, models=COMPARED_MODELS)
        except (StudyError, ValueError) as exc:
            return f"Not enough reviews to compare yet ({exc})."
        return f"```\n{result.table()}\n```"

    outputs = [card, forecast, calib, heatmap, speed]
    refresh.click(overview, None, outputs, api_name="stats_overview", **DB_EVENT).then(
        draw_curve, card, [curve, reviews], **DB_EVENT
    )
    # Drawn when the tab opens, not at page load: a Gradio 6.31 plot that gets a value
    # while its tab has never been shown does not draw the next one.
    tab.select(overview, None, outputs, api_visibility="private", **DB_EVENT).then(
        draw_curve, card, [curve, reviews], **DB_EVENT
    )
    draw.click(draw_curve, card, [curve, reviews], api_name="stats_curve", **DB_EVENT)
    compare.click(compare_models, None, comparison, api_name="stats_compare")
