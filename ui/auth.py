"""The login gate: a password checked against the scrypt hash in settings, once per browser session."""

from __future__ import annotations

import time

import streamlit as st

from core.auth import verify_password
from core.config import get_settings

_SESSION_KEY = "auth.ok"


def require_login() -> None:
    """Stops the script run until the visitor has logged in (unless development mode disabled it)."""
    settings = get_settings()
    if not settings.login_required or st.session_state.get(_SESSION_KEY):
        return
    st.title("InfluencerAI Studio")
    if not settings.ui_password_hash:
        st.error(
            "No login password is configured. Run `python -m workers hash-password` and set "
            "`STUDIO_UI_PASSWORD_HASH`, or, on a development machine, set `STUDIO_AUTH_DISABLED=true`."
        )
        st.stop()
    with st.form("auth.form"):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if verify_password(password, settings.ui_password_hash):
            st.session_state[_SESSION_KEY] = True
            st.rerun()
        time.sleep(1.0)  # slows down guessing
        st.error("Wrong password.")
    st.stop()


def logout() -> None:
    st.session_state.pop(_SESSION_KEY, None)
