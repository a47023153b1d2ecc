"""Collections: named sets of library assets (boards). An asset can be in several collections;
deleting a collection removes its memberships, never the assets.

Membership is idempotent (adding an asset twice keeps one row); only assets that exist and are
not in the trash can be added, so a board never silently gains an invisible item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.db import affected_rows, session_scope
from core.errors import Conflict, InvalidInput, NotFound, describe_validation_error
from core.fields import NamedFields
from core.library.ids import describe_ids, unique_asset_ids
from core.models import Asset, Collection, CollectionItem, utcnow
from core.pagination import Page, clamp

MAX_PAGE_SIZE = 100


class CollectionFields(NamedFields):
    """What a user types when creating or renaming one."""


@dataclass(frozen=True)
class CollectionSummary:
    """A collection with the number of its assets that are not in the trash."""

    id: int
    name: str
    description: str
    item_count: int
    created_at: datetime
    updated_at: datetime


def _validated(**values: object) -> CollectionFields:
    try:
        return CollectionFields.model_validate(values)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


def _duplicate(name: str) -> Conflict:
    return Conflict(f"a collection named {name!r} already exists; pick another name")


def create_collection(*, name: str, description: str = "") -> Collection:
    fields = _validated(name=name, description=description)
    collection = Collection(name=fields.name, description=fields.description)
    try:
        with session_scope() as session:
            session.add(collection)
            session.flush()
            session.refresh(collection)
    except IntegrityError:
        raise _duplicate(fields.name) from None
    return collection


def get_collection(collection_id: int) -> Collection:
    with session_scope() as session:
        collection = session.get(Collection, collection_id)
    if collection is None:
        raise NotFound(f"collection {collection_id} does not exist")
    return collection


def rename_collection(collection_id: int, *, name: str, description: str | None = None) -> Collection:
    """A new name (and, when given, a new description)."""
    current = get_collection(collection_id)
    fields = _validated(name=name, description=current.description if description is None else description)
    try:
        with session_scope() as session:
            session.execute(update(Collection).where(col(Collection.id) == collection_id)
                            .values(name=fields.name, description=fields.description, updated_at=utcnow()))
    except IntegrityError:
        raise _duplicate(fields.name) from None
    return get_collection(collection_id)


def delete_collection(collection_id: int) -> int:
    """Delete the collection and its memberships (the assets stay); returns the memberships removed."""
    get_collection(collection_id)
    with session_scope() as session:
        removed = session.execute(delete(CollectionItem).where(col(CollectionItem.collection_id) == collection_id))
        session.execute(delete(Collection).where(col(Collection.id) == collection_id))
    return affected_rows(removed)


def list_collections(*, page: int = 1, page_size: int = 50) -> Page[CollectionSummary]:
    """Collections by name, each with its live item count (one grouped query for the page)."""
    page, page_size = clamp(page, page_size, max_page_size=MAX_PAGE_SIZE)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(Collection)).scalar_one()
        rows = list(session.execute(
            select(Collection).order_by(col(Collection.name), col(Collection.id))
            .offset((page - 1) * page_size).limit(page_size)
        ).scalars())
        counts: dict[int, int] = {}
        if rows:
            counts = dict(session.execute(
                select(col(CollectionItem.collection_id), func.count())
                .join(Asset, col(Asset.id) == col(CollectionItem.asset_id))
                .where(col(CollectionItem.collection_id).in_([c.id for c in rows]), col(Asset.deleted_at).is_(None))
                .group_by(col(CollectionItem.collection_id))
            ).all())
    items = [CollectionSummary(id=c.id or 0, name=c.name, description=c.description,
                               item_count=int(counts.get(c.id or 0, 0)), created_at=c.created_at,
                               updated_at=c.updated_at) for c in rows]
    return Page(items=items, total=int(total), page=page, page_size=page_size)


def add_to_collection(collection_id: int, asset_ids: Sequence[int]) -> int:
    """Add assets (idempotent); returns how many were not in it yet. Missing or trashed assets are
    refused (nothing is added then)."""
    ids = unique_asset_ids(asset_ids)
    collection = get_collection(collection_id)
    if not ids:
        return 0
    for _attempt in range(2):  # a concurrent add of the same asset wins the race: look again once
        with session_scope() as session:
            found = dict(session.execute(
                select(col(Asset.id), col(Asset.deleted_at)).where(col(Asset.id).in_(ids))).all())
            if missing := [i for i in ids if i not in found]:
                raise NotFound(f"asset(s) {describe_ids(missing)} do not exist")
            if trashed := [i for i in ids if found[i] is not None]:
                raise Conflict(f"asset(s) {describe_ids(trashed)} are in the trash; restore them before adding them "
                               f"to {collection.name!r}")
            present = set(session.execute(
                select(col(CollectionItem.asset_id))
                .where(col(CollectionItem.collection_id) == collection_id, col(CollectionItem.asset_id).in_(ids))
            ).scalars())
            new = [i for i in ids if i not in present]
            if not new:
                return 0
            now = utcnow()
            try:
                session.execute(insert(CollectionItem),
                                [{"collection_id": collection_id, "asset_id": i, "added_at": now} for i in new])
                session.execute(update(Collection).where(col(Collection.id) == collection_id).values(updated_at=now))
                session.flush()
            except IntegrityError:
                session.rollback()
                continue
        return len(new)
    raise Conflict("the collection changed while adding; try again")


def remove_from_collection(collection_id: int, asset_ids: Sequence[int]) -> int:
    """Take assets out of a collection (the assets stay); returns how many were in it."""
    ids = unique_asset_ids(asset_ids)
    get_collection(collection_id)
    if not ids:
        return 0
    with session_scope() as session:
        removed = session.execute(delete(CollectionItem).where(
            col(CollectionItem.collection_id) == collection_id, col(CollectionItem.asset_id).in_(ids)))
        if affected_rows(removed):
            session.execute(update(Collection).where(col(Collection.id) == collection_id).values(updated_at=utcnow()))
    return affected_rows(removed)


def collections_of(asset_id: int) -> list[Collection]:
    """The collections an asset is in (for its detail view)."""
    with session_scope() as session:
        return list(session.execute(
            select(Collection).join(CollectionItem, col(CollectionItem.collection_id) == col(Collection.id))
            .where(col(CollectionItem.asset_id) == asset_id).order_by(col(Collection.name)).limit(100)
        ).scalars())
