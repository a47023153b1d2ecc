"""Short videos: requests, their checks at creation, and where a render's files go.

``prepare_video_payload`` runs when a ``video`` job is created: a generation job's images become
their asset ids, every image must be in the library (not in the trash), the script must have a
sentence, the voice must exist and the music must be an audio asset. A bad request therefore fails
at once, with the reason, and no job or partial asset is ever written for it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from core.characters.characters import voice_of
from core.config import get_settings
from core.errors import InvalidInput, NotFound
from core.generation.requests import job_images
from core.infra.storage import get_object_store, job_key
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import create_job, list_jobs
from core.jobs.queue import gpu_worker_memory_gib
from core.library import assets
from core.models import Asset, AssetKind, Job
from core.pagination import Page
from core.video.options import Aspect, Fit, LoudnessTarget, Motion, SubtitleStyle, Transition
from core.video.platform_specs import VIDEO_SPECS
from core.video.voices import parse_voice_id, split_sentences, validate_voice

VIDEO_KIND = "video"
PREVIEW_KIND = "voice-preview"
PREVIEW_TEXT = "Hi, this is how I sound. Let's make something great today!"


class VideoPayload(Payload):
    """Render a short video from images with a voice-over, subtitles and music. The image list is
    completed when the job is created (a generation job's images become their ids)."""

    image_asset_ids: list[int] = Field(default_factory=list, max_length=60,
                                       description="in order; images, or clips (video assets, e.g. motion jobs')")
    generation_job_id: str | None = Field(default=None, max_length=32, description="use this job's images")
    script: str = Field(min_length=1, max_length=5000, description="the voice-over text")
    voice: str = Field(default="", max_length=300, description="'espeak:en-us', 'vits:<model>', 'csm:<clip id>'; empty: the character's")  # noqa: E501
    rate_wpm: int = Field(default=165, ge=80, le=400, description="speaking rate, words per minute")
    aspect: Aspect = "9:16"
    fit: Fit = "crop"
    seconds_per_image: float | None = Field(default=None, ge=0.5, le=30.0)
    total_seconds: float | None = Field(default=None, ge=1.0, le=600.0, description="empty: as long as the voice")
    motion: Motion = "ken_burns"
    transition: Transition = "crossfade"
    transition_seconds: float = Field(default=0.5, ge=0.1, le=2.0)
    fps: int = Field(default=30, ge=15, le=60)
    music_asset_id: int | None = Field(default=None, ge=1, description="an audio asset, looped or trimmed")
    music_gain_db: float = Field(default=-18.0, ge=-40.0, le=0.0)
    subtitles: SubtitleStyle = Field(default_factory=SubtitleStyle)
    loudness: LoudnessTarget = Field(default_factory=LoudnessTarget)
    platforms: list[str] = Field(default_factory=lambda: ["instagram_reels", "youtube_shorts", "tiktok"],
                                 max_length=8, description="check the output against these platforms' specs")
    name: str = Field(default="", max_length=200)


class VoicePreviewPayload(Payload):
    """A few seconds of a voice, to listen to before rendering."""

    voice: str = Field(min_length=1, max_length=300)
    rate_wpm: int = Field(default=165, ge=80, le=400)
    text: str = Field(default="", max_length=300)


def _library_asset(asset_id: int, kind: str, what: str) -> Asset:
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        raise InvalidInput(f"{what} {asset_id} does not exist") from None
    if asset.kind != kind:
        raise InvalidInput(f"{what} {asset_id} is a {asset.kind}, not a {kind}")
    if asset.deleted_at is not None:
        raise InvalidInput(f"{what} {asset_id} is in the trash; restore it first")
    return asset


def _visual(asset_id: int) -> Asset:
    """One entry of the timeline: a still, or a clip (looped or cut to its slot by the renderer)."""
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        raise InvalidInput(f"image {asset_id} does not exist") from None
    return _library_asset(asset_id, AssetKind.VIDEO if asset.kind == AssetKind.VIDEO else AssetKind.IMAGE, "image")


def _image_ids(payload: VideoPayload) -> list[int]:
    ids = list(payload.image_asset_ids)
    if payload.generation_job_id:
        made = [a.id for a in job_images(payload.generation_job_id) if a.id is not None]
        if not made:
            raise InvalidInput(f"generation job {payload.generation_job_id} has no images (yet)")
        ids += [i for i in made if i not in ids]
    if not ids:
        raise InvalidInput("pick at least one image (image_asset_ids or generation_job_id)")
    return ids


def prepare_video_payload(payload: VideoPayload) -> tuple[VideoPayload, int | None]:
    ids = _image_ids(payload)
    images = [_visual(i) for i in ids]
    split_sentences(payload.script)  # raises InvalidInput for a script with nothing to say
    character_id = next((a.character_id for a in images if a.character_id is not None), None)
    # No voice named: the images' character speaks with its own voice (else the studio default).
    voice = validate_voice(payload.voice or voice_of(character_id))
    if payload.music_asset_id is not None:
        _library_asset(payload.music_asset_id, AssetKind.AUDIO, "music")
    unknown = [p for p in payload.platforms if p not in VIDEO_SPECS]
    if unknown:
        raise InvalidInput(f"unknown platform(s): {', '.join(unknown)} (known: {', '.join(VIDEO_SPECS)})")
    resolved = payload.model_copy(update={"image_asset_ids": ids, "generation_job_id": None, "voice": voice.id})
    return VideoPayload.model_validate(resolved.model_dump()), character_id


def prepare_voice_preview(payload: VoicePreviewPayload) -> tuple[VoicePreviewPayload, int | None]:
    voice = validate_voice(payload.voice)
    return payload.model_copy(update={"voice": voice.id, "text": payload.text.strip() or PREVIEW_TEXT}), None


def voice_queue(voice: str) -> str:
    """The queue for a job that speaks with ``voice``: a model voice on the GPU when one is online."""
    engine, _ = parse_voice_id(voice)
    if engine == "espeak":
        return Queue.CPU
    setting = get_settings().tts_model_queue
    if setting == "auto":
        return Queue.GPU if gpu_worker_memory_gib() is not None else Queue.CPU
    return Queue.GPU if setting == "gpu" else Queue.CPU


def submit_video(**request: Any) -> Job:
    """Queue a render; ``request`` holds VideoPayload's fields (validated with errors naming the field)."""
    return create_job(VIDEO_KIND, request)


def submit_voice_preview(*, voice: str, rate_wpm: int = 165, text: str = "") -> Job:
    return create_job(PREVIEW_KIND, {"voice": voice, "rate_wpm": rate_wpm, "text": text})


def preview_key(job_id: str) -> str:
    return job_key(job_id, "preview.wav")


def list_renders(*, page: int = 1, page_size: int = 20) -> Page[Job]:
    return list_jobs(kinds=[VIDEO_KIND], page=page, page_size=page_size)


def output_keys(job_id: str) -> dict[str, str]:
    """Deterministic per job: a redelivered render overwrites instead of duplicating."""
    return {name: job_key(job_id, f"video/{file}") for name, file in
            (("video", "video.mp4"), ("subtitles", "subtitles.srt"), ("voice", "voice.wav"))}


def read_preview(job_id: str) -> bytes:
    return get_object_store().get_bytes(preview_key(job_id))


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    "video", Queue.CPU, VideoPayload, "Renders a short video: motion, voice-over, subtitles, music, loudness.",
    max_attempts=3, time_limit_s=1800, prepare=prepare_video_payload, route=lambda p: voice_queue(p.voice),
))
register(JobSpec(
    "voice-preview", Queue.CPU, VoicePreviewPayload, "Speaks a short sample with a voice.", max_attempts=1,
    time_limit_s=120, prepare=prepare_voice_preview, route=lambda p: voice_queue(p.voice),
))
