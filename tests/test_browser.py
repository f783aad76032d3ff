"""End to end in a real headless Chromium (Playwright), as a user would click and type.

Needs Debian's ``chromium`` at /usr/bin/chromium (``apt-get install chromium``); skipped
without it. Screenshots of each tab go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import Review
from selfspec import METHODS
from selfspec.draft_length import DraftLengthPolicy
from tests.app_helpers import Served, add_cards, serve_app, user_headers

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
TIMEOUT_MS = 60_000

if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium is not installed (apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_app(tmp_path_factory.mktemp("browser")) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, headless=True
        )
        yield browser
        browser.close()


def open_page(browser: Browser, served: Served, user: str) -> Page:
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, extra_http_headers=user_headers(user)
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(served.url)
    expect(page.get_by_role("tab", name="Playground")).to_be_visible()
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_a_user_runs_the_playground_adds_a_note_reviews_and_sees_stats(
    browser: Browser, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test is about the page showing drafted tokens; whether drafting pays on a tiny
    # model is the draft-length policy's call (tested on its own), so draft at full length.
    monkeypatch.setattr(
        DraftLengthPolicy, "choose", lambda self, budget, *_: min(budget, self.max_draft)
    )
    user = "browser-user"
    card_ids = add_cards(
        served.ctx,
        user,
        [
            ("What verifies the drafts?", "The full model"),
            ("Kangaroo exits at?", "A shallow layer"),
            ("Prompt lookup matches?", "The last n-gram"),
        ],
    )
    page = open_page(browser, served, user)

    page.get_by_label("Prompt", exact=True).fill("Say hello twice. Say hello twice.")
    # A drafting method of ours, where the library has one, so coloured tokens can show.
    drafting = [m for m in ("pld", "skip") if m in METHODS][:1]
    for name in drafting:
        page.get_by_role("checkbox", name=re.compile(f"^{name}:")).check()
    page.locator("#pg-run").click()
    expect(page.locator("#pg-status")).to_contain_text("Done", timeout=TIMEOUT_MS)
    expect(page.locator("#pg-output .spec-col")).to_have_count(1 + len(drafting))
    expect(page.locator("#pg-metrics")).to_contain_text("vanilla")
    if drafting:  # with the tiny model and this prompt, prompt lookup gets drafts accepted
        assert page.locator(".spec-text .tok-draft, .spec-text .tok-bonus").count() > 0
    expect(page.locator("#pg-output")).to_contain_text("accepted draft")  # the colour legend
    shot(page, "playground")

    open_tab(page, "Notes")
    page.locator("#note-title textarea").fill("Browser note <script>")
    page.locator("#note-body textarea").fill("Self-speculative decoding skips layers to draft.")
    page.locator("#note-save").click()
    expect(page.locator("#notes-message")).to_contain_text("Added note")
    expect(page.locator("#notes-table")).to_contain_text("Browser note <script>")
    page.locator("#notes-generate").click()
    expect(page.locator("#notes-gen-status")).to_contain_text("card(s) stored", timeout=120_000)
    shot(page, "notes")

    open_tab(page, "Review")
    page.locator("#review-start").click()
    expect(page.locator("#review-progress")).to_contain_text("Card 1 of")
    for _ in range(2):
        before = page.locator("#review-progress").inner_text()
        page.locator("body").press("Space")
        expect(page.locator("#rate-3")).to_be_visible()
        if "Card 1 of" in before:
            shot(page, "review")
        page.locator("body").press("3")
        expect(page.locator("#review-message")).to_contain_text("Recorded")
        expect(page.locator("#review-progress")).not_to_have_text(before)
    page.locator("body").press("Space")
    page.locator("#rate-3").dblclick()  # a double click on a rating counts once
    expect(page.locator("#review-message")).to_contain_text("Session done")
    with served.ctx.db.read() as session:
        stored = session.scalar(
            select(func.count()).select_from(Review).where(Review.card_id.in_(card_ids))
        )
    assert stored == 3

    open_tab(page, "Stats")
    page.locator("#stats-refresh").click()
    for plot in ("#stats-forecast", "#stats-speed", "#stats-curve"):
        expect(page.locator(f"{plot} canvas, {plot} svg").first).to_be_visible()
    shot(page, "stats")

    open_tab(page, "Tune")
    page.locator("#tune-refresh").click()
    expect(page.locator("#tune-status")).to_contain_text("skip profile")
    shot(page, "tune")
    open_tab(page, "Settings")
    expect(page.locator("#settings-retention")).to_be_visible()
    shot(page, "settings")

    docs = SHOTS.parents[1] / "docs" / "screenshots"
    docs.mkdir(parents=True, exist_ok=True)
    for png in SHOTS.glob("*.png"):
        shutil.copy(png, docs / png.name)


def test_two_signed_in_users_never_see_each_others_notes(browser: Browser, served: Served) -> None:
    alice = open_page(browser, served, "alice")
    open_tab(alice, "Notes")
    alice.locator("#note-title textarea").fill("Alice only")
    alice.locator("#note-body textarea").fill("Private text.")
    alice.locator("#note-save").click()
    expect(alice.locator("#notes-table")).to_contain_text("Alice only")

    bob = open_page(browser, served, "bob")
    open_tab(bob, "Notes")
    expect(bob.locator("#notes-table")).to_contain_text("Kangaroo")  # his own seed notes
    expect(bob.locator("#notes-table")).not_to_contain_text("Alice only")
