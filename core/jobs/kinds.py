"""The job kinds' registry: queue, payload schema, limits and preparation of each kind.

Each domain declares its payload models and registers its kinds (with real prepare functions) in its
own module; ``core.catalogue`` imports every such module, so whoever needs the full catalogue (job
creation, the workers, listings) imports ``core.catalogue`` once at its entry point. This module
knows no domain, so every domain can import it. Workers bind a handler to each kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidInput
from core.jobs.retry import DEFAULT_MAX_ATTEMPTS


class Queue:
    GPU = "gpu"
    CPU = "cpu"
    DEFAULT = "default"

    ALL = (GPU, CPU, DEFAULT)


class Payload(BaseModel):
    """Base for job payloads: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=Payload)


class NoopPayload(Payload):
    """Does nothing; measures the lifecycle's own overhead."""

    note: str = Field(default="", max_length=200)


class SleepPayload(Payload):
    """Sleeps in steps; used to exercise progress, cancel, failures, retries and resume."""

    seconds: float = Field(default=1.0, ge=0, le=3600)
    steps: int = Field(default=10, ge=1, le=10_000)
    fail_at_step: int | None = Field(default=None, ge=0, description="raise a permanent error at this step")
    transient_failures: int = Field(default=0, ge=0, le=10, description="fail transiently on the first N attempts")
    log_each_step: bool = Field(default=False, description="log a line at every step (log streaming tests)")


@dataclass(frozen=True)
class JobSpec(Generic[P]):
    kind: str
    queue: str
    payload_model: type[P]
    description: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # core.jobs.retry retries transient failures up to this
    time_limit_s: int | None = None  # None: no limit (training can take hours)
    # Run when the job is created, after schema validation: it checks what the schema cannot (e.g.
    # that the dataset exists) and fills in defaults, returning (payload, character_id).
    prepare: Callable[[P], tuple[P, int | None]] | None = None
    # The base model a worker must have loaded to run the job (gpu kinds): core.jobs.routing sends the
    # job to a worker that already holds it. The name is the one that worker's model cache reports.
    model_of: Callable[[P], str | None] | None = None
    # The queue for one (prepared) payload when it depends on it (e.g. a model voice goes to the GPU
    # queue when a GPU worker is online); None: always ``queue``. Its actor still runs on any queue.
    route: Callable[[P], str] | None = None

    def queue_for(self, payload: P) -> str:
        queue = self.route(payload) if self.route is not None else self.queue
        if queue not in Queue.ALL:
            raise ValueError(f"job kind {self.kind!r} routed a payload to unknown queue {queue!r}")
        return queue

    def prepare_payload(self, payload: P) -> tuple[P, int | None]:
        if self.prepare is None:
            return payload, None
        return self.prepare(payload)


_REGISTRY: dict[str, JobSpec[Any]] = {}
_catalogue_loaded = False


def register(spec: JobSpec[P]) -> JobSpec[P]:
    if spec.queue not in Queue.ALL:
        raise ValueError(f"unknown queue {spec.queue!r} for job kind {spec.kind!r}")
    _REGISTRY[spec.kind] = spec
    return spec


def mark_catalogue_loaded() -> None:
    """Called by ``core.catalogue`` once every domain has registered its kinds."""
    global _catalogue_loaded
    _catalogue_loaded = True


def _registry() -> dict[str, JobSpec[Any]]:
    # Fail loudly rather than call a kind of a domain nobody imported "unknown".
    if not _catalogue_loaded:
        raise RuntimeError("the job catalogue is not loaded: the program's entry point must import core.catalogue")
    return _REGISTRY


def get_spec(kind: str) -> JobSpec[Any]:
    registry = _registry()
    try:
        return registry[kind]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise InvalidInput(f"unknown job kind {kind!r}; known kinds: {known}") from None


def all_specs() -> list[JobSpec[Any]]:
    return sorted(_registry().values(), key=lambda spec: spec.kind)


register(JobSpec("noop", Queue.DEFAULT, NoopPayload, "Does nothing (health checks, benchmarks).", max_attempts=1))
register(JobSpec("sleep", Queue.CPU, SleepPayload, "Sleeps in steps (tests, demos).", time_limit_s=3600))
