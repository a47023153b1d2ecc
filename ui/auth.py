"""The login gate: a password checked against the scrypt hash in settings, for a limited session.

Before login the app declares a navigation whose every URL shows the login form. It must never
simply stop before ``st.navigation``: Streamlit then falls back to serving every file in
``pages/`` by its URL, which would bypass the gate (server.py also turns that mode off).

A session ends after ``STUDIO_SESSION_IDLE_MINUTES`` without an interaction or
``STUDIO_SESSION_MAX_HOURS`` after logging in; the next interaction then shows the login with
"Your session expired" under the same URL, so logging in again returns to the same page.
Failed logins are limited per client by core.infra.auth (in Redis, across tabs and processes).
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.config import get_settings
from core.infra.auth import LoginLocked, LoginRefused, attempt_login, session_expired
from ui.text import literal

_SESSION_KEY = "auth.ok"
_LOGGED_IN_AT = "auth.logged_in_at"  # time.time() of the login (absolute lifetime)
_LAST_SEEN_AT = "auth.last_seen_at"  # time.time() of the latest full rerun (idle timeout)
_EXPIRED = "auth.expired"


def is_authenticated() -> bool:
    """Called once per full rerun by app.py: checks the session's lifetimes and counts the rerun as activity."""
    if not get_settings().login_required:
        return True
    state = st.session_state
    if not state.get(_SESSION_KEY):
        return False
    now = time.time()
    if session_expired(logged_in_at=state.get(_LOGGED_IN_AT), last_seen_at=state.get(_LAST_SEEN_AT), now=now):
        _log_out()
        state[_EXPIRED] = True
        return False
    state[_LAST_SEEN_AT] = now
    return True


# How often an open page checks its session: widget callbacks run before app.py's gate, so a page left open past
# its session's end must turn into the login by itself, before a stale button can be clicked.
SESSION_CHECK_S = 30


def watch_session() -> None:
    """While a login is required, reruns the whole app (which then shows the login) once the session has expired."""
    if get_settings().login_required:
        _watch_session()


@st.fragment(run_every=SESSION_CHECK_S)
def _watch_session() -> None:
    # Its own reruns are not activity: it never touches the idle timer.
    state = st.session_state
    if session_expired(logged_in_at=state.get(_LOGGED_IN_AT), last_seen_at=state.get(_LAST_SEEN_AT)):
        st.rerun(scope="app")


def _log_out() -> None:
    for key in (_SESSION_KEY, _LOGGED_IN_AT, _LAST_SEEN_AT):
        st.session_state.pop(key, None)


def _client() -> str | None:
    """The browser's IP address as the server saw it; None on localhost (one shared failure bucket)."""
    try:
        address = st.context.ip_address
    except Exception:  # noqa: BLE001 (no client context, e.g. outside a server: fall back to the shared bucket)
        return None
    return address if isinstance(address, str) and address else None  # AppTest's client gives a mock


def login_page() -> None:
    settings = get_settings()
    st.title("InfluencerAI Studio")
    if not settings.ui_password_hash:
        st.error(
            "No login password is configured. Run `python -m workers hash-password` and set "
            "`STUDIO_UI_PASSWORD_HASH`, or, on a development machine, set `STUDIO_AUTH_DISABLED=true`."
        )
        return
    if st.session_state.get(_EXPIRED):
        st.info("Your session expired. Please log in again.")
    with st.form("auth.form"):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        try:
            attempt_login(password, client=_client())
        except LoginLocked as refused:
            st.error(literal(refused))
            return
        except LoginRefused as refused:
            time.sleep(1.0)  # slows down guessing
            st.error(literal(refused))
            return
        now = time.time()
        st.session_state.update({_SESSION_KEY: True, _LOGGED_IN_AT: now, _LAST_SEEN_AT: now})
        st.session_state.pop(_EXPIRED, None)
        st.rerun()


def login_pages(pages: dict[str, list[StreamlitPage]]) -> list[StreamlitPage]:
    """The login form under every page's URL, declared as the navigation until the visitor logs in."""
    paths = [page.url_path for section in pages.values() for page in section if page.url_path]
    return [st.Page(login_page, title="Log in", default=True)] + [
        st.Page(login_page, title="Log in", url_path=path) for path in paths
    ]
