"""Importing community LoRAs (kohya/A1111 incl. LoCon, LyCORIS LoKr/LoHa, ComfyUI, diffusers, PEFT, ai-toolkit,
OneTrainer) as LoRA rows generation uses.

An import is a job of kind ``import-lora``: the file is checked here first like any upload (``.safetensors``
only, so never a pickle; size limit; a readable header; a known key layout), stored, and the GPU worker
converts it against the base model (``workers/lora_import.py``): every key must land on a module of that
model, else the import fails naming the keys. The converted file is the studio's diffusers format, so
generation, promotion and the kohya export treat it like a trained LoRA.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field
from sqlalchemy import select
from sqlmodel import col

from core.characters.characters import get_character
from core.characters.scope import owner
from core.db import session_scope
from core.errors import InvalidInput, referenced_by
from core.infra.storage import get_object_store, job_key
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job
from core.library import assets
from core.library.assets import AssetSource
from core.loras.kohya import read_header
from core.loras.lycoris import algorithm
from core.models import AssetKind, Job, LoraModel
from core.training.params import WEIGHTS_FILE, ModelFamily

IMPORT_KIND = "import-lora"
MAX_IMPORT_BYTES = 1 << 30  # 1 GiB: an SDXL LoRA at rank 128 with both text encoders is about 0.9 GB
# Key layouts we convert, by how their keys start (the weights' own suffixes are checked by the converter).
# ComfyUI's and ai-toolkit's files share one layout (``diffusion_model.…``); OneTrainer names DiT modules
# ``lora_transformer_…``; diffusers' DiT LoRAs start ``transformer.``; the LyCORIS library wrapping a diffusers
# model (SimpleTuner's LoKr) names modules ``lycoris_<path with _>``.
FORMAT_PREFIXES = {
    "kohya": ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"),
    "comfyui": ("diffusion_model.", "text_encoders."),
    "diffusers": ("unet.", "text_encoder.", "text_encoder_2.", "transformer."),
    "peft": ("base_model.model.",),
    "onetrainer": ("lora_transformer_",),
    "lycoris": ("lycoris_",),
}


class ImportLoraPayload(Payload):
    """Convert a stored community LoRA file for a base model and record it as a LoRA."""

    upload_key: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=200)
    family: ModelFamily = "sd15"
    base_model: str = Field(min_length=1, max_length=500)
    trigger_word: str = Field(default="", max_length=120)
    character_id: int | None = Field(default=None, ge=1)
    source_format: str = Field(default="", max_length=16)


def detect_format(keys: Iterable[str]) -> str:
    """The file's key layout; a file mixing layouts or holding keys of none is refused, the keys named."""
    keys = sorted(keys)
    if not keys:
        raise InvalidInput("the file holds no tensors")
    found: dict[str, list[str]] = {}
    foreign = []
    for key in keys:
        layout = next((name for name, prefixes in FORMAT_PREFIXES.items() if key.startswith(prefixes)), None)
        if layout is None:
            foreign.append(key)
        else:
            found.setdefault(layout, []).append(key)
    if foreign:
        raise InvalidInput(f"not a LoRA in a format we read: {len(foreign)} foreign key(s): "
                           + _names(foreign))
    if len(found) > 1:
        raise InvalidInput("the file mixes LoRA formats: " + ", ".join(f"{k} ({v[0]})" for k, v in found.items()))
    return next(iter(found))


def _names(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def check_upload(data: bytes, file_name: str) -> str:
    """Validate an uploaded LoRA like any upload; returns its key layout (``kohya``, ``comfyui``, …).

    DoRA and LyCORIS algorithms other than LoKr/LoHa are refused here, their keys named."""
    if not file_name.lower().endswith(".safetensors"):
        raise InvalidInput(f"{file_name!r}: only .safetensors LoRA files are accepted (pickled .ckpt/.pt/.bin "
                           "files can run code when loaded)")
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidInput(f"{file_name!r} is {len(data):,} bytes; the limit is {MAX_IMPORT_BYTES:,}")
    tensors, _ = read_header(data)
    source_format = detect_format(tensors)
    algorithm(tensors)
    return source_format


def submit_import(data: bytes, *, file_name: str, name: str = "", family: str = "sd15", base_model: str,
                  trigger_word: str = "", character_id: int | None = None) -> Job:
    """Check and store an uploaded LoRA, then queue its conversion; the job's result names the new LoRA."""
    source_format = check_upload(data, file_name)
    payload = ImportLoraPayload(
        upload_key=f"imports/loras/{hashlib.sha256(data).hexdigest()}.safetensors",
        name=(name or Path(file_name).stem)[:200], family=family,
        base_model=base_model, trigger_word=trigger_word, character_id=owner(character_id), source_format=source_format,
    )
    get_object_store().put_bytes(payload.upload_key, data, "application/octet-stream")
    return create_job(IMPORT_KIND, payload.model_dump())


def prepare_import_payload(payload: ImportLoraPayload) -> tuple[ImportLoraPayload, int | None]:
    if payload.character_id is not None:
        with referenced_by("character_id"):
            get_character(payload.character_id)
    return payload, payload.character_id


def imported_key(job_id: str) -> str:
    return job_key(job_id, f"lora/{WEIGHTS_FILE}")


def record_import(job: Job, *, file: Path, report: dict[str, object]) -> LoraModel:
    """Store the converted file and record it as a final LoRA (step 0). Idempotent per job."""
    payload = ImportLoraPayload.model_validate(job.payload)
    key = imported_key(job.id)
    info = get_object_store().put_file(key, file, "application/octet-stream")
    with session_scope() as session:
        lora = session.execute(
            select(LoraModel).where(col(LoraModel.job_id) == job.id, col(LoraModel.step) == 0)
        ).scalar_one_or_none()
        if lora is None:
            lora = LoraModel(job_id=job.id, step=0, key=key, family=payload.family, base_model=payload.base_model,
                             name=payload.name, final=True)
        lora.size_bytes, lora.trigger_word, lora.character_id = info.size, payload.trigger_word, payload.character_id
        session.add(lora)
        session.flush()
        session.refresh(lora)
    assert lora.id is not None  # the flush gave the row its id
    assets.record_asset(
        key=key, kind=AssetKind.LORA, source=AssetSource.LORA, content_type="application/octet-stream",
        size_bytes=info.size, job_id=job.id, character_id=payload.character_id,
        meta={"lora_id": lora.id, "name": lora.name, "step": 0, "final": True, "family": lora.family,
              "base_model": lora.base_model, "trigger_word": lora.trigger_word, "imported": report},
        loras=[(lora.id, 1.0)],
    )
    return lora


register(JobSpec(
    IMPORT_KIND, Queue.GPU, ImportLoraPayload,
    "Imports a community LoRA (kohya/A1111, LoCon, LoKr, LoHa, ComfyUI, diffusers, PEFT) for a base model.",
    max_attempts=2, prepare=prepare_import_payload,
))
