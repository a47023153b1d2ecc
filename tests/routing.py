"""Model-aware GPU routing, measured: two gpu-queue workers, two base models, model loads counted.

Each worker is a real Dramatiq worker (its own broker, one thread, prefetch 1, as the gpu group runs)
with its own ``ModelRouter``, presence record and ``PipelineCache`` (one pipeline, as by default).
The two run in this process so that torch loads once; their jobs go through the real gpu actor
(``workers.actors.make_actor``) and the real lifecycle. A probe kind loads the job's tiny base model
through the cache (the real ``from_pretrained`` path, plus an artificial delay standing in for
gigabytes) and renders nothing. Used by tests/test_routing.py and ``bench/queue.py --routing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import dramatiq
from pydantic import Field

from core.jobs import kinds, lifecycle
from core.jobs.kinds import JobSpec, Payload, Queue
from core.jobs.lifecycle import JobContext
from core.jobs.queue import WorkerPresence, make_broker
from core.jobs.routing import ModelRouter
from core.models import TERMINAL_STATUSES, JobStatus

PROBE_KIND = "route-probe"


class ProbePayload(Payload):
    model: str
    family: str
    hold_s: float = Field(default=0.0, ge=0, le=60, description="keep the pipeline this long (a long job)")


@contextmanager
def probe_kind() -> Iterator[None]:
    """Register the probe kind for the block (the catalogue never holds it)."""
    kinds.register(JobSpec(PROBE_KIND, Queue.GPU, ProbePayload, "Loads a base model (routing tests).",
                           max_attempts=1, model_of=lambda payload: payload.model))
    try:
        yield
    finally:
        kinds._REGISTRY.pop(PROBE_KIND, None)


@contextmanager
def slow_loads(delay_s: float) -> Iterator[None]:
    """Every pipeline load takes ``delay_s`` longer, as a real base model's gigabytes would."""
    from workers.ml import generation

    real = generation._load

    def load(*args: Any, **kwargs: Any) -> Any:
        time.sleep(delay_s)
        return real(*args, **kwargs)

    with mock.patch.object(generation, "_load", load):
        yield


@dataclass
class GpuWorker:
    name: str
    wait_s: float
    ran: list[tuple[str, str]] = field(default_factory=list)  # (job id, model) in the order run

    def __post_init__(self) -> None:
        from workers.actors import make_actor
        from workers.ml.generation import PipelineCache

        self.broker = make_broker()
        self.router = ModelRouter(self.name, wait_s=self.wait_s, retry_ms=100)
        self.presence = WorkerPresence([Queue.GPU], 1, worker_id=self.name, models=self.router.held)
        self.router.on_change(self.presence.announce)
        self.cache = PipelineCache(max_size=1, on_change=self.router.hold)
        make_actor(PROBE_KIND, self._handle, self.broker, self.router)
        self.worker = dramatiq.Worker(self.broker, queues={Queue.GPU}, worker_threads=1, worker_timeout=50)
        self.worker.queue_prefetch = 1

    def _handle(self, ctx: JobContext[ProbePayload]) -> dict[str, Any]:
        with self.cache.acquire(ctx.payload.model, ctx.payload.family, device="cpu"):
            self.ran.append((ctx.job_id, ctx.payload.model))
            time.sleep(ctx.payload.hold_s)
        return {"worker": self.name}

    def start(self) -> None:
        self.presence.start()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(timeout=10_000)
        self.presence.stop()
        self.broker.close()


@dataclass
class RoutingRun:
    routing: bool
    jobs: int
    loads: int
    seconds: float
    workers: list[GpuWorker]


def wait_finished(job_id: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := lifecycle.get_job(job_id).status) not in TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s} s")
        time.sleep(0.02)
    return status


@contextmanager
def gpu_workers(wait_s: float, count: int = 2) -> Iterator[list[GpuWorker]]:
    workers = [GpuWorker(f"gpu-{chr(ord('a') + i)}", wait_s) for i in range(count)]
    for worker in workers:
        worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def run_jobs(models: list[tuple[str, str]], *, routing: bool, wait_s: float = 10.0,
             submit: Callable[[str, str], str] | None = None) -> RoutingRun:
    """Run one job per (model, family), one at a time, on two fresh workers; count the pipeline loads."""
    def create(model: str, family: str) -> str:
        return lifecycle.create_job(PROBE_KIND, {"model": model, "family": family}).id

    submit = submit or create
    with gpu_workers(wait_s if routing else 0.0) as workers:
        started = time.perf_counter()
        for model, family in models:
            status = wait_finished(submit(model, family))
            if status != JobStatus.SUCCEEDED:
                raise AssertionError(f"a probe job ended {status}")
        seconds = time.perf_counter() - started
    return RoutingRun(routing=routing, jobs=len(models), loads=sum(w.cache.loads for w in workers),
                      seconds=seconds, workers=workers)


def alternating(tiny_models: dict[str, Path], jobs: int) -> list[tuple[str, str]]:
    """Jobs for two base models (tiny SD 1.5 and tiny SDXL), alternating."""
    pair = [(str(tiny_models["sd15"]), "sd15"), (str(tiny_models["sdxl"]), "sdxl")]
    return [pair[i % 2] for i in range(jobs)]
