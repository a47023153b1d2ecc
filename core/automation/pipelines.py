"""Pipelines: chains of stages that n8n (or a script) starts and polls.

``lora``: training → generation (one image per test prompt) → video (optional) → aggregate.
``content``: planning → production (images, and videos for video platforms, per post) → scheduling.
``demo``: captions → the ``lora`` chain on the tiny models → a draft post (``core.automation.demo`` says what it holds).

A pipeline is a row. Entering a stage writes its jobs (each carrying ``pipeline_id``) in the same
transaction as the stage change, conditioned on the stage it leaves, so two workers finishing the
last two jobs of a stage at once move it on exactly once. Nothing waits in a worker thread: a job's
end calls :func:`pipeline_job_finished` (``core.jobs.lifecycle.on_job_finished``), and the scheduler's tick
(:func:`sweep_pipelines`) covers anything a crash left between two steps. At most
``pipelines_max_running`` run at once; the rest wait, highest priority first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.automation.demo_content import draft_demo_post
from core.characters import characters
from core.characters.likeness import likeness_hold
from core.characters.persona import Persona
from core.characters.scope import owner, scoped
from core.config import get_settings
from core.datasets.datasets import get_dataset
from core.db import affected_rows, session_scope
from core.errors import Conflict, InvalidInput, NotFound, StudioError, describe_validation_error, referenced_by
from core.generation.requests import job_images
from core.jobs import lifecycle as jobs
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.serialize import iso_time
from core.library.assets import download_url, get_asset
from core.models import (
    TERMINAL_STATUSES,
    Job,
    JobStatus,
    LoraConfig,
    LoraModel,
    Pipeline,
    PipelineNotification,
    Post,
    utcnow,
)
from core.pagination import Page, clamp
from core.publishing import posts
from core.publishing.llm import record_calls
from core.publishing.planning import PlanPayload, prepare_plan_payload
from core.publishing.production import start_production
from core.training.configs import get_config, params_of
from core.video.options import Aspect, CaptionMode
from core.video.scripts import persona_for, write_script

_logger = logging.getLogger("studio.pipelines")

DRY_RUN_CONFIG = "Tiny (offline demo)"  # the seeded preset dry runs train with
DRY_RUN_TEMPLATE = "tiny-lora"
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
PRODUCTION_JOB_KINDS = ("generate", "video")  # what production makes for a post (core.publishing.production)


# --- requests -----------------------------------------------------------------------------------------------


class NotifyPayload(Payload):
    """Deliver one pipeline notification (the outbox row) to its URL, signed."""

    notification_id: int = Field(ge=1)


class _Request(BaseModel):
    """camelCase on the wire (n8n's JSON), snake_case here; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    dry_run: bool = False
    notify_url: AnyHttpUrl | None = None
    priority: int = Field(default=5, ge=1, le=10)

    @field_validator("notify_url")
    @classmethod
    def _http_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is not None and url.scheme not in ("http", "https"):
            raise ValueError("must be an http or https URL")
        return url


VIDEO_SCRIPT_MAX = 2000


class VideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    duration_sec: float = Field(default=10.0, ge=1, le=60)
    aspect: Aspect = "9:16"
    # Empty: written from `topic` when given, else the test prompts read aloud.
    script: str = Field(default="", max_length=VIDEO_SCRIPT_MAX)
    topic: str = Field(default="", max_length=300)  # with no script: the script is written from it at creation
    voice: str = Field(default="", max_length=300)
    caption_style: CaptionMode = "lines"  # lines, or word by word: highlight / pop


class LoraPipelineRequest(_Request):
    dataset_id: int = Field(ge=1)
    training_name: str = Field(min_length=1, max_length=200)
    config_id: int | None = Field(default=None, ge=1)
    test_prompts: list[str] = Field(min_length=1, max_length=10)
    generate_video: bool = False
    video_config: VideoConfig = Field(default_factory=VideoConfig)

    @field_validator("test_prompts")
    @classmethod
    def _prompts(cls, prompts: list[str]) -> list[str]:
        cleaned = [p.strip() for p in prompts]
        for index, prompt in enumerate(cleaned):
            if not prompt:
                raise ValueError(f"prompt {index + 1} is empty")
            if len(prompt) > 2000:
                raise ValueError(f"prompt {index + 1} is longer than 2000 characters")
        return cleaned


class ContentPipelineRequest(_Request):
    theme: str = Field(min_length=1, max_length=500)
    platforms: list[Literal["instagram", "facebook", "youtube", "tiktok"]] = Field(min_length=1, max_length=4)
    start: date
    end: date
    posts_per_week: int = Field(default=3, ge=1, le=28)
    persona: Persona | None = None  # None: the character's
    planner: Literal["auto", "llm", "template"] = "auto"
    images_per_post: int = Field(default=1, ge=1, le=4)
    publish_now: bool = False  # publish every produced post at once instead of at its time
    # TikTok forbids a default privacy: whoever starts the pipeline chooses it for its TikTok posts.
    tiktok_privacy_level: Literal["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR",
                                  "SELF_ONLY"] | None = None


class DemoPipelineRequest(LoraPipelineRequest):
    """The one-command demo (``core.automation.demo.start_demo`` fills it): always on the tiny models, always with a
    video. It adds no field, so the lora stages read its payload as a LoraPipelineRequest."""

    @model_validator(mode="after")
    def _always_tiny_with_video(self) -> DemoPipelineRequest:
        self.dry_run = True
        self.generate_video = True
        return self


# "demo" is started by the Home page and the CLI, not the API (api.pipelines lists its own kinds).
REQUESTS: dict[str, type[_Request]] = {"lora": LoraPipelineRequest, "content": ContentPipelineRequest,
                                       "demo": DemoPipelineRequest}


def parse_request(kind: str, body: dict[str, Any]) -> _Request:
    model = REQUESTS.get(kind)
    if model is None:
        raise InvalidInput(f"unknown pipeline kind {kind!r}; known: {', '.join(REQUESTS)}")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


# --- stages -------------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """What a finished stage hands on: results to merge, warnings, or the error that fails the pipeline."""

    results: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    start: Callable[[Pipeline], list[Job]]  # the stage's jobs (unsaved); [] for a stage with no jobs
    finish: Callable[[Pipeline, list[Job]], StageResult]
    applies: Callable[[Pipeline], bool] = lambda _pipeline: True
    busy: Callable[[Pipeline], bool] = lambda _pipeline: False  # more to wait for than its jobs
    weight: float = 1.0  # share of the progress bar
    # On retry: what to run again besides the stage's failed jobs (production restarts failed posts).
    resume: Callable[[Pipeline], Any] | None = None
    # Ids of the jobs the stage's own code made besides those ``start`` returned (production's generations
    # and videos, scheduling's publish jobs), so the status document lists every job a stage ran.
    made: Callable[[Pipeline], list[str]] = lambda _pipeline: []


def _job_error(job: Job) -> str:
    return job.error or f"job {job.id[:8]} {job.status}"


# lora: training ------------------------------------------------------------------------------------------------


def _dry_run_config_id() -> int:
    with session_scope() as session:
        config = session.execute(select(LoraConfig).where(col(LoraConfig.name) == DRY_RUN_CONFIG)).scalar_one_or_none()
    if config is None:
        raise InvalidInput(f"dry runs train with the {DRY_RUN_CONFIG!r} preset, which is missing")
    return config.id or 0


# A dry run proves the chain, not the LoRA: fewer steps, no sample renders, one checkpoint.
DRY_RUN_OVERRIDES = {"steps": 30, "sample_every": 0, "checkpoint_every": 30}


def _start_training(pipeline: Pipeline) -> list[Job]:
    request = LoraPipelineRequest.model_validate(pipeline.payload)
    payload: dict[str, Any] = {"dataset_id": request.dataset_id, "config_id": request.config_id,
                               "name": request.training_name}
    if pipeline.dry_run:
        payload["config_id"] = _dry_run_config_id()
        preset = params_of(get_config(payload["config_id"])).model_dump(mode="json")
        payload["params"] = {**preset, **DRY_RUN_OVERRIDES}
    return [jobs.new_job("train", payload, pipeline_id=pipeline.id, character_id=pipeline.character_id)]


def _finish_training(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    [train] = stage_jobs
    if train.status != JobStatus.SUCCEEDED:
        return StageResult(error=_job_error(train))
    with session_scope() as session:
        lora = session.execute(select(LoraModel).where(col(LoraModel.job_id) == train.id)
                               .order_by(col(LoraModel.final).desc(), col(LoraModel.step).desc()).limit(1)
                               ).scalar_one_or_none()
    if lora is None:
        return StageResult(error=f"training job {train.id[:8]} saved no LoRA")
    return StageResult(results={"loraId": lora.id, "loraName": lora.name, "loraStep": lora.step,
                                "recommended": _recommended(train)})


def _recommended(train: Job) -> dict[str, Any] | None:
    """The checkpoint the run recommends by likeness (None when its samples were not scored)."""
    found = (train.result or {}).get("recommended")
    if not found:
        return None
    return {"loraId": found.get("lora_id"), "step": found.get("step"), "faceDistance": found.get("distance"),
            "nearestTrainingDistance": found.get("nearest_training_distance"), "reason": found.get("reason"),
            "promoted": bool(found.get("promoted"))}


# lora: generation ----------------------------------------------------------------------------------------------


def _start_generation(pipeline: Pipeline) -> list[Job]:
    request = LoraPipelineRequest.model_validate(pipeline.payload)
    lora_id = pipeline.results["training"]["loraId"]
    template = DRY_RUN_TEMPLATE if pipeline.dry_run else ""
    return [jobs.new_job("generate", {"prompt": prompt, "count": 1, "template": template,
                                      "loras": [{"lora_id": lora_id}]}, pipeline_id=pipeline.id,
                         character_id=pipeline.character_id)
            for prompt in request.test_prompts]


def _finish_generation(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    images: list[int] = []
    warnings = []
    for index, job in enumerate(stage_jobs, start=1):
        made = [a.id for a in job_images(job.id) if a.id is not None] if job.status == JobStatus.SUCCEEDED else []
        if made:
            images += made
        else:
            warnings.append(f"test prompt {index} ({job.payload.get('prompt', '')[:60]!r}) made no image: "
                            f"{_job_error(job)}")
    if not images:
        return StageResult(warnings=warnings, error="no test prompt made an image")
    return StageResult(results={"imageAssetIds": images}, warnings=warnings)


# lora: video ------------------------------------------------------------------------------------------------------


def _start_video(pipeline: Pipeline) -> list[Job]:
    request = LoraPipelineRequest.model_validate(pipeline.payload)
    video = request.video_config
    script = video.script or ". ".join(request.test_prompts)
    payload: dict[str, Any] = {"image_asset_ids": pipeline.results["generation"]["imageAssetIds"],
                               "script": script[:5000], "aspect": video.aspect, "total_seconds": video.duration_sec,
                               "name": request.training_name, "subtitles": {"mode": video.caption_style}}
    if video.voice:
        payload["voice"] = video.voice
    return [jobs.new_job("video", payload, pipeline_id=pipeline.id, character_id=pipeline.character_id)]


def _finish_video(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    [video] = stage_jobs
    if video.status != JobStatus.SUCCEEDED:
        return StageResult(error=_job_error(video))
    assert video.result is not None  # a succeeded job recorded its result
    return StageResult(results={"videoAssetId": video.result["video_asset_id"],
                                "duration": video.result.get("duration"),
                                "loudness": video.result.get("loudness")})


def _wants_video(pipeline: Pipeline) -> bool:
    return bool(pipeline.payload.get("generate_video"))


# demo: captions and the draft post ----------------------------------------------------------------------------


def _start_captions(pipeline: Pipeline) -> list[Job]:
    request = DemoPipelineRequest.model_validate(pipeline.payload)
    return [jobs.new_job("caption", {"dataset_id": request.dataset_id}, pipeline_id=pipeline.id,
                         character_id=pipeline.character_id)]


def _finish_captions(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    [caption] = stage_jobs
    if caption.status != JobStatus.SUCCEEDED:
        return StageResult(error=_job_error(caption))
    return StageResult(results={"captioned": (caption.result or {}).get("captioned")})


def _finish_post(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    """Draft the post with the video. Safe to run twice (the sweep and a job's end may both get here):
    the post id is claimed in the pipeline's results, and a loser removes its own post."""

    existing = get_pipeline(pipeline.id).results.get("post", {}).get("postId")
    if existing is not None:
        return StageResult(results={"postId": existing})
    video_id = pipeline.results.get("video", {}).get("videoAssetId")
    if video_id is None:
        return StageResult(error="the video stage handed on no video to post")
    try:
        post = draft_demo_post(video_asset_id=int(video_id))
    except StudioError as error:
        return StageResult(error=f"the draft post was refused: {error}")
    winner = _claim_result(pipeline.id, "post", "postId", post.id)
    if winner != post.id:
        posts.delete_post(post.id or 0)
    return StageResult(results={"postId": winner})


def _claim_result(pipeline_id: str, stage: str, name: str, value: Any) -> Any:
    """Write ``results[stage][name] = value`` unless it is set; returns the value that stands.
    Conditioned on ``updated_at`` so of two concurrent writers exactly one wins."""
    for _attempt in range(5):
        current = get_pipeline(pipeline_id)
        stands = current.results.get(stage, {}).get(name)
        if stands is not None:
            return stands
        results = {**current.results, stage: {**current.results.get(stage, {}), name: value}}
        with session_scope() as session:
            written = affected_rows(session.execute(update(Pipeline).where(
                col(Pipeline.id) == pipeline_id, col(Pipeline.updated_at) == current.updated_at,
            ).values(results=results, updated_at=utcnow())))
        if written:
            return value
    raise Conflict(f"pipeline {pipeline_id} kept changing while its {stage} result was written")


# content: planning -------------------------------------------------------------------------------------------------


def _start_planning(pipeline: Pipeline) -> list[Job]:
    request = ContentPipelineRequest.model_validate(pipeline.payload)
    plan = {"theme": request.theme, "platforms": request.platforms, "start": request.start.isoformat(),
            "end": request.end.isoformat(), "posts_per_week": request.posts_per_week,
            "planner": "template" if pipeline.dry_run else request.planner}
    if request.persona is not None:
        plan["persona"] = request.persona.model_dump()
    if pipeline.character_id is not None:
        plan["character_id"] = pipeline.character_id  # the persona, trigger word and posts are the character's
    return [jobs.new_job("plan", plan, pipeline_id=pipeline.id, character_id=pipeline.character_id)]


def _finish_planning(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    [plan_job] = stage_jobs
    if plan_job.status != JobStatus.SUCCEEDED:
        return StageResult(error=_job_error(plan_job))
    assert plan_job.result is not None  # a succeeded job recorded its result
    plan_id = plan_job.result["plan_id"]
    with session_scope() as session:
        post_ids = session.execute(select(col(Post.id)).where(col(Post.plan_id) == plan_id)
                                   .order_by(col(Post.scheduled_at))).scalars().all()
    return StageResult(results={"planId": plan_id, "postIds": list(post_ids)})


# content: production -----------------------------------------------------------------------------------------------


def _posts_of(pipeline: Pipeline) -> list[Post]:
    ids = pipeline.results.get("planning", {}).get("postIds", [])
    if not ids:
        return []
    with session_scope() as session:
        return list(session.execute(
            select(Post).where(col(Post.id).in_(ids)).order_by(col(Post.scheduled_at))).scalars())


def _start_production(pipeline: Pipeline) -> list[Job]:
    # Production writes its own jobs (and chains videos itself); the stage follows the posts.
    request = ContentPipelineRequest.model_validate(pipeline.payload)
    template = DRY_RUN_TEMPLATE if pipeline.dry_run else ""
    for post in _posts_of(pipeline):
        if post.production_status != "ready":
            start_production(post, count=request.images_per_post, template=template, pipeline_id=pipeline.id)
    return []


def _production_job_ids(pipeline: Pipeline) -> list[str]:
    """Every generation and video production made for the pipeline's posts, oldest first: a retry's new
    jobs and the failed ones they replace alike (no other content stage makes these kinds)."""
    with session_scope() as session:
        return list(session.execute(select(col(Job.id)).where(col(Job.pipeline_id) == pipeline.id,
                                                              col(Job.kind).in_(PRODUCTION_JOB_KINDS))
                                    .order_by(col(Job.created_at), col(Job.id))).scalars())


def _producing(pipeline: Pipeline) -> bool:
    return any(post.production_status == "producing" for post in _posts_of(pipeline))


def _finish_production(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    made = [post for post in _posts_of(pipeline)]
    ready = [post.id for post in made if post.production_status == "ready"]
    warnings = [f"post {post.id} ({post.platform}) has no media: {post.error or 'production failed'}"
                for post in made if post.production_status != "ready"]
    if not ready:
        return StageResult(warnings=warnings, error="no post got its media")
    return StageResult(results={"readyPostIds": ready}, warnings=warnings)


# content: scheduling ------------------------------------------------------------------------------------------------


def _finish_scheduling(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    request = ContentPipelineRequest.model_validate(pipeline.payload)
    done: list[int] = []
    publish_jobs: list[str] = []
    warnings = []
    held: list[dict[str, Any]] = []
    for post_id in pipeline.results.get("production", {}).get("readyPostIds", []):
        if hold := likeness_hold(posts.get_post(post_id).asset_ids):
            held.append({"postId": post_id, **hold})  # stays a draft: a person reviews it on the calendar
            warnings.append(f"post {post_id} is held for review: {hold['reason']}")
            continue
        try:
            post = posts.get_post(post_id)
            if post.platform == "tiktok" and request.tiktok_privacy_level and not post.options.get("privacy_level"):
                posts.update_post(post_id, options={**post.options, "privacy_level": request.tiktok_privacy_level})
            if request.publish_now:
                publish_jobs.append(posts.publish_now(post_id).id)
            else:
                planned = post.scheduled_at
                scheduled = posts.schedule_post(post_id, defer_over_cap=True)  # over a cap: later, not failed
                if scheduled.scheduled_at != planned:
                    warnings.append(f"post {post_id} ({post.platform}) moved to "
                                    f"{jobs.aware(scheduled.scheduled_at).isoformat(timespec='minutes')}: "
                                    "its account's daily cap was full")
            done.append(post_id)
        except StudioError as error:
            warnings.append(f"post {post_id} was not scheduled: {error}")
    if not done and not held:
        return StageResult(warnings=warnings, error="no post could be scheduled")
    return StageResult(results={"scheduledPostIds": done, "publishJobIds": publish_jobs, "heldPosts": held},
                       warnings=warnings)


def _publish_job_ids(pipeline: Pipeline) -> list[str]:
    ids: list[str] = pipeline.results.get("scheduling", {}).get("publishJobIds", [])
    return ids


# lora: aggregate ----------------------------------------------------------------------------------------------------


def _finish_aggregate(pipeline: Pipeline, stage_jobs: list[Job]) -> StageResult:
    return StageResult(results={"summary": summary(pipeline)})


def _no_jobs(_pipeline: Pipeline) -> list[Job]:
    return []


STAGES: dict[str, list[Stage]] = {
    "lora": [
        Stage("training", _start_training, _finish_training, weight=6),
        Stage("generation", _start_generation, _finish_generation, weight=2),
        Stage("video", _start_video, _finish_video, applies=_wants_video, weight=2),
        Stage("aggregate", _no_jobs, _finish_aggregate, weight=0.1),
    ],
    "content": [
        Stage("planning", _start_planning, _finish_planning, weight=1),
        Stage("production", _start_production, _finish_production, busy=_producing, weight=6,
              resume=_start_production, made=_production_job_ids),
        Stage("scheduling", _no_jobs, _finish_scheduling, weight=0.5, made=_publish_job_ids),
    ],
    # Weights follow the stage times measured on 2 CPU cores (the 9:16 render dominates).
    "demo": [
        Stage("captions", _start_captions, _finish_captions, weight=1),
        Stage("training", _start_training, _finish_training, weight=4),
        Stage("generation", _start_generation, _finish_generation, weight=3),
        Stage("video", _start_video, _finish_video, weight=8),
        Stage("post", _no_jobs, _finish_post, weight=0.2),
    ],
}


def _stages(pipeline: Pipeline) -> list[Stage]:
    return [stage for stage in STAGES[pipeline.kind] if stage.applies(pipeline)]


def _stage(pipeline: Pipeline, name: str) -> Stage:
    return next(stage for stage in STAGES[pipeline.kind] if stage.name == name)


def _next_stage(pipeline: Pipeline, name: str | None) -> Stage | None:
    stages = _stages(pipeline)
    if name is None:
        return stages[0]
    names = [stage.name for stage in stages]
    index = names.index(name) + 1
    return stages[index] if index < len(stages) else None


# --- creating, reading --------------------------------------------------------------------------------------------


def _request_hash(kind: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([kind, body], sort_keys=True, default=str).encode()).hexdigest()


def _check_references(kind: str, request: _Request, character_id: int | None) -> int:
    """What the schema cannot see: the dataset (the character's own), config and (for dry runs) the tiny preset
    must exist. Returns the pipeline's character: the one named, else the dataset's, else the default."""
    if isinstance(request, LoraPipelineRequest):
        with referenced_by("datasetId"):
            dataset = get_dataset(request.dataset_id)
        if character_id is not None and dataset.character_id not in (None, character_id):
            raise InvalidInput(f"datasetId: dataset {dataset.name!r} belongs to another character")
        character_id = character_id if character_id is not None else dataset.character_id
        if dataset.image_count == 0:
            raise InvalidInput(f"datasetId: dataset {dataset.name!r} has no images to train on")
        if request.config_id is not None:
            with referenced_by("configId"):
                get_config(request.config_id)
        if request.dry_run:
            _dry_run_config_id()
    elif isinstance(request, ContentPipelineRequest):
        # The plan job's own checks (dates, platforms, an LLM when asked for), now rather than at its stage.

        prepare_plan_payload(PlanPayload(theme=request.theme, platforms=request.platforms, start=request.start,
                                         end=request.end, posts_per_week=request.posts_per_week,
                                         persona=request.persona,
                                         planner="template" if request.dry_run else request.planner))
    return character_id if character_id is not None else characters.default_character().id or 0


def _write_video_script(request: _Request) -> _Request:
    """A lora pipeline's video with a topic and no script gets its script now, in the dataset's character's
    persona and sized to the video (the LLM when configured, else the offline template; a dry run never calls
    out), so the stored request holds the words the video will speak."""
    if not isinstance(request, LoraPipelineRequest) or not request.generate_video:
        return request
    video = request.video_config
    if video.script.strip() or not video.topic.strip():
        return request
    persona, _ = persona_for(get_dataset(request.dataset_id).character_id)
    written = write_script(topic=video.topic, persona=persona, seconds=video.duration_sec,
                           writer="template" if request.dry_run else "auto")
    record_calls(written.calls, job_id=None, purpose="script")
    script = written.script[:VIDEO_SCRIPT_MAX]
    return request.model_copy(update={"video_config": video.model_copy(update={"script": script})})


def create_pipeline(kind: str, body: dict[str, Any], *, idempotency_key: str | None = None,
                    character_id: int | None = None) -> tuple[Pipeline, bool]:
    """Validate and queue a pipeline for a character (named, else the scope's, the dataset's or the default);
    returns it and whether it is new. A repeated Idempotency-Key returns the first pipeline (the same body) or
    is refused (a different body)."""
    request = parse_request(kind, body)
    request_hash = _request_hash(kind, request.model_dump(mode="json"))
    key = (idempotency_key or "").strip() or None
    if key is not None and len(key) > 200:
        raise InvalidInput("Idempotency-Key: at most 200 characters")
    if key is not None:
        existing = _by_key(key)
        if existing is not None:
            return _same_request(existing, request_hash), False
    owner_id = _check_references(kind, request, owner(character_id))
    request = _write_video_script(request)
    pipeline = Pipeline(kind=kind, character_id=owner_id, payload=request.model_dump(mode="json"),
                        priority=request.priority,
                        dry_run=request.dry_run, notify_url=str(request.notify_url) if request.notify_url else None,
                        idempotency_key=key, request_hash=request_hash)
    try:
        with session_scope() as session:
            session.add(pipeline)
    except IntegrityError:  # the same key, sent twice at once: the other request won
        existing = _by_key(key or "")
        if existing is None:
            raise
        return _same_request(existing, request_hash), False
    notify(pipeline.id, "pipeline.queued")
    start_waiting_pipelines()
    return get_pipeline(pipeline.id), True


def find_by_key(key: str | None) -> Pipeline | None:
    """The pipeline an Idempotency-Key already started, if any."""
    return _by_key(key.strip()) if key and key.strip() else None


def _by_key(key: str) -> Pipeline | None:
    with session_scope() as session:
        return session.execute(select(Pipeline).where(col(Pipeline.idempotency_key) == key)).scalar_one_or_none()


def _same_request(existing: Pipeline, request_hash: str) -> Pipeline:
    if existing.request_hash != request_hash:
        raise Conflict("Idempotency-Key was already used for a different request")
    return existing


def get_pipeline(pipeline_id: str) -> Pipeline:
    with session_scope() as session:
        pipeline = session.get(Pipeline, pipeline_id)
    if pipeline is None:
        raise NotFound(f"pipeline {pipeline_id!r} does not exist")
    return pipeline


def list_pipelines(*, statuses: list[str] | None = None, kinds: list[str] | None = None, page: int = 1,
                   page_size: int = 20) -> Page[Pipeline]:
    page, page_size = clamp(page, page_size, max_page_size=100)
    query = select(Pipeline)
    if statuses:
        query = query.where(col(Pipeline.status).in_(statuses))
    if kinds:
        query = query.where(col(Pipeline.kind).in_(kinds))
    query = scoped(query, col(Pipeline.character_id))
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        items = list(session.execute(query.order_by(col(Pipeline.created_at).desc(), col(Pipeline.id).desc())
                                     .offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items, total, page, page_size)


# --- running --------------------------------------------------------------------------------------------------------


def _running_count_guard(session: Any) -> None:
    """PostgreSQL: serialise starts, so two processes never both see a free slot (SQLite's writes are serial)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(731100)"))


def start_waiting_pipelines() -> list[str]:
    """Start queued pipelines while fewer than ``pipelines_max_running`` run (priority, then age)."""
    limit = get_settings().pipelines_max_running
    started: list[str] = []
    while True:
        with session_scope() as session:
            _running_count_guard(session)
            running = session.execute(select(func.count()).select_from(Pipeline)
                                      .where(col(Pipeline.status) == JobStatus.RUNNING)).scalar_one()
            if running >= limit:
                break
            next_id = session.execute(select(col(Pipeline.id)).where(col(Pipeline.status) == JobStatus.QUEUED)
                                      .order_by(col(Pipeline.priority).desc(), col(Pipeline.created_at))
                                      .limit(1)).scalar_one_or_none()
            if next_id is None:
                break
            session.execute(update(Pipeline)
                            .where(col(Pipeline.id) == next_id, col(Pipeline.status) == JobStatus.QUEUED)
                            .values(status=JobStatus.RUNNING, started_at=utcnow(), updated_at=utcnow()))
        started.append(next_id)
        pipeline = get_pipeline(next_id)
        notify(next_id, "pipeline.started")
        if pipeline.stage is None:
            _enter(next_id, _next_stage(pipeline, None), leaving=None)
        else:
            _resume(pipeline)
    return started


def _resume(pipeline: Pipeline) -> None:
    """A retried pipeline continues its stage: the stage starts again if its jobs were never made,
    else its failed or cancelled jobs run again (training from its checkpoint)."""
    stage = _stage(pipeline, pipeline.stage or "")
    if "jobIds" not in pipeline.results.get(stage.name, {}):
        _enter(pipeline.id, stage, leaving=stage.name)
        return
    for job in _stage_jobs(pipeline, stage.name):
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            jobs.retry_job(job.id)
    if stage.resume is not None:
        stage.resume(pipeline)
    advance_pipeline(pipeline.id)


def _enter(pipeline_id: str, stage: Stage | None, *, leaving: str | None,
           handed: StageResult | None = None) -> None:
    """Move from ``leaving`` to ``stage`` (None: the end), merging what the finished stage handed on."""
    pipeline = get_pipeline(pipeline_id)
    results = dict(pipeline.results)
    warnings = list(pipeline.warnings)
    if handed is not None and leaving is not None:
        results[leaving] = {**results.get(leaving, {}), **handed.results}
        warnings += handed.warnings
    if stage is None:
        _finish(pipeline_id, leaving=leaving, status=JobStatus.SUCCEEDED, results=results, warnings=warnings)
        return
    pipeline.results, pipeline.warnings = results, warnings
    try:
        new_jobs = stage.start(pipeline)
    except StudioError as error:
        _finish(pipeline_id, leaving=leaving, status=JobStatus.FAILED, results=results, warnings=warnings,
                error=str(error), error_stage=stage.name)
        return
    results[stage.name] = {**results.get(stage.name, {}), "jobIds": [job.id for job in new_jobs]}
    with session_scope() as session:
        moved = affected_rows(session.execute(update(Pipeline).where(*_still_at(pipeline_id, leaving)).values(
            stage=stage.name, results=results, warnings=warnings, updated_at=utcnow(),
            progress=_progress(pipeline, stage.name))))
        if not moved:
            return  # another process moved it on first (its jobs are the ones that count)
        session.add_all(new_jobs)
    for job in new_jobs:
        jobs.enqueue_new(job)
    notify(pipeline_id, "stage.started")
    if not new_jobs:
        advance_pipeline(pipeline_id)


def _still_at(pipeline_id: str, stage: str | None) -> list[Any]:
    at = col(Pipeline.stage).is_(None) if stage is None else col(Pipeline.stage) == stage
    return [Pipeline.id == pipeline_id, Pipeline.status == JobStatus.RUNNING, at]


def _progress(pipeline: Pipeline, current: str, fraction: float = 0.0) -> float:
    stages = _stages(pipeline)
    total = sum(stage.weight for stage in stages) or 1.0
    done = 0.0
    for stage in stages:
        if stage.name == current:
            return round((done + stage.weight * fraction) / total, 4)
        done += stage.weight
    return 1.0


def _finish(pipeline_id: str, *, leaving: str | None, status: JobStatus, results: dict[str, Any],
            warnings: list[str], error: str | None = None, error_stage: str | None = None) -> None:
    values: dict[str, Any] = {"status": status, "results": results, "warnings": warnings, "error": error,
                              "error_stage": error_stage, "finished_at": utcnow(), "updated_at": utcnow()}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    with session_scope() as session:
        moved = affected_rows(session.execute(
            update(Pipeline).where(*_still_at(pipeline_id, leaving)).values(**values)))
    if moved:
        notify(pipeline_id, f"pipeline.{status}")
        start_waiting_pipelines()


def _stage_jobs(pipeline: Pipeline, name: str) -> list[Job]:
    ids = pipeline.results.get(name, {}).get("jobIds", [])
    if not ids:
        return []
    with session_scope() as session:
        found = {job.id: job for job in session.execute(select(Job).where(col(Job.id).in_(ids))).scalars()}
    return [found[job_id] for job_id in ids if job_id in found]


def advance_pipeline(pipeline_id: str) -> None:
    """If the current stage's work is done, hand its results on to the next stage (or finish)."""
    pipeline = get_pipeline(pipeline_id)
    if pipeline.status != JobStatus.RUNNING:
        return
    if pipeline.stage is None:
        # Marked running, but the process starting it (the app, at the API's request) died before its first stage
        # was written: it would stay running with no jobs, and hold a running slot, for ever. Entering the stage is
        # conditioned on there being none yet, so the starter, if alive after all, and this sweep make it once.
        _enter(pipeline_id, _next_stage(pipeline, None), leaving=None)
        return
    stage = _stage(pipeline, pipeline.stage)
    stage_jobs = _stage_jobs(pipeline, stage.name)
    finished = [job for job in stage_jobs if job.status in TERMINAL_STATUSES]
    if len(finished) < len(stage_jobs) or stage.busy(pipeline):
        fraction = len(finished) / len(stage_jobs) if stage_jobs else 0.0
        with session_scope() as session:
            session.execute(update(Pipeline).where(*_still_at(pipeline_id, stage.name))
                            .values(progress=_progress(pipeline, stage.name, fraction), updated_at=utcnow()))
        return
    outcome = stage.finish(pipeline, stage_jobs)
    if outcome.error is not None:
        results = {**pipeline.results, stage.name: {**pipeline.results.get(stage.name, {}), **outcome.results,
                                                    "failedWarnings": outcome.warnings}}  # a retry drops them
        _finish(pipeline_id, leaving=stage.name, status=JobStatus.FAILED, results=results,
                warnings=[*pipeline.warnings, *outcome.warnings], error=outcome.error, error_stage=stage.name)
        return
    _enter(pipeline_id, _next_stage(pipeline, stage.name), leaving=stage.name, handed=outcome)


def pipeline_job_finished(job_id: str, status: str) -> None:
    """The job-finished listener: a pipeline's job ended, so its stage may be done."""
    pipeline_id = jobs.get_job(job_id).pipeline_id
    if pipeline_id is not None:
        advance_pipeline(pipeline_id)


def sweep_pipelines(*, limit: int = 200) -> None:
    """The scheduler's safety net: advance running pipelines and start waiting ones."""
    with session_scope() as session:
        running = session.execute(select(col(Pipeline.id)).where(col(Pipeline.status) == JobStatus.RUNNING)
                                  .order_by(col(Pipeline.updated_at)).limit(limit)).scalars().all()
    for pipeline_id in running:
        try:
            advance_pipeline(pipeline_id)
        except Exception:  # one broken pipeline must not stall the others
            _logger.warning("could not advance pipeline %s", pipeline_id, exc_info=True)
    start_waiting_pipelines()


# --- cancel and retry ---------------------------------------------------------------------------------------------


def cancel_pipeline(pipeline_id: str) -> Pipeline:
    pipeline = get_pipeline(pipeline_id)
    if pipeline.status in TERMINAL_STATUSES:
        raise Conflict(f"pipeline {pipeline_id} already {pipeline.status}; nothing to cancel")
    with session_scope() as session:
        active = session.execute(select(col(Job.id))
                                 .where(col(Job.pipeline_id) == pipeline_id, col(Job.status).in_(ACTIVE))
                                 ).scalars().all()
        session.execute(update(Pipeline).where(col(Pipeline.id) == pipeline_id,
                                               col(Pipeline.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                        .values(status=JobStatus.CANCELLED, finished_at=utcnow(), updated_at=utcnow(),
                                error_stage=pipeline.stage))
    for job_id in active:
        try:
            jobs.cancel_job(job_id)
        except Conflict:
            pass  # it finished meanwhile
    notify(pipeline_id, "pipeline.cancelled")
    start_waiting_pipelines()
    return get_pipeline(pipeline_id)


def retry_pipeline(pipeline_id: str) -> Pipeline:
    """Resume a failed or cancelled pipeline from the stage that stopped it; finished stages are not
    repeated. It queues again and continues when a slot is free (see :func:`_resume`)."""
    pipeline = get_pipeline(pipeline_id)
    if pipeline.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise Conflict(f"only failed or cancelled pipelines can be retried; pipeline {pipeline_id} is "
                       f"{pipeline.status}")
    at = pipeline.error_stage or pipeline.stage
    # The failed attempt's warnings go: the retried stage reports its own again when it finishes.
    results, stale = dict(pipeline.results), []
    if at is not None and at in results:
        results[at] = {key: value for key, value in results[at].items() if key != "failedWarnings"}
        stale = pipeline.results[at].get("failedWarnings", [])
    warnings = [warning for warning in pipeline.warnings if warning not in stale]
    with session_scope() as session:
        session.execute(update(Pipeline).where(col(Pipeline.id) == pipeline_id, col(Pipeline.status) == pipeline.status)
                        .values(status=JobStatus.QUEUED, error=None, error_stage=None, finished_at=None,
                                updated_at=utcnow(), stage=at, results=results, warnings=warnings))
    notify(pipeline_id, "pipeline.retried")
    start_waiting_pipelines()
    return get_pipeline(pipeline_id)


# --- notifications ---------------------------------------------------------------------------------------------


def lora_file_paths(lora_id: int) -> dict[str, str]:
    """The API paths (token-protected) of a LoRA's downloads: kohya/A1111 for ComfyUI/Forge, diffusers (ours)."""
    path = f"/api/loras/{lora_id}/file"
    return {"kohya": f"{path}?format=kohya", "diffusers": f"{path}?format=diffusers"}


def summary(pipeline: Pipeline) -> dict[str, Any]:
    """Everything an automation wants at the end: the LoRA version, asset links, warnings."""

    results = pipeline.results

    def link(asset_id: int | None) -> dict[str, Any] | None:
        if asset_id is None:
            return None
        try:
            return {"assetId": asset_id, "url": download_url(get_asset(asset_id))}
        except NotFound:
            return {"assetId": asset_id, "url": None}

    view: dict[str, Any] = {}
    if pipeline.kind in ("lora", "demo"):
        training = results.get("training", {})
        view["lora"] = ({"id": training["loraId"], "name": training.get("loraName"), "step": training.get("loraStep"),
                         "files": lora_file_paths(training["loraId"])}
                        if "loraId" in training else None)
        # By likeness (face distance to the character's fingerprint, lower = more alike); None when not scored.
        view["recommended"] = training.get("recommended")
        view["images"] = [link(i) for i in results.get("generation", {}).get("imageAssetIds", [])]
        view["video"] = link(results.get("video", {}).get("videoAssetId"))
        if pipeline.kind == "demo":
            view["postId"] = results.get("post", {}).get("postId")
    else:
        view["planId"] = results.get("planning", {}).get("planId")
        view["postIds"] = results.get("scheduling", {}).get("scheduledPostIds", [])
        view["heldPosts"] = results.get("scheduling", {}).get("heldPosts", [])
    return view


def pipeline_view(pipeline: Pipeline) -> dict[str, Any]:
    """The API's view: status, stage, progress percent, per-stage jobs and results, warnings, errors."""
    stages = []
    names = [stage.name for stage in _stages(pipeline)]
    at = pipeline.error_stage or pipeline.stage
    current = names.index(at) if at in names else -1
    for index, stage in enumerate(_stages(pipeline)):
        data = pipeline.results.get(stage.name) or {}
        if pipeline.status == JobStatus.SUCCEEDED or index < current:
            state = "done"
        elif index == current:
            state = {JobStatus.RUNNING.value: "running", JobStatus.QUEUED.value: "waiting"}.get(
                pipeline.status, pipeline.status)
        else:
            state = "waiting"
        started = data.get("jobIds", [])
        job_ids = [*started, *(job_id for job_id in stage.made(pipeline) if job_id not in started)]
        stages.append({"name": stage.name, "status": state, "jobIds": job_ids,
                       "results": {k: v for k, v in data.items() if k != "jobIds"}})
    return {
        "id": pipeline.id, "kind": pipeline.kind, "characterId": pipeline.character_id, "status": pipeline.status,
        "stage": pipeline.stage,
        "progressPercent": round(pipeline.progress * 100, 1), "priority": pipeline.priority,
        "dryRun": pipeline.dry_run, "stages": stages, "result": summary(pipeline),
        "warnings": pipeline.warnings, "error": pipeline.error, "errorStage": pipeline.error_stage,
        "createdAt": iso_time(pipeline.created_at), "startedAt": iso_time(pipeline.started_at),
        "finishedAt": iso_time(pipeline.finished_at),
    }


def notify(pipeline_id: str, event: str) -> None:
    """Queue a signed notification of this change to the pipeline's notifyUrl (outbox + ``notify`` job)."""
    with session_scope() as session:
        pipeline = session.get(Pipeline, pipeline_id, with_for_update=True)
        if pipeline is None or not pipeline.notify_url:
            return
        pipeline.events += 1
        sequence = pipeline.events
        body = {"event": event, "sequence": sequence, "pipeline": pipeline_view(pipeline), "sentAt": None}
        note = PipelineNotification(pipeline_id=pipeline_id, sequence=sequence, event=event, url=pipeline.notify_url,
                                    body=body)
        session.add(note)
        session.flush()
        note_id = note.id
    jobs.create_job("notify", {"notification_id": note_id})


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    "notify", Queue.DEFAULT, NotifyPayload, "Delivers a signed pipeline notification (retried with backoff).",
    max_attempts=6, time_limit_s=300,
))
