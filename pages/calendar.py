"""Calendar: every post on a drag-and-drop calendar with a per-platform editor and preview, and the
content plans that fill it from the character's persona."""

import streamlit as st

from ui.calendar.board import calendar_tab
from ui.calendar.clock import studio_zone
from ui.calendar.dry_run import dry_run_banner
from ui.calendar.plans import persona_form, plan_form, plan_jobs, plans_list

st.title("Calendar")
dry_run_banner()
tz = studio_zone()
board_tab, plans_tab = st.tabs(["Calendar", "Plans"])

with board_tab:
    calendar_tab(tz)

with plans_tab:
    persona_form()
    plan_form(tz)
    plan_jobs()
    plans_list(tz)
