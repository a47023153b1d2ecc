"""One retry policy for every outbound HTTP call (the LLM client, social platforms, OAuth token endpoints).

Retries 429, 5xx and network errors with exponential backoff and full jitter, honouring
``Retry-After`` (seconds or an HTTP date). A call that is *not idempotent* (a final publish)
is retried only when the server certainly did not act on it: a 429, or a connection that
never opened. A timeout or 5xx on such a call raises :class:`OutcomeUnknown`, and the caller
must find out what happened (see ``workers/social``) instead of sending it again.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from core.errors import TransientError
from core.fields import parse_int

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetriesExhausted(TransientError):
    """The server kept answering 429/5xx (or kept timing out) through every retry."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class OutcomeUnknown(TransientError):
    """A non-idempotent call timed out or got a 5xx: it may or may not have taken effect."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 60.0  # a server asking for a longer wait fails the call (the job retries later)


@dataclass
class Sent:
    response: httpx.Response
    attempts: int


def retry_after_seconds(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if (seconds := parse_int(value)) is not None:
        return float(seconds)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(policy: RetryPolicy, retry: int, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for the retry-th retry (1-based)."""
    ceiling = min(policy.backoff_max_s, policy.backoff_s * 2 ** (retry - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _describe(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
    return f"HTTP {response.status_code} from {where}" + (f": {text[:300]}" if text else "")


def send_with_retries(
    send: Callable[[], httpx.Response],
    *,
    policy: RetryPolicy,
    idempotent: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, str, float], None] | None = None,
) -> Sent:
    """Call ``send`` until it returns a response worth handing back; retry what may succeed later.

    Returns any response that is not retryable (2xx, 4xx but 429) for the caller to interpret.
    ``on_retry(attempt, reason, delay)`` is told about each retry (for job logs).
    """
    attempt = 0
    while True:
        attempt += 1
        retry_reason: str
        wait: float | None = None
        last_status: int | None = None
        try:
            response = send()
        except httpx.ConnectError as error:
            retry_reason = f"could not connect ({error})"
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as error:
            if not idempotent:
                raise OutcomeUnknown(
                    f"{type(error).__name__} during a call that may have taken effect; checking before retrying"
                ) from error
            retry_reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        else:
            if response.status_code not in RETRY_STATUSES:
                return Sent(response, attempt)
            last_status = response.status_code
            retry_reason = _describe(response)
            if response.status_code != 429 and not idempotent:
                raise OutcomeUnknown(f"{retry_reason} (the call may have taken effect; checking before retrying)")
            wait = retry_after_seconds(response)
            if wait is not None and wait > policy.max_retry_after_s:
                raise RetriesExhausted(
                    f"{retry_reason}; the server asks to wait {wait:.0f} s "
                    f"(more than {policy.max_retry_after_s:.0f} s)",
                    status=last_status, attempts=attempt,
                )
        if attempt > policy.max_retries:
            raise RetriesExhausted(f"gave up after {attempt} attempts: {retry_reason}", status=last_status,
                                   attempts=attempt)
        delay = wait if wait is not None else backoff_delay(policy, attempt)
        if on_retry is not None:
            on_retry(attempt, retry_reason, delay)
        sleep(delay)
