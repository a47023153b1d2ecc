""""Produce content for this slot": a draft post whose media are made by the studio's own jobs.

The chain is generate (with the character's LoRA) → for video platforms, a video from those
images with the caption as voice-over → attach the media to the post. No job waits for another:
each step starts when the previous job finishes (``core.jobs.lifecycle.on_job_finished``), and the
scheduler's periodic sweep advances anything a crash left between two steps. Every step is a
conditional update, so running it twice changes nothing.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlmodel import col

from core.characters import characters
from core.db import affected_rows, session_scope
from core.errors import InvalidInput
from core.generation.requests import LoraChoice, insert_trigger_words, job_images
from core.jobs.lifecycle import enqueue_new, get_job, new_job
from core.models import TERMINAL_STATUSES, Job, JobStatus, Platform, Post, utcnow
from core.publishing import posts
from core.publishing.checks import RULES, VIDEO_PLATFORMS
from core.publishing.posts import create_post
from core.training.runs import promoted_lora

_logger = logging.getLogger("studio.production")

PRODUCING = "producing"
# The kinds of the jobs a post's production waits on (Post.generate_job_id, Post.video_job_id): the
# job-finished listener is registered for these alone (workers/actors.py).
PRODUCTION_KINDS = ("generate", "video")
READY = "ready"
FAILED = "failed"


def _lora_choice(character_id: int | None) -> list[LoraChoice]:
    lora = promoted_lora(character_id) or (promoted_lora(None) if character_id is not None else None)
    return [LoraChoice(lora_id=lora.id)] if lora is not None and lora.id is not None else []


def default_image_prompt(character_id: int) -> str:
    persona = characters.persona_of(characters.get_character(character_id))
    return f"photo of {persona.name}, {persona.niche or 'lifestyle'} influencer, natural light, candid, high detail"


def produce_for_slot(*, platform: str, scheduled_at: datetime, character_id: int | None = None,
                     caption: str = "", image_prompt: str = "", hashtags: list[str] | None = None,
                     title: str = "", count: int = 1, template: str = "", make_video: bool | None = None) -> Post:
    """A new draft post for an empty slot, and the generation job that will make its media."""
    character = characters.get_character(character_id) if character_id else characters.current_character()
    post = create_post(platform=platform, scheduled_at=scheduled_at, caption=caption, hashtags=hashtags or [],
                       title=title, image_prompt=image_prompt, character_id=character.id)
    start_production(post, count=count, template=template, make_video=make_video)
    return posts.get_post(post.id or 0)


def start_production(post: Post, *, count: int = 1, template: str = "", make_video: bool | None = None,
                     pipeline_id: str | None = None) -> Job:
    """Make a post's media: a generation job with the character's LoRA (its trigger word in the prompt),
    then — for video platforms, or when asked — a video (see :func:`advance_production`)."""
    character_id = post.character_id or characters.current_character().id
    trigger = characters.trigger_word_of(character_id)
    prompt = insert_trigger_words(post.image_prompt.strip() or default_image_prompt(character_id or 0),
                                  [trigger] if trigger else [])
    loras = _lora_choice(character_id)
    job = new_job("generate", {"prompt": prompt, "count": count, "template": template, "character_id": character_id,
                               "loras": [c.model_dump() for c in loras]}, pipeline_id=pipeline_id)
    video = make_video if make_video is not None else post.platform in VIDEO_PLATFORMS
    with session_scope() as session:
        session.add(job)
        session.execute(update(Post).where(col(Post.id) == post.id).values(
            production_status=PRODUCING, generate_job_id=job.id, video_job_id=None, image_prompt=prompt,
            options={**post.options, "make_video": video}, error=None, updated_at=utcnow()))
    enqueue_new(job)
    return job


def spoken_script(post: Post) -> str:
    """The caption read aloud: no hashtags, mentions, links or emoji."""
    text = re.sub(r"[#@]\w+|https?://\S+", "", post.caption or "")
    text = re.sub(r"[^\w\s.,!?'’;:()-]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:5000] or f"{Platform(post.platform).label} post."


def _finish(post_id: int, *, status: str, error: str | None = None, asset_ids: list[int] | None = None) -> None:
    values: dict[str, Any] = {"production_status": status, "updated_at": utcnow()}
    if error is not None:
        values["error"] = error
    if asset_ids is not None:
        values["asset_ids"] = asset_ids
    with session_scope() as session:
        session.execute(update(Post).where(col(Post.id) == post_id, col(Post.production_status) == PRODUCING)
                        .values(**values))


SPEAKING_RATE_WPM = 165
MIN_VIDEO_S = 6.0  # above every platform's minimum (TikTok: 3 s), so a one-line caption still qualifies


def video_seconds(script: str) -> float:
    """Long enough for the voice-over (with a margin) and never shorter than a platform accepts."""
    spoken = len(script.split()) * 60 / SPEAKING_RATE_WPM + 1.0
    return round(min(60.0, max(MIN_VIDEO_S, spoken * 1.15)), 1)


def _start_video(post: Post) -> None:
    spec = RULES[post.platform].video_spec
    script = spoken_script(post)
    job = new_job("video", {"generation_job_id": post.generate_job_id, "script": script, "aspect": "9:16",
                            "rate_wpm": SPEAKING_RATE_WPM, "total_seconds": video_seconds(script),
                            "platforms": [spec], "name": f"post {post.id}"},
                  character_id=post.character_id, pipeline_id=get_job(post.generate_job_id or "").pipeline_id)
    with session_scope() as session:
        claimed = affected_rows(session.execute(
            update(Post).where(col(Post.id) == post.id, col(Post.video_job_id).is_(None)).values(
                video_job_id=job.id, updated_at=utcnow())))
        if not claimed:
            return  # another advance started it
        session.add(job)
    enqueue_new(job)


def _outcome(post_id: int, job_id: str, what: str) -> str | None:
    """PRODUCING while the job runs, FAILED (recorded on the post) if it did not succeed, None once it did."""
    job = get_job(job_id)
    if job.status not in TERMINAL_STATUSES:
        return PRODUCING
    if job.status != JobStatus.SUCCEEDED:
        _finish(post_id, status=FAILED, error=f"{what} {job.status}: {job.error or ''}".strip())
        return FAILED
    return None


def advance_production(post_id: int) -> str | None:
    """Take the post's production one step further if its current job has finished; returns its status."""
    with session_scope() as session:
        post = session.get(Post, post_id)
    if post is None or post.production_status != PRODUCING or post.generate_job_id is None:
        return post.production_status if post else None
    waiting = _outcome(post_id, post.generate_job_id, "image generation")
    if waiting is not None:
        return waiting
    if not post.options.get("make_video"):
        images = [a.id for a in job_images(post.generate_job_id) if a.id is not None]
        _finish(post_id, status=READY, asset_ids=images[:1])
        return READY
    if post.video_job_id is None:
        try:
            _start_video(post)
        except InvalidInput as error:  # e.g. every image was trashed meanwhile
            _finish(post_id, status=FAILED, error=f"the video could not start: {error}")
            return FAILED
        return PRODUCING
    waiting = _outcome(post_id, post.video_job_id, "video")
    if waiting is not None:
        return waiting
    video = get_job(post.video_job_id)
    assert video.result is not None  # a succeeded video job recorded what it made
    _finish(post_id, status=READY, asset_ids=[int(video.result["video_asset_id"])])
    return READY


def production_job_finished(job_id: str, status: str) -> None:
    """The job-finished listener: advance the post this job was making media for."""
    with session_scope() as session:
        post_ids = session.execute(select(col(Post.id)).where(
            or_(col(Post.generate_job_id) == job_id, col(Post.video_job_id) == job_id))).scalars().all()
    for post_id in post_ids:
        advance_production(post_id)


def sweep_production(*, limit: int = 200) -> int:
    """Advance every post still producing (what a crash between two steps left behind)."""
    with session_scope() as session:
        post_ids = session.execute(select(col(Post.id)).where(col(Post.production_status) == PRODUCING)
                                   .order_by(col(Post.id)).limit(limit)).scalars().all()
    advanced = 0
    for post_id in post_ids:
        try:
            advanced += advance_production(post_id) != PRODUCING
        except Exception:  # one broken post must not stall the others; it is retried next tick
            _logger.warning("could not advance the production of post %s", post_id, exc_info=True)
    return advanced
