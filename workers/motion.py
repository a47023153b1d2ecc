"""The ``motion`` job: a still from the library → a short clip (image-to-video), stored as a video asset.

The payload was completed when the job was created (core.video.motion.prepare_motion_payload): size,
frame count, seed and model are fixed, so a retry makes the same clip. The clip is written under a key
deterministic per job and recorded last; a job whose clip is already recorded (a redelivered message
after the worker died between storing and finishing) returns it without running the model again. A cancel
is noticed after every denoising step.
"""

from __future__ import annotations

import io
import shutil
import time
from typing import Any

from PIL import Image

from core.config import get_settings
from core.datasets.images import make_thumbnail
from core.errors import PermanentJobError
from core.infra.storage import get_object_store
from core.jobs.lifecycle import JobContext, get_job
from core.library import assets
from core.library.assets import AssetSource, thumbnail_key
from core.models import Asset, AssetKind
from core.video.motion import MotionPayload, clip_key, clip_metadata, job_clip
from workers.gpu_slots import assigned_device
from workers.media.clips import encode_frames

_DENOISE_SHARE = 0.9  # of the progress bar; decoding and encoding take the rest


def _result(clip: Asset, **extra: Any) -> dict[str, Any]:
    meta = clip.meta or {}
    return {"clip_asset_id": clip.id, "source_asset_id": meta.get("init_asset_id"), "frames": meta.get("frames"),
            "fps": meta.get("fps"), "width": clip.width, "height": clip.height, **extra}


def _thumbnail(frame: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "PNG")
    return make_thumbnail(buffer.getvalue())[0]


def _source_image(asset_id: int) -> Image.Image:
    with Image.open(io.BytesIO(assets.read_asset(assets.get_asset(asset_id)))) as opened:
        return opened.convert("RGB")


def animate(ctx: JobContext[MotionPayload]) -> dict[str, Any]:
    from workers.ml.motion.wan import FAMILY, MotionSettings, wan_cache

    payload = ctx.payload
    if payload.frames is None or payload.width is None or payload.height is None or payload.seed is None:
        raise PermanentJobError("the motion payload was not resolved at creation (size, frames, seed)")
    if (stored := job_clip(ctx.job_id)) is not None:
        ctx.log("the clip is already stored by an earlier attempt")
        return _result(stored, resumed=True)
    started = time.perf_counter()
    job = get_job(ctx.job_id)
    ctx.stage("fetch")
    source = assets.get_asset(payload.source_asset_id)
    image = _source_image(payload.source_asset_id)
    settings = MotionSettings(prompt=payload.prompt, negative_prompt=payload.negative_prompt, width=payload.width,
                              height=payload.height, frames=payload.frames, steps=payload.steps,
                              guidance=payload.guidance, seed=payload.seed)
    ctx.stage("load model")
    with wan_cache().acquire(payload.model, assigned_device()) as loaded:
        ctx.log(f"model {payload.model} on {loaded.device} in {loaded.dtype_label}, "
                + ("pipeline cached" if loaded.cached else f"loaded in {loaded.load_seconds:.1f} s")
                + f"; {settings.width}×{settings.height}, {settings.frames} frames at {payload.fps} fps, "
                f"{settings.steps} steps, guidance {settings.guidance:g}, seed {settings.seed}")
        ctx.stage("animating")
        denoise_started = time.perf_counter()

        def on_step(done: int, total: int) -> None:
            ctx.progress(_DENOISE_SHARE * done / total, f"step {done}/{total}", force=True)

        frames = loaded.animate(image, settings, on_step=on_step)
        device = loaded.device
    model_seconds = time.perf_counter() - denoise_started
    ctx.stage("encode")
    work = get_settings().data_dir / "work" / "motion" / ctx.job_id
    shutil.rmtree(work, ignore_errors=True)
    try:
        info = encode_frames(frames, payload.fps, work / "clip.mp4",
                             on_progress=lambda f: ctx.progress(_DENOISE_SHARE + (1 - _DENOISE_SHARE) * f * 0.99))
        ctx.stage("store")
        key = clip_key(ctx.job_id)
        store = get_object_store()
        stored_info = store.put_file(key, info.path, "video/mp4")
        store.put_bytes(thumbnail_key(key), _thumbnail(frames[0]), "image/jpeg")  # the first frame
        clip = assets.record_asset(
            key=key, kind=AssetKind.VIDEO, source=AssetSource.MOTION, content_type="video/mp4",
            size_bytes=stored_info.size, width=info.width, height=info.height, prompt=payload.prompt,
            thumbnail=thumbnail_key(key),
            job_id=ctx.job_id, character_id=job.character_id, dataset_id=source.dataset_id,
            meta=clip_metadata(payload, job_id=ctx.job_id, family=FAMILY))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ctx.log(f"clip stored: {info.width}×{info.height}, {len(frames)} frames, {info.duration:.2f} s")
    return _result(clip, resumed=False, device=device, model_seconds=round(model_seconds, 3),
                   seconds=round(time.perf_counter() - started, 3))
