"""Request budgets per client over the last minute, kept in Redis (limits' moving window).

A moving window, not a fixed per-minute counter: a client can never send twice its budget by straddling a
minute boundary, and a burst of ``budget + 1`` requests is refused however the clock falls. Redis down: every
request passes (the studio stays usable; the limits return with Redis).
"""

from __future__ import annotations

import math
import time
from functools import lru_cache

import redis
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from core.infra.redis import forget_with_clients, get_redis, redis_key


@lru_cache(maxsize=1)
def _limiter() -> MovingWindowRateLimiter:
    client = get_redis()
    storage = RedisStorage("redis://", connection_pool=client.connection_pool, key_prefix=redis_key("ratelimit"))
    return MovingWindowRateLimiter(storage)


forget_with_clients(_limiter.cache_clear)


def seconds_to_wait(budget: str, client: str, per_minute: int) -> int:
    """0 if this request fits ``client``'s ``budget`` of ``per_minute`` requests in the last 60 s (it is counted),
    else the seconds until it would (it is not counted). Blocking (Redis): call it off the event loop."""
    item = RateLimitItemPerMinute(per_minute)
    try:
        limiter = _limiter()
        if limiter.hit(item, budget, client):
            return 0
        reset_at, _remaining = limiter.get_window_stats(item, budget, client)
    except (redis.RedisError, OSError):
        return 0
    return max(1, math.ceil(reset_at - time.time()))
