"""Datasets of a character's images: create, import (files or zips), list, delete, export.

Every imported file goes through ``core.datasets.images.prepare_image`` first, so a bad file gets a
clear message and stores nothing while the rest of the batch still imports. Objects live
under ``datasets/<id>/`` with names derived from the image's hash, so re-importing the same
file can never store it twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.characters.scope import in_scope, owner
from core.config import get_settings
from core.datasets.caption_text import clean_caption
from core.datasets.demo_data import generate_demo_images
from core.datasets.images import (
    ImageRejected,
    ImportLimits,
    PreparedImage,
    display_name,
    make_training_zip,
    prepare_image,
    read_archive,
)
from core.datasets.tokens import TOKEN_LIMIT, count_tokens_many
from core.db import get_or_raise, session_scope
from core.errors import Conflict, InvalidInput, NotFound, describe_validation_error, referenced_by
from core.fields import printable
from core.infra.storage import get_object_store
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.models import Dataset, DatasetImage, DatasetKind, utcnow
from core.pagination import Page, clamp

SortField = Literal["created", "updated", "name", "images"]
_SORT_COLUMNS = {
    "created": col(Dataset.created_at),
    "updated": col(Dataset.updated_at),
    "name": col(Dataset.name),
    "images": col(Dataset.image_count),
}
MAX_PAGE_SIZE = 100


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


class DatasetFields(BaseModel):
    """What a user types when creating or editing a dataset."""

    model_config = ConfigDict(str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120)
    kind: DatasetKind = DatasetKind.LORA_TRAINING
    trigger_word: str = Field(default="", max_length=120)
    description: str = Field(default="", max_length=2000)

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        return printable(name)


def _validated(**values: object) -> DatasetFields:
    try:
        return DatasetFields.model_validate(values)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


# --- datasets ---------------------------------------------------------------------------------


def create_dataset(
    *, name: str, kind: str = DatasetKind.LORA_TRAINING, trigger_word: str = "", description: str = "",
    character_id: int | None = None,
) -> Dataset:
    fields = _validated(name=name, kind=kind, trigger_word=trigger_word, description=description)
    dataset = Dataset(**fields.model_dump(), character_id=owner(character_id), status=DatasetStatus.EMPTY)
    try:
        with session_scope() as session:
            session.add(dataset)
    except IntegrityError:
        raise Conflict(f"a dataset named {fields.name!r} already exists") from None
    return dataset


def get_dataset(dataset_id: int) -> Dataset:
    return get_or_raise(Dataset, dataset_id, f"dataset {dataset_id}")


def list_datasets(
    *, status: str | None = None, kind: str | None = None, search: str | None = None,
    sort: SortField = "created", descending: bool = True, page: int = 1, page_size: int = 25,
) -> Page[Dataset]:
    page, page_size = clamp(page, page_size, max_page_size=MAX_PAGE_SIZE)
    conditions = []
    if status:
        conditions.append(col(Dataset.status) == status)
    if kind:
        conditions.append(col(Dataset.kind) == kind)
    if search and search.strip():
        pattern = f"%{search.strip().lower()}%"
        conditions.append(or_(func.lower(col(Dataset.name)).like(pattern),
                              func.lower(col(Dataset.trigger_word)).like(pattern)))
    conditions += in_scope(col(Dataset.character_id))
    column = _SORT_COLUMNS[sort]
    order = (column.desc(), col(Dataset.id).desc()) if descending else (column.asc(), col(Dataset.id).asc())
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(Dataset).where(*conditions)).scalar_one()
        items = session.execute(
            select(Dataset).where(*conditions).order_by(*order).offset((page - 1) * page_size).limit(page_size)
        ).scalars().all()
    return Page(list(items), int(total), page, page_size)


def update_dataset(dataset_id: int, *, name: str, kind: str, trigger_word: str, description: str) -> Dataset:
    fields = _validated(name=name, kind=kind, trigger_word=trigger_word, description=description)
    try:
        with session_scope() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:
                raise NotFound(f"dataset {dataset_id} does not exist")
            for key, value in fields.model_dump().items():
                setattr(dataset, key, value)
            dataset.updated_at = utcnow()
    except IntegrityError:
        raise Conflict(f"a dataset named {fields.name!r} already exists") from None
    return dataset


def delete_dataset(dataset_id: int) -> int:
    """Deletes the dataset, its image rows and every object under its prefix; returns objects removed."""
    get_dataset(dataset_id)
    with session_scope() as session:
        session.execute(delete(DatasetImage).where(col(DatasetImage.dataset_id) == dataset_id))
        session.execute(delete(Dataset).where(col(Dataset.id) == dataset_id))
    return get_object_store().delete_prefix(f"datasets/{dataset_id}/")


class DatasetStatus:
    """Where a dataset stands on its way to training, derived from its images after every change."""

    EMPTY = "empty"
    NEEDS_CAPTIONS = "needs captions"
    NEEDS_REVIEW = "needs review"
    READY = "ready"

    ALL = (EMPTY, NEEDS_CAPTIONS, NEEDS_REVIEW, READY)


_change_listeners: list[Callable[[int], None]] = []


def on_images_changed(listener: Callable[[int], None]) -> None:
    """Call ``listener(dataset_id)`` after images are added or removed (the face fingerprint follows)."""
    _change_listeners.append(listener)


def _images_changed(dataset_id: int) -> None:
    for listener in _change_listeners:
        listener(dataset_id)


def refresh_dataset_state(dataset_id: int) -> None:
    """Recomputes the stored image count and status (kept on the row so lists filter and sort cheaply)."""
    images = col(DatasetImage.dataset_id) == dataset_id
    with session_scope() as session:
        total, missing, unreviewed = session.execute(
            select(
                func.count(),
                func.count().filter(func.length(func.trim(DatasetImage.caption)) == 0),
                func.count().filter(col(DatasetImage.reviewed).is_(False)),
            ).where(images)
        ).one()
        if not total:
            status = DatasetStatus.EMPTY
        elif missing:
            status = DatasetStatus.NEEDS_CAPTIONS
        elif unreviewed:
            status = DatasetStatus.NEEDS_REVIEW
        else:
            status = DatasetStatus.READY
        session.execute(
            update(Dataset).where(col(Dataset.id) == dataset_id)
            .values(image_count=total, status=status, updated_at=utcnow())
        )


# --- importing images ---------------------------------------------------------------------------


def import_limits() -> ImportLimits:
    settings = get_settings()
    mb = 1024 * 1024
    return ImportLimits(
        max_file_bytes=settings.upload_max_file_mb * mb,
        max_pixels=settings.upload_max_pixels,
        max_zip_bytes=settings.upload_max_zip_mb * mb,
        max_zip_uncompressed_bytes=settings.upload_max_zip_uncompressed_mb * mb,
    )


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)  # file names
    duplicates: list[str] = field(default_factory=list)  # messages
    errors: list[str] = field(default_factory=list)  # messages naming the file

    @property
    def summary(self) -> str:
        return f"{len(self.added)} added, {len(self.duplicates)} duplicate(s) skipped, {len(self.errors)} rejected"


def image_keys(dataset_id: int, prepared: PreparedImage) -> tuple[str, str]:
    stem = prepared.sha256[:32]
    return f"datasets/{dataset_id}/images/{stem}{prepared.extension}", f"datasets/{dataset_id}/thumbs/{stem}.jpg"


def _store_one(dataset_id: int, filename: str, prepared: PreparedImage, caption: str | None) -> bool:
    """Stores one prepared image; False when the dataset already has it (same original bytes)."""
    with session_scope() as session:
        exists = session.execute(
            select(col(DatasetImage.id))
            .where(col(DatasetImage.dataset_id) == dataset_id, col(DatasetImage.sha256) == prepared.sha256)
        ).first()
    if exists:
        return False
    key, thumb_key = image_keys(dataset_id, prepared)
    store = get_object_store()
    store.put_bytes(key, prepared.data, content_type=prepared.content_type)
    store.put_bytes(thumb_key, prepared.thumbnail, content_type="image/jpeg")
    row = DatasetImage(
        dataset_id=dataset_id, key=key, thumbnail_key=thumb_key, filename=display_name(filename, max_length=255),
        width=prepared.width, height=prepared.height, sha256=prepared.sha256, content_type=prepared.content_type,
        phash=prepared.phash, blur=prepared.blur,
        caption=caption or "", caption_source="import" if caption else None,
    )
    try:
        with session_scope() as session:
            session.add(row)
    except IntegrityError:
        return False  # imported concurrently; the objects are the same bytes under the same keys
    return True


def _expand(files: Sequence[tuple[str, bytes]], limits: ImportLimits, report: ImportReport) -> list[tuple[str, bytes]]:
    """Zips become their entries; rejected archives and entries are reported."""
    expanded: list[tuple[str, bytes]] = []
    for filename, data in files:
        if filename.lower().endswith(".zip"):
            try:
                entries, errors = read_archive(data, filename=filename, limits=limits)
            except ImageRejected as error:
                report.errors.append(str(error))
                continue
            report.errors.extend(f"{display_name(filename)}: {e.name}: {e.message}" for e in errors)
            expanded.extend((entry.name, entry.data) for entry in entries)
        else:
            expanded.append((filename, data))
    return expanded


def import_files(
    dataset_id: int, files: Sequence[tuple[str, bytes]], *, limits: ImportLimits | None = None
) -> ImportReport:
    """Imports images and zips (a training-folder zip brings its ``.txt`` captions along)."""
    get_dataset(dataset_id)
    limits = limits or import_limits()
    report = ImportReport()
    entries = _expand(files, limits, report)
    # Cleaned like every caption: a caption file may hold a NUL (PostgreSQL refuses it) or terminal escapes.
    captions = {
        str(PurePosixPath(name).with_suffix("")): clean_caption(data.decode("utf-8", errors="replace"))
        for name, data in entries
        if name.lower().endswith(".txt")
    }
    for name, data in entries:
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".txt":
            continue
        try:
            prepared = prepare_image(data, filename=name, limits=limits)
        except ImageRejected as error:
            report.errors.append(str(error))
            continue
        caption = captions.get(str(PurePosixPath(name).with_suffix("")))
        if _store_one(dataset_id, PurePosixPath(name).name, prepared, caption):
            report.added.append(name)
        else:
            report.duplicates.append(f"{display_name(name)}: already in this dataset (same file), skipped")
    refresh_dataset_state(dataset_id)
    if report.added:
        _images_changed(dataset_id)
    return report


def prepare_caption_payload(payload: CaptionPayload) -> tuple[CaptionPayload, int | None]:
    """Called by ``create_job``: a caption job for a dataset that does not exist is refused, not queued."""
    with referenced_by("dataset_id"):
        return payload, get_dataset(payload.dataset_id).character_id


def create_demo_dataset(
    *, name: str = "Demo character", trigger_word: str = "ohwx person"
) -> tuple[Dataset, ImportReport]:
    """A 15-image dataset drawn procedurally, so demos and tests work on a fresh machine offline."""
    dataset = create_dataset(name=name, trigger_word=trigger_word, description="Procedurally drawn demo images.")
    assert dataset.id is not None  # a created dataset is stored
    return dataset, import_files(dataset.id, generate_demo_images())


# --- images -----------------------------------------------------------------------------------------

ImageFilter = Literal["all", "unreviewed", "missing", "long"]


def _long_caption_ids(dataset_id: int) -> list[int]:
    """Images whose caption is over the CLIP token limit (counted with the training tokenizer)."""
    with session_scope() as session:
        rows = session.execute(
            select(col(DatasetImage.id), col(DatasetImage.caption)).where(col(DatasetImage.dataset_id) == dataset_id)
        ).all()
    counts = count_tokens_many([caption for _, caption in rows], tokenizer=get_settings().clip_tokenizer or None)
    return [image_id for (image_id, _), count in zip(rows, counts, strict=True) if count > TOKEN_LIMIT]


def list_images(
    dataset_id: int, *, which: ImageFilter = "all", page: int = 1, page_size: int = 24
) -> Page[DatasetImage]:
    page, page_size = clamp(page, page_size, max_page_size=MAX_PAGE_SIZE)
    conditions = [col(DatasetImage.dataset_id) == dataset_id]
    if which == "unreviewed":
        conditions.append(col(DatasetImage.reviewed).is_(False))
    elif which == "missing":
        conditions.append(func.length(func.trim(col(DatasetImage.caption))) == 0)
    elif which == "long":
        conditions.append(col(DatasetImage.id).in_(_long_caption_ids(dataset_id)))
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(DatasetImage).where(*conditions)).scalar_one()
        items = session.execute(
            select(DatasetImage).where(*conditions).order_by(col(DatasetImage.id))
            .offset((page - 1) * page_size).limit(page_size)
        ).scalars().all()
    return Page(list(items), int(total), page, page_size)


def all_images(dataset_id: int) -> list[DatasetImage]:
    """Every image of a dataset, in order (for jobs and exports; datasets hold hundreds, not millions)."""
    with session_scope() as session:
        return list(
            session.execute(
                select(DatasetImage).where(col(DatasetImage.dataset_id) == dataset_id).order_by(col(DatasetImage.id))
            ).scalars()
        )


def delete_images(dataset_id: int, image_ids: Sequence[int]) -> int:
    with session_scope() as session:
        rows = session.execute(
            select(DatasetImage).where(col(DatasetImage.dataset_id) == dataset_id, col(DatasetImage.id).in_(image_ids))
        ).scalars().all()
        keys = [k for row in rows for k in (row.key, row.thumbnail_key) if k]
        session.execute(delete(DatasetImage).where(col(DatasetImage.id).in_([row.id for row in rows])))
    store = get_object_store()
    for key in keys:
        store.delete(key)
    refresh_dataset_state(dataset_id)
    if rows:
        _images_changed(dataset_id)
    return len(rows)


def read_thumbnail(image: DatasetImage) -> bytes:
    return get_object_store().get_bytes(image.thumbnail_key or image.key)


def read_image(image: DatasetImage) -> bytes:
    return get_object_store().get_bytes(image.key)


# --- export -----------------------------------------------------------------------------------------


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_training_zip(dataset_id: int) -> bytes:
    """The kohya / diffusers training-folder layout: ``name.png`` beside ``name.txt`` with its caption."""
    images = all_images(dataset_id)
    if not images:
        raise InvalidInput("the dataset has no images to export")
    used: set[str] = set()  # stems: photo.png and photo.jpg would both want photo.txt
    items = []
    for index, image in enumerate(images, start=1):
        stem = _UNSAFE.sub("_", PurePosixPath(image.filename).stem).strip("._") or "image"
        if stem.casefold() in used:
            stem = f"{stem}_{index:04d}"
        used.add(stem.casefold())
        items.append((f"{stem}{PurePosixPath(image.key).suffix}", read_image(image), image.caption))
    return make_training_zip(items)


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec("caption", Queue.GPU, CaptionPayload, "Auto-captions a dataset's images (BLIP).", time_limit_s=7200,
                 prepare=prepare_caption_payload))
