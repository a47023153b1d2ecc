"""Named LoRA training configs: create, edit, clone, delete, and exactly one default.

A config stores a full ``LoraParams`` as JSON. Training jobs snapshot the params when they are
submitted, so editing a config never changes a run already queued; a config that a queued or
running job was made from cannot be deleted, so the runs list can always name it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.db import get_or_raise, session_scope
from core.errors import Conflict, InvalidInput, NotFound, describe_validation_error
from core.fields import NamedFields
from core.models import Job, JobStatus, LoraConfig, utcnow
from core.pagination import Page, clamp
from core.training.params import LoraParams, parse_params

TRAIN_KIND = "train"
MAX_PAGE_SIZE = 100


class ConfigFields(NamedFields):
    """What a user types when creating or renaming one."""


def _fields(name: str, description: str) -> ConfigFields:
    try:
        return ConfigFields(name=name, description=description)
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(error)) from None


def params_of(config: LoraConfig) -> LoraParams:
    """The config's params; values saved by an older studio get today's defaults for new fields."""
    return LoraParams.model_validate(config.params)


def get_config(config_id: int) -> LoraConfig:
    return get_or_raise(LoraConfig, config_id, f"LoRA config {config_id}")


def get_config_by_name(name: str) -> LoraConfig:
    with session_scope() as session:
        config = session.execute(select(LoraConfig).where(col(LoraConfig.name) == name)).scalar_one_or_none()
    if config is None:
        raise NotFound(f"LoRA config {name!r} not found")
    return config


def get_default_config() -> LoraConfig:
    with session_scope() as session:
        config = session.execute(select(LoraConfig).where(col(LoraConfig.is_default).is_(True))).scalar_one_or_none()
    if config is None:
        raise NotFound("there is no default LoRA config; create one or mark one as default")
    return config


def list_configs(*, page: int = 1, page_size: int = 50) -> Page[LoraConfig]:
    """Configs by name (the unique index on name serves the sort)."""
    page, page_size = clamp(page, page_size, max_page_size=MAX_PAGE_SIZE)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(LoraConfig)).scalar_one()
        items = list(session.execute(
            select(LoraConfig).order_by(LoraConfig.name).offset((page - 1) * page_size).limit(page_size)
        ).scalars())
    return Page(items=items, total=total, page=page, page_size=page_size)


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a LoRA config named {name!r} already exists")


def create_config(
    *, name: str, params: dict[str, Any] | LoraParams, description: str = "", make_default: bool = False
) -> LoraConfig:
    fields = _fields(name, description)
    validated = params if isinstance(params, LoraParams) else parse_params(params)
    config = LoraConfig(name=fields.name, description=fields.description, params=validated.model_dump(mode="json"))
    try:
        with session_scope() as session:
            session.add(config)
            session.flush()
            if make_default:
                _make_default(session, config.id)
    except IntegrityError:
        raise _name_taken(fields.name) from None
    assert config.id is not None  # the flush gave the row its id
    return get_config(config.id)


def update_config(
    config_id: int, *, name: str, params: dict[str, Any] | LoraParams, description: str = ""
) -> LoraConfig:
    fields = _fields(name, description)
    validated = params if isinstance(params, LoraParams) else parse_params(params)
    try:
        with session_scope() as session:
            config = session.get(LoraConfig, config_id)
            if config is None:
                raise NotFound(f"LoRA config {config_id} not found")
            config.name = fields.name
            config.description = fields.description
            config.params = validated.model_dump(mode="json")
            config.updated_at = utcnow()
    except IntegrityError:
        raise _name_taken(fields.name) from None
    return get_config(config_id)


def clone_config(config_id: int, *, name: str | None = None) -> LoraConfig:
    """A copy under a new name ("<name> (copy)", "(copy 2)"… unless one is given); never the default."""
    source = get_config(config_id)
    if name is None:
        name = _free_copy_name(source.name)
    return create_config(name=name, params=params_of(source), description=source.description)


def _free_copy_name(name: str) -> str:
    base = f"{name[:100]} (copy"
    with session_scope() as session:
        taken = set(session.execute(
            select(col(LoraConfig.name)).where(col(LoraConfig.name).startswith(base))).scalars())
    candidate, number = f"{base})", 2
    while candidate in taken:
        candidate, number = f"{base} {number})", number + 1
    return candidate


def _make_default(session: Any, config_id: int | None) -> None:
    # Clear first, then set: the partial unique index would reject two defaults at once.
    session.execute(update(LoraConfig).where(col(LoraConfig.is_default).is_(True)).values(is_default=False))
    session.execute(update(LoraConfig).where(col(LoraConfig.id) == config_id).values(is_default=True))


def set_default_config(config_id: int) -> LoraConfig:
    """Make this config the default, in one transaction with un-marking the previous one."""
    with session_scope() as session:
        if session.get(LoraConfig, config_id) is None:
            raise NotFound(f"LoRA config {config_id} not found")
        _make_default(session, config_id)
    return get_config(config_id)


def active_jobs_using(config_id: int) -> list[str]:
    """Ids of queued or running training jobs made from this config.

    Active jobs are few and the (status, created_at) index finds them; the config id lives in
    their payload, which is checked here rather than in portable-but-slow JSON SQL.
    """
    with session_scope() as session:
        rows = session.execute(
            select(col(Job.id), col(Job.payload)).where(
                col(Job.status).in_([JobStatus.QUEUED, JobStatus.RUNNING]), col(Job.kind) == TRAIN_KIND
            )
        ).all()
    return [job_id for job_id, payload in rows if (payload or {}).get("config_id") == config_id]


def delete_config(config_id: int) -> None:
    """Delete a config unless it is the default or an active training job uses it."""
    config = get_config(config_id)
    if config.is_default:
        raise Conflict(f"{config.name!r} is the default config; make another one the default first")
    if jobs := active_jobs_using(config_id):
        raise Conflict(
            f"{config.name!r} is used by {len(jobs)} queued or running training job(s) "
            f"({', '.join(j[:8] for j in jobs[:3])}); cancel them or wait until they finish"
        )
    with session_scope() as session:
        # SQLModel's types do not declare the __table__ that SQLAlchemy gives every table class
        session.execute(LoraConfig.__table__.delete().where(col(LoraConfig.id) == config_id))  # type: ignore[attr-defined]
