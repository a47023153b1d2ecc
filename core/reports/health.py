"""Reachability of the services the studio depends on, with latency, for the sidebar and /api/health."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core import db
from core.infra.redis import get_redis
from core.infra.storage import get_object_store
from core.jobs import queue


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    latency_ms: float
    detail: str


def _timed(name: str, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
        ok = True
    except Exception as error:  # noqa: BLE001 (any failure means "down"; the type says why)
        detail, ok = f"{type(error).__name__}: {error}"[:300], False
    return Check(name, ok, round((time.perf_counter() - started) * 1000, 1), detail)


def _database() -> str:
    db.ping()
    return db.get_engine().dialect.name


def _redis() -> str:
    get_redis().ping()
    return "ok"


def _storage() -> str:
    store = get_object_store()
    store.ping()
    return type(store).__name__


def _workers() -> str:
    workers = queue.list_workers()
    if not workers:
        raise RuntimeError("no worker is running (start them with `python -m workers run`)")
    queues = sorted({q for w in workers for q in w.queues})
    return f"{len(workers)} process(es) on {', '.join(queues)}"


def check_all(*, include_workers: bool = True) -> list[Check]:
    checks = [_timed("database", _database), _timed("redis", _redis), _timed("storage", _storage)]
    if include_workers:
        checks.append(_timed("workers", _workers))
    return checks
