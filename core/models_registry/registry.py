"""The registry of installed base models and the listing of every LoRA, for the model manager.

One table, ``InstalledModel``: a base model is installed when a diffusers folder on this machine holds it,
whether it was registered in place (a local folder, never copied or deleted), converted from a single
``.safetensors`` at install, or downloaded from the hub. Loaders resolve a name through :func:`resolve`
(``core.training.runs.resolve_base_model`` asks here first), so training, generation and LoRA import take an
installed model's name; names and hub ids that are not installed keep working as before.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import Conflict, InvalidInput, NotFound
from core.models import InstalledModel, Job, JobStatus, LoraModel, utcnow
from core.models_registry.files import FORMAT_LABELS, folder_family, folder_stats
from core.pagination import Page, clamp
from core.training.families import FAMILY_LABELS

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
READY, INSTALLING, FAILED = "ready", "installing", "failed"
ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME.fullmatch(name) or ".." in name or name.endswith("/"):
        raise InvalidInput(f"model name {name!r}: letters, digits, '.', '_', '-' and '/' only (up to 200)")
    return name


def installed_dir() -> Path:
    """Where the studio keeps the models it converts or downloads (and may delete)."""
    return get_settings().models_dir / "installed"


def owned_path(name: str) -> Path:
    return installed_dir() / name.replace("/", "--")


# --- reads ------------------------------------------------------------------------------------------------


def get_model(name: str) -> InstalledModel:
    with session_scope() as session:
        model = session.execute(select(InstalledModel).where(col(InstalledModel.name) == name)).scalar_one_or_none()
    if model is None:
        raise NotFound(f"no installed model named {name!r}")
    return model


def resolve(name: str) -> str | None:
    """The folder of a ready installed model of that name, else None (the caller falls back)."""
    with session_scope() as session:
        path = session.execute(select(col(InstalledModel.path)).where(
            col(InstalledModel.name) == name, col(InstalledModel.status) == READY)).scalar_one_or_none()
    return path or None


PICKER_LIMIT = 200  # a picker lists at most this many models of a family (by name)


def ready_models(family: str | None = None, *, limit: int = PICKER_LIMIT) -> list[InstalledModel]:
    """Ready installed models (of one family), by name: what the Training and Generate pickers offer
    (``ix_installedmodel_family_status_name``)."""
    query = select(InstalledModel).where(col(InstalledModel.status) == READY)
    if family is not None:
        query = query.where(col(InstalledModel.family) == family)
    with session_scope() as session:
        return list(session.execute(query.order_by(col(InstalledModel.name)).limit(limit)).scalars())


def find_model(name: str) -> InstalledModel | None:
    with session_scope() as session:
        return session.execute(select(InstalledModel).where(col(InstalledModel.name) == name)).scalar_one_or_none()


def describe(model: InstalledModel) -> str:
    """A model as a picker option: name · family · format (plain text)."""
    text = f"{model.name} · {FAMILY_LABELS.get(model.family, model.family)} · " \
           f"{FORMAT_LABELS.get(model.format, model.format)}"
    return text + (f" + {model.base_model}" if model.base_model else "")


def list_models(*, page: int = 1, page_size: int = 50) -> Page[InstalledModel]:
    page, page_size = clamp(page, page_size, max_page_size=100)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(InstalledModel)).scalar_one()
        items = list(session.execute(
            select(InstalledModel).order_by(col(InstalledModel.created_at).desc(), col(InstalledModel.id).desc())
            .offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items=items, total=int(total), page=page, page_size=page_size)


@dataclass(frozen=True)
class LoraEntry:
    """A LoRA as the model manager lists it. Our stored file is diffusers' format in fp32 for trained LoRAs;
    an import keeps its checked keys (kohya-named, or diffusers as it came) in fp32; ``format`` is what the
    file came as."""

    id: int
    name: str
    family: str
    base_model: str
    format: str
    precision: str
    size_bytes: int
    source: str  # training | import
    installed_at: Any


def list_loras(*, page: int = 1, page_size: int = 50) -> Page[LoraEntry]:
    page, page_size = clamp(page, page_size, max_page_size=100)
    with session_scope() as session:
        total = session.execute(select(func.count()).select_from(LoraModel)).scalar_one()
        rows = session.execute(
            select(LoraModel, col(Job.kind), col(Job.payload)).join(Job, col(Job.id) == col(LoraModel.job_id))
            .order_by(col(LoraModel.created_at).desc(), col(LoraModel.id).desc())
            .offset((page - 1) * page_size).limit(page_size)).all()
    items = []
    for lora, kind, payload in rows:
        imported = kind == "import-lora"
        items.append(LoraEntry(
            id=lora.id or 0, name=lora.name, family=lora.family, base_model=lora.base_model,
            format=str((payload or {}).get("source_format") or "kohya") if imported else "diffusers",
            precision="fp32", size_bytes=lora.size_bytes, source="import" if imported else "training",
            installed_at=lora.created_at))
    return Page(items=items, total=int(total), page=page, page_size=page_size)


@dataclass(frozen=True)
class DiskUse:
    models: int
    model_bytes: int
    loras: int
    lora_bytes: int


def disk_use() -> DiskUse:
    with session_scope() as session:
        models, model_bytes = session.execute(
            select(func.count(), func.coalesce(func.sum(InstalledModel.size_bytes), 0))).one()
        loras, lora_bytes = session.execute(
            select(func.count(), func.coalesce(func.sum(LoraModel.size_bytes), 0))).one()
    return DiskUse(int(models), int(model_bytes), int(loras), int(lora_bytes))


# --- writes -----------------------------------------------------------------------------------------------


def _insert(row: InstalledModel) -> InstalledModel:
    with session_scope() as session:
        if session.execute(select(col(InstalledModel.id)).where(col(InstalledModel.name) == row.name)).first():
            raise Conflict(f"a model named {row.name!r} is already installed; remove it first or pick another name")
        session.add(row)
        session.flush()
        session.refresh(row)
    return row


def register_folder(*, path: str, name: str = "") -> InstalledModel:
    """Install a local diffusers folder in place: recorded, never copied (and never deleted by remove)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{path}: no such folder")
    family = folder_family(folder)
    size, precision = folder_stats(folder)
    return _insert(InstalledModel(
        name=check_name(name or folder.name), family=family, format="diffusers", precision=precision,
        size_bytes=size, source_kind="folder", source=str(folder), path=str(folder), status=READY,
        installed_at=utcnow()))


def begin_install(*, name: str, family: str, source_kind: str, source: str, fmt: str,
                  base_model: str | None = None) -> InstalledModel:
    """The row of an install a job will finish (``installing``; its path is the studio's own folder)."""
    name = check_name(name)
    return _insert(InstalledModel(name=name, family=family, format=fmt, source_kind=source_kind, source=source,
                                  path=str(owned_path(name)), status=INSTALLING, base_model=base_model))


def attach_job(name: str, job_id: str) -> None:
    _update(name, job_id=job_id)


def finish_install(name: str, *, path: Path, family: str | None = None,
                   stats: tuple[int, str] | None = None) -> InstalledModel:
    """``stats``: (bytes, precision) when the weights are not in ``path`` (a transformer file used in place)."""
    size, precision = stats or folder_stats(path)
    changes: dict[str, Any] = {"path": str(path), "size_bytes": size, "precision": precision, "status": READY,
                               "installed_at": utcnow(), "error": None}
    if family:
        changes["family"] = family
    return _update(name, **changes)


def fail_install(name: str, error: str) -> None:
    _update(name, status=FAILED, error=error[:2000])


def _update(name: str, **changes: Any) -> InstalledModel:
    with session_scope() as session:
        model = session.execute(select(InstalledModel).where(col(InstalledModel.name) == name)).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no installed model named {name!r}")
        for field, value in changes.items():
            setattr(model, field, value)
        session.add(model)
        session.flush()
        session.refresh(model)
    return model


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def jobs_using(model: InstalledModel) -> list[str]:
    """Ids of queued or running jobs whose payload names the model (by name or path): its install included."""
    names = {model.name, model.path, model.source}
    with session_scope() as session:
        rows = session.execute(select(col(Job.id), col(Job.payload)).where(col(Job.status).in_(ACTIVE))).all()
    return [job_id for job_id, payload in rows
            if job_id == model.job_id or any(s in names for s in _strings(payload))]


def remove_model(*, name: str) -> InstalledModel:
    """Unregister a model and delete the files the studio made for it (a folder registered in place stays).
    Refused while a queued or running job uses it."""
    model = get_model(name)
    busy = jobs_using(model)
    if busy:
        raise Conflict(f"{name!r} is in use by job(s) {', '.join(j[:8] for j in busy)}; cancel or wait for them")
    with session_scope() as session:
        paired = list(session.execute(select(col(InstalledModel.name)).where(
            col(InstalledModel.base_model).in_({model.name, model.path})).limit(5)).scalars())
    if paired:
        raise Conflict(f"{name!r} gives its text encoder and VAE to {', '.join(map(repr, paired))}; remove "
                       "those first")
    with session_scope() as session:
        row = session.get(InstalledModel, model.id)
        if row is not None:
            session.delete(row)
    owned = owned_path(model.name)
    if model.source_kind != "folder" and Path(model.path) == owned and owned.is_dir():
        shutil.rmtree(owned, ignore_errors=True)
    return model
