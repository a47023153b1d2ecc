"""The login gate: a password checked against the scrypt hash in settings, once per browser session.

Before login the app declares a navigation whose every URL shows the login form. It must never
simply stop before ``st.navigation``: Streamlit then falls back to serving every file in
``pages/`` by its URL, which would bypass the gate (server.py also turns that mode off).
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.auth import verify_password
from core.config import get_settings

_SESSION_KEY = "auth.ok"


def is_authenticated() -> bool:
    return not get_settings().login_required or bool(st.session_state.get(_SESSION_KEY))


def login_page() -> None:
    settings = get_settings()
    st.title("InfluencerAI Studio")
    if not settings.ui_password_hash:
        st.error(
            "No login password is configured. Run `python -m workers hash-password` and set "
            "`STUDIO_UI_PASSWORD_HASH`, or, on a development machine, set `STUDIO_AUTH_DISABLED=true`."
        )
        return
    with st.form("auth.form"):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if verify_password(password, settings.ui_password_hash):
            st.session_state[_SESSION_KEY] = True
            st.rerun()
        time.sleep(1.0)  # slows down guessing
        st.error("Wrong password.")


def login_pages(pages: dict[str, list[StreamlitPage]]) -> list[StreamlitPage]:
    """The login form under every page's URL, declared as the navigation until the visitor logs in."""
    paths = [page.url_path for section in pages.values() for page in section if page.url_path]
    return [st.Page(login_page, title="Log in", default=True)] + [
        st.Page(login_page, title="Log in", url_path=path) for path in paths
    ]

