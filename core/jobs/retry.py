"""THE retry policy of jobs: how many attempts a job gets, which failures are worth another one,
and how long to wait before it.

Two layers retry, both decided here:

- **inside a job** (the lifecycle): a handler's transient failure re-queues the job with exponential
  backoff until the kind's attempts are spent; anything else fails the job at once;
- **around a job** (the Dramatiq actor): what failed before the job could record it itself (the
  database or Redis was down when the message was claimed) is redelivered by the broker.
"""

from __future__ import annotations

import redis
from sqlalchemy.exc import OperationalError

from core.config import Settings
from core.errors import TransientError

DEFAULT_MAX_ATTEMPTS = 3  # a kind's attempts unless it names its own
# Redeliveries of a message whose job could not even be claimed; the broker waits between them
# from MIN to MAX, doubling (Dramatiq's Retries middleware applies these per actor).
MAX_DELIVERY_RETRIES = 10
DELIVERY_MIN_BACKOFF_MS = 1_000
DELIVERY_MAX_BACKOFF_MS = 60_000


def is_transient(exc: BaseException) -> bool:
    """Transient failures are retried with backoff; everything else fails the job at once."""
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    # Network errors of the libraries we use, without importing them eagerly.
    module = type(exc).__module__
    return module.startswith(("httpx", "urllib3")) and "Error" in type(exc).__name__ and not isinstance(
        exc, ValueError
    )


def retries_in_job(error: BaseException, attempt: int, max_attempts: int) -> bool:
    """Whether a handler's failure re-queues its job (True) or fails it (False)."""
    return is_transient(error) and attempt < max_attempts


def backoff_s(attempt: int, settings: Settings) -> float:
    """The wait before the attempt after ``attempt``: doubling from the settings' base, capped."""
    return min(settings.job_retry_backoff_s * 2 ** (attempt - 1), settings.job_retry_backoff_max_s)


def max_attempts_for_manual_retry(attempts_made: int, kind_max_attempts: int) -> int:
    """A user's retry grants the kind's attempts afresh; attempts never go back, since the attempt
    number fences stale workers' writes."""
    return attempts_made + kind_max_attempts


def max_attempts_after_hand_back(max_attempts: int) -> int:
    """An attempt interrupted by its worker's shutdown does not count against the job's budget."""
    return max_attempts + 1


def retries_delivery(retries: int, error: BaseException) -> bool:
    """Dramatiq's ``retry_when`` for every actor: redeliver what failed before the job could record it
    (the database or Redis down), a bounded number of times."""
    infrastructure = is_transient(error) or isinstance(error, OperationalError | redis.RedisError)
    return retries < MAX_DELIVERY_RETRIES and infrastructure
