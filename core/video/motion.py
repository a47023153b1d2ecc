"""Image-to-video motion: a still from the library becomes a short clip (the ``motion`` job, gpu queue).

``prepare_motion_payload`` runs when the job is created: the source must be an image in the library,
the seed is chosen, the model named, and the clip's exact size and frame count are worked out from
the aspect, the resolution and the seconds × fps. The stored payload therefore says exactly what ran,
and a retry or a redelivery makes the same clip under the same storage key. The torch side lives in
``workers/ml/motion/`` and the job itself in ``workers/motion.py``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import select
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.infra.storage import job_key
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job, list_jobs
from core.library import assets
from core.library.assets import AssetSource
from core.models import Asset, AssetKind, Job
from core.pagination import Page
from core.video.options import Aspect

MOTION_KIND = "motion"
# Wan's VAE compresses 4 frames into one latent frame (plus the first), and its sides by 8 or 16 with
# patches of 2: clips have 4k + 1 frames and sides that are multiples of 32 satisfy every Wan 2.x model.
TEMPORAL_STEP = 4
SIDE_MULTIPLE = 32
_ASPECT_RATIOS: dict[str, float] = {"9:16": 9 / 16, "1:1": 1.0, "16:9": 16 / 9}


class MotionPayload(Payload):
    """Animate one still into a clip. ``width``, ``height``, ``frames``, ``seed`` and ``model`` are filled
    in when the job is created (core.video.motion.prepare_motion_payload)."""

    source_asset_id: int = Field(ge=1, description="the image to animate (its first frame)")
    prompt: str = Field(min_length=1, max_length=2000, description="what moves and how")
    negative_prompt: str = Field(default="", max_length=2000)
    seconds: float = Field(default=3.0, ge=0.2, le=10.0)
    fps: int = Field(default=24, ge=8, le=30)
    aspect: Aspect = "9:16"
    resolution: int = Field(default=720, ge=32, le=1080, description="the short side of 16:9 (720: 1280×704)")
    steps: int = Field(default=30, ge=1, le=100)
    guidance: float = Field(default=5.0, ge=0.0, le=20.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="empty: random")
    model: str = Field(default="", max_length=500, description="hub id or diffusers folder; empty: the setting")
    character_id: int | None = Field(default=None, ge=1)
    # Filled in at creation.
    width: int | None = Field(default=None, ge=SIDE_MULTIPLE, le=2048)
    height: int | None = Field(default=None, ge=SIDE_MULTIPLE, le=2048)
    frames: int | None = Field(default=None, ge=1, le=1201)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _no_control_characters(cls, text: str) -> str:
        if any((ord(c) < 0x20 and c not in "\t\n\r") or ord(c) == 0x7F for c in text):
            raise ValueError("must not contain control characters")
        return text


def clip_size(aspect: str, resolution: int) -> tuple[int, int]:
    """Width × height with the pixel count of a 16:9 frame whose short side is ``resolution``, shaped to
    the aspect, each side floored to a multiple of 32 (720 → 1280×704, 704×1280 and 960×960)."""
    area = resolution * resolution * 16 / 9
    ratio = _ASPECT_RATIOS[aspect]
    height = math.sqrt(area / ratio)
    width = height * ratio

    def floor(side: float) -> int:
        return max(SIDE_MULTIPLE, int(round(side, 6)) // SIDE_MULTIPLE * SIDE_MULTIPLE)

    return floor(width), floor(height)


def frame_count(seconds: float, fps: int) -> int:
    """The 4k + 1 frame count nearest ``seconds`` × ``fps`` (at least 5)."""
    wanted = seconds * fps
    return max(TEMPORAL_STEP + 1, round((wanted - 1) / TEMPORAL_STEP) * TEMPORAL_STEP + 1)


def _source(asset_id: int) -> Asset:
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        raise InvalidInput(f"image {asset_id} does not exist") from None
    if asset.kind != AssetKind.IMAGE:
        raise InvalidInput(f"asset {asset_id} is a {asset.kind}, not an image")
    if asset.deleted_at is not None:
        raise InvalidInput(f"image {asset_id} is in the trash; restore it first")
    return asset


def prepare_motion_payload(payload: MotionPayload) -> tuple[MotionPayload, int | None]:
    source = _source(payload.source_asset_id)
    prompt = payload.prompt.strip()
    if not prompt:
        raise InvalidInput("the motion prompt is empty")
    width, height = clip_size(payload.aspect, payload.resolution)
    character_id = payload.character_id or source.character_id
    resolved = payload.model_copy(update={
        "prompt": prompt, "width": width, "height": height, "frames": frame_count(payload.seconds, payload.fps),
        "seed": payload.seed if payload.seed is not None else random.SystemRandom().randrange(2**32),
        "model": payload.model.strip() or get_settings().motion_model, "character_id": character_id,
    })
    return MotionPayload.model_validate(resolved.model_dump()), character_id


def submit_motion(**request: Any) -> Job:
    """Queue one clip; ``request`` holds MotionPayload's fields."""
    return create_job(MOTION_KIND, request)


def submit_animations(image_asset_ids: list[int], **request: Any) -> list[Job]:
    """"Animate these images": one motion job per image, same settings. Every image is checked before
    any job is queued, so a bad pick queues nothing."""
    if not image_asset_ids:
        raise InvalidInput("pick at least one image to animate")
    for asset_id in image_asset_ids:
        _source(asset_id)
    return [submit_motion(source_asset_id=asset_id, **request) for asset_id in image_asset_ids]


def list_motions(*, page: int = 1, page_size: int = 20) -> Page[Job]:
    return list_jobs(kinds=[MOTION_KIND], page=page, page_size=page_size)


def clip_key(job_id: str) -> str:
    """Deterministic per job: a redelivered job overwrites instead of duplicating."""
    return job_key(job_id, "motion/clip.mp4")


def job_clip(job_id: str) -> Asset | None:
    """The clip a motion job stored (None until it has)."""
    with session_scope() as session:
        return session.execute(
            select(Asset).where(col(Asset.job_id) == job_id, col(Asset.source) == AssetSource.MOTION)
        ).scalars().first()


def clip_metadata(payload: MotionPayload, *, job_id: str, family: str) -> dict[str, Any]:
    """What made a clip; ``init_asset_id`` is the still it starts from (the library's lineage shows it)."""
    assert payload.frames is not None and payload.seed is not None, "prepare_motion_payload fills them"
    return {
        "prompt": payload.prompt, "negative_prompt": payload.negative_prompt, "seed": payload.seed,
        "steps": payload.steps, "cfg": payload.guidance, "width": payload.width, "height": payload.height,
        "frames": payload.frames, "fps": payload.fps, "duration": payload.frames / payload.fps,
        "aspect": payload.aspect, "base_model": payload.model, "family": family,
        "init_asset_id": payload.source_asset_id, "job_id": job_id,
    }


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    MOTION_KIND, Queue.GPU, MotionPayload, "Animates a still into a short clip (image-to-video, Wan 2.x).",
    max_attempts=3, time_limit_s=3600, prepare=prepare_motion_payload,
    # As prepare_motion_payload resolved it, the name workers.ml.motion.wan's cache advertises.
    model_of=lambda payload: payload.model or None,
))
