"""The catalogue of job kinds: queue, payload schema and limits of each.

Core owns this list so that pages, the webhook and the CLI can validate and enqueue any job
without importing the workers (and so without torch). Workers bind a handler to each kind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.characters.persona import Persona
from core.errors import InvalidInput
from core.training.params import LoraParams
from core.video.options import Aspect, Fit, LoudnessTarget, Motion, SubtitleStyle, Transition


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
    log_each_step: bool = Field(default=False, description="log a line at every step (log streaming tests)")


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


class LoraChoice(Payload):
    """One LoRA version to apply, and how strongly (None: the template's default strength)."""

    lora_id: int = Field(ge=1)
    strength: float | None = Field(default=None, ge=-2.0, le=2.0)


class GeneratePayload(Payload):
    """Generate images from a template, with LoRAs. Fields left empty come from the template; the
    job's stored payload has every value filled in (seed included), so it records exactly what ran."""

    template: str = Field(default="", max_length=80, description="template name; empty: the LoRA family's default")
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    # None: the character's promoted LoRA (if any); []: no LoRA at all.
    loras: list[LoraChoice] | None = Field(default=None, max_length=8)
    character_id: int | None = Field(default=None, ge=1)
    insert_trigger: bool = Field(default=True, description="add each LoRA's trigger word when the prompt lacks it")
    scheduler: str | None = None
    steps: int | None = Field(default=None, ge=1, le=150)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = Field(default=None, ge=64, le=2048)
    height: int | None = Field(default=None, ge=64, le=2048)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="image i uses seed + i; empty: random")
    count: int = Field(default=1, ge=1, le=64)
    batch_size: int | None = Field(default=None, ge=1, le=64)
    init_asset_id: int | None = Field(default=None, ge=1, description="img2img: start from this image asset")
    img2img_strength: float = Field(default=0.6, gt=0.0, le=1.0, description="how far img2img moves from the start")
    collection_id: int | None = Field(default=None, ge=1, description="add the images to this collection")
    # Filled in when the job is created (core.generation.requests.prepare_generate_payload).
    base_model: str | None = Field(default=None, max_length=500)
    family: str | None = Field(default=None, max_length=16)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _no_control_characters(cls, text: str | None) -> str | None:
        # Refused now, not after the GPU work: a NUL breaks PostgreSQL's text column of the image's Asset row.
        if text is not None and any((ord(c) < 0x20 and c not in "\t\n\r") or ord(c) == 0x7F for c in text):
            raise ValueError("must not contain control characters")
        return text


class VideoPayload(Payload):
    """Render a short video from images with a voice-over, subtitles and music. The image list is
    completed when the job is created (a generation job's images become their ids)."""

    image_asset_ids: list[int] = Field(default_factory=list, max_length=60, description="in order")
    generation_job_id: str | None = Field(default=None, max_length=32, description="use this job's images")
    script: str = Field(min_length=1, max_length=5000, description="the voice-over text")
    voice: str = Field(default="", max_length=300, description="'espeak:en-us', 'vits:<model>'; empty: default")
    rate_wpm: int = Field(default=165, ge=80, le=400, description="speaking rate, words per minute")
    aspect: Aspect = "9:16"
    fit: Fit = "crop"
    seconds_per_image: float | None = Field(default=None, ge=0.5, le=30.0)
    total_seconds: float | None = Field(default=None, ge=1.0, le=600.0, description="empty: as long as the voice")
    motion: Motion = "ken_burns"
    transition: Transition = "crossfade"
    transition_seconds: float = Field(default=0.5, ge=0.1, le=2.0)
    fps: int = Field(default=30, ge=15, le=60)
    music_asset_id: int | None = Field(default=None, ge=1, description="an audio asset, looped or trimmed")
    music_gain_db: float = Field(default=-18.0, ge=-40.0, le=0.0)
    subtitles: SubtitleStyle = Field(default_factory=SubtitleStyle)
    loudness: LoudnessTarget = Field(default_factory=LoudnessTarget)
    platforms: list[str] = Field(default_factory=lambda: ["instagram_reels", "youtube_shorts", "tiktok"],
                                 max_length=8, description="check the output against these platforms' specs")
    name: str = Field(default="", max_length=200)


class VoicePreviewPayload(Payload):
    """A few seconds of a voice, to listen to before rendering."""

    voice: str = Field(min_length=1, max_length=300)
    rate_wpm: int = Field(default=165, ge=80, le=400)
    text: str = Field(default="", max_length=300)


class PublishPayload(Payload):
    """Publish one post to its platform (or, as a dry run, record what would be sent)."""

    post_id: int = Field(ge=1)
    dry_run: bool = False


PLATFORMS = ("instagram", "facebook", "youtube", "tiktok")


class PlanPayload(Payload):
    """Plan posts for a date range. With no persona, the character's stored persona is used."""

    character_id: int | None = Field(default=None, ge=1)
    persona: Persona | None = None
    theme: str = Field(min_length=1, max_length=500)
    platforms: list[Literal["instagram", "facebook", "youtube", "tiktok"]] = Field(min_length=1, max_length=4)
    start: date
    end: date
    posts_per_week: int = Field(default=3, ge=1, le=28)
    name: str = Field(default="", max_length=200)
    planner: Literal["auto", "llm", "template"] = "auto"  # auto: the LLM when one is configured


class NotifyPayload(Payload):
    """Deliver one pipeline notification (the outbox row) to its URL, signed."""

    notification_id: int = Field(ge=1)


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
register(JobSpec("caption", Queue.GPU, CaptionPayload, "Auto-captions a dataset's images (BLIP).", time_limit_s=7200,
                 prepare="core.datasets.datasets:prepare_caption_payload"))
register(JobSpec(
    "train", Queue.GPU, TrainPayload, "Trains a LoRA on a dataset (checkpoints, samples, resume).",
    max_attempts=3, time_limit_s=None, prepare="core.training.runs:prepare_train_payload",
))
register(JobSpec(
    "generate", Queue.GPU, GeneratePayload, "Generates images from a template with LoRAs (txt2img or img2img).",
    max_attempts=3, time_limit_s=3600, prepare="core.generation.requests:prepare_generate_payload",
))
register(JobSpec(
    "video", Queue.CPU, VideoPayload, "Renders a short video: motion, voice-over, subtitles, music, loudness.",
    max_attempts=3, time_limit_s=1800, prepare="core.video.requests:prepare_video_payload",
))
register(JobSpec(
    "voice-preview", Queue.CPU, VoicePreviewPayload, "Speaks a short sample with a voice.", max_attempts=1,
    time_limit_s=120, prepare="core.video.requests:prepare_voice_preview",
))
register(JobSpec(
    "publish", Queue.CPU, PublishPayload, "Publishes a post to Instagram, Facebook, YouTube or TikTok (never twice).",
    max_attempts=5, time_limit_s=3600, prepare="core.publishing.posts:prepare_publish_payload",
))
register(JobSpec(
    "plan", Queue.DEFAULT, PlanPayload, "Plans posts from a persona and a theme (an LLM, or the offline planner).",
    max_attempts=3, time_limit_s=900, prepare="core.publishing.planning:prepare_plan_payload",
))
register(JobSpec(
    "notify", Queue.DEFAULT, NotifyPayload, "Delivers a signed pipeline notification (retried with backoff).",
    max_attempts=6, time_limit_s=300,
))
