"""Review keys in a real headless Chromium: they act on the card, never on a focused button.

Issue 16 reproduced: after clicking "Undo last rating" (the button keeps focus) and
rating a card, Space on a multiple-choice card used to activate Undo and silently undo
the previous rating; with Start focused, Enter restarted the session.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db import Review
from tests.app_helpers import Served, add_cards
from tests.test_browser import browser, data_dir, open_page, open_tab, served

pytestmark = pytest.mark.browser

from playwright.sync_api import Browser, Page, expect  # noqa: E402

__all__ = ["browser", "data_dir", "served"]  # module fixtures shared with test_browser


def _kept(served: Served, card_ids: list[int]) -> int:
    with served.ctx.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Review)
                .where(Review.card_id.in_(card_ids), Review.undone_at.is_(None))
            )
        )


def _press(page: Page, key: str) -> None:
    page.keyboard.press(key)


def test_keys_act_on_the_card_not_on_a_focused_undo_or_start(
    browser: Browser, served: Served
) -> None:
    cards = add_cards(  # the lowest card ids, so these three come first
        served.ctx,
        "keys-user",
        [
            ("First basic question?", "First answer"),
            ("Second basic question?", "Second answer"),
            ("Which one is right?", "Beta", ["Alpha", "Beta", "Gamma"]),
        ],
    )
    page = open_page(browser, served, "keys-user")
    open_tab(page, "Review")
    progress, message = page.locator("#review-progress"), page.locator("#review-message")

    page.locator("#review-start").click()  # Start keeps the focus
    expect(progress).to_contain_text("Card 1 of ")
    _press(page, "Enter")  # reveals; must not restart the session
    expect(page.locator("#review-answer")).to_be_visible()
    page.wait_for_timeout(1000)
    expect(page.locator("#review-answer")).to_be_visible()
    _press(page, "3")
    expect(message).to_contain_text("Recorded")
    expect(progress).to_contain_text("Card 2 of ")

    page.locator("#review-undo").click()  # Undo keeps the focus from here on
    expect(message).to_contain_text("Undid the last rating")
    expect(progress).to_contain_text("Card 1 of ")
    for position in (1, 2):
        _press(page, " ")
        expect(page.locator("#rate-3")).to_be_visible()
        _press(page, "3")
        expect(progress).to_contain_text(f"Card {position + 1} of ")
    assert _kept(served, cards) == 2

    # The multiple-choice card: Space has nothing to reveal and must not reach Undo.
    _press(page, " ")
    page.wait_for_timeout(1500)
    expect(progress).to_contain_text("Card 3 of ")
    expect(message).not_to_contain_text("Undid")
    assert _kept(served, cards) == 2

    _press(page, "2")  # picks the second option, "Beta"
    expect(message).to_contain_text("Correct")
    _press(page, "3")
    expect(progress).to_contain_text("Card 4 of ")  # the seed notes' vetted cards follow
    assert _kept(served, cards) == 3
