"""Handlers of the basic job kinds. A handler gets a JobContext and returns a result dict."""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image

from core.config import get_settings
from core.datasets.captions import compose_caption, write_auto_captions
from core.datasets.datasets import CaptionPayload, all_images, get_dataset, read_image
from core.errors import PermanentJobError, TransientError
from core.jobs.kinds import NoopPayload, SleepPayload
from core.jobs.lifecycle import JobContext
from workers.gpu_slots import assigned_device
from workers.ml.captioning import CaptionOptions, load_captioner


def noop(ctx: JobContext[NoopPayload]) -> dict[str, Any]:
    payload = ctx.payload
    return {"note": payload.note}


def sleep(ctx: JobContext[SleepPayload]) -> dict[str, Any]:
    """Sleeps in steps, checkpointing each one, so a redelivered attempt resumes where it stopped."""
    payload = ctx.payload
    if ctx.attempt <= payload.transient_failures:
        raise TransientError(f"simulated transient failure on attempt {ctx.attempt}")
    start = int((ctx.checkpoint or {}).get("step", 0))
    ctx.stage("sleeping")
    if start:
        ctx.log(f"resuming at step {start}/{payload.steps}")
    step_s = payload.seconds / payload.steps
    for step in range(start, payload.steps):
        if payload.fail_at_step == step:
            raise PermanentJobError(f"simulated failure at step {step}")
        time.sleep(step_s)
        ctx.save_checkpoint({"step": step + 1})
        ctx.progress((step + 1) / payload.steps, f"step {step + 1}/{payload.steps}")
        if payload.log_each_step:
            ctx.log(f"step {step + 1}/{payload.steps}")
    ctx.log(f"slept {payload.seconds:g} s in {payload.steps} steps")
    return {"steps": payload.steps, "resumed_from": start, "attempt": ctx.attempt}


def caption(ctx: JobContext[CaptionPayload]) -> dict[str, Any]:
    """Captions a dataset's images in batches; each batch is saved, so a cancel or crash keeps what is done."""

    payload = ctx.payload
    settings = get_settings()
    dataset = get_dataset(payload.dataset_id)
    images = [i for i in all_images(payload.dataset_id) if not (payload.only_uncaptioned and i.caption.strip())]
    if not images:
        ctx.log("nothing to caption: every image already has a caption")
        return {"captioned": 0}
    model = payload.model or settings.caption_model
    ctx.stage("loading model")
    captioner = load_captioner(model, assigned_device())
    ctx.log(f"captioning {len(images)} image(s) with {model} on {captioner.device}, batches of {payload.batch_size}")
    ctx.stage("captioning")
    options = CaptionOptions(prompt=payload.prompt, max_length=payload.max_length)
    done = 0
    for start in range(0, len(images), payload.batch_size):
        batch = images[start:start + payload.batch_size]
        pictures = [Image.open(io.BytesIO(read_image(image))).convert("RGB") for image in batch]
        raw = captioner.caption(pictures, options)
        write_auto_captions(payload.dataset_id, {
            image.id or 0: compose_caption(text, trigger_word=dataset.trigger_word,
                                           prepend_trigger=payload.prepend_trigger, prefix=payload.prefix,
                                           suffix=payload.suffix)
            for image, text in zip(batch, raw, strict=True)
        })
        done += len(batch)
        ctx.progress(done / len(images), f"{done}/{len(images)} images captioned")
    return {"captioned": done, "model": model, "device": str(captioner.device)}
