"""Refresh docs/screenshots/ from the app as a new user meets it: the bundled model, a fresh
data folder, a real headless Chromium (Debian's /usr/bin/chromium) clicking through every tab.

    python scripts/screenshots.py [--model bundled] [--tokens 64] [--out docs/screenshots]

The Playground compares every method of ours on one prompt; the other tabs are shown as a
first visit finds them, after one review so that Stats has something to draw.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
PROMPT = (
    "Summarize in three sentences: speculative decoding drafts several tokens cheaply and "
    "the full model verifies them in one pass, so the output is exactly what plain "
    "decoding would give."
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SELFSPEC_DATA_DIR"] = tmp  # a fresh data folder: profiles, adapters
        return _capture(Path(tmp), args.model, args.tokens, args.out)


def _capture(tmp: Path, model: str, tokens: int, out: Path) -> int:
    from playwright.sync_api import expect, sync_playwright

    from selfspec import METHODS
    from tests.app_helpers import add_cards, serve_app, user_headers

    out.mkdir(parents=True, exist_ok=True)
    user = "first-visit"
    with serve_app(tmp, model=model, dtype="auto") as served, sync_playwright() as playwright:
        add_cards(served.ctx, user, [("What checks the drafts?", "The full model")])
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
        page = browser.new_context(
            viewport={"width": 1280, "height": 1000}, extra_http_headers=user_headers(user)
        ).new_page()
        page.set_default_timeout(300_000)
        page.goto(served.url)

        def shot(name: str) -> None:
            page.wait_for_timeout(800)  # plots finish drawing
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / name}.png", flush=True)

        page.get_by_label("Prompt", exact=True).fill(PROMPT)
        for name in ("skip", "pld", "kangaroo"):
            if name in METHODS and METHODS[name].installed():
                page.get_by_role("checkbox", name=re.compile(f"^{name}:")).check()
        slider = page.get_by_label("number input for Max new tokens")
        slider.fill(str(tokens))
        slider.press("Enter")
        page.locator("#pg-run").click()
        expect(page.locator("#pg-status")).to_contain_text("Done", timeout=600_000)
        shot("playground")
        for tab, ready in (
            ("Tune", "#tune-status"),
            ("Review", "#review-start"),
            ("Notes", "#notes-table"),
        ):
            page.get_by_role("tab", name=tab).click()
            expect(page.locator(ready)).to_be_visible()
            if tab == "Review":
                page.locator("#review-start").click()
                page.get_by_role("button", name=re.compile("^Show answer")).click()
                expect(page.locator("#rate-3")).to_be_visible()
                shot("review")
                page.locator("#rate-3").click()
                expect(page.locator("#review-message")).to_contain_text("Recorded")
                continue
            shot(tab.lower())
        page.get_by_role("tab", name="Stats").click()
        expect(page.locator("#stats-heatmap")).to_contain_text("1 review(s)")
        shot("stats")
        page.get_by_role("tab", name="Settings").click()
        expect(page.locator("#settings-retention")).to_be_visible()
        shot("settings")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
