"""The ``generate`` job: a resolved GeneratePayload → images in the asset library.

The payload was completed when the job was created (core.generation.requests.prepare_generate_payload),
so this handler only runs it: fetch the LoRA files, take the cached base pipeline for the whole
job, apply the LoRAs at their strengths, render in GPU batches and store each batch's images as
soon as it finishes. Images already stored by an earlier attempt are skipped (their keys are
deterministic per job and index, and image ``i`` always uses seed ``seed + i``), so a redelivered
job resumes where it stopped. A cancel is noticed between denoising steps; stored images stay.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from core.config import get_settings
from core.errors import PermanentJobError
from core.generation.requests import GeneratePayload, job_images, lora_uses, save_generated_image, saved_indexes
from core.infra.storage import get_object_store
from core.jobs.lifecycle import JobContext, get_job
from core.library.assets import get_asset, read_asset
from core.models import LoraModel
from core.training.runs import get_lora, resolve_base_model
from workers.gpu_slots import assigned_device
from workers.identity import Scorer

_logger = logging.getLogger("studio.generation")


def lora_cache_path(lora: LoraModel, cache_dir: Path) -> Path:
    """A LoRA's weights on local disk, fetched once per storage key (shared by jobs, threads and processes)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(lora.key.encode()).hexdigest()[:32]
    path = cache_dir / f"{digest}.safetensors"
    if path.exists() and (not lora.size_bytes or path.stat().st_size == lora.size_bytes):
        return path
    # A private temporary name, then an atomic rename: another job may fetch the same file at the same
    # moment, and none may ever load half a file.
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as out:
        try:
            with get_object_store().iter_chunks(lora.key) as chunks:
                for chunk in chunks:
                    out.write(chunk)
        except BaseException:
            Path(out.name).unlink(missing_ok=True)
            raise
    Path(out.name).replace(path)
    return path


def _init_image(asset_id: int) -> Any:
    with Image.open(io.BytesIO(read_asset(get_asset(asset_id)))) as opened:
        return opened.convert("RGB")


def _range(indexes: list[int]) -> str:
    first, last = indexes[0] + 1, indexes[-1] + 1
    return f"image {first}" if first == last else f"images {first}–{last}"


def generate(ctx: JobContext[GeneratePayload]) -> dict[str, Any]:
    from workers.ml.generation import LoraAdapter, RenderSettings, StepEvent, dtype_name, pipeline_cache

    started = time.perf_counter()
    payload = ctx.payload
    if payload.seed is None or payload.family is None or payload.base_model is None:
        raise PermanentJobError("the generation payload was not resolved at creation (seed, family, base model)")
    job = get_job(ctx.job_id)
    count = payload.count
    done = saved_indexes(job.id)
    todo = [i for i in range(count) if i not in done]
    skipped = count - len(todo)
    if skipped:
        ctx.log(f"resuming: {skipped} of {count} image(s) already stored by an earlier attempt")

    ctx.stage("fetch LoRAs")
    uses = lora_uses(payload)
    cache_dir = get_settings().data_dir / "cache" / "loras"
    adapters = [LoraAdapter(name=f"lora_{use.id}", path=lora_cache_path(get_lora(use.id), cache_dir),
                            strength=use.strength) for use in uses]
    init_image = _init_image(payload.init_asset_id) if payload.init_asset_id is not None else None
    references = tuple(_init_image(asset_id) for asset_id in payload.reference_asset_ids)

    ctx.stage("load model")
    model = resolve_base_model(payload.base_model)
    settings = RenderSettings(
        prompt=payload.prompt, negative_prompt=payload.negative_prompt or "", steps=payload.steps or 1,
        cfg=payload.cfg if payload.cfg is not None else 7.0, width=payload.width or 512,
        height=payload.height or 512, scheduler=payload.scheduler or "euler_a", seed=payload.seed,
        batch_size=payload.batch_size or 1, init_image=init_image, strength=payload.img2img_strength,
        reference_images=references,
    )
    scorer = Scorer.for_character(job.character_id)  # None: no fingerprint, images are not scored
    made: list[int] = []
    render_seconds = 0.0
    device = "?"
    cached = False
    with pipeline_cache().acquire(model, payload.family, device=assigned_device()) as loaded:
        device, cached = loaded.device, loaded.cached
        lora_text = ", ".join(f"{u.name} (#{u.id}) @ {u.strength:g}" for u in uses) or "none"
        ctx.log(f"model {model} ({payload.family}) on {loaded.device} in {dtype_name(loaded.dtype)}, "
                + ("pipeline cached" if cached else f"pipeline loaded in {loaded.load_seconds:.1f} s")
                + f"; LoRAs: {lora_text}; {settings.scheduler}, {settings.steps} steps, cfg {settings.cfg:g}, "
                f"{settings.width}×{settings.height}" + (" (img2img)" if init_image is not None else ""))
        if not todo:
            ctx.log("every image is already stored")
        ctx.stage("generating")

        def on_step(event: StepEvent) -> None:
            within = len(event.batch_indexes) * event.step / max(event.total_steps, 1)
            fraction = (skipped + len(made) + within) / count
            ctx.progress(min(fraction, 0.999), f"{_range(event.batch_indexes)} of {count} · "
                                               f"step {event.step}/{event.total_steps}")

        with loaded.adapters(adapters):
            for batch in loaded.render(settings, todo, on_step=on_step):
                for index, image in zip(batch.indexes, batch.images, strict=True):
                    asset = save_generated_image(job, payload, uses, index=index, image=image)
                    if scorer is not None and asset.id is not None:
                        ctx.log(f"image {index + 1}: {scorer.score_asset(asset.id, image).describe()}")
                made.extend(batch.indexes)
                render_seconds += batch.seconds
                ctx.log(f"{_range(batch.indexes)} of {count} stored ({batch.seconds:.2f} s, "
                        f"{len(batch.indexes) / batch.seconds:.2f} images/s)")
    seconds = time.perf_counter() - started
    return {
        "images": len(made),
        "asset_ids": [asset.id for asset in job_images(job.id)],
        "seconds": round(seconds, 3),
        "render_seconds": round(render_seconds, 3),
        "images_per_second": round(len(made) / seconds, 4) if made and seconds > 0 else 0.0,
        "device": device,
        "resumed_skipped": skipped,
        "pipeline_cached": cached,
    }
