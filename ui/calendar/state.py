"""The session keys the calendar's parts share: what the side panel shows, the component's mount and
the last view it reported, and where each part's messages wait (ui.feedback)."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from ui.session import ReadOnlySessionState, SessionState

PANEL = "calendar.panel"  # {"post": id} or {"new": local ISO time, "all_day": bool}; absent: the agenda
HANDLED = "calendar.handled"  # the component value last acted on
VIEW = "calendar.view"  # the last view the component reported: type, date, start, end
MOUNT = "calendar.mount"  # bumped to remount the component (a fresh key)
MOUNT_VIEW = "calendar.mount_view"  # the view the current mount opened on (its options stay fixed)
PAGE_FLASH = "calendar.flash.page"  # above the calendar
EDITOR_FLASH = "calendar.flash.editor"  # in the side panel
PLANS_FLASH = "calendar.flash.plans"  # under a plan's posts


def calendar_key(state: ReadOnlySessionState) -> str:
    return f"calendar.cal.{state.get(MOUNT, 0)}"


def remount(state: SessionState) -> None:
    """Draw the component afresh (from the database), opening on the last view it reported."""
    state[MOUNT] = state.get(MOUNT, 0) + 1
    state[HANDLED] = None
    state[MOUNT_VIEW] = dict(state.get(VIEW) or {})


def open_post(post_id: int) -> None:
    st.session_state[PANEL] = {"post": post_id}


def open_new(when: datetime, all_day: bool) -> None:
    st.session_state[PANEL] = {"new": when.replace(tzinfo=None).isoformat(timespec="minutes"), "all_day": all_day}


def close_panel() -> None:
    st.session_state.pop(PANEL, None)
    remount(st.session_state)  # so a click on the same event opens it again
