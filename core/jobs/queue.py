"""The Redis side of the job system: the Dramatiq broker, message tracking and worker presence.

Jobs are enqueued by actor name with a plain ``dramatiq.Message``, so the UI process never
imports the actors (nor torch). The broker is tuned for fast redelivery and pickup: see
``Settings.broker_heartbeat_timeout_ms`` and ``Settings.worker_idle_poll_ms``.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, cast

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
)

from core.config import Settings, get_settings
from core.infra.redis import forget_with_clients, get_redis, make_redis, redis_key
from core.jobs import retry

_MESSAGE_INDEX = "job-message"  # key per job: "queue|redis message id" of its newest message
# Dramatiq refuses delays over 7 days, so a message older than this is gone either way.
_MESSAGE_INDEX_TTL_S = 8 * 24 * 3600
_WORKER_PREFIX = "worker:"


class JobMessageIndex(Middleware):
    """Remembers each job's newest broker message, so the reconciler can tell lost jobs apart.

    Dramatiq gives a message a new Redis id whenever it is re-enqueued (delays, retries), so
    the id is recorded after every enqueue, in Redis itself: if Redis loses its data, the
    index is lost with the messages, which is exactly when the jobs need re-enqueueing.

    The entries are written behind, in order, by one thread per process that sends whatever is
    waiting in one pipeline: an enqueue costs one round trip instead of two (half of what creating a
    job cost in Redis). They land within milliseconds; the reconciler looks only at jobs enqueued
    ``reconcile_grace_s`` ago and flushes this process's entries first. An entry lost with a crashed
    process only makes the reconciler enqueue that job again, which the claim turns into a no-op.
    """

    retry_s = 0.5  # Redis unreachable: the entries wait (in order) for the next try

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.prefix = f"{namespace}:{_MESSAGE_INDEX}:"
        self._pending: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if not message.args:
            return
        value = f"{message.queue_name}|{message.options['redis_message_id']}"
        with self._lock:
            self._pending.append((self.prefix + str(message.args[0]), value))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-message-index", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        """Write the waiting entries now, oldest first (a newer message of a job overwrites an older)."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, value in batch:
                pipe.set(key, value, ex=_MESSAGE_INDEX_TTL_S)
            pipe.execute()
        except BaseException:
            with self._lock:
                self._pending = batch + self._pending
            raise

    def flush_at_exit(self) -> None:
        try:
            self.flush()
        except redis.RedisError:
            pass  # Redis is gone: the reconciler enqueues these jobs again after its grace period

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            try:
                self.flush()
            except redis.RedisError:
                time.sleep(self.retry_s)
                self._wake.set()


def _middleware(client: redis.Redis, namespace: str) -> list[Middleware]:
    # No TimeLimit: training runs for hours; the reconciler enforces each kind's own limit.
    # Retries redelivers what failed before a job could record it itself, per core.jobs.retry (its
    # retry_when decides, so no max_retries); the lifecycle retries a job's own transient failures.
    return [
        AgeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(retry_when=retry.retries_delivery, min_backoff=retry.DELIVERY_MIN_BACKOFF_MS,
                max_backoff=retry.DELIVERY_MAX_BACKOFF_MS),
        CurrentMessage(),
        JobMessageIndex(client, namespace),
    ]


def make_broker(settings: Settings | None = None) -> RedisBroker:
    settings = settings or get_settings()
    client = make_redis(settings.redis_url)
    broker = RedisBroker(
        client=client,
        namespace=f"{settings.redis_namespace}:dramatiq",
        heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
        maintenance_chance=settings.broker_maintenance_chance,
        middleware=[],
    )
    for middleware in _middleware(client, settings.redis_namespace):
        broker.add_middleware(middleware)
        if isinstance(middleware, JobMessageIndex):
            atexit.register(middleware.flush_at_exit)
    return broker


@lru_cache(maxsize=1)
def get_broker() -> RedisBroker:
    broker = make_broker()
    dramatiq.set_broker(broker)
    return broker


forget_with_clients(get_broker.cache_clear)


def enqueue(job_id: str, *, kind: str, queue: str, delay_ms: int | None = None,
            options: dict[str, Any] | None = None) -> dramatiq.Message[Any]:
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=kind, args=(job_id,), kwargs={}, options=dict(options or {})
    )
    return get_broker().enqueue(message, delay=delay_ms)


def _queue_key(queue: str) -> str:
    return f"{get_broker().namespace}:{queue}"


def _index_entries(reply: Any) -> list[bytes | None]:
    # The client does not decode responses (make_redis), so MGET answers bytes or None; its stubs allow str too.
    return cast("list[bytes | None]", reply)


def flush_message_index() -> None:
    """Write this process's waiting message-index entries now (before reading the index)."""
    for middleware in get_broker().middleware:
        if isinstance(middleware, JobMessageIndex):
            middleware.flush()


def messages_present(job_ids: list[str]) -> dict[str, bool]:
    """For each job, whether its newest message still sits in the broker (queued, delayed or in flight)."""
    if not job_ids:
        return {}
    flush_message_index()
    client = get_redis()
    entries = _index_entries(client.mget([redis_key(_MESSAGE_INDEX, job_id) for job_id in job_ids]))
    pipe = client.pipeline(transaction=False)
    checked: list[str] = []
    for job_id, entry in zip(job_ids, entries, strict=True):
        if entry is None:
            continue
        queue, message_id = entry.decode().split("|", 1)
        pipe.hexists(f"{_queue_key(queue)}.msgs", message_id)
        checked.append(job_id)
    found = dict(zip(checked, pipe.execute(), strict=True)) if checked else {}
    return {job_id: bool(found.get(job_id, False)) for job_id in job_ids}


# LREM finds the id only while it waits in the queue's list (not while a worker holds it), so the
# message is moved, never copied.
_TO_FRONT = """
if redis.call("lrem", KEYS[1], 1, ARGV[1]) > 0 then
    redis.call("lpush", KEYS[1], ARGV[1])
    return 1
end
return 0
"""


def move_to_front(job_ids: list[str]) -> list[str]:
    """Put these jobs' waiting messages at the head of their queues; returns the jobs moved.

    Dramatiq hands a dead worker's messages back at the tail of their queue, so under a backlog a
    killed job would wait for every job queued after it. The fetch side pops from the head.
    """
    if not job_ids:
        return []
    flush_message_index()
    client = get_redis()
    script = client.register_script(_TO_FRONT)
    moved: list[str] = []
    entries = _index_entries(client.mget([redis_key(_MESSAGE_INDEX, j) for j in job_ids]))
    for job_id, entry in zip(job_ids, entries, strict=True):
        if entry is None:
            continue
        queue, message_id = entry.decode().split("|", 1)
        if script(keys=[_queue_key(queue)], args=[message_id]):
            moved.append(job_id)
    return moved


# --- worker presence --------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    threads: int
    started_at: float
    last_seen: float
    # GPUs the worker can use, as workers.gpus.GpuInfo dicts (GPU workers only; empty on a CPU machine).
    gpus: list[dict[str, Any]] = field(default_factory=list)
    # Base models the worker has loaded now (core.jobs.routing sends their jobs to it).
    models: list[str] = field(default_factory=list)
    # Models loaded for the running job only (a training run's base): not routed to, but the GPU is not idle.
    in_use: list[str] = field(default_factory=list)

    @property
    def largest_gpu_gib(self) -> float | None:
        return max((gpu["memory_mib"] / 1024 for gpu in self.gpus), default=None)


class WorkerPresence:
    """A worker process announces itself every few seconds under a key that expires."""

    interval_s = 5.0
    ttl_s = 15

    def __init__(self, queues: list[str], threads: int, gpus: list[dict[str, Any]] | None = None, *,
                 worker_id: str | None = None, models: Callable[[], list[str]] | None = None,
                 in_use: Callable[[], list[str]] | None = None) -> None:
        self.models = models or list
        self.in_use = in_use or list
        self.info = WorkerInfo(
            id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(queues),
            threads=threads,
            started_at=time.time(),
            last_seen=time.time(),
            gpus=list(gpus or []),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            get_redis().delete(redis_key(_WORKER_PREFIX + self.info.id))
        except redis.RedisError:
            pass

    def _beat(self) -> None:
        data: dict[str, Any] = {**self.info.__dict__, "last_seen": time.time(), "models": self.models(),
                                "in_use": self.in_use()}
        get_redis().set(redis_key(_WORKER_PREFIX + self.info.id), json.dumps(data), ex=self.ttl_s)

    def announce(self) -> None:
        """Beat now (what the worker holds changed); a failure waits for the next beat."""
        if self._stop.is_set():
            return
        try:
            self._beat()
        except redis.RedisError:
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._beat()
            except redis.RedisError:
                pass  # Redis restarting: the next beat re-announces us
            self._stop.wait(self.interval_s)


_WORKER_FIELDS = frozenset(f.name for f in fields(WorkerInfo))  # tolerate announcements of other versions


def list_workers() -> list[WorkerInfo]:
    client = get_redis()
    keys = sorted(client.scan_iter(match=redis_key(_WORKER_PREFIX + "*"), count=500))
    if not keys:
        return []
    workers = []
    for raw in client.mget(keys):
        if raw:
            known = {name: value for name, value in json.loads(raw).items() if name in _WORKER_FIELDS}
            workers.append(WorkerInfo(**known))
    return workers


def gpu_worker_memory_gib() -> float | None:
    """The largest GPU among online workers that consume the gpu queue; None when none has one."""
    try:
        workers = list_workers()
    except redis.RedisError:
        return None
    sizes = [w.largest_gpu_gib for w in workers if "gpu" in w.queues and w.largest_gpu_gib is not None]
    return max(sizes, default=None)
