"""The dashboard login: required unless development mode disables it, sessions that expire (idle and
absolute), and failed logins limited per client in Redis, across sessions and processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import streamlit.testing.v1.app_test as app_test_module
from pydantic import ValidationError
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from core.config import Settings, reload_settings
from core.infra import auth
from core.infra.auth import LoginLocked, LoginThrottled, WrongPassword, attempt_login, hash_password, session_expired
from core.infra.redis import get_redis, reset_clients
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): lockouts and idle expiry

PASSWORD = "correct horse battery"
ADDRESS = "203.0.113.7"
OTHER_ADDRESS = "198.51.100.2"


class _NavigationOnly(PagesManager):
    """AppTest resets Streamlit's "pages/ folder" mode before every run, and with it on, switch_page runs
    pages/x.py directly without app.py. server.py turns that mode off; so do these tests, so every run
    goes through app.py's login gate as in the real server."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        PagesManager.uses_pages_directory = False
        super().__init__(*args, **kwargs)


@pytest.fixture
def login(studio, monkeypatch) -> Iterator[dict[str, str | None]]:
    """The login enabled with PASSWORD; the returned dict's "client" is the address the UI reports."""
    monkeypatch.setenv("STUDIO_AUTH_DISABLED", "false")
    monkeypatch.setenv("STUDIO_UI_PASSWORD_HASH", hash_password(PASSWORD))
    reload_settings()
    monkeypatch.setattr(app_test_module, "PagesManager", _NavigationOnly)
    client: dict[str, str | None] = {"client": ADDRESS}
    monkeypatch.setattr("ui.auth._client", lambda: client["client"])
    yield client


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()


def _log_in(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.text_input[0].input(password)
    at.button[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _on_login_form(at: AppTest) -> bool:
    return bool(at.text_input) and at.text_input[0].label == "Password"


def _past_the_gate(at: AppTest) -> bool:
    """app.py draws the sidebar's service status only for a logged-in session."""
    return not _on_login_form(at) and any(c.value == "Services" for c in at.sidebar.caption)


# --- the login is required ------------------------------------------------------------------------------------------


def test_only_development_mode_may_disable_the_login(studio):
    from cryptography.fernet import Fernet

    assert not Settings(env="development", auth_disabled=True).login_required
    assert Settings(env="development", auth_disabled=False).login_required
    with pytest.raises(ValidationError, match="STUDIO_AUTH_DISABLED"):
        Settings(env="production", api_token="a" * 20, signing_key="b" * 20, auth_disabled=True,
                 ui_password_hash=hash_password(PASSWORD), token_encryption_key=Fernet.generate_key().decode())


def test_every_page_url_shows_the_login_until_the_password_is_given(login):
    at = _app()
    assert _on_login_form(at) and not _past_the_gate(at)
    # Before login the navigation holds only the login form, under every page's URL: no page file is reachable.
    for page in ("jobs", "accounts", "monitoring"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"pages/{page}.py")
    at = _log_in(at)
    assert _past_the_gate(at), "the app renders after login"


# --- sessions expire ------------------------------------------------------------------------------------------------


def test_session_lifetimes_idle_and_absolute(studio):
    settings = Settings(session_idle_minutes=60, session_max_hours=12)
    now = 1_000_000.0
    assert not session_expired(logged_in_at=now - 3600, last_seen_at=now - 59 * 60, now=now, settings=settings)
    assert session_expired(logged_in_at=now - 3600, last_seen_at=now - 61 * 60, now=now, settings=settings)
    assert not session_expired(logged_in_at=now - 11.9 * 3600, last_seen_at=now, now=now, settings=settings)
    assert session_expired(logged_in_at=now - 12.1 * 3600, last_seen_at=now, now=now, settings=settings)
    assert session_expired(logged_in_at=None, last_seen_at=now, now=now, settings=settings)


def test_an_idle_session_shows_the_login_again_and_returns_to_the_same_page(login):
    at = _log_in(_app())
    at.switch_page("pages/jobs.py").run()
    assert at.button(key="jobs.new.submit")
    at.session_state["auth.last_seen_at"] = time.time() - 61 * 60  # an hour and a minute without interaction
    at.run()
    assert _on_login_form(at)
    assert [i.value for i in at.info] == ["Your session expired. Please log in again."]
    assert "jobs.new.submit" not in [b.key for b in at.button], "the Jobs page must not render"
    at = _log_in(at)
    assert at.button(key="jobs.new.submit"), "logging in again returns to the Jobs page (the deep link)"
    assert not at.info or all("expired" not in i.value for i in at.info)


def test_a_busy_session_still_ends_after_its_absolute_lifetime(login):
    at = _log_in(_app())
    at.run()
    assert _past_the_gate(at)
    at.session_state["auth.logged_in_at"] = time.time() - 12 * 3600 - 60  # active all along, but 12 h old
    at.run()
    assert _on_login_form(at) and any("session expired" in i.value for i in at.info)


def test_a_login_is_bound_to_the_client_address_it_was_made_from(login):
    """The session id alone is not the credential: presented from another address, the session logs out."""
    at = _log_in(_app())
    assert _past_the_gate(at)
    login["client"] = OTHER_ADDRESS
    at.run()
    assert _on_login_form(at)


def test_interactions_keep_an_idle_timer_fresh(login):
    at = _log_in(_app())
    at.session_state["auth.last_seen_at"] = time.time() - 59 * 60
    at.run()
    assert _past_the_gate(at)
    assert at.session_state["auth.last_seen_at"] > time.time() - 60, "the rerun counted as activity"


# --- failed logins are limited ---------------------------------------------------------------------------------------


def _failures(client: str | None) -> None:
    for _ in range(4):
        with pytest.raises(WrongPassword):
            attempt_login("wrong password", client=client)
    with pytest.raises(LoginLocked):
        attempt_login("wrong password", client=client)  # the fifth locks


@pytest.fixture
def password_set(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_UI_PASSWORD_HASH", hash_password(PASSWORD))
    return reload_settings()


def test_five_failures_lock_the_client_out_even_for_the_right_password(password_set):
    _failures(ADDRESS)
    with pytest.raises(LoginLocked) as refused:
        attempt_login(PASSWORD, client=ADDRESS)
    assert 14 * 60 < refused.value.retry_after_s <= 15 * 60
    assert str(refused.value) == "Too many failed logins; try again in 15 minutes."
    attempt_login(PASSWORD, client=OTHER_ADDRESS)  # another client is not affected


def test_a_successful_login_forgets_the_failures(password_set):
    for _ in range(4):
        with pytest.raises(WrongPassword):
            attempt_login("wrong password", client=ADDRESS)
    attempt_login(PASSWORD, client=ADDRESS)
    for _ in range(4):  # four more are again only wrong, not locked
        with pytest.raises(WrongPassword):
            attempt_login("wrong password", client=ADDRESS)


def test_the_lockout_ends_when_its_window_passes(password_set):
    _failures(None)
    key = auth._failures_key(None)
    assert key.endswith(":login-failures:shared"), "clients the server cannot tell apart share one bucket"
    get_redis().pexpire(key, 50)  # as if 15 minutes had passed
    wait_until(lambda: auth.lockout_remaining_s(None) == 0, 5, what="the lockout to end")
    attempt_login(PASSWORD, client=None)


def test_the_shared_bucket_and_the_global_budget_slow_down_instead_of_locking(password_set, monkeypatch):
    monkeypatch.setenv("STUDIO_LOGIN_GLOBAL_FREE_FAILURES", "6")
    reload_settings()
    for n in range(6):  # 6 addresses, one failure each, all within their own budget
        with pytest.raises(WrongPassword):
            attempt_login("wrong password", client=f"198.51.100.{n}")
    with pytest.raises(LoginThrottled) as paused:
        attempt_login("wrong password", client="198.51.100.99")  # the seventh from all clients together
    assert paused.value.retry_after_s == 1 and str(paused.value) == "Too many failed logins; try again in 1 second."
    with pytest.raises(LoginThrottled):
        attempt_login(PASSWORD, client=ADDRESS)  # everyone waits, the owner too, but only for a moment
    get_redis().delete(auth.redis_key("login-wait"))  # as if the second had passed
    attempt_login(PASSWORD, client=ADDRESS)


def test_failures_count_across_app_processes(password_set):
    """Another process (a second app server, another browser session's thread) shares the counter."""
    script = ("from core.infra.auth import attempt_login, LoginRefused\n"
              "for _ in range(5):\n"
              "    try: attempt_login('wrong password', client='203.0.113.7')\n"
              "    except LoginRefused as e: print(type(e).__name__)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["WrongPassword"] * 4 + ["LoginLocked"], done.stderr[-2000:]
    with pytest.raises(LoginLocked):
        attempt_login(PASSWORD, client=ADDRESS)


def test_with_redis_down_the_password_still_decides(password_set, monkeypatch):
    """The limiter fails open: the owner can still log in (and a wrong password is still wrong)."""
    from tests.services import free_port

    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    reload_settings()
    reset_clients()
    with pytest.raises(WrongPassword):
        attempt_login("wrong password", client=ADDRESS)
    attempt_login(PASSWORD, client=ADDRESS)


def test_the_login_form_locks_out_after_five_failures_and_other_clients_still_log_in(login):
    at = _app()
    for _ in range(4):
        at = _log_in(at, "wrong password")
        assert [e.value for e in at.error] == ["Wrong password."]
    at = _log_in(at, "wrong password")
    assert [e.value for e in at.error] == ["Too many failed logins; try again in 15 minutes."]
    at = _log_in(at, PASSWORD)  # the sixth attempt, with the right password
    assert _on_login_form(at) and not _past_the_gate(at)
    assert [e.value for e in at.error] == ["Too many failed logins; try again in 15 minutes."]

    fresh = _app()  # a new browser session of the same client is locked out too
    assert _on_login_form(_log_in(fresh, PASSWORD))

    login["client"] = OTHER_ADDRESS
    other = _log_in(_app(), PASSWORD)
    assert _past_the_gate(other)
