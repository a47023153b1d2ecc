"""The dashboard login: password hashing, session lifetimes and failed-login limits.

Passwords are hashed with scrypt (``cryptography``'s KDF, whose ``verify`` compares in
constant time); the stored form is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.

Failed logins are counted in Redis, so the limits hold across browser sessions, tabs and app processes:
per client address (only a trusted proxy may name it: STUDIO_TRUSTED_PROXIES), which locks that address
out; and for everyone together plus the shared bucket of clients the server cannot tell apart, which never
lock but make every client wait a growing delay, so no guesser can lock the owner out for long and many
addresses together still guess slowly. Logins, lockouts and pauses are logged (never the password).
The UI only calls :func:`attempt_login` and :func:`session_expired`.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from core.config import Settings, get_settings
from core.errors import StudioError
from core.infra.redis import get_redis, redis_key

_T = TypeVar("_T")

_logger = logging.getLogger("studio.auth")
# The bucket of clients the server cannot tell apart (localhost, or everyone behind one proxy).
SHARED_CLIENT = "shared"

_N, _R, _P, _LENGTH = 2**14, 8, 1, 32


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=_LENGTH, n=_N, r=_R, p=_P).derive(password.encode())
    encode = base64.urlsafe_b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.urlsafe_b64decode(salt_b64)
        digest = base64.urlsafe_b64decode(digest_b64)
        Scrypt(salt=salt, length=len(digest), n=int(n), r=int(r), p=int(p)).verify(password.encode(), digest)
    except (ValueError, InvalidKey):
        return False
    return True


def secrets_match(given: str | None, expected: str) -> bool:
    """Compare a presented token with the configured one without leaking timing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# --- logging in -------------------------------------------------------------------------------------


class LoginRefused(StudioError):
    """The password was not accepted; the message is safe to show."""


class WrongPassword(LoginRefused):
    def __init__(self) -> None:
        super().__init__("Wrong password.")


class LoginLocked(LoginRefused):
    """Too many failures; no password is checked until ``retry_after_s`` has passed."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        if retry_after_s < 120:
            wait = f"{retry_after_s} second{'s' if retry_after_s != 1 else ''}"
        else:
            wait = f"{math.ceil(retry_after_s / 60)} minutes"
        super().__init__(f"Too many failed logins; try again in {wait}.")


class LoginThrottled(LoginLocked):
    """Too many failures from clients the server cannot tell apart, or from everyone together: a short,
    growing wait for every client instead of a lock that a guesser could keep closed on the owner."""


def _failures_key(client: str | None) -> str:
    return redis_key("login-failures", client or SHARED_CLIENT)


_ALL_FAILURES = ("login-failures-all",)  # every client's failures in the window: the global budget
_WAIT = ("login-wait",)  # present while every client must wait before its next try


def _on_limiter(operation: Callable[[redis.Redis], _T], *, fallback: _T, unavailable: str) -> _T:
    """Runs ``operation`` on the limiter's Redis; while Redis is unreachable, logs why and returns
    ``fallback``. Failing open keeps the owner able to log in while Redis is down; the scrypt check and
    the UI's delay still slow guessing, and the Monitoring page shows Redis as down."""
    try:
        return operation(get_redis())
    except (redis.RedisError, OSError) as error:
        _logger.warning("login limiter unavailable, %s: %s", unavailable, type(error).__name__)
        return fallback


def _locked_s(client: str | None, settings: Settings) -> int:
    """A known client's own lock (its address is its own: a trusted proxy or the TCP peer said so)."""
    if client is None:
        return 0
    key = _failures_key(client)
    not_counted: tuple[bytes | str | None, int] = (None, 0)
    count, ttl = _on_limiter(lambda r: (r.get(key), r.ttl(key)), fallback=not_counted, unavailable="not enforcing it")
    if count is None or int(count) < settings.login_max_failures:
        return 0
    return max(1, int(ttl))


def _wait_s() -> int:
    key = redis_key(*_WAIT)
    remaining_ms = _on_limiter(lambda r: r.pttl(key), fallback=-2, unavailable="not enforcing the wait")
    return math.ceil(int(remaining_ms) / 1000) if int(remaining_ms) > 0 else 0


def lockout_remaining_s(client: str | None, *, settings: Settings | None = None) -> int:
    """Seconds until ``client`` may try again; 0 when it may (or Redis is unreachable)."""
    return max(_locked_s(client, settings or get_settings()), _wait_s())


def _record_failure(client: str | None, settings: Settings) -> tuple[int, int]:
    """Counts a failure for the client and for everyone; returns both counts. Each window restarts with each
    failure, so failures spread thinly still add up."""
    key, everyone = _failures_key(client), redis_key(*_ALL_FAILURES)
    window = settings.login_lockout_minutes * 60

    def count_failure(connection: redis.Redis) -> tuple[int, int]:
        # redis types pipeline commands as returning their reply; in a pipeline they return the pipeline
        own, _, total, _ = connection.pipeline().incr(key).expire(key, window).incr(  # type: ignore[attr-defined]
            everyone).expire(everyone, window).execute()
        return int(own), int(total)

    return _on_limiter(count_failure, fallback=(0, 0), unavailable="failure not counted")


def _delay_s(client: str | None, own: int, total: int, settings: Settings) -> int:
    """The wait every client gets after this failure: 0 within the budgets, then 1, 2, 4 … s up to the cap."""
    over = total - settings.login_global_free_failures
    if client is None:  # the shared bucket never locks; past its budget it slows everyone down instead
        over = max(over, own - settings.login_max_failures + 1)
    return 0 if over <= 0 else min(settings.login_delay_max_s, 2 ** min(over - 1, 30))


def _start_wait(delay_s: int) -> None:
    key = redis_key(*_WAIT)
    _on_limiter(lambda r: r.set(key, 1, ex=delay_s), fallback=None, unavailable="wait not started")


def clear_failures(client: str | None) -> None:
    _on_limiter(lambda r: r.delete(_failures_key(client)), fallback=None, unavailable="failures not cleared")


def _who(client: str | None) -> str:
    return client or "an unidentified client (localhost, or no trusted proxy named it)"


def attempt_login(password: str, *, client: str | None, settings: Settings | None = None) -> None:
    """Accept the dashboard password or raise :class:`WrongPassword` / :class:`LoginLocked`.

    A locked-out client, or any client while the shared wait runs, is refused before its password is checked,
    so even the right one fails until then; a successful login forgets the client's own failures.
    """
    settings = settings or get_settings()
    if locked := _locked_s(client, settings):
        raise LoginLocked(locked)
    if wait := _wait_s():
        raise LoginThrottled(wait)
    if verify_password(password, settings.ui_password_hash):
        clear_failures(client)
        _logger.info("dashboard login from %s", _who(client))
        return
    own, total = _record_failure(client, settings)
    _logger.warning("failed dashboard login (%d in a row from %s, %d from all clients)", own, _who(client), total)
    if client is not None and own >= settings.login_max_failures:
        _logger.warning("dashboard login locked for %s for %d minutes after %d failures", _who(client),
                        settings.login_lockout_minutes, own)
        raise LoginLocked(settings.login_lockout_minutes * 60)
    if delay := _delay_s(client, own, total, settings):
        _start_wait(delay)
        _logger.warning("dashboard logins paused for every client for %d s (%d failures from all clients, "
                        "%d from %s)", delay, total, own, _who(client))
        raise LoginThrottled(delay)
    raise WrongPassword()


# --- sessions ---------------------------------------------------------------------------------------


def session_expired(*, logged_in_at: float | None, last_seen_at: float | None, now: float | None = None,
                    settings: Settings | None = None) -> bool:
    """True once a session has been idle too long or has lived past its absolute lifetime."""
    settings = settings or get_settings()
    if logged_in_at is None or last_seen_at is None:
        return True  # a session from before lifetimes were recorded: ask again
    now = time.time() if now is None else now
    idle_limit = settings.session_idle_minutes * 60
    lifetime = settings.session_max_hours * 3600
    return now - last_seen_at > idle_limit or now - logged_in_at > lifetime
