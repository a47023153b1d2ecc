"""Model-aware routing of GPU jobs: a job goes first to a worker that already holds its base model.

Dramatiq gives every consumer of a queue the same messages, first come first served, so routing is a
check at the start of the actor, before the job is claimed (its row stays ``queued``, untouched):

1. the job's kind names the model it needs (``JobSpec.model_of``); no model, no routing;
2. this worker holds it, or no other live gpu worker does: run it here, now;
3. another live gpu worker holds it (or holds nothing at all, while this one holds another model or runs
   a job that loaded one): hand the message back with a short delay (``gpu_routing_retry_ms``) for that
   worker to take;
4. once the job has waited ``gpu_routing_wait_s`` since its first hand-back, any worker runs it, so
   a job never starves behind a busy holder, and a holder that died only costs that wait.

Each gpu worker advertises what it holds in its presence record (``core.jobs.queue.WorkerPresence``,
refreshed every few seconds and at once when its holdings change), from two kinds of source:

- caches that keep a model for the next job (generation's pipeline cache, motion's Wan cache) report
  it with :meth:`ModelRouter.hold`: the record's ``models``, what jobs are routed to;
- a job that loads a model for itself only (a training run: its frozen base carries the run's LoRA
  adapters and is freed at the end) reports it with ``reusable=False``: the record's ``in_use``. No job
  is routed to it, but the worker is not taken for an idle one with an empty GPU.

The hand-back is an ordinary delayed enqueue, so the message index, the reconciler and the claim's
fencing see nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from pydantic import ValidationError

from core.config import get_settings
from core.db import get_or_raise
from core.jobs import queue
from core.jobs.kinds import get_spec
from core.models import Job, JobStatus

_logger = logging.getLogger("studio.jobs.routing")
ROUTED_SINCE = "studio_routed_since"  # message option: when this job was first handed back (epoch s)


class ModelRouter:
    """One per gpu worker: what it holds, and whether a job should wait for another worker."""

    def __init__(self, worker_id: str, *, wait_s: float | None = None, retry_ms: int | None = None) -> None:
        settings = get_settings()
        self.worker_id = worker_id
        self.wait_s = settings.gpu_routing_wait_s if wait_s is None else wait_s
        self.retry_ms = settings.gpu_routing_retry_ms if retry_ms is None else retry_ms
        self._sources: dict[str, frozenset[str]] = {}
        self._reusable: dict[str, bool] = {}
        self._held: frozenset[str] = frozenset()
        self._in_use: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._on_change: list[Callable[[], None]] = []

    # --- what this worker holds ---------------------------------------------------------------------

    def hold(self, models: Iterable[str], *, source: str = "generation", reusable: bool = True) -> None:
        """The models one source of this worker has loaded now (called after each load or eviction);
        ``reusable``: kept for the next job (a cache), else loaded for the running job only."""
        with self._lock:
            self._sources[source] = frozenset(models)
            self._reusable[source] = reusable
            if not self._sources[source]:  # a job's own source ends with its job
                del self._sources[source], self._reusable[source]
            held = frozenset().union(*(m for s, m in self._sources.items() if self._reusable[s]))
            in_use = frozenset().union(*(m for s, m in self._sources.items() if not self._reusable[s]))
            changed = (held, in_use) != (self._held, self._in_use)
            self._held, self._in_use = held, in_use
        if changed:
            for callback in list(self._on_change):
                callback()  # the presence record says it at once, not at its next beat

    def held(self) -> list[str]:
        return sorted(self._held)

    def in_use(self) -> list[str]:
        return sorted(self._in_use - self._held)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._on_change.append(callback)

    # --- the decision -----------------------------------------------------------------------------

    def hand_back(self, job_id: str, options: dict[str, Any]) -> bool:
        """True when this job was handed back for a worker that holds its model (the actor then returns)."""
        if self.wait_s <= 0:
            return False
        try:
            return self._hand_back(job_id, options)
        except (redis.RedisError, OSError):
            return False  # no presence to read or no broker: run it here rather than not at all

    def _hand_back(self, job_id: str, options: dict[str, Any]) -> bool:
        since = float(options.get(ROUTED_SINCE) or time.time())
        if time.time() - since >= self.wait_s:
            return False
        job = get_or_raise(Job, job_id, f"job {job_id!r}")
        if job.status != JobStatus.QUEUED:
            return False  # a redelivery or a finished job: the claim decides, as always
        model = model_of(job)
        if model is None or model in self._held:
            return False
        if not self._someone_else_fits(model):
            return False
        queue.enqueue(job.id, kind=job.kind, queue=job.queue, delay_ms=self.retry_ms, options={ROUTED_SINCE: since})
        _logger.debug("job %s handed back for a worker holding %s", job_id, model)
        return True

    def _someone_else_fits(self, model: str) -> bool:
        others = [w for w in queue.list_workers() if w.id != self.worker_id and "gpu" in w.queues]
        if any(model in w.models for w in others):
            return True
        # Nobody holds it: a worker with nothing loaded should take it rather than this one drop its model
        # (or load a second one next to a training run).
        return bool(self._held or self._in_use) and any(not w.models and not w.in_use for w in others)


def model_of(job: Job) -> str | None:
    """The base model a job needs, as its kind declares it; None for kinds that load none."""
    spec = get_spec(job.kind)
    if spec.model_of is None:
        return None
    try:
        return spec.model_of(spec.payload_model.model_validate(job.payload))
    except ValidationError:
        return None  # the claim fails the job with a clear error; routing has nothing to say


_process_router: ModelRouter | None = None


def install_router(router: ModelRouter | None) -> None:
    """Make ``router`` this process's (the gpu worker process calls it at start)."""
    global _process_router
    _process_router = router


def process_router() -> ModelRouter | None:
    return _process_router


def report_held(models: Iterable[str], *, source: str = "generation", reusable: bool = True) -> None:
    """What a model source of this process holds now; nothing happens outside a gpu worker."""
    if _process_router is not None:
        _process_router.hold(models, source=source, reusable=reusable)
