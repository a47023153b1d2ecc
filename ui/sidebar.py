"""The sidebar: the character switcher (which scopes every page) and the service status at a glance."""

from __future__ import annotations

import streamlit as st

from core.characters import characters
from core.reports.health import Check, check_all
from ui import page_paths
from ui.auth import guard
from ui.session import session_character_id, set_session_character
from ui.text import literal, plain


@st.cache_data(ttl=5, show_spinner=False)
def _cached_checks() -> list[Check]:
    return check_all(include_workers=True)


def render_health() -> None:
    with st.sidebar:
        st.caption("Services")
        for check in _cached_checks():
            icon = ":material/check_circle:" if check.ok else ":material/error:"
            label = f"{icon} **{check.name}** · {check.latency_ms:.0f} ms"
            st.markdown(label, help=literal(check.detail))  # a tooltip renders Markdown too


def render_character_switcher() -> int:
    """The sidebar's character picker (active characters by name); returns the session's character id."""
    current = session_character_id(st.session_state)
    found = characters.list_characters(page_size=characters.SWITCHER_LIMIT)
    names = {c.id or 0: c.name for c in found.items}
    if current not in names:  # more active characters than the switcher lists: keep the current one pickable
        names[current] = characters.get_character(current).name
    with st.sidebar:
        st.selectbox("Character", list(names), index=list(names).index(current), format_func=lambda i: plain(names[i]),
                     key=f"sidebar.character.{current}", on_change=guard(_switch), args=(current,),
                     help="Every page shows and makes this character's datasets, LoRAs, images, videos and posts.")
        st.page_link(page_paths.CHARACTERS, label="Manage characters", icon=":material/groups:")
    return current


def _switch(previous: int) -> None:
    picked = st.session_state.get(f"sidebar.character.{previous}")
    if isinstance(picked, int):
        set_session_character(st.session_state, picked)
