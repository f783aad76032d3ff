"""The app through its HTTP API (gradio_client), served on a free port with the tiny model.

One server for the module: starting it costs seconds, and every test scopes its data to
its own user (the test header) so tests do not see each other's notes or cards.
"""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from sqlalchemy import func, select

from db import DecodeRun, Review, ensure_user, record_quiz_run
from study.export import read_cards_csv
from study.notes_service import add_note
from tests.app_helpers import Served, add_cards, plot_rows, serve_app, user_headers
from ui.playground import MAX_PROMPT_CHARS, NO_DRAFTS
from ui.review import card_of_key


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    with serve_app(tmp_path_factory.mktemp("app")) as served:
        yield served


def client(served: Served, user: str) -> Client:
    return Client(served.url, headers=user_headers(user), verbose=False)


def count(served: Served, query) -> int:  # noqa: ANN001 - a select statement
    with served.ctx.db.read() as session:
        return session.scalar(query)


def test_healthz_reports_database_and_model(served: Served) -> None:
    body = httpx.get(served.url + "healthz", timeout=10).json()
    assert body["db_ok"] is True
    assert set(body) == {"model_loaded", "model_error", "db_ok"}


def test_playground_run_streams_outputs_metrics_and_records_runs(served: Served) -> None:
    before = count(served, select(func.count()).select_from(DecodeRun))
    status, html, table, bars, accepted, _history, *_timeline = client(served, "pg").predict(
        "tiny-llama",
        "Hello <b>there</b> there there",
        ["hf", "pld"],
        8,
        0.0,
        api_name="/playground_run",
    )
    assert "Done" in status
    assert 'data-method="vanilla"' in html and 'data-method="hf"' in html
    rows = {row[0]: dict(zip(table["headers"], row, strict=True)) for row in table["data"]}
    assert set(rows) == {"vanilla", "hf", "pld"}  # vanilla is always run as the reference
    assert 1 <= rows["vanilla"]["tokens"] <= 8 and rows["vanilla"]["tokens/s"] > 0
    assert rows["vanilla"]["speed-up"] == 1.0 and rows["vanilla"]["mean accepted"] == 1.0
    # Greedy HF generate of the same model, judged by the benchmark's peer rule.
    assert rows["hf"]["lossless"].startswith("yes") and "tolerance" in rows["hf"]["lossless"]
    assert rows["pld"]["lossless"] == "yes: identical (exact)"  # ours: token for token
    assert "Lossless: our methods must match vanilla" in status
    assert bars is not None
    steps = {row[0]: 0 for row in plot_rows(accepted)}
    for method, _n, count_ in plot_rows(accepted):
        steps[method] += count_
    assert set(steps) <= {"pld", NO_DRAFTS}  # only drafting methods have accepted lengths
    assert count(served, select(func.count()).select_from(DecodeRun)) == before + 3
    assert httpx.get(served.url + "healthz", timeout=10).json()["model_loaded"] is True


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("   ", "empty"), ("x" * (MAX_PROMPT_CHARS * 5), "at most")],
)
def test_playground_refuses_bad_prompts_with_a_message(
    served: Served, prompt: str, expected: str
) -> None:
    before = count(served, select(func.count()).select_from(DecodeRun))
    status, *_ = client(served, "pg-bad").predict(
        "tiny-llama", prompt, [], 8, 0.0, api_name="/playground_run"
    )
    assert expected in status
    assert count(served, select(func.count()).select_from(DecodeRun)) == before


def test_unknown_model_falls_back_to_the_default_with_a_message(served: Served) -> None:
    status, html, *_ = client(served, "pg-model").predict(
        "no-such-model", "Hi", [], 4, 0.0, api_name="/playground_run"
    )
    assert "not a known model name" in status and "tiny-llama" in status
    assert 'data-method="vanilla"' in html


def test_model_output_and_prompts_are_escaped(served: Served) -> None:
    from selfspec import Origin, Piece
    from ui.render import columns_html

    page = columns_html(
        [("<script>x</script>", [Piece("<img src=x onerror=alert(1)>", Origin.DRAFT)], "ok")]
    )
    assert "<script>" not in page and "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_review_submitted_twice_with_the_same_key_counts_once(served: Served) -> None:
    user = client(served, "reviewer")
    card_ids = add_cards(served.ctx, "reviewer", [("Q1?", "A1"), ("Q2?", "A2")])
    key, progress, *_ = user.predict(api_name="/review_start")
    assert "Card **1** of" in progress  # with the seed notes' cards, up to the daily limit
    first = user.predict("3 · Good", key, api_name="/review_rate")
    again = user.predict("3 · Good", key, api_name="/review_rate")  # a double click
    assert "Recorded" in first[-1]
    assert "already recorded" in again[-1]
    assert again[0] == first[0]  # still on the second card: the repeat did not move on
    reviews = count(
        served, select(func.count()).select_from(Review).where(Review.card_id.in_(card_ids))
    )
    assert reviews == 1


def test_rating_a_card_deleted_meanwhile_says_so_and_records_nothing(served: Served) -> None:
    user = client(served, "deleter")
    (card_id,) = add_cards(served.ctx, "deleter", [("Gone?", "Yes")])
    key, *_ = user.predict(api_name="/review_start")
    user.predict(float(card_id), 0, api_name="/card_delete")
    *_, message = user.predict("4 · Easy", key, api_name="/review_rate")
    assert "deleted meanwhile" in message
    assert (
        count(served, select(func.count()).select_from(Review).where(Review.card_id == card_id))
        == 0
    )


def test_markdown_import_then_export_round_trip(served: Served, tmp_path: Path) -> None:
    user = client(served, "importer")
    note = tmp_path / "kangaroo.md"
    note.write_text(
        "---\ntags: [kangaroo]\n---\n# Kangaroo\nA shallow sub-network drafts.\n\n# Medusa\nHeads.\n"
    )
    message, listing = user.predict(handle_file(str(note)), api_name="/notes_import")
    assert "Imported 2 note(s)" in message
    titles = [row[1] for row in listing["data"]]
    assert "Kangaroo" in titles and "Medusa" in titles
    add_cards(served.ctx, "importer", [("What drafts in Kangaroo?", "A shallow sub-network")])
    path, said = user.predict("Cards (CSV)", api_name="/notes_export")
    exported = read_cards_csv(path)  # with the seed notes' cards
    assert f"Exported {len(exported)} item(s)" in said
    assert "What drafts in Kangaroo?" in [c.question for c in exported]
    apkg, _ = user.predict("Anki deck (.apkg)", api_name="/notes_export")
    assert Path(apkg).suffix == ".apkg" and Path(apkg).stat().st_size > 0


def test_non_markdown_upload_is_refused(served: Served, tmp_path: Path) -> None:
    user = client(served, "uploader")
    bad = tmp_path / "notes.csv"
    with bad.open("w", newline="") as f:
        csv.writer(f).writerow(["not", "markdown"])
    message, _ = user.predict(handle_file(str(bad)), api_name="/notes_import")
    assert "not a Markdown file" in message


def test_upload_over_20_mb_is_refused(served: Served, tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_bytes(b"# Big\n" + b"a" * (20 * 1024 * 1024 + 10))
    with pytest.raises(Exception, match="(?i)size|large|exceed|413"):
        client(served, "uploader").predict(handle_file(str(big)), api_name="/notes_import")


def test_two_users_never_see_each_others_notes(served: Served) -> None:
    alice, bob = client(served, "alice"), client(served, "bob")
    note_id, message, _ = alice.predict(
        None, "Alice's secret", "only mine", "", "", "", "", api_name="/notes_save"
    )
    assert "Added note" in message
    bob_titles = [row[1] for row in bob.predict("", "", api_name="/notes_list")["data"]]
    alice_titles = [row[1] for row in alice.predict("", "", api_name="/notes_list")["data"]]
    assert "Alice's secret" in alice_titles and "Alice's secret" not in bob_titles
    *_, message, _ = bob.predict(note_id, "", "", api_name="/notes_delete")
    assert "Not deleted" in message
    assert "Alice's secret" in [
        row[1] for row in alice.predict("", "", api_name="/notes_list")["data"]
    ]


def test_settings_are_validated(served: Served) -> None:
    user = client(served, "settler")
    save = "/save_settings"
    assert user.predict("fsrs6", 0.85, 10, "04:30", "bundled", api_name=save) == "Saved."
    assert "Not saved" in user.predict("fsrs6", 0.85, 10, "25:99", "auto", api_name=save)


def test_playground_preset_from_a_note_fills_the_prompt(served: Served) -> None:
    user = client(served, "presetter")
    note_id, *_ = user.predict(
        None,
        "Prompt lookup",
        "It copies n-grams from the prompt.",
        "",
        "",
        "",
        "",
        api_name="/notes_save",
    )
    prompt = user.predict(note_id, api_name="/playground_preset")
    assert "Prompt lookup" in prompt and "copies n-grams" in prompt


def test_multiple_choice_is_graded_on_click_and_undo_restores_the_card(served: Served) -> None:
    user = client(served, "chooser")
    (card_id,) = add_cards(
        served.ctx,
        "chooser",
        [("Which drafter is free?", "prompt lookup", ["prompt lookup", "Medusa heads"])],
    )
    key, _progress, _question, choices, *_ = user.predict(api_name="/review_start")
    assert choices["visible"] is True and choices["choices"] == [
        ["prompt lookup", "prompt lookup"],
        ["Medusa heads", "Medusa heads"],
    ]
    *_, verdict = user.predict("Medusa heads", api_name="/review_choose")
    assert "Not quite" in verdict
    *_, message = user.predict("1 · Again", key, api_name="/review_rate")
    assert "Recorded **Again**" in message
    kept = (
        select(func.count())
        .select_from(Review)
        .where(Review.card_id == card_id, Review.undone_at.is_(None))
    )
    assert count(served, kept) == 1
    new_key, progress, *_, message = user.predict(api_name="/review_undo")
    assert "Undid" in message and card_of_key(new_key) == card_id and "Card **1**" in progress
    assert count(served, kept) == 0


def test_stats_show_the_forecast_heatmap_and_curve_after_a_review(served: Served) -> None:
    user = client(served, "statistician")
    (card_id,) = add_cards(served.ctx, "statistician", [("What is R at t = S?", "1/e")])
    key, *_ = user.predict(api_name="/review_start")
    user.predict("3 · Good", key, api_name="/review_rate")
    cards, forecast, _calibration, heatmap, _speed = user.predict(api_name="/stats_overview")
    assert cards["value"] == card_id
    assert sum(row[1] for row in plot_rows(forecast)) == 1
    assert "1 review(s) in the last" in heatmap
    curve, points = user.predict(card_id, api_name="/stats_curve")
    series = {row[2] for row in curve["data"]}
    assert "predicted recall" in series and any(s.startswith("desired retention") for s in series)
    assert [row[1] for row in points["data"]] == [3]
    assert "Not enough reviews" in user.predict(api_name="/stats_compare")


def test_a_rejected_draft_is_kept_after_an_edit_through_the_notes_tab(served: Served) -> None:
    user = client(served, "drafter")
    uid = ensure_user(served.ctx.db, "drafter")
    note = add_note(served.ctx.db, uid, "Drafts", "Kangaroo drafts with a shallow sub-network.")
    draft = {"kind": "basic", "question": "What drafts in Kangaroo?", "answer": "it",
             "choices": [], "reasons": ["asked with the note, the model answered 'x'"]}  # fmt: skip
    run_id = served.ctx.db.write(
        lambda s: record_quiz_run(
            s, user_id=uid, note_id=note.id, status="failed", reason="no card passed the checks",
            model="fake", extra={"rejected": [draft]},
        ).id
    )  # fmt: skip
    said, *_ = user.predict(
        f"{run_id}:0", str(note.id), "What drafts in Kangaroo?", "", "",
        api_name="/notes_keep_draft",
    )  # fmt: skip
    assert "Draft not kept" in said and "needs an answer" in said
    said, table, _ = user.predict(
        f"{run_id}:0", str(note.id), "What drafts in Kangaroo?", "a shallow sub-network", "",
        api_name="/notes_keep_draft",
    )  # fmt: skip
    assert "Kept the draft as card" in said
    assert [row[3] for row in table["data"]] == ["a shallow sub-network"]
