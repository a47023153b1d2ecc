"""The asset library: every file the studio made or keeps (generated images, training samples,
LoRA files, videos, audio), with lineage, collections and a trash.

Writers (generation, training, video jobs) call :func:`record_asset`, which is idempotent per
storage key so a redelivered job rewrites rather than duplicates. Readers list with filters and
pagination; deleting moves to the trash (``deleted_at``), restoring takes it back out, purging
removes the objects from storage and the row for good.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlmodel import col

from core.characters.scope import in_scope, owner
from core.config import get_settings
from core.datasets.images import make_thumbnail
from core.db import affected_rows, get_or_raise, session_scope
from core.errors import Conflict, InvalidInput, describe_validation_error
from core.infra.storage import get_object_store
from core.library.collections import collections_of
from core.library.ids import describe_ids, unique_asset_ids
from core.models import (
    Asset,
    AssetKind,
    AssetLora,
    CollectionItem,
    Dataset,
    Job,
    JobStatus,
    LoraModel,
    Post,
    PostStatus,
    utcnow,
)
from core.pagination import Page, clamp


class AssetSource:
    """What made an asset (``Asset.source``)."""

    GENERATED = "generated"  # the generation job
    SAMPLE = "sample"  # a training run's sample image
    LORA = "lora"  # a saved LoRA version's weights file
    UPLOAD = "upload"
    VIDEO = "video"
    VOICE = "voice"
    MOTION = "motion"  # a clip animated from a still (the motion job)
    REFERENCE = "reference"  # a character's reference image (core.characters.references)
    VOICE_REFERENCE = "voice-reference"  # an uploaded clip a cloned voice speaks like (core.video.voice_clips)


def thumbnail_key(key: str) -> str:
    stem, _, _ = key.rpartition(".")
    return f"{stem or key}.thumb.jpg"


def record_asset(
    *,
    key: str,
    kind: str,
    source: str,
    content_type: str,
    size_bytes: int,
    job_id: str | None = None,
    character_id: int | None = None,
    dataset_id: int | None = None,
    prompt: str = "",
    width: int | None = None,
    height: int | None = None,
    thumbnail: str | None = None,
    meta: dict[str, Any] | None = None,
    loras: Sequence[tuple[int, float]] = (),
) -> Asset:
    """Create or update the asset stored under ``key`` (already in object storage), with its LoRA lineage."""
    values: dict[str, Any] = dict(
        kind=kind, source=source, content_type=content_type, size_bytes=size_bytes, job_id=job_id,
        character_id=owner(character_id), dataset_id=dataset_id, prompt=prompt, width=width, height=height,
        thumbnail_key=thumbnail, meta=meta or {})
    with session_scope() as session:
        asset = session.execute(select(Asset).where(col(Asset.key) == key)).scalar_one_or_none()
        if asset is None:
            asset = Asset(key=key, **values)
        else:
            for name, value in values.items():
                setattr(asset, name, value)
        session.add(asset)
        session.flush()
        assert asset.id is not None  # the flush gave a new row its id
        session.execute(delete(AssetLora).where(col(AssetLora.asset_id) == asset.id))
        for lora_id, strength in dict(loras).items():
            session.add(AssetLora(asset_id=asset.id, lora_id=lora_id, strength=strength))
        session.flush()
        session.refresh(asset)
        return asset


def store_image(key: str, data: bytes, *, source: str, content_type: str = "image/png", **fields: Any) -> Asset:
    """Upload an image and its thumbnail and record it (``fields`` as for :func:`record_asset`)."""
    store = get_object_store()
    info = store.put_bytes(key, data, content_type)
    thumb = thumbnail_key(key)
    thumbnail, (width, height) = make_thumbnail(data)
    store.put_bytes(thumb, thumbnail, "image/jpeg")
    return record_asset(key=key, kind=AssetKind.IMAGE, source=source, content_type=content_type,
                        size_bytes=info.size, width=width, height=height, thumbnail=thumb, **fields)


def get_asset(asset_id: int) -> Asset:
    return get_or_raise(Asset, asset_id, "asset")


def find_asset(key: str) -> Asset | None:
    with session_scope() as session:
        return session.execute(select(Asset).where(col(Asset.key) == key)).scalar_one_or_none()


def read_asset(asset: Asset) -> bytes:
    return get_object_store().get_bytes(asset.key)


def read_thumbnail(asset: Asset) -> bytes:
    """The thumbnail when there is one, else the file itself (small images, old rows)."""
    return get_object_store().get_bytes(asset.thumbnail_key or asset.key)


def remove_assets(asset_ids: Sequence[int]) -> int:
    """Remove assets for good: their objects (file and thumbnail), lineage links and rows."""
    if not asset_ids:
        return 0
    with session_scope() as session:
        assets = list(session.execute(select(Asset).where(col(Asset.id).in_(asset_ids))).scalars())
    store = get_object_store()
    for asset in assets:
        store.delete(asset.key)
        if asset.thumbnail_key:
            store.delete(asset.thumbnail_key)
    ids = [a.id for a in assets]
    with session_scope() as session:
        session.execute(delete(AssetLora).where(col(AssetLora.asset_id).in_(ids)))
        session.execute(delete(CollectionItem).where(col(CollectionItem.asset_id).in_(ids)))
        session.execute(delete(Asset).where(col(Asset.id).in_(ids)))
    return len(ids)


# --- the library: filters, listing, options ----------------------------------------------------------

MAX_PAGE_SIZE = 100
LibraryKind = Literal["image", "sample", "lora", "video", "audio"]
AssetSort = Literal["newest", "oldest", "largest", "likeness"]
# The library's kinds, as users think of them (training samples are images, but a kind of their own).
LIBRARY_KINDS: dict[str, str] = {"image": "Images", "sample": "Training samples", "lora": "LoRA files",
                                 "video": "Videos", "audio": "Audio"}
SORTS: dict[str, str] = {"newest": "Newest first", "oldest": "Oldest first", "largest": "Largest first",
                         "likeness": "Most alike first"}
# Likeness filter: face distance to the character's fingerprint at or under the threshold, over it, no face.
LIKENESS_FILTERS: dict[str, str] = {"match": "Looks like the character", "miss": "Looks like someone else",
                                    "unscored": "No face or not scored"}
_KIND_CONDITIONS: dict[str, Any] = {
    "image": lambda: and_(col(Asset.kind) == AssetKind.IMAGE, col(Asset.source) != AssetSource.SAMPLE),
    "sample": lambda: Asset.source == AssetSource.SAMPLE,
    "lora": lambda: Asset.kind == AssetKind.LORA,
    "video": lambda: Asset.kind == AssetKind.VIDEO,
    "audio": lambda: Asset.kind == AssetKind.AUDIO,
}


def library_kind(asset: Asset) -> str:
    """The asset's kind as the library's filter names it."""
    return "sample" if asset.source == AssetSource.SAMPLE else asset.kind


class AssetFilter(BaseModel):
    """What the library shows. Every field set narrows the list; ``trash`` switches to the trash."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    kind: LibraryKind | None = None
    created_from: date | None = None
    created_to: date | None = Field(default=None, description="inclusive (the whole day, UTC)")
    dataset_id: int | None = None
    lora_id: int | None = None
    job_id: str | None = Field(default=None, max_length=32)
    collection_id: int | None = None
    character_id: int | None = None
    text: str | None = Field(default=None, max_length=200, description="a piece of the prompt, any case")
    likeness: Literal["match", "miss", "unscored"] | None = None
    likeness_threshold: float = Field(default=0.6, gt=0, le=2)
    trash: bool = False

    @model_validator(mode="after")
    def _dates_in_order(self) -> AssetFilter:
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise ValueError("the start date is after the end date")
        return self


def make_filter(**values: Any) -> AssetFilter:
    """An AssetFilter from user input; bad values raise InvalidInput naming the field."""
    try:
        return AssetFilter.model_validate(values)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(filters: AssetFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        col(Asset.deleted_at).is_not(None) if filters.trash else col(Asset.deleted_at).is_(None)]
    if filters.kind:
        conditions.append(_KIND_CONDITIONS[filters.kind]())
    if filters.created_from:
        conditions.append(col(Asset.created_at) >= _day_start(filters.created_from))
    if filters.created_to:
        conditions.append(col(Asset.created_at) < _day_start(filters.created_to + timedelta(days=1)))
    if filters.dataset_id is not None:
        conditions.append(col(Asset.dataset_id) == filters.dataset_id)
    if filters.lora_id is not None:
        conditions.append(col(Asset.id).in_(
            select(col(AssetLora.asset_id)).where(col(AssetLora.lora_id) == filters.lora_id)))
    if filters.job_id:
        conditions.append(col(Asset.job_id) == filters.job_id)
    if filters.collection_id is not None:
        conditions.append(col(Asset.id).in_(
            select(col(CollectionItem.asset_id)).where(col(CollectionItem.collection_id) == filters.collection_id)))
    if filters.character_id is not None:
        conditions.append(col(Asset.character_id) == filters.character_id)
    else:
        conditions += in_scope(col(Asset.character_id))  # the switcher's character (core.characters.scope)
    if filters.text:
        conditions.append(col(Asset.prompt).ilike(f"%{escape_like(filters.text)}%", escape="\\"))
    if filters.likeness == "match":
        conditions.append(col(Asset.face_distance) <= filters.likeness_threshold)
    elif filters.likeness == "miss":
        conditions.append(col(Asset.face_distance) > filters.likeness_threshold)
    elif filters.likeness == "unscored":
        conditions.append(col(Asset.face_distance).is_(None))
    return conditions


def _order(filters: AssetFilter, sort: str) -> tuple[Any, ...]:
    """An order that an index delivers as it is walked (no sort step), with the id as tie-break.

    The trash lists by when things were deleted. The library leads with ``deleted_at`` (NULL on
    every row it shows, so the order is unchanged) unless a filter with an index of its own drives
    the query: PostgreSQL does not treat ``IS NULL`` as pinning the column, and only walks
    ``ix_asset_deleted_created`` / ``ix_asset_deleted_size`` in order when the ORDER BY names it.
    """
    if sort not in SORTS:
        raise InvalidInput(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
    if sort == "likeness":  # most alike first; unscored (NULL) last on both databases
        return (col(Asset.deleted_at).asc(), col(Asset.face_distance).is_(None).asc(), col(Asset.face_distance).asc(),
                col(Asset.id).asc())
    if sort == "largest":
        columns: tuple[Any, ...] = (Asset.size_bytes, Asset.id)
    else:
        columns = (Asset.created_at, Asset.id)
    own_index = filters.kind or filters.dataset_id is not None or filters.character_id is not None or filters.job_id
    if (filters.trash and sort != "largest") or (not filters.trash and not own_index):
        columns = (Asset.deleted_at, *columns)
    return tuple(c.asc() if sort == "oldest" else c.desc() for c in columns)


def asset_query(filters: AssetFilter | None = None, *, sort: str = "newest") -> Any:
    """The listing's SELECT (without paging), also used by the query-plan checks."""
    filters = filters or AssetFilter()
    return select(Asset).where(*_conditions(filters)).order_by(*_order(filters, sort))


def list_assets(filters: AssetFilter | None = None, *, sort: AssetSort | str = "newest", page: int = 1,
                page_size: int = 24) -> Page[Asset]:
    """One page of the library (or of the trash), newest first by default; ties broken by id."""
    filters = filters or AssetFilter()
    page, page_size = clamp(page, page_size, max_page_size=MAX_PAGE_SIZE)
    query = asset_query(filters, sort=sort)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(Asset).where(*_conditions(filters))).scalar_one()
        items = list(session.execute(query.offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items=items, total=int(total), page=page, page_size=page_size)


@dataclass(frozen=True)
class FilterOptions:
    """Choices for the library's filter bar: only datasets and LoRAs that made something."""

    datasets: dict[int, str]
    loras: dict[int, str]


def filter_options(*, limit: int = 200) -> FilterOptions:
    """Read from the indexes (distinct dataset ids, distinct LoRA links), at most ``limit`` of each."""
    with session_scope() as session:
        dataset_ids = list(session.execute(
            select(col(Asset.dataset_id)).where(col(Asset.dataset_id).is_not(None)).distinct().limit(limit)).scalars())
        lora_ids = list(session.execute(select(col(AssetLora.lora_id)).distinct().limit(limit)).scalars())
        dataset_names = dict(session.execute(
            select(col(Dataset.id), col(Dataset.name)).where(col(Dataset.id).in_(dataset_ids))).all())
        lora_names = dict(session.execute(
            select(col(LoraModel.id), col(LoraModel.name)).where(col(LoraModel.id).in_(lora_ids))).all())
    datasets = {i: dataset_names.get(i, f"dataset #{i} (deleted)") for i in dataset_ids if i is not None}
    loras = {i: lora_names.get(i, f"LoRA #{i} (deleted)") for i in lora_ids}
    return FilterOptions(datasets=dict(sorted(datasets.items(), key=lambda kv: kv[1].lower())),
                         loras=dict(sorted(loras.items(), key=lambda kv: kv[1].lower())))


def download_url(asset: Asset, *, expires: timedelta | None = None) -> str:
    """A link that downloads the file without logging in, until it expires: presigned on S3, a signed
    ``/api/files`` link with the local store. Short-lived by default (STUDIO_DOWNLOAD_LINK_MINUTES): anyone
    holding the link gets the file, and pages make fresh links on every rerun."""
    if expires is None:
        expires = timedelta(minutes=get_settings().download_link_minutes)
    return get_object_store().presigned_get_url(asset.key, expires)


# --- trash, restore, purge ----------------------------------------------------------------------------


def trash_assets(asset_ids: Sequence[int]) -> int:
    """Move assets to the trash (reversible); returns how many were not there yet."""
    ids = unique_asset_ids(asset_ids)
    if not ids:
        return 0
    with session_scope() as session:
        moved = session.execute(update(Asset).where(col(Asset.id).in_(ids), col(Asset.deleted_at).is_(None))
                                .values(deleted_at=utcnow()))
    return affected_rows(moved)


def restore_assets(asset_ids: Sequence[int]) -> int:
    """Take assets back out of the trash; returns how many were in it."""
    ids = unique_asset_ids(asset_ids)
    if not ids:
        return 0
    with session_scope() as session:
        restored = session.execute(update(Asset).where(col(Asset.id).in_(ids), col(Asset.deleted_at).is_not(None))
                                   .values(deleted_at=None))
    return affected_rows(restored)


@dataclass(frozen=True)
class PurgeReport:
    purged: int
    kept: list[str] = field(default_factory=list)  # why an asset stayed in the trash


_ACTIVE_KINDS = ("generate", "train")
_ACTIVE_JOB_LIMIT = 500


def _lora_rows(assets: Sequence[Asset]) -> dict[int, LoraModel]:
    """The LoRA version behind each "lora" asset that still has one (asset id -> row)."""
    keys = {a.key: a.id for a in assets if a.kind == AssetKind.LORA and a.id is not None}
    if not keys:
        return {}
    with session_scope() as session:
        rows = session.execute(select(LoraModel).where(col(LoraModel.key).in_(list(keys)))).scalars()
        return {keys[row.key]: row for row in rows}


def _purge_refusals(assets: Sequence[Asset], loras: dict[int, LoraModel]) -> dict[int, str]:
    """Why some of these assets must not be purged now: a promoted LoRA, or something a queued or
    running job still needs (a LoRA it applies or trains, an img2img start image)."""
    refusals: dict[int, str] = {}
    for asset_id, lora in loras.items():
        if lora.promoted:
            refusals[asset_id] = (f"LoRA {lora.name!r} is promoted (generation uses it by default); "
                                  "promote another version first")
    by_lora = {lora.id: asset_id for asset_id, lora in loras.items()}
    by_job = {lora.job_id: asset_id for asset_id, lora in loras.items()}
    ids = {a.id for a in assets if a.id is not None}
    with session_scope() as session:
        active = list(session.execute(
            select(Job)
            .where(col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]), col(Job.kind).in_(_ACTIVE_KINDS))
            .order_by(col(Job.created_at).desc()).limit(_ACTIVE_JOB_LIMIT)
        ).scalars())
    for job in active:
        used: list[int] = []
        if job.kind == "train" and job.id in by_job:
            used.append(by_job[job.id])
        if job.kind == "generate":
            used += [by_lora[c.get("lora_id")] for c in job.payload.get("loras") or [] if c.get("lora_id") in by_lora]
            if job.payload.get("init_asset_id") in ids:
                used.append(int(job.payload["init_asset_id"]))
        for asset_id in used:
            refusals.setdefault(asset_id, f"asset {asset_id} is used by {job.status} {job.kind} job {job.id[:8]}; "
                                          "wait for it or cancel it first")
    for post_id, status, media in _pending_post_media():
        for asset_id in ids.intersection(media):
            refusals.setdefault(asset_id, f"asset {asset_id} is the media of {status} post {post_id}; "
                                          "change the post's media or unschedule it first")
    return refusals


def _pending_post_media() -> list[tuple[int, str, list[int]]]:
    """Media of posts still to be published (scheduled or publishing), through the status index."""
    with session_scope() as session:
        rows = session.execute(select(col(Post.id), col(Post.status), col(Post.asset_ids)).where(
            col(Post.status).in_([PostStatus.SCHEDULED, PostStatus.PUBLISHING])).limit(_ACTIVE_JOB_LIMIT)).all()
    return [(post_id, status, list(media or [])) for post_id, status, media in rows]


# Removing a LoRA version (its weights, training state, file asset and row) is the training domain's
# business, and training imports the library: core.training.runs hands its remover in here.
_lora_remover: Callable[[LoraModel], None] | None = None


def remove_loras_with(remover: Callable[[LoraModel], None]) -> None:
    global _lora_remover
    _lora_remover = remover


def _remove_lora(lora: LoraModel) -> None:
    if _lora_remover is None:
        raise RuntimeError("no LoRA remover: the program's entry point must import core.catalogue")
    _lora_remover(lora)


def _purge(assets: Sequence[Asset], loras: dict[int, LoraModel]) -> int:
    for lora in loras.values():
        _remove_lora(lora)  # weights, training state, its asset and the LoraModel row
    remove_assets([a.id for a in assets if a.id is not None])  # the rest (and any LoRA file left over)
    return len(assets)


def purge_assets(asset_ids: Sequence[int]) -> int:
    """Remove trashed assets for good: their files and thumbnails from storage, their rows, and for a
    LoRA file its LoRA version. All or nothing: an asset outside the trash, or one that must stay
    (see ``_purge_refusals``), refuses the whole call. Ids that no longer exist are skipped."""
    ids = unique_asset_ids(asset_ids)
    if not ids:
        return 0
    with session_scope() as session:
        assets = list(session.execute(select(Asset).where(col(Asset.id).in_(ids))).scalars())
    if live := [a.id for a in assets if a.deleted_at is None]:
        raise Conflict(f"asset(s) {describe_ids(live)} are not in the trash; move them to the trash before purging")
    loras = _lora_rows(assets)
    if refusals := _purge_refusals(assets, loras):
        raise Conflict("; ".join(refusals.values()))
    return _purge(assets, loras)


def empty_trash(*, batch_size: int = 200) -> PurgeReport:
    """Purge everything in the trash, a batch at a time; what must stay (see ``purge_assets``) stays."""
    purged, after = 0, 0
    kept: list[str] = []
    while True:
        with session_scope() as session:
            batch = list(session.execute(
                select(Asset).where(col(Asset.deleted_at).is_not(None), col(Asset.id) > after)
                .order_by(col(Asset.id)).limit(batch_size)
            ).scalars())
        if not batch:
            return PurgeReport(purged=purged, kept=kept)
        after = max(a.id or 0 for a in batch)
        loras = _lora_rows(batch)
        refusals = _purge_refusals(batch, loras)
        kept += list(refusals.values())
        doomed = [a for a in batch if a.id not in refusals]
        purged += _purge(doomed, {i: lora for i, lora in loras.items() if i not in refusals})


# --- lineage ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraLineage:
    id: int
    name: str
    strength: float
    step: int | None
    job_id: str | None
    exists: bool  # False: the version was pruned or purged since (its name comes from the asset's metadata)


@dataclass(frozen=True)
class JobLineage:
    id: str
    kind: str
    status: str


@dataclass(frozen=True)
class Lineage:
    """Where an asset came from: dataset → LoRA versions → job → prompt and settings."""

    kind: str
    dataset_id: int | None
    dataset_name: str | None  # "deleted" when the dataset is gone
    loras: list[LoraLineage]
    job: JobLineage | None
    job_id: str | None  # kept when the job row is gone
    prompt: str
    negative_prompt: str
    seed: int | None
    settings: dict[str, Any]
    init_asset_id: int | None
    init_asset_state: str | None  # "in the library", "in the trash" or "purged"
    collections: list[tuple[int, str]]


_SETTINGS = ("steps", "cfg", "scheduler", "width", "height", "template", "base_model", "family", "img2img_strength",
             "step", "prompt_index", "final", "trigger_word")


def lineage(asset: Asset) -> Lineage:
    """The asset's lineage, read in a handful of indexed lookups; what was deleted since is named so."""
    meta = asset.meta or {}
    meta_loras = {int(item["id"]): item for item in meta.get("loras", []) if isinstance(item, dict) and "id" in item}
    init_id = meta.get("init_asset_id")
    with session_scope() as session:
        links = list(session.execute(select(AssetLora).where(col(AssetLora.asset_id) == asset.id)
                                     .order_by(col(AssetLora.lora_id))).scalars())
        rows = {row.id: row for row in session.execute(
            select(LoraModel).where(col(LoraModel.id).in_([link.lora_id for link in links]))).scalars()}
        dataset = session.get(Dataset, asset.dataset_id) if asset.dataset_id is not None else None
        job = session.get(Job, asset.job_id) if asset.job_id else None
        init = session.get(Asset, int(init_id)) if init_id is not None else None
    loras = []
    for link in links:
        row, stored = rows.get(link.lora_id), meta_loras.get(link.lora_id, {})
        name = row.name if row else stored.get("name") or (meta.get("name") if asset.kind == AssetKind.LORA else None)
        loras.append(LoraLineage(id=link.lora_id, name=name or f"LoRA #{link.lora_id}", strength=link.strength,
                                 step=row.step if row else stored.get("step"),
                                 job_id=row.job_id if row else stored.get("job_id"), exists=row is not None))
    init_state = None
    if init_id is not None:
        init_state = "purged" if init is None else ("in the trash" if init.deleted_at else "in the library")
    return Lineage(
        kind=library_kind(asset),
        dataset_id=asset.dataset_id,
        dataset_name=dataset.name if dataset else ("deleted" if asset.dataset_id is not None else None),
        loras=loras,
        job=JobLineage(id=job.id, kind=job.kind, status=job.status) if job else None,
        job_id=asset.job_id,
        prompt=asset.prompt or str(meta.get("prompt", "")),
        negative_prompt=str(meta.get("negative_prompt", "")),
        seed=meta.get("seed"),
        settings={name: meta[name] for name in _SETTINGS if name in meta},
        init_asset_id=int(init_id) if init_id is not None else None,
        init_asset_state=init_state,
        collections=[(c.id or 0, c.name) for c in collections_of(asset.id or 0)],
    )
