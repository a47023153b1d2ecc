"""A character's reference images: a few photos that say what the character looks like, stored as image assets
(source ``reference``) tied to the character, validated like every upload (``prepare_image``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from core.datasets.images import prepare_image
from core.db import session_scope
from core.errors import InvalidInput
from core.infra.storage import get_object_store, validate_key
from core.library import assets
from core.library.assets import AssetSource
from core.models import Asset, AssetKind

MAX_REFERENCES = 12  # "a few": what a reference-conditioned generation can use


def _live_references(character_id: int) -> list[Any]:
    return [col(Asset.character_id) == character_id, col(Asset.source) == AssetSource.REFERENCE,
            col(Asset.deleted_at).is_(None)]


def reference_count(character_id: int) -> int:
    with session_scope() as session:
        return int(session.execute(select(func.count()).select_from(Asset)
                                   .where(*_live_references(character_id))).scalar_one())


def add_reference_image(*, character_id: int, data: bytes, filename: str) -> Asset:
    """Validate and store one reference image; the same file twice is stored once. Raises InvalidInput."""
    image = prepare_image(data, filename=filename)
    if reference_count(character_id) >= MAX_REFERENCES:
        raise InvalidInput(f"a character has at most {MAX_REFERENCES} reference images; remove one first")
    key = validate_key(f"characters/{character_id}/references/{image.sha256[:24]}{image.extension}")
    thumb = assets.thumbnail_key(key)
    store = get_object_store()
    store.put_bytes(key, image.data, image.content_type)
    store.put_bytes(thumb, image.thumbnail, "image/jpeg")
    return assets.record_asset(key=key, kind=AssetKind.IMAGE, source=AssetSource.REFERENCE,
                               content_type=image.content_type, size_bytes=len(image.data), character_id=character_id,
                               width=image.width, height=image.height, thumbnail=thumb,
                               meta={"filename": filename[:200]})


def reference_images(character_id: int) -> list[Asset]:
    """The character's reference images, oldest first (at most MAX_REFERENCES)."""
    with session_scope() as session:
        return list(session.execute(select(Asset).where(*_live_references(character_id))
                                    .order_by(col(Asset.id)).limit(MAX_REFERENCES)).scalars())


def remove_reference_image(*, character_id: int, asset_id: int) -> None:
    """Moves the reference to the trash (restorable from the library's trash like any asset)."""
    if asset_id not in {a.id for a in reference_images(character_id)}:
        raise InvalidInput(f"asset {asset_id} is not a reference image of this character")
    assets.trash_assets([asset_id])


def add_reference_from_asset(*, character_id: int, asset_id: int) -> Asset:
    """Use one of the character's library images as a reference (a copy: trashing either keeps the other)."""
    asset = assets.get_asset(asset_id)
    if asset.kind != AssetKind.IMAGE or asset.deleted_at is not None or asset.character_id != character_id:
        raise InvalidInput(f"asset {asset_id} is not an image of this character in the library")
    data = get_object_store().get_bytes(asset.key)
    return add_reference_image(character_id=character_id, data=data, filename=f"asset-{asset_id}.png")
