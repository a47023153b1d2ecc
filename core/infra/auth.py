"""The dashboard login: password hashing, session lifetimes and failed-login limits.

Passwords are hashed with scrypt (``cryptography``'s KDF, whose ``verify`` compares in
constant time); the stored form is ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``.

Failed logins are counted in Redis per client (its IP address, or one shared bucket when the
server cannot tell clients apart), so the limit holds across browser sessions, tabs and app
processes. The UI only calls :func:`attempt_login` and :func:`session_expired`.
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
    """Too many failures from this client; no password is checked until ``retry_after_s`` has passed."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        minutes = max(1, math.ceil(retry_after_s / 60))
        super().__init__(f"Too many failed logins; try again in {minutes} minute{'s' if minutes > 1 else ''}.")


def _failures_key(client: str | None) -> str:
    return redis_key("login-failures", client or SHARED_CLIENT)


def _on_limiter(operation: Callable[[redis.Redis], _T], *, fallback: _T, unavailable: str) -> _T:
    """Runs ``operation`` on the limiter's Redis; while Redis is unreachable, logs why and returns
    ``fallback``. Failing open keeps the owner able to log in while Redis is down; the scrypt check and
    the UI's delay still slow guessing, and the Monitoring page shows Redis as down."""
    try:
        return operation(get_redis())
    except (redis.RedisError, OSError) as error:
        _logger.warning("login limiter unavailable, %s: %s", unavailable, type(error).__name__)
        return fallback


def lockout_remaining_s(client: str | None, *, settings: Settings | None = None) -> int:
    """Seconds until ``client`` may try again; 0 when it is not locked out (or Redis is unreachable)."""
    settings = settings or get_settings()
    key = _failures_key(client)
    not_counted: tuple[bytes | str | None, int] = (None, 0)
    count, ttl = _on_limiter(lambda r: (r.get(key), r.ttl(key)), fallback=not_counted, unavailable="not enforcing it")
    if count is None or int(count) < settings.login_max_failures:
        return 0
    return max(1, int(ttl))


def _record_failure(client: str | None, settings: Settings) -> int:
    """Counts a failure; the window restarts with each one, so failures spread thinly still add up."""
    key = _failures_key(client)

    def count_failure(connection: redis.Redis) -> int:
        # redis types pipeline commands as returning their reply; in a pipeline they return the pipeline
        count, _ = connection.pipeline().incr(key).expire(  # type: ignore[attr-defined]
            key, settings.login_lockout_minutes * 60).execute()
        return int(count)

    return _on_limiter(count_failure, fallback=0, unavailable="failure not counted")


def clear_failures(client: str | None) -> None:
    _on_limiter(lambda r: r.delete(_failures_key(client)), fallback=None, unavailable="failures not cleared")


def attempt_login(password: str, *, client: str | None, settings: Settings | None = None) -> None:
    """Accept the dashboard password or raise :class:`WrongPassword` / :class:`LoginLocked`.

    A locked-out client is refused before its password is checked, so even the right one fails
    until the lockout ends; a successful login forgets the client's failures.
    """
    settings = settings or get_settings()
    if remaining := lockout_remaining_s(client, settings=settings):
        raise LoginLocked(remaining)
    if verify_password(password, settings.ui_password_hash):
        clear_failures(client)
        return
    failures = _record_failure(client, settings)
    _logger.warning("failed dashboard login (%d in a row from %s)", failures, client or SHARED_CLIENT)
    if failures >= settings.login_max_failures:
        raise LoginLocked(settings.login_lockout_minutes * 60)
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
