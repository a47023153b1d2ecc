"""Image generation: requests, their resolution into a complete job payload, and the images' metadata.

A request names a template and overrides some of its values. ``prepare_generate_payload`` runs
when the job is created: it fills every empty value from the template, picks the seed, checks the
LoRAs (they exist and are of the template's family) and puts each LoRA's trigger word into the
prompt. The job's stored payload therefore says exactly what ran, and "reuse these settings"
or a retry makes the same images.

Each image's metadata is written twice, identically: into the PNG (a JSON ``influencerai``
text chunk, plus an A1111-style ``parameters`` chunk other tools read) and into its Asset row.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, PngImagePlugin
from pydantic import Field, field_validator
from sqlalchemy import select
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.generation.templates import (
    SCHEDULERS,
    GenerationSettings,
    GenerationTemplate,
    check_settings_for_family,
    default_template,
    get_template,
    list_templates,
)
from core.infra.storage import job_key
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job, list_jobs
from core.library import assets
from core.library.assets import AssetSource
from core.library.collections import add_to_collection, get_collection
from core.models import Asset, AssetKind, Job, LoraModel
from core.models_registry import references
from core.pagination import Page
from core.training.families import family_spec
from core.training.runs import get_lora, promoted_lora, resolve_base_model

GENERATE_KIND = "generate"
METADATA_CHUNK = "influencerai"
PARAMETERS_CHUNK = "parameters"


# --- resolving a request -----------------------------------------------------------------------------


class LoraChoice(Payload):
    """One LoRA version to apply, and how strongly (None: the template's default strength)."""

    lora_id: int = Field(ge=1)
    strength: float | None = Field(default=None, ge=-2.0, le=2.0)


class GeneratePayload(Payload):
    """Generate images from a template, with LoRAs. Fields left empty come from the template; the
    job's stored payload has every value filled in (seed included), so it records exactly what ran."""

    template: str = Field(default="", max_length=80, description="template name; empty: the LoRA family's default")
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str | None = Field(default=None, max_length=2000)
    # None: the character's promoted LoRA (if any); []: no LoRA at all.
    loras: list[LoraChoice] | None = Field(default=None, max_length=8)
    character_id: int | None = Field(default=None, ge=1)
    insert_trigger: bool = Field(default=True, description="add each LoRA's trigger word when the prompt lacks it")
    scheduler: str | None = None
    steps: int | None = Field(default=None, ge=1, le=150)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    width: int | None = Field(default=None, ge=64, le=2048)
    height: int | None = Field(default=None, ge=64, le=2048)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="image i uses seed + i; empty: random")
    count: int = Field(default=1, ge=1, le=64)
    batch_size: int | None = Field(default=None, ge=1, le=64)
    init_asset_id: int | None = Field(default=None, ge=1, description="img2img: start from this image asset")
    img2img_strength: float = Field(default=0.6, gt=0.0, le=1.0, description="how far img2img moves from the start")
    reference_asset_ids: list[int] = Field(
        default_factory=list, max_length=4,
        description="reference editing (FLUX.2 [klein]): image assets the picture is made from")
    collection_id: int | None = Field(default=None, ge=1, description="add the images to this collection")
    # Filled in when the job is created (core.generation.requests.prepare_generate_payload).
    base_model: str | None = Field(default=None, max_length=500)
    family: str | None = Field(default=None, max_length=16)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _no_control_characters(cls, text: str | None) -> str | None:
        # Refused now, not after the GPU work: a NUL breaks PostgreSQL's text column of the image's Asset row.
        if text is not None and any((ord(c) < 0x20 and c not in "\t\n\r") or ord(c) == 0x7F for c in text):
            raise ValueError("must not contain control characters")
        return text


def insert_trigger_words(prompt: str, triggers: Sequence[str]) -> str:
    """Prefix each trigger word the prompt does not already contain (as a whole word, any case)."""
    missing = []
    for trigger in triggers:
        trigger = trigger.strip()
        if trigger and trigger not in missing and not re.search(
            rf"(?<!\w){re.escape(trigger)}(?!\w)", prompt, flags=re.IGNORECASE
        ):
            missing.append(trigger)
    return ", ".join([*missing, prompt]) if missing else prompt


def _chosen_loras(payload: GeneratePayload) -> list[LoraChoice]:
    if payload.loras is not None:
        return payload.loras
    promoted = promoted_lora(payload.character_id) if payload.character_id is not None else None
    return [LoraChoice(lora_id=promoted.id)] if promoted else []


def _load_loras(choices: list[LoraChoice]) -> list[LoraModel]:
    ids = [c.lora_id for c in choices]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a LoRA is listed twice; give each LoRA once with its strength")
    loras = []
    for choice in choices:
        try:
            loras.append(get_lora(choice.lora_id))
        except NotFound:
            raise InvalidInput(f"LoRA {choice.lora_id} does not exist (it may have been pruned or purged)") from None
    return loras


def _init_asset(asset_id: int, use: str = "img2img") -> Asset:
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        raise InvalidInput(f"{use}: asset {asset_id} does not exist") from None
    if asset.kind != AssetKind.IMAGE or asset.deleted_at is not None:
        raise InvalidInput(f"{use}: asset {asset_id} is not an image in the library")
    return asset


def _check_image_inputs(payload: GeneratePayload, family: str) -> None:
    """img2img and reference images only where the family's pipeline takes them, and only library images."""
    spec = family_spec(family)
    if payload.init_asset_id is not None and not spec.img2img:
        raise InvalidInput(f"{spec.label} has no img2img pipeline; leave the start image empty")
    if payload.reference_asset_ids:
        if len(payload.reference_asset_ids) > spec.reference_images:
            raise InvalidInput(f"{spec.label} takes {spec.reference_images or 'no'} reference image(s), "
                               f"{len(payload.reference_asset_ids)} given")
        if len(set(payload.reference_asset_ids)) != len(payload.reference_asset_ids):
            raise InvalidInput("a reference image is listed twice")
        for asset_id in payload.reference_asset_ids:
            _init_asset(asset_id, "reference image")


def _template_for(loras: list[LoraModel]) -> GenerationTemplate:
    """With no template named: the first one made for the LoRA's own base model, else its family's default."""
    if loras:
        matching = [t for t in list_templates()
                    if t.base_model == loras[0].base_model and t.family == loras[0].family]
        if matching:
            return matching[0]
    return default_template(loras[0].family if loras else None)


def prepare_generate_payload(payload: GeneratePayload) -> tuple[GeneratePayload, int | None]:
    """Fill every value from the template, choose the seed and check the LoRAs (see the module doc)."""
    choices = _chosen_loras(payload)
    loras = _load_loras(choices)
    try:
        template = get_template(payload.template) if payload.template else _template_for(loras)
    except NotFound as error:
        raise InvalidInput(str(error)) from None  # a request naming what is not there is bad input
    for lora in loras:
        if lora.family != template.family:
            raise InvalidInput(f"LoRA {lora.name!r} is for {lora.family} but template {template.name!r} "
                               f"is for {template.family}; pick a {lora.family} template")
    overrides = {name: getattr(payload, name) for name in ("scheduler", "steps", "cfg", "width", "height",
                                                           "negative_prompt") if getattr(payload, name) is not None}
    try:
        settings = GenerationSettings.model_validate({**template.settings().model_dump(), **overrides})
        check_settings_for_family(settings, template.family)
    except ValueError as error:
        raise InvalidInput(f"invalid generation settings: {error}") from None
    _check_image_inputs(payload, template.family)
    if payload.base_model:  # another base model than the template's: installed, a folder or a hub id, same family
        references.check(payload.base_model, template.family)
    if payload.init_asset_id is not None:
        _init_asset(payload.init_asset_id)
        if int(settings.steps * payload.img2img_strength) < 1:
            raise InvalidInput(f"img2img with strength {payload.img2img_strength:g} over {settings.steps} steps "
                               "runs no denoising step at all; raise the strength or the steps")
    if payload.collection_id is not None:
        try:
            get_collection(payload.collection_id)
        except NotFound as error:
            raise InvalidInput(str(error)) from None
    prompt = payload.prompt.strip()
    if not prompt:
        raise InvalidInput("the prompt is empty")
    if payload.insert_trigger:
        prompt = insert_trigger_words(prompt, [lora.trigger_word for lora in loras])
    character_id = payload.character_id
    if character_id is None:
        character_id = next((lora.character_id for lora in loras if lora.character_id is not None), None)
    resolved = payload.model_copy(update={
        **settings.model_dump(),
        "template": template.name,
        "prompt": prompt,
        "loras": [LoraChoice(lora_id=c.lora_id, strength=template.lora_strength if c.strength is None else c.strength)
                  for c in choices],
        "seed": payload.seed if payload.seed is not None else random.SystemRandom().randrange(2**32),
        "batch_size": payload.batch_size or template.batch_size or _default_batch_size(),
        "base_model": payload.base_model.strip() if payload.base_model else template.base_model,
        "family": template.family,
        "character_id": character_id,
    })
    return GeneratePayload.model_validate(resolved.model_dump()), character_id


def _default_batch_size() -> int:
    return get_settings().generation_batch_size


def submit_generation(**request: Any) -> Job:
    """Queue a generation job; ``request`` holds GeneratePayload's fields."""
    return create_job(GENERATE_KIND, request)  # validates, with errors that name the field


def list_generations(*, page: int = 1, page_size: int = 20) -> Page[Job]:
    return list_jobs(kinds=[GENERATE_KIND], page=page, page_size=page_size)


# --- images and their metadata ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoraUse:
    """A LoRA as one image used it, for metadata and lineage."""

    id: int
    name: str
    strength: float
    trigger_word: str
    dataset_id: int | None
    job_id: str
    step: int


def lora_uses(payload: GeneratePayload) -> list[LoraUse]:
    """The payload's LoRAs with what lineage needs (read once per job, not per image)."""
    uses = []
    for choice in payload.loras or []:
        lora = get_lora(choice.lora_id)
        assert lora.id is not None  # a stored row
        uses.append(LoraUse(id=lora.id, name=lora.name, strength=float(choice.strength or 0.0),
                            trigger_word=lora.trigger_word, dataset_id=lora.dataset_id, job_id=lora.job_id,
                            step=lora.step))
    return uses


def image_key(job_id: str, index: int) -> str:
    """Deterministic per job and image: a redelivered job overwrites instead of duplicating."""
    return job_key(job_id, f"images/{index:03d}.png")


def image_metadata(payload: GeneratePayload, loras: Sequence[LoraUse], *, job_id: str, index: int) -> dict[str, Any]:
    """Everything that made image ``index`` of a job (the seed is the one it was made with)."""
    assert payload.seed is not None, "prepare_generate_payload sets the seed"
    meta: dict[str, Any] = {
        "prompt": payload.prompt,
        "negative_prompt": payload.negative_prompt or "",
        "seed": payload.seed + index,
        "steps": payload.steps,
        "cfg": payload.cfg,
        "scheduler": payload.scheduler,
        "width": payload.width,
        "height": payload.height,
        "base_model": payload.base_model,
        "family": payload.family,
        "template": payload.template,
        "loras": [{"id": u.id, "name": u.name, "strength": u.strength, "trigger_word": u.trigger_word,
                   "dataset_id": u.dataset_id, "job_id": u.job_id, "step": u.step} for u in loras],
        "job_id": job_id,
        "index": index,
    }
    if payload.init_asset_id is not None:
        meta["init_asset_id"] = payload.init_asset_id
        meta["img2img_strength"] = payload.img2img_strength
    if payload.reference_asset_ids:
        meta["reference_asset_ids"] = list(payload.reference_asset_ids)
    return meta


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The "parameters" text AUTOMATIC1111 writes, which Civitai and most image viewers read."""
    loras = "".join(f" <lora:{lora['name']}:{lora['strength']:g}>" for lora in meta["loras"])
    settings = [
        f"Steps: {meta['steps']}", f"Sampler: {SCHEDULERS.get(meta['scheduler'], meta['scheduler'])}",
        f"CFG scale: {meta['cfg']:g}", f"Seed: {meta['seed']}", f"Size: {meta['width']}x{meta['height']}",
        f"Model: {meta['base_model']}",
    ]
    if "img2img_strength" in meta:
        settings.append(f"Denoising strength: {meta['img2img_strength']:g}")
    return f"{meta['prompt']}{loras}\nNegative prompt: {meta['negative_prompt']}\n{', '.join(settings)}"


def encode_png(image: Image.Image, meta: dict[str, Any]) -> bytes:
    """The image as PNG with its metadata in text chunks."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_CHUNK, a1111_parameters(meta))
    info.add_text(METADATA_CHUNK, json.dumps(meta, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def read_png_metadata(data: bytes) -> dict[str, Any]:
    """The studio metadata of a PNG it made ({} for any other image)."""
    with Image.open(io.BytesIO(data)) as image:
        text = getattr(image, "text", {}).get(METADATA_CHUNK)
    return json.loads(text) if text else {}


def save_generated_image(
    job: Job, payload: GeneratePayload, loras: Sequence[LoraUse], *, index: int, image: Image.Image
) -> Asset:
    """Store image ``index`` of a job (PNG with metadata, thumbnail, Asset row with lineage)."""
    meta = image_metadata(payload, loras, job_id=job.id, index=index)
    asset = assets.store_image(
        image_key(job.id, index), encode_png(image, meta), source=AssetSource.GENERATED, job_id=job.id,
        character_id=job.character_id, dataset_id=next((u.dataset_id for u in loras if u.dataset_id), None),
        prompt=payload.prompt, meta=meta, loras=[(u.id, u.strength) for u in loras],
    )
    assert asset.id is not None  # a stored row
    if payload.collection_id is not None:
        try:
            add_to_collection(payload.collection_id, [asset.id])
        except NotFound:
            pass  # the collection was deleted after the job was queued: the image itself still counts
    return asset


def saved_indexes(job_id: str) -> set[int]:
    """Which images of a job are already stored (a redelivered job skips them)."""
    with session_scope() as session:
        metas = session.execute(
            select(col(Asset.meta)).where(col(Asset.job_id) == job_id, col(Asset.source) == AssetSource.GENERATED)
        ).scalars()
        return {int(meta["index"]) for meta in metas}


def job_images(job_id: str) -> list[Asset]:
    """A generation job's images, in order (those finished so far while it runs)."""
    with session_scope() as session:
        rows = list(session.execute(
            select(Asset).where(col(Asset.job_id) == job_id, col(Asset.source) == AssetSource.GENERATED,
                                col(Asset.deleted_at).is_(None))
        ).scalars())
    return sorted(rows, key=lambda a: int(a.meta.get("index", 0)))


def reuse_request(meta: dict[str, Any]) -> dict[str, Any]:
    """The request that makes this image again (its own seed, count 1): "reuse these settings"."""
    request: dict[str, Any] = {
        name: meta[name] for name in ("prompt", "negative_prompt", "seed", "steps", "cfg", "scheduler",
                                      "width", "height", "template") if name in meta}
    request["loras"] = [{"lora_id": lora["id"], "strength": lora["strength"]} for lora in meta.get("loras", [])]
    request["insert_trigger"] = False  # the stored prompt already has what was inserted
    if "init_asset_id" in meta:
        request["init_asset_id"] = meta["init_asset_id"]
        request["img2img_strength"] = meta["img2img_strength"]
    if "reference_asset_ids" in meta:
        request["reference_asset_ids"] = list(meta["reference_asset_ids"])
    return request


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    "generate", Queue.GPU, GeneratePayload, "Generates images from a template with LoRAs (txt2img or img2img).",
    max_attempts=3, time_limit_s=3600, prepare=prepare_generate_payload,
    # As workers/generation.py loads it, so it matches the name the pipeline cache advertises.
    model_of=lambda payload: resolve_base_model(payload.base_model) if payload.base_model else None,
))
