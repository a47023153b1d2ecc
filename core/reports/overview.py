"""The character at a glance (the Home page): its datasets, LoRA versions, latest images and videos,
next posts, and the work running now.

Every read is a few rows through an index (a LIMIT on an indexed order, or primary keys), so the page
costs the same with ten thousand assets and jobs as with ten. The character is the switcher's
(``core.characters.characters.current_character``); every list keeps to its rows and to rows of no character
(``core.characters.scope``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import col

from core.automation import pipelines
from core.characters import characters
from core.datasets import datasets
from core.db import session_scope
from core.errors import NotFound
from core.jobs import lifecycle as jobs
from core.library import assets
from core.models import Asset, Character, Dataset, DatasetImage, Job, JobStatus, LoraModel, Pipeline, Post
from core.publishing import posts
from core.training import runs as training


@dataclass(frozen=True)
class DatasetGlance:
    dataset: Dataset
    captioned: int  # images with a non-empty caption

    @property
    def images(self) -> int:
        return self.dataset.image_count


@dataclass(frozen=True)
class VideoGlance:
    video: Asset
    poster: Asset | None  # its first image (videos have no thumbnail of their own)

    @property
    def duration(self) -> float | None:
        value = self.video.meta.get("duration")
        return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Overview:
    character: Character
    trigger_word: str
    trigger_from_latest: bool  # no promoted LoRA or character word: the latest LoRA's word is shown
    datasets: list[DatasetGlance]
    dataset_total: int
    loras: list[LoraModel]  # the latest versions
    promoted: LoraModel | None  # may be older than the latest ones shown
    lora_total: int
    images: list[Asset]
    image_total: int
    videos: list[VideoGlance]
    video_total: int
    upcoming: list[Post]
    running_jobs: list[Job]
    running_total: int
    queued_total: int
    active_pipelines: list[Pipeline]  # queued or running


def _captioned(dataset_ids: list[int]) -> dict[int, int]:
    """Captioned images per dataset: only the given datasets' rows, through ix_datasetimage_dataset_id_id."""
    if not dataset_ids:
        return {}
    with session_scope() as session:
        rows = session.execute(
            select(col(DatasetImage.dataset_id), func.count())
            .where(col(DatasetImage.dataset_id).in_(dataset_ids), func.length(func.trim(col(DatasetImage.caption))) > 0)
            .group_by(col(DatasetImage.dataset_id))).all()
    return {int(dataset_id): int(count) for dataset_id, count in rows}


def _poster(video: Asset) -> Asset | None:
    ids = video.meta.get("image_asset_ids") or []
    if not ids:
        return None
    try:
        return assets.get_asset(int(ids[0]))
    except NotFound:  # the image was purged; the video stays
        return None


def character_overview(*, datasets_shown: int = 4, loras_shown: int = 6, media_shown: int = 6,
                       posts_shown: int = 5, jobs_shown: int = 5) -> Overview:
    """One read of everything the Home page shows, each list bounded by its ``*_shown``."""
    character = characters.current_character()
    dataset_page = datasets.list_datasets(page_size=datasets_shown)
    counts = _captioned([d.id for d in dataset_page.items if d.id is not None])
    lora_page = training.list_loras(page_size=loras_shown)
    promoted = training.promoted_lora(character.id) or training.promoted_lora(None)
    running = jobs.list_jobs(statuses=[JobStatus.RUNNING], page_size=jobs_shown)
    trigger = characters.trigger_word_of(character.id)
    latest_trigger = next((lora.trigger_word for lora in lora_page.items if lora.trigger_word), "")
    image_page = assets.list_assets(assets.AssetFilter(kind="image"), page_size=media_shown)
    video_page = assets.list_assets(assets.AssetFilter(kind="video"), page_size=media_shown)
    return Overview(
        character=character,
        trigger_word=trigger or latest_trigger,
        trigger_from_latest=not trigger and bool(latest_trigger),
        datasets=[DatasetGlance(d, counts.get(d.id or 0, 0)) for d in dataset_page.items],
        dataset_total=dataset_page.total,
        loras=lora_page.items,
        promoted=promoted,
        lora_total=lora_page.total,
        images=image_page.items,
        image_total=image_page.total,
        videos=[VideoGlance(v, _poster(v)) for v in video_page.items],
        video_total=video_page.total,
        upcoming=posts.upcoming_posts(limit=posts_shown),
        running_jobs=running.items,
        running_total=running.total,
        queued_total=jobs.list_jobs(statuses=[JobStatus.QUEUED], page_size=1).total,
        active_pipelines=pipelines.list_pipelines(statuses=[JobStatus.QUEUED, JobStatus.RUNNING],
                                                  page_size=jobs_shown).items,
    )
