"""The studio's tables.

Enumerations are stored as short strings, not database enum types, so a later issue can
add a job kind or a status without a type migration; Python validates the values.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Float, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index))


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class DatasetKind(StrEnum):
    LORA_TRAINING = "lora-training"
    REFERENCE = "reference"


class AssetKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    CAPTION = "caption"
    LORA = "lora"


class Character(SQLModel, table=True):
    """The influencer: everything else belongs to one character (``core.characters.characters``)."""

    __table_args__ = (
        Index("uq_character_slug", "slug", unique=True),
        Index("ix_character_archived_name", "archived_at", "name"),  # the switcher: active ones by name
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    # The API's, CLI's and URLs' name for it: derived from the name, editable, unique, starts with a letter (so
    # it never reads as an id). NULL only for a row made without the service; the service always sets it.
    slug: str | None = Field(default=None, max_length=80)
    trigger_word: str = Field(default="", max_length=120)
    persona: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    voice: str = Field(default="", max_length=120)
    # Face distance (dlib's scale: 0.6 = same person) at or under which an image counts as this character.
    likeness_threshold: float = Field(default=0.6, sa_column=Column(Float, nullable=False, server_default="0.6"))
    # The face fingerprint (core.characters.likeness.Fingerprint as JSON): model name, centroid, source dataset.
    fingerprint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    # Archived: hidden from the switcher and the default, its rows kept; unarchiving brings it back.
    archived_at: datetime | None = _ts()


class Job(SQLModel, table=True):
    """One unit of background work. The row is the source of truth; the broker only carries ids."""

    __table_args__ = (
        Index("ix_job_status_created", "status", "created_at"),
        Index("ix_job_kind_created", "kind", "created_at"),
        Index("ix_job_created", "created_at"),
        Index("ix_job_status_heartbeat", "status", "heartbeat_at"),
        # Monitoring (core.reports.monitoring): counts and failures by finish time, per-kind durations, oldest queued.
        Index("ix_job_status_finished", "status", "finished_at"),
        Index("ix_job_kind_status_finished", "kind", "status", "finished_at"),
        Index("ix_job_status_queue_created", "status", "queue", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(max_length=64)
    queue: str = Field(max_length=32)
    status: str = Field(default=JobStatus.QUEUED, max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # What a handler saved to resume after a crash (e.g. the last training step reached).
    checkpoint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error_stage: str | None = Field(default=None, max_length=120)
    stage: str | None = Field(default=None, max_length=120)
    progress: float = 0.0
    progress_message: str | None = Field(default=None, max_length=500)
    attempts: int = 0
    max_attempts: int = 3
    time_limit_s: int | None = None
    cancel_requested: bool = False
    worker: str | None = Field(default=None, max_length=200)
    parent_id: str | None = Field(default=None, max_length=32, index=True)
    pipeline_id: str | None = Field(default=None, max_length=32, index=True)
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    enqueued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    heartbeat_at: datetime | None = _ts()

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)


class JobLog(SQLModel, table=True):
    """A job's log line, written in batches (``core.jobs.logs``). ``cursor`` orders a job's lines and is
    the live-tail cursor: it is the line's Redis stream id ``<ms>-<seq>`` as one number, ms × 10,000 + seq."""

    __table_args__ = (
        Index("ix_joblog_job_id_id", "job_id", "id"),
        Index("uq_joblog_job_cursor", "job_id", "cursor", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=32)
    cursor: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    level: str = Field(default="info", max_length=10)
    message: str = Field(sa_column=Column(Text, nullable=False))


class Dataset(SQLModel, table=True):
    __table_args__ = (
        Index("ix_dataset_status_created", "status", "created_at"),
        Index("ix_dataset_kind_created", "kind", "created_at"),
        Index("ix_dataset_created", "created_at"),
        Index("ix_dataset_updated", "updated_at"),
        Index("ix_dataset_image_count", "image_count"),
    )

    id: int | None = Field(default=None, primary_key=True)
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    name: str = Field(max_length=120, unique=True)
    kind: str = Field(default=DatasetKind.LORA_TRAINING, max_length=32)
    trigger_word: str = Field(default="", max_length=120)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    status: str = Field(default="empty", max_length=32)  # see core.datasets.datasets.DatasetStatus
    # Kept in step by core.datasets.datasets on every import and delete, so lists can sort by it cheaply.
    image_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class DatasetImage(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("dataset_id", "sha256", name="uq_datasetimage_dataset_sha256"),
        Index("ix_datasetimage_dataset_id_id", "dataset_id", "id"),
        Index("ix_datasetimage_dataset_reviewed", "dataset_id", "reviewed"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id")
    key: str = Field(max_length=512)
    thumbnail_key: str | None = Field(default=None, max_length=512)
    filename: str = Field(default="", max_length=255)
    width: int
    height: int
    sha256: str = Field(max_length=64)
    caption: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    caption_source: str | None = Field(default=None, max_length=32)  # auto | manual | import | bulk
    reviewed: bool = False
    content_type: str = Field(default="image/png", max_length=40)
    phash: str | None = Field(default=None, max_length=16)  # perceptual hash, for near-duplicate checks
    blur: float | None = None  # variance of the Laplacian; low means blurry
    # Face identity (the fingerprint job): faces found, the one face's embedding and the model that made it,
    # and its leave-one-out distance to the other images' centroid. NULL = not analysed (with face_model).
    face_model: str | None = Field(default=None, max_length=64)
    face_count: int | None = None
    face_embedding: list[float] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    face_distance: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Asset(SQLModel, table=True):
    """A file the studio produced or keeps: a generated image, a training sample, a LoRA file, a video…

    ``source`` says which (see ``core.library.assets.AssetSource``); ``meta`` holds everything that made it
    (for an image: prompt, seed, steps, LoRAs…). The columns copied out of ``meta`` (prompt, size,
    dataset) exist for filtering. ``deleted_at`` set means it is in the trash; purging removes the row.
    """

    __table_args__ = (
        Index("ix_asset_kind_created", "kind", "created_at"),
        Index("ix_asset_deleted_created", "deleted_at", "created_at"),
        Index("ix_asset_source_created", "source", "created_at"),
        Index("ix_asset_dataset_created", "dataset_id", "created_at"),
        Index("ix_asset_character_created", "character_id", "created_at"),
        Index("ix_asset_deleted_size", "deleted_at", "size_bytes"),  # the library's "largest first"
        # The library's "most alike first": scored before unscored (NULL), then by distance, on both databases.
        Index("ix_asset_deleted_face", "deleted_at", text("(face_distance IS NULL)"), "face_distance"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str | None = Field(default=None, foreign_key="job.id", max_length=32, index=True)
    character_id: int | None = Field(default=None, foreign_key="character.id")
    kind: str = Field(max_length=16)
    source: str = Field(default="", max_length=32)
    key: str = Field(max_length=512, unique=True)
    thumbnail_key: str | None = Field(default=None, max_length=512)
    content_type: str = Field(default="application/octet-stream", max_length=120)
    size_bytes: int = 0
    width: int | None = None
    height: int | None = None
    prompt: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # Lineage (not a foreign key: deleting a dataset keeps what was made from it).
    dataset_id: int | None = None
    # Likeness: face distance to the character's fingerprint (lower = more alike). NULL when not scored or
    # no face was found; ``meta["likeness"]`` says which, with the model name.
    face_distance: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    deleted_at: datetime | None = _ts()


class AssetLora(SQLModel, table=True):
    """Which LoRA versions (at which strengths) made an asset: the LoRA filter and lineage.

    ``lora_id`` is not a foreign key: a pruned or purged LoRA leaves its images' lineage intact.
    """

    __table_args__ = (Index("ix_assetlora_lora_asset", "lora_id", "asset_id"),)

    asset_id: int = Field(foreign_key="asset.id", primary_key=True)
    lora_id: int = Field(primary_key=True)
    strength: float = 1.0


class Collection(SQLModel, table=True):
    """A named set of assets (a board); an asset can be in several."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CollectionItem(SQLModel, table=True):
    __table_args__ = (Index("ix_collectionitem_asset", "asset_id"),
                      Index("ix_collectionitem_collection_added", "collection_id", "added_at"))

    collection_id: int = Field(foreign_key="collection.id", primary_key=True)
    asset_id: int = Field(foreign_key="asset.id", primary_key=True)
    added_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class PromptSnippet(SQLModel, table=True):
    """A saved piece of prompt (the prompt library): inserted into the prompt or negative prompt."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    negative: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class LoraConfig(SQLModel, table=True):
    """A named set of training parameters (``core.training.params.LoraParams``), e.g. a seeded preset."""

    __table_args__ = (
        # At most one default; core.training.configs keeps it at exactly one inside a transaction.
        Index("uq_loraconfig_default", "is_default", unique=True,
              sqlite_where=text("is_default"), postgresql_where=text("is_default")),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    is_default: bool = False
    preset: bool = False  # seeded by the studio (still editable; the flag only labels it)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class TrainingMetric(SQLModel, table=True):
    """One optimizer step of a training job: the points of its loss and learning-rate chart."""

    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_trainingmetric_job_step"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="job.id", max_length=32)
    step: int
    epoch: int = 0
    loss: float
    lr: float


class LoraModel(SQLModel, table=True):
    """A saved LoRA checkpoint: a ``pytorch_lora_weights.safetensors`` that generation can load.

    Dataset and config ids are lineage, not foreign keys: deleting a dataset keeps its LoRAs.
    """

    __table_args__ = (
        UniqueConstraint("job_id", "step", name="uq_loramodel_job_step"),
        Index("ix_loramodel_created", "created_at"),
        Index("ix_loramodel_promoted", "promoted", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    job_id: str = Field(foreign_key="job.id", max_length=32)
    step: int
    final: bool = False
    promoted: bool = False
    dataset_id: int | None = None
    config_id: int | None = None
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    family: str = Field(max_length=16)
    base_model: str = Field(max_length=500)
    trigger_word: str = Field(default="", max_length=120)
    key: str = Field(max_length=512, unique=True)
    size_bytes: int = 0
    loss: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


# --- installed base models (the model manager, core/models_registry) -------------------------------------


class InstalledModel(SQLModel, table=True):
    """A base model the studio can load by name: a diffusers folder on local disk, however it came.

    ``path`` is what the loaders get (``from_pretrained``); ``source`` says where it came from (a hub id, the
    folder registered in place, the single ``.safetensors`` converted at install). LoRAs stay ``LoraModel``
    rows; the registry lists both.
    """

    __table_args__ = (
        Index("ix_installedmodel_created", "created_at"),
        Index("ix_installedmodel_status_created", "status", "created_at"),
        Index("ix_installedmodel_family_status_name", "family", "status", "name"),  # the pickers' query
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    family: str = Field(max_length=16)
    # What the source was: diffusers | single_file (a whole SD checkpoint, converted) | transformer (a DiT's
    # transformer alone, loaded from its file at use, with the other components of ``base_model``).
    format: str = Field(default="diffusers", max_length=16)
    precision: str = Field(default="", max_length=16)  # fp32 | fp16 | bf16 | mixed ("" until known)
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    source_kind: str = Field(max_length=16)  # hub | folder | single_file
    source: str = Field(max_length=1000)
    path: str = Field(default="", max_length=1000)
    status: str = Field(default="installing", max_length=16)  # installing | ready | failed
    job_id: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # A transformer-only install's pairing: the installed model, folder or hub id its text encoder and VAE come
    # from (None for every complete model).
    base_model: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    installed_at: datetime | None = _ts()


# --- content plans, posts and social accounts ------------------------------------------------------------


class Platform(StrEnum):
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    YOUTUBE = "youtube"
    TIKTOK = "tiktok"

    @property
    def label(self) -> str:
        return {"instagram": "Instagram", "facebook": "Facebook", "youtube": "YouTube Shorts",
                "tiktok": "TikTok"}[self.value]


class PostStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    FAILED = "failed"


class ContentPlan(SQLModel, table=True):
    """A batch of planned posts made from a persona, a theme, platforms and a date range."""

    __table_args__ = (Index("ix_contentplan_created", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    name: str = Field(max_length=200)
    theme: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The request as it was planned (persona snapshot, platforms, dates, posts per week).
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    planner: str = Field(default="template", max_length=200)  # "template" or "llm:<model>"
    job_id: str | None = Field(default=None, foreign_key="job.id", max_length=32, index=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class LlmCall(SQLModel, table=True):
    """One chat-completion call: its token usage and cost (plans show the sum of theirs)."""

    __table_args__ = (Index("ix_llmcall_created", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int | None = Field(default=None, foreign_key="contentplan.id", index=True)
    job_id: str | None = Field(default=None, max_length=32, index=True)
    purpose: str = Field(default="", max_length=64)
    model: str = Field(default="", max_length=200)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int = 0
    attempts: int = 1  # HTTP attempts, retries included
    repaired: bool = False  # the first answer was not valid and a repair was asked for
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class SocialAccount(SQLModel, table=True):
    """A connected Instagram, Facebook Page, YouTube channel or TikTok account.

    Tokens are stored only encrypted (``core.infra.crypto``); ``external_id`` is the platform's id of
    what we post as (Instagram user, Page, channel, TikTok open_id).
    """

    __table_args__ = (UniqueConstraint("platform", "external_id", name="uq_socialaccount_platform_external"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    external_id: str = Field(max_length=200)
    name: str = Field(default="", max_length=200)
    access_token_enc: str = Field(sa_column=Column(Text, nullable=False))
    refresh_token_enc: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    expires_at: datetime | None = _ts()
    refresh_expires_at: datetime | None = _ts()
    scopes: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    connected_via: str = Field(default="oauth", max_length=16)  # oauth | manual
    status: str = Field(default="connected", max_length=32)  # connected | needs-reconnect
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    refreshed_at: datetime | None = _ts()


class OAuthState(SQLModel, table=True):
    """A pending authorization: the one-time ``state`` (stored hashed) and its PKCE verifier (encrypted)."""

    state_hash: str = Field(primary_key=True, max_length=64)
    platform: str = Field(max_length=16)
    code_verifier_enc: str = Field(sa_column=Column(Text, nullable=False))
    redirect_uri: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    used_at: datetime | None = _ts()


class Post(SQLModel, table=True):
    """One post on one platform: draft → scheduled → publishing → published | failed."""

    __table_args__ = (
        Index("ix_post_scheduled", "scheduled_at"),
        Index("ix_post_status_scheduled", "status", "scheduled_at"),
        Index("ix_post_plan_scheduled", "plan_id", "scheduled_at"),
        Index("ix_post_platform_scheduled", "platform", "scheduled_at"),
        Index("ix_post_production", "production_status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int | None = Field(default=None, foreign_key="contentplan.id")
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    platform: str = Field(max_length=16)
    account_id: int | None = Field(default=None, foreign_key="socialaccount.id", index=True)
    status: str = Field(default=PostStatus.DRAFT, max_length=16)
    scheduled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    title: str = Field(default="", max_length=200)  # YouTube's title; other platforms ignore it
    caption: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    hashtags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    image_prompt: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    asset_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # media, in order
    ai_generated: bool = True  # the AI-disclosure flags each platform offers are set from this
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # "Produce content for this slot": the jobs making the media, and how far they got.
    production_status: str | None = Field(default=None, max_length=16)  # producing | ready | failed
    generate_job_id: str | None = Field(default=None, max_length=32, index=True)
    video_job_id: str | None = Field(default=None, max_length=32, index=True)
    publish_job_id: str | None = Field(default=None, max_length=32, index=True)
    external_id: str | None = Field(default=None, max_length=200)
    permalink: str | None = Field(default=None, max_length=1000)
    dry_run: bool = False  # "published" by a dry run: validated and recorded, nothing sent
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    published_at: datetime | None = _ts()
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class PublishRecord(SQLModel, table=True):
    """The idempotency record of one post on one platform: never post twice.

    ``phase`` is written as ``committing`` *before* the platform's final publish call. A retry
    that finds ``committing`` asks the platform whether that call took effect (by the ids in
    ``state``: container, upload session, publish id) instead of calling it again.
    """

    __table_args__ = (UniqueConstraint("post_id", "platform", name="uq_publishrecord_post_platform"),)

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(foreign_key="post.id")
    platform: str = Field(max_length=16)
    account_id: int | None = None
    phase: str = Field(default="preparing", max_length=16)  # preparing | committing | published
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    external_id: str | None = Field(default=None, max_length=200)
    permalink: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


# --- pipelines (started by n8n or the API) ------------------------------------------------------------------


class Pipeline(SQLModel, table=True):
    """A chain of stages (train → generate → video, or plan → produce → schedule); each stage runs jobs
    through the job lifecycle and the next starts when they finish. ``results`` holds each stage's
    jobs and outputs; ``warnings`` what partly failed."""

    __table_args__ = (
        Index("ix_pipeline_status_priority", "status", "priority", "created_at"),
        Index("ix_pipeline_created", "created_at"),
        Index("ix_pipeline_kind_created", "kind", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(max_length=16)  # lora | content | demo
    character_id: int | None = Field(default=None, foreign_key="character.id", index=True)
    status: str = Field(default=JobStatus.QUEUED, max_length=16)  # the job statuses
    stage: str | None = Field(default=None, max_length=32)
    progress: float = 0.0
    priority: int = 5  # 1–10; higher starts first
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    results: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error_stage: str | None = Field(default=None, max_length=32)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)
    notify_url: str | None = Field(default=None, max_length=1000)
    dry_run: bool = False
    events: int = 0  # notifications sent so far; numbers them
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class PipelineNotification(SQLModel, table=True):
    """An outbound notification (the outbox): written with the state change, delivered by a ``notify`` job."""

    __table_args__ = (Index("ix_pipelinenotification_pipeline", "pipeline_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    pipeline_id: str = Field(foreign_key="pipeline.id", max_length=32)
    sequence: int = 0
    event: str = Field(max_length=64)
    url: str = Field(max_length=1000)
    body: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = _ts()
