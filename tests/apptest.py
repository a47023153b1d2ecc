"""Driving the app's pages under AppTest: open one (logged in through app.py's navigation) and rerun,
failing the test on any exception the page raised."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def checked(at: AppTest) -> AppTest:
    assert not at.exception, [e.message for e in at.exception]
    return at


def open_page(page: str, *, timeout: float = 30, **session: object) -> AppTest:
    """``page`` like "pages/generate.py"; ``session`` pre-sets session state (e.g. a hand-over)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout).run()
    for key, value in session.items():
        at.session_state[key] = value
    at.switch_page(page).run()
    return checked(at)


def rerun(at: AppTest) -> AppTest:
    return checked(at.run())


def click(at: AppTest, key: str) -> AppTest:
    return checked(at.button(key=key).click().run())
