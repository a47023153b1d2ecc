"""The catalogue of job kinds: queue, payload schema and limits of each.

Core owns this list so that pages, the webhook and the CLI can validate and enqueue any job
without importing the workers (and so without torch). Workers bind a handler to each kind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidInput
from core.lora_params import LoraParams


class Queue:
    GPU = "gpu"
    CPU = "cpu"
    DEFAULT = "default"

    ALL = (GPU, CPU, DEFAULT)


class Payload(BaseModel):
    """Base for job payloads: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class NoopPayload(Payload):
    """Does nothing; measures the lifecycle's own overhead."""

    note: str = Field(default="", max_length=200)


class SleepPayload(Payload):
    """Sleeps in steps; used to exercise progress, cancel, failures, retries and resume."""

    seconds: float = Field(default=1.0, ge=0, le=3600)
    steps: int = Field(default=10, ge=1, le=10_000)
    fail_at_step: int | None = Field(default=None, ge=0, description="raise a permanent error at this step")
    transient_failures: int = Field(default=0, ge=0, le=10, description="fail transiently on the first N attempts")


class CaptionPayload(Payload):
    """Auto-caption a dataset's images with the caption model (BLIP)."""

    dataset_id: int = Field(ge=1)
    only_uncaptioned: bool = True
    prompt: str = Field(default="", max_length=200, description='conditional prefix, e.g. "a photo of"')
    prepend_trigger: bool = True
    prefix: str = Field(default="", max_length=200)
    suffix: str = Field(default="", max_length=200)
    max_length: int = Field(default=40, ge=5, le=200)
    batch_size: int = Field(default=8, ge=1, le=64)
    model: str | None = Field(default=None, max_length=500, description="hub id or local path; default: settings")


class TrainPayload(Payload):
    """Train a LoRA on a dataset. ``params`` is the snapshot the run uses; when omitted it is
    taken from the config (or the default config) at submission."""

    dataset_id: int = Field(ge=1)
    config_id: int | None = Field(default=None, ge=1)
    params: LoraParams | None = None
    name: str = Field(default="", max_length=200)


@dataclass(frozen=True)
class JobSpec:
    kind: str
    queue: str
    payload_model: type[Payload]
    description: str
    max_attempts: int = 3
    time_limit_s: int | None = None  # None: no limit (training can take hours)
    # "module:function" run when the job is created, after schema validation: it checks what the
    # schema cannot (e.g. that the dataset exists) and fills in defaults, returning
    # (payload, character_id). Named by string so this catalogue imports no services.
    prepare: str | None = None

    def prepare_payload(self, payload: Payload) -> tuple[Payload, int | None]:
        if self.prepare is None:
            return payload, None
        module, _, function = self.prepare.partition(":")
        return getattr(importlib.import_module(module), function)(payload)


_REGISTRY: dict[str, JobSpec] = {}


def register(spec: JobSpec) -> JobSpec:
    if spec.queue not in Queue.ALL:
        raise ValueError(f"unknown queue {spec.queue!r} for job kind {spec.kind!r}")
    _REGISTRY[spec.kind] = spec
    return spec


def get_spec(kind: str) -> JobSpec:
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidInput(f"unknown job kind {kind!r}; known kinds: {known}") from None


def all_specs() -> list[JobSpec]:
    return sorted(_REGISTRY.values(), key=lambda spec: spec.kind)


register(JobSpec("noop", Queue.DEFAULT, NoopPayload, "Does nothing (health checks, benchmarks).", max_attempts=1))
register(JobSpec("sleep", Queue.CPU, SleepPayload, "Sleeps in steps (tests, demos).", time_limit_s=3600))
register(JobSpec("caption", Queue.GPU, CaptionPayload, "Auto-captions a dataset's images (BLIP).", time_limit_s=7200))
register(JobSpec(
    "train", Queue.GPU, TrainPayload, "Trains a LoRA on a dataset (checkpoints, samples, resume).",
    max_attempts=3, time_limit_s=None, prepare="core.training:prepare_train_payload",
))
