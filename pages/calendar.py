"""Calendar: every post on a drag-and-drop calendar with a per-platform editor and preview, and the
content plans that fill it from the character's persona."""

import streamlit as st
from streamlit_calendar import calendar

from core.publishing import posts
from ui.calendar import (
    CALENDAR_CSS,
    CALLBACKS,
    calendar_events,
    calendar_key,
    calendar_options,
    event_window,
    filter_bar,
    flash,
    handle_calendar_value,
    persona_form,
    plan_form,
    plan_jobs,
    plans_list,
    show_flash,
    side_panel,
    status_summary,
    studio_zone,
)

st.title("Calendar")
tz = studio_zone()
calendar_tab, plans_tab = st.tabs(["Calendar", "Plans"])

with calendar_tab:
    show_flash("page")
    platforms, statuses = filter_bar()
    start, end = event_window(st.session_state, tz)
    shown = posts.posts_between(start, end, platforms=platforms, statuses=statuses)
    status_summary()
    left, right = st.columns([3, 2], gap="large")
    with left:
        value = calendar(events=calendar_events(shown, tz), options=calendar_options(st.session_state, tz),
                         custom_css=CALENDAR_CSS, callbacks=CALLBACKS, key=calendar_key(st.session_state))
    outcome = handle_calendar_value(value, st.session_state, tz=tz)
    if outcome.kind in ("moved", "refused"):
        # This run drew the calendar before the move: draw it again from the database.
        flash("page", "success" if outcome.kind == "moved" else "error", outcome.message)
        st.rerun()
    with right:
        side_panel(shown, tz)

with plans_tab:
    persona_form()
    plan_form(tz)
    plan_jobs()
    plans_list(tz)
