"""What the user hears after an action: a message kept in session state and shown once after the rerun
(a *flash*), and the button callback that runs an action and flashes its outcome.

Actions run in button callbacks, before the page is drawn again: anything they drew would be wiped by
that redraw, so their message waits in session state under a key of the page's until the page shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import streamlit as st

from core.errors import StudioError
from ui.text import literal

FlashKind = Literal["success", "info", "error"]

class Refused(StudioError):
    """An action refused with a list of reasons (the flash shows them as a list under the message)."""

    def __init__(self, message: str, reasons: Sequence[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


def flash(key: str, kind: FlashKind, text: str, details: Sequence[str] = ()) -> None:
    """Remember a message to show once, on the next run, where the page calls ``show_flash(key)``."""
    st.session_state[key] = (kind, text, list(details))


def show_flash(key: str, *, toast: bool = False) -> None:
    """Show the message flashed under ``key``, if any, and forget it.

    The message and its details are shown as typed, never as Markdown (they quote names, captions and
    error messages): see :mod:`ui.text`.
    ``toast``: for a view that refreshes itself, where a message box would vanish with the next refresh.
    """
    if (flashed := st.session_state.pop(key, None)) is None:
        return
    kind, text, details = flashed
    if toast:
        st.toast(literal(text), icon=":material/check_circle:" if kind == "success" else ":material/error:")
        return
    body = "\n".join([literal(text), *(f"- {literal(detail)}" for detail in details)])
    {"success": st.success, "info": st.info}.get(kind, st.error)(body)


def run_action(key: str, action: Callable[[], str | None], *,
               errors: tuple[type[Exception], ...] = (StudioError,),
               then: Callable[[], None] | None = None) -> None:
    """A button callback: run ``action`` and flash its message (None: nothing to say), or the error's
    (with the reasons of a :class:`Refused`); ``then`` runs after a success (e.g. clearing a selection)."""
    try:
        message = action()
    except Refused as error:
        flash(key, "error", str(error), error.reasons)
        return
    except errors as error:
        flash(key, "error", str(error))
        return
    if message is not None:
        flash(key, "success", message)
    if then is not None:
        then()


def job_action(key: str, action: Callable[[str], object], job_id: str) -> None:
    """A Cancel or Retry button callback: ``action(job_id)``; only a refusal has something to say."""

    def quietly() -> None:
        action(job_id)

    run_action(key, quietly)
