"""The side panel beside the calendar: the agenda of coming posts, a post's editor, or a new post for
a clicked slot (the panel key in session state says which)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import streamlit as st

from core.models import Platform, Post
from ui.auth import guard
from ui.calendar.clock import local, when_text
from ui.calendar.editor import post_editor
from ui.calendar.new_post import new_post_panel
from ui.calendar.state import PANEL, open_new, open_post
from ui.text import plain


def side_panel(shown: list[Post], tz: ZoneInfo) -> None:
    panel = st.session_state.get(PANEL) or {}
    if "post" in panel:
        post_editor(int(panel["post"]), tz)
    elif "new" in panel:
        new_post_panel(datetime.fromisoformat(panel["new"]).replace(tzinfo=tz), bool(panel.get("all_day")), tz)
    else:
        agenda(shown, tz)


def agenda(shown: list[Post], tz: ZoneInfo) -> None:
    st.caption("Click a post to edit it, click or select a day to add one, drag a post to move it.")
    now = datetime.now(tz)
    st.button("New post", icon=":material/add:", key="calendar.new_post", on_click=guard(open_new),
              args=((now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0), False))
    upcoming = [p for p in shown if local(p.scheduled_at, tz) >= now][:8]
    if not upcoming:
        st.info("No posts coming up in this range. Plan some on the Plans tab, or click a day.")
    for post in upcoming:
        with st.container(border=True):
            with st.container(horizontal=True, vertical_alignment="center"):
                st.caption(f"{when_text(post.scheduled_at, tz)} · {Platform(post.platform).label} · {post.status}")
                st.button("Open", key=f"calendar.open.{post.id}", on_click=guard(open_post), args=(post.id,),
                          icon=":material/edit:")
            st.text(plain(post.caption[:80]) or "(no caption)")
