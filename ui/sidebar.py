"""The sidebar's service status: database, broker, storage and workers at a glance."""

from __future__ import annotations

import streamlit as st

from core.reports.health import Check, check_all
from ui.text import literal


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
