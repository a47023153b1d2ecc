"""Helpers for the real-browser tests: Debian's Chromium driven by Playwright, waiting for Streamlit
to settle, reaching widgets by their key, and the screenshots the docs show.

Streamlit redraws the page on every rerun, so the tests never sleep: they wait for visible states
(a heading, an image, a text inside the calendar's iframe) with generous timeouts, because two
shared CPU cores can make one rerun take seconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Frame, FrameLocator, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package: no `playwright install` download
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}  # the docs' screenshots are this size
WAIT_MS = 60_000  # a generous bound for one visible change on a loaded machine (never a sleep)
# Read at import: the `studio` fixture removes every STUDIO_* variable before a test runs.
_SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS_DIR", "")
SCREENSHOTS_DIR = (ROOT / _SCREENSHOTS).resolve() if _SCREENSHOTS else None

# Idle means: no script or fragment run in progress, the status widget ("Running…") gone, every image
# decoded. Polled on each animation frame, so an idle moment between two live refreshes is caught.
_IDLE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
    if (document.querySelector('[data-testid="stSkeleton"]')) return false;
    return Array.from(document.images).every(image => image.complete);
}"""


def key_class(key: str) -> str:
    """The CSS class Streamlit gives the container of a widget created with ``key=``."""
    return "st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def by_key(page: Page | Frame, key: str) -> Locator:
    return page.locator(f".{key_class(key)}")


def settle(page: Page, timeout: float = WAIT_MS) -> None:
    """Wait until Streamlit has finished running and drawing (before screenshots and fragile clicks)."""
    page.wait_for_function(_IDLE, timeout=timeout)


def choose(page: Page, select: Locator, option: str) -> None:
    """Pick ``option`` (its visible text) in a Streamlit selectbox, as a user does: open it, click the option."""
    # A rerun still drawing (after the click that led here) can replace the box and close its list
    # under the click: wait for Streamlit to be idle, and open it again if the list did not appear.
    # A long list is virtualised (only the options near the open position are in the page): type the option's
    # text, as a user does in a long list, so it is among the few left.
    target = page.get_by_role("option", name=option, exact=True)
    combobox = select.get_by_role("combobox")
    for _attempt in range(3):
        settle(page)
        combobox.click()
        combobox.fill(option)
        try:
            target.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    target.click()
    expect(combobox).to_have_value(option, timeout=WAIT_MS)


def enter(field: Locator, text: str) -> None:
    """Type into a text or number input and commit it (Streamlit sends a value on Enter or blur)."""
    field.fill(text)
    field.press("Enter")


def drag(page: Page, source: Locator, target: Locator) -> None:
    """Drag ``source`` onto ``target`` with the mouse, in small steps (FullCalendar needs the moves between)."""
    start, end = source.bounding_box(), target.bounding_box()
    assert start and end, "both must be on screen"
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=15)
    page.mouse.up()


def calendar_frame(page: Page) -> FrameLocator:
    return page.frame_locator("iframe[title*='calendar']")


def screenshot(page: Page, name: str) -> Path | None:
    """When STUDIO_SCREENSHOTS_DIR is set, save the page as ``name`` there once Streamlit has settled."""
    if SCREENSHOTS_DIR is None:
        return None
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    settle(page)
    path = SCREENSHOTS_DIR / name
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path
