"""The asset library: every file the studio made or keeps (generated images, training samples,
LoRA files, videos, audio), with lineage, collections and a trash.

Writers (generation, training, video jobs) call :func:`record_asset`, which is idempotent per
storage key so a redelivered job rewrites rather than duplicates. Readers list with filters and
pagination; deleting moves to the trash (``deleted_at``), restoring takes it back out, purging
removes the objects from storage and the row for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from core.db import get_or_raise, session_scope
from core.images import make_thumbnail
from core.models import Asset, AssetKind, AssetLora, CollectionItem
from core.storage import get_object_store


class AssetSource:
    """What made an asset (``Asset.source``)."""

    GENERATED = "generated"  # the generation job
    SAMPLE = "sample"  # a training run's sample image
    LORA = "lora"  # a saved LoRA version's weights file
    UPLOAD = "upload"
    VIDEO = "video"
    VOICE = "voice"


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
    values = dict(kind=kind, source=source, content_type=content_type, size_bytes=size_bytes, job_id=job_id,
                  character_id=character_id, dataset_id=dataset_id, prompt=prompt, width=width, height=height,
                  thumbnail_key=thumbnail, meta=meta or {})
    with session_scope() as session:
        asset = session.execute(select(Asset).where(Asset.key == key)).scalar_one_or_none()
        if asset is None:
            asset = Asset(key=key, **values)
        else:
            for name, value in values.items():
                setattr(asset, name, value)
        session.add(asset)
        session.flush()
        session.execute(delete(AssetLora).where(AssetLora.asset_id == asset.id))
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
        return session.execute(select(Asset).where(Asset.key == key)).scalar_one_or_none()


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
        assets = list(session.execute(select(Asset).where(Asset.id.in_(asset_ids))).scalars())
    store = get_object_store()
    for asset in assets:
        store.delete(asset.key)
        if asset.thumbnail_key:
            store.delete(asset.thumbnail_key)
    ids = [a.id for a in assets]
    with session_scope() as session:
        session.execute(delete(AssetLora).where(AssetLora.asset_id.in_(ids)))
        session.execute(delete(CollectionItem).where(CollectionItem.asset_id.in_(ids)))
        session.execute(delete(Asset).where(Asset.id.in_(ids)))
    return len(ids)
