"""A character's lineage, as its page reads it: datasets → LoRA versions (promoted marked) → images → videos →
posts, with counts. Each list is bounded and each count one indexed query, whatever the studio's size."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlmodel import col

from core.db import session_scope
from core.models import Asset, AssetKind, AssetLora, Dataset, LoraModel, Post


@dataclass(frozen=True)
class LoraLine:
    lora: LoraModel
    images: int  # images made with this version


@dataclass(frozen=True)
class DatasetLine:
    dataset: Dataset
    loras: list[LoraLine]
    lora_total: int


@dataclass(frozen=True)
class Lineage:
    datasets: list[DatasetLine]
    dataset_total: int
    images: int  # generated images of the character (samples and references aside)
    videos: int
    posts: dict[str, int]  # by status


def _images_by_lora(lora_ids: list[int]) -> dict[int, int]:
    if not lora_ids:
        return {}
    with session_scope() as session:
        rows = session.execute(select(col(AssetLora.lora_id), func.count()).join(Asset, col(Asset.id) == col(
            AssetLora.asset_id)).where(col(AssetLora.lora_id).in_(lora_ids), col(Asset.deleted_at).is_(None))
            .group_by(col(AssetLora.lora_id))).all()
    return {int(lora_id): int(count) for lora_id, count in rows}


def character_lineage(character_id: int, *, datasets_shown: int = 10, loras_shown: int = 8) -> Lineage:
    with session_scope() as session:
        mine = col(Dataset.character_id) == character_id
        dataset_total = session.execute(select(func.count()).select_from(Dataset).where(mine)).scalar_one()
        found = list(session.execute(select(Dataset).where(mine).order_by(col(Dataset.created_at).desc())
                                     .limit(datasets_shown)).scalars())
        versions: dict[int, list[LoraModel]] = {}
        totals: dict[int, int] = {}
        for dataset in found:
            owned = (col(LoraModel.dataset_id) == dataset.id, col(LoraModel.character_id) == character_id)
            totals[dataset.id or 0] = session.execute(select(func.count()).select_from(LoraModel)
                                                      .where(*owned)).scalar_one()
            versions[dataset.id or 0] = list(session.execute(
                select(LoraModel).where(*owned).order_by(col(LoraModel.promoted).desc(),
                                                         col(LoraModel.created_at).desc()).limit(loras_shown)).scalars())

        def count(kind: str, source: str | None = None) -> int:
            query = select(func.count()).select_from(Asset).where(
                col(Asset.character_id) == character_id, col(Asset.kind) == kind, col(Asset.deleted_at).is_(None))
            if source is not None:
                query = query.where(col(Asset.source) == source)
            return int(session.execute(query).scalar_one())

        images, videos = count(AssetKind.IMAGE, "generated"), count(AssetKind.VIDEO)
        posts = {status: int(n) for status, n in session.execute(
            select(col(Post.status), func.count()).where(col(Post.character_id) == character_id)
            .group_by(col(Post.status))).all()}
    by_lora = _images_by_lora([lora.id for loras in versions.values() for lora in loras if lora.id is not None])
    lines = [DatasetLine(d, [LoraLine(lora, by_lora.get(lora.id or 0, 0)) for lora in versions[d.id or 0]],
                         totals[d.id or 0]) for d in found]
    return Lineage(lines, int(dataset_total), images, videos, posts)
