""""Produce content for this slot" end to end with real GPU-queue and CPU workers on the tiny models:
the character's promoted LoRA makes the image, video platforms get a rendered video, and the media
land on the draft post without any job waiting for another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.characters import characters
from core.db import session_scope
from core.jobs.lifecycle import get_job
from core.models import AssetKind, Job, JobStatus, Post
from core.publishing import posts, production
from core.training import runs as training
from tests.conftest import wait_until
from tests.test_generation_job import lora_files, register_lora, tiny_studio  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]
SLOT = datetime.now(UTC) + timedelta(days=2)


@pytest.fixture
def promoted(tiny_studio, lora_files, tmp_path, tiny_models, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")  # subtitles from the TTS timings: no model to load
    from core.config import reload_settings

    reload_settings()
    lora = register_lora(lora_files["a"], tmp_path, name="Mia", trigger="ohwx woman")
    training.promote_lora(lora.id)
    return lora


def _produced(post_id: int, timeout: float = 240) -> Post:
    return wait_until(lambda: (p := posts.get_post(post_id)).production_status in ("ready", "failed") and p,
                      timeout, what=f"post {post_id}'s media")


def test_an_instagram_slot_gets_an_image_made_with_the_promoted_lora(promoted, workers):
    workers.worker("gpu,cpu,default", threads=2)
    post = production.produce_for_slot(platform="instagram", scheduled_at=SLOT, caption="Morning light",
                                       image_prompt="portrait on a trail")
    assert post.status == "draft" and post.production_status == "producing"
    ready = _produced(post.id)
    assert ready.production_status == "ready", ready.error
    generate = get_job(ready.generate_job_id)
    assert generate.payload["loras"] == [{"lora_id": promoted.id, "strength": 1.0}]
    assert generate.payload["prompt"].startswith("ohwx woman, portrait on a trail")
    assert generate.payload["template"] == "tiny-lora"  # the template made for the LoRA's own base model
    [asset] = posts.post_assets(ready)
    assert asset.kind == AssetKind.IMAGE and asset.job_id == generate.id
    assert ready.video_job_id is None


def test_a_tiktok_slot_gets_a_vertical_video_read_from_its_caption(promoted, workers):
    workers.worker("gpu,cpu,default", threads=2)
    post = production.produce_for_slot(platform="tiktok", scheduled_at=SLOT,
                                       caption="Three stretches after every run. #stretch", image_prompt="stretching")
    ready = _produced(post.id)
    assert ready.production_status == "ready", ready.error
    video_job = get_job(ready.video_job_id)
    assert video_job.payload["script"] == "Three stretches after every run." and video_job.payload["aspect"] == "9:16"
    [video] = posts.post_assets(ready)
    assert video.kind == AssetKind.VIDEO and (video.width, video.height) == (1080, 1920)
    assert posts.post_preview(ready).errors == [  # the video passes; what is left is the user's to do
        "TikTok: choose who can see this post (TikTok does not allow a default)",
        "no TikTok account is connected (Social accounts page), and dry-run mode is off"]


def test_a_failed_generation_fails_the_production_with_its_error(promoted, workers):
    post = production.produce_for_slot(platform="instagram", scheduled_at=SLOT, image_prompt="x")
    with session_scope() as session:  # the job fails before any worker sees it
        job = session.get(Job, post.generate_job_id)
        job.status, job.error = JobStatus.FAILED, "RuntimeError: out of memory"
    assert production.sweep_production() == 1
    failed = posts.get_post(post.id)
    assert failed.production_status == "failed" and "out of memory" in failed.error


def test_a_video_that_cannot_start_fails_the_production_instead_of_retrying_forever(promoted):
    post = production.produce_for_slot(platform="youtube", scheduled_at=SLOT, image_prompt="x")
    with session_scope() as session:  # a "success" that stored no image
        session.get(Job, post.generate_job_id).status = JobStatus.SUCCEEDED
    assert production.advance_production(post.id) == "failed"
    failed = posts.get_post(post.id)
    assert failed.video_job_id is None and "has no images" in failed.error
    assert production.advance_production(post.id) == "failed"  # idempotent


def test_the_persona_gives_the_default_prompt(studio):
    character = characters.current_character()
    prompt = production.default_image_prompt(character.id)
    assert prompt.startswith(f"photo of {character.name}, outdoor fitness")
