"""The login gate: a password checked against the scrypt hash in settings, for a limited session.

Before login the app declares a navigation whose every URL shows the login form. It must never
simply stop before ``st.navigation``: Streamlit then falls back to serving every file in
``pages/`` by its URL, which would bypass the gate (server.py also turns that mode off).

A session ends after ``STUDIO_SESSION_IDLE_MINUTES`` without an interaction or
``STUDIO_SESSION_MAX_HOURS`` after logging in; the next interaction then shows the login with
"Your session expired" under the same URL, so logging in again returns to the same page.
Failed logins are limited per client by core.infra.auth (in Redis, across tabs and processes).

Widget callbacks and fragment reruns run before app.py's gate, so every callback in ui/ is wrapped in
:func:`guard` and every fragment is made with :func:`fragment` (tests/security/test_probe.py fails on one
that is not): an expired session's click does nothing and its fragment turns into the login.

A login is bound to the client address seen when it was made (the TCP peer, or what a trusted proxy named):
the same session id presented from another address is logged out. Binding it to an HttpOnly cookie is not
possible from a script: Streamlit runs scripts over an open websocket, which cannot set a cookie.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.characters.scope import character_scope
from core.config import get_settings
from core.infra.auth import LoginLocked, LoginRefused, attempt_login, session_expired
from ui.session import session_character_id
from ui.text import literal

_SESSION_KEY = "auth.ok"
_LOGGED_IN_AT = "auth.logged_in_at"  # time.time() of the login (absolute lifetime)
_LAST_SEEN_AT = "auth.last_seen_at"  # time.time() of the latest full rerun (idle timeout)
_EXPIRED = "auth.expired"
_CLIENT = "auth.client"  # the client address seen at login (None: localhost or unidentified)
_LOGGED_OUT = "auth.logged_out"

_P = ParamSpec("_P")


@dataclass(frozen=True)
class SessionKeys:
    ok: str
    logged_in_at: str
    last_seen_at: str
    client: str


def session_keys() -> SessionKeys:
    """Where a login lives in the session state (ui/server_hooks.py reads it from outside a script run)."""
    return SessionKeys(ok=_SESSION_KEY, logged_in_at=_LOGGED_IN_AT, last_seen_at=_LAST_SEEN_AT, client=_CLIENT)


def is_authenticated() -> bool:
    """Called once per full rerun by app.py: checks the session's lifetimes and counts the rerun as activity."""
    if not session_valid():
        return False
    st.session_state[_LAST_SEEN_AT] = time.time()
    return True


def session_valid() -> bool:
    """Whether this session is logged in, within its lifetimes and on the client it logged in from; an expired
    or moved session is logged out here (the next full run shows the login). Not counted as activity."""
    if not get_settings().login_required:
        return True
    state = st.session_state
    if not state.get(_SESSION_KEY):
        return False
    expired = session_expired(logged_in_at=state.get(_LOGGED_IN_AT), last_seen_at=state.get(_LAST_SEEN_AT))
    if expired or state.get(_CLIENT) != _client():
        _log_out()
        state[_EXPIRED] = True
        return False
    return True


def guard(callback: Callable[..., object]) -> Callable[..., None]:
    """The one wrapper of every widget callback in ui/: Streamlit runs callbacks before app.py's gate, so an
    expired (or never logged-in) session's click must do nothing here; app.py then shows the login."""

    @functools.wraps(callback)
    def guarded(*args: object, **kwargs: object) -> None:
        if session_valid():
            with character_scope(session_character_id(st.session_state)):  # the switcher's character
                callback(*args, **kwargs)

    return guarded


def fragment(*, run_every: float | None = None) -> Callable[[Callable[_P, None]], Callable[_P, None]]:
    """``st.fragment`` for ui/: a fragment rerun runs without app.py's gate, so an expired session's fragment
    reruns the whole app (which shows the login) instead of drawing live data."""

    def decorate(body: Callable[_P, None]) -> Callable[_P, None]:
        @functools.wraps(body)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> None:
            if not session_valid():
                st.rerun(scope="app")
            with character_scope(session_character_id(st.session_state)):
                body(*args, **kwargs)

        return st.fragment(run_every=run_every)(checked)

    return decorate


# How often an open page checks its session: an open page left past its session's end turns into the login
# by itself (callbacks and fragments check it too, through guard() and fragment()).
SESSION_CHECK_S = 30


def watch_session() -> None:
    """While a login is required, reruns the whole app (which then shows the login) once the session has expired."""
    if get_settings().login_required:
        _watch_session()


@fragment(run_every=SESSION_CHECK_S)
def _watch_session() -> None:
    pass  # fragment() does the check; its reruns are not activity (they never touch the idle timer)


def logout_button() -> None:
    """The sidebar's Log out control (only while a login is required)."""
    if get_settings().login_required:
        st.sidebar.button("Log out", key="auth.logout", icon=":material/logout:", on_click=guard(_log_out_clicked))


def _log_out_clicked() -> None:
    _log_out()
    st.session_state[_LOGGED_OUT] = True


def _log_out() -> None:
    for key in (_SESSION_KEY, _LOGGED_IN_AT, _LAST_SEEN_AT, _CLIENT):
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
    if st.session_state.pop(_LOGGED_OUT, False):
        st.info("You logged out.")
    elif st.session_state.get(_EXPIRED):
        st.info("Your session expired. Please log in again.")
    with st.form("auth.form"):
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        client = _client()
        try:
            attempt_login(password, client=client)
        except LoginLocked as refused:
            st.error(literal(refused))
            return
        except LoginRefused as refused:
            time.sleep(1.0)  # slows down guessing
            st.error(literal(refused))
            return
        now = time.time()
        st.session_state.update({_SESSION_KEY: True, _LOGGED_IN_AT: now, _LAST_SEEN_AT: now, _CLIENT: client})
        st.session_state.pop(_EXPIRED, None)
        st.rerun()


def login_pages(pages: dict[str, list[StreamlitPage]]) -> list[StreamlitPage]:
    """The login form under every page's URL, declared as the navigation until the visitor logs in."""
    paths = [page.url_path for section in pages.values() for page in section if page.url_path]
    return [st.Page(login_page, title="Log in", default=True)] + [
        st.Page(login_page, title="Log in", url_path=path) for path in paths
    ]
