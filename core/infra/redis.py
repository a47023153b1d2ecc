"""The studio's Redis client, shared by every module that keeps something in Redis.

Job logs, the login limiter, the API's rate limit and worker presence need Redis but not the broker,
so they import this module and never Dramatiq. Every key lives under the settings' namespace
(``redis_key``), so tests and several studios can share one server.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import redis

from core.config import Settings, get_settings

# Caches built on top of the client (the broker) that must be forgotten with it.
_dependent_caches: list[Callable[[], None]] = []


def redis_key(*parts: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return ":".join((settings.redis_namespace, *parts))


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30, decode_responses=False
    )


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return make_redis(get_settings().redis_url)


def forget_with_clients(cache_clear: Callable[[], None]) -> None:
    """Have ``reset_clients`` also clear this cache (one made from the settings' Redis, e.g. the broker)."""
    if cache_clear not in _dependent_caches:
        _dependent_caches.append(cache_clear)


def reset_clients() -> None:
    """Forget cached clients (tests point the settings at other servers)."""
    get_redis.cache_clear()
    for cache_clear in _dependent_caches:
        cache_clear()
