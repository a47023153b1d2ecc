"""Publishing through real worker processes to local fakes of the four platforms' APIs: the
happy paths, retries, a token refreshed once, permanent refusals, dry runs, and the rule that
matters most — a publish whose answer was lost is never posted twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.automation import scheduler
from core.config import reload_settings
from core.db import session_scope
from core.infra.storage import get_object_store
from core.jobs.lifecycle import get_job
from core.library.assets import AssetSource, record_asset, store_image
from core.models import AssetKind, PostStatus, PublishRecord, SocialAccount
from core.publishing import caps, posts, social_accounts
from tests import factories
from tests.conftest import wait_until
from tests.factories import image_bytes
from tests.fakes.google import FakeGoogle
from tests.fakes.meta import FakeMeta, IgMedia
from tests.fakes.server import Fault
from tests.fakes.tiktok import FakeTikTok

pytestmark = [pytest.mark.integration, pytest.mark.clock]  # clock: due posts and publishing times
PAST = datetime.now(UTC) - timedelta(minutes=1)
VIDEO_BYTES = bytes(range(256)) * 8192  # 2 MiB of "video"


@dataclass
class Platforms:
    meta: FakeMeta
    google: FakeGoogle
    tiktok: FakeTikTok
    accounts: dict[str, int]


@pytest.fixture
def platforms(studio, monkeypatch) -> Iterator[Platforms]:
    meta, google, tiktok = FakeMeta(container_polls=1), FakeGoogle(audited=True), FakeTikTok()
    with meta.running(), google.running(), tiktok.running():
        env = {
            "STUDIO_GRAPH_API_URL": f"{meta.url}/v21.0", "STUDIO_FACEBOOK_UPLOAD_URL": f"{meta.url}/video-upload/v21.0",
            "STUDIO_PUBLISH_STATUS_POLL_S": "0.05", "STUDIO_PUBLISH_HTTP_TIMEOUT_S": "1.5",
            "STUDIO_PUBLISH_CHUNK_MB": "5",
            **{f"STUDIO_{k.upper()}": str(v) for k, v in {**google.settings(), **tiktok.settings()}.items()},
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reload_settings()
        page = meta.page
        youtube = google.oauth.grant()
        tik = tiktok.oauth.grant()
        accounts = {
            "facebook": social_accounts.connect_manually(platform="facebook", external_id=page.id,
                                                         access_token=meta.page_token()).id,
            "instagram": social_accounts.connect_manually(platform="instagram", external_id=page.ig_user_id,
                                                          access_token=meta.page_token(), page_id=page.id).id,
            "youtube": social_accounts.connect_manually(platform="youtube", external_id=youtube.subject,
                                                        access_token=youtube.access_token,
                                                        refresh_token=youtube.refresh_token, expires_in_s=3600).id,
            "tiktok": social_accounts.connect_manually(platform="tiktok", external_id=tik.subject,
                                                       access_token=tik.access_token,
                                                       refresh_token=tik.refresh_token, expires_in_s=3600).id,
        }
        yield Platforms(meta, google, tiktok, accounts)


def _image_post(platform: str = "instagram", **fields):
    image = store_image(f"test/post-image-{datetime.now().timestamp()}.png", image_bytes(1080, 1350),
                        source=AssetSource.GENERATED)
    post = posts.create_post(platform=platform, scheduled_at=PAST, caption="Sunrise miles",
                             hashtags=["run"], asset_ids=[image.id], **fields)
    return posts.schedule_post(post.id)


def _video_post(platform: str, **fields):
    if platform == "tiktok":  # TikTok has no default privacy: the user picks one
        fields.setdefault("options", {"privacy_level": "SELF_ONLY"})
    key = f"test/post-video-{datetime.now().timestamp()}.mp4"
    get_object_store().put_bytes(key, VIDEO_BYTES, "video/mp4")
    video = record_asset(key=key, kind=AssetKind.VIDEO, source=AssetSource.VIDEO, content_type="video/mp4",
                         size_bytes=len(VIDEO_BYTES), width=1080, height=1920,
                         meta={"duration": 12.0, "spec_report": {"youtube_shorts": [], "tiktok": [],
                                                                 "instagram_reels": [], "facebook_reels": []}})
    post = posts.create_post(platform=platform, scheduled_at=PAST, caption="Three stretches after a run",
                             hashtags=["stretch"], title="Three stretches", asset_ids=[video.id], **fields)
    return posts.schedule_post(post.id)


def _settled(post_id: int, timeout: float = 60):
    return wait_until(lambda: (p := posts.get_post(post_id)).status in (PostStatus.PUBLISHED, PostStatus.FAILED)
                      and p, timeout, what=f"post {post_id} to be published or failed")


def _publish(post_id: int, workers) -> object:
    workers.worker("cpu")
    [job_id] = posts.publish_due_posts()
    post = _settled(post_id)
    return post, get_job(job_id)


# --- each platform ---------------------------------------------------------------------------------------------


def test_an_instagram_image_is_published_once_from_a_jpeg_link(platforms, workers):
    post = _image_post()
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    media = platforms.meta.published_media()
    assert len(media) == 1 and published.external_id == media[0].id and published.permalink
    assert media[0].caption.endswith("#run\n\nAI-generated content.")
    [container_call] = platforms.meta.calls_to("media")
    assert ".jpg" in container_call.form()["image_url"]  # PNG re-encoded: Instagram takes JPEG only
    with session_scope() as session:
        record = session.execute(select(PublishRecord).where(PublishRecord.post_id == post.id)).scalar_one()
    assert record.phase == "published" and record.external_id == published.external_id
    # The content_publishing_limit read before the container is kept on the account, and the cap follows it.
    account = social_accounts.get_account(platforms.accounts["instagram"])
    assert account.meta["publishing_quota"] == 100 and account.meta["publishing_quota_used"] == 0
    assert account.meta["publishing_quota_duration_s"] == 86_400
    assert caps.cap_for("instagram", account.id) == 100


def test_a_facebook_photo_is_published_to_the_page_feed(platforms, workers):
    post = _image_post("facebook")
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    [feed_post] = platforms.meta.feed()
    assert feed_post.message.startswith("Sunrise miles") and published.external_id == feed_post.id


def test_a_youtube_short_uploads_the_exact_bytes_with_the_disclosure_flags(platforms, workers):
    post = _video_post("youtube", options={"privacy": "unlisted", "made_for_kids": False})
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    [video] = platforms.google.videos()
    assert video.data == VIDEO_BYTES and video.snippet["title"] == "Three stretches"
    assert video.status["containsSyntheticMedia"] is True and video.status["selfDeclaredMadeForKids"] is False
    assert video.status["privacyStatus"] == "unlisted"
    assert published.permalink == f"https://youtube.com/shorts/{video.id}"


def test_a_tiktok_video_carries_the_ai_generated_flag(platforms, workers):
    post = _video_post("tiktok")
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    [tiktok_post] = platforms.tiktok.posts()
    assert tiktok_post.is_aigc is True and tiktok_post.data == VIDEO_BYTES
    assert "AI-generated" not in tiktok_post.title  # TikTok has a flag; no disclosure text needed


def test_a_youtube_upload_locked_private_by_an_unaudited_project_is_recorded_so(platforms, workers):
    platforms.google.audited = False  # videos.insert from an unverified project: private viewing mode only
    post = _video_post("youtube", options={"privacy": "public"})
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED
    assert published.error and "YouTube made the video private, not public" in published.error


def test_an_instagram_post_over_the_daily_cap_is_deferred_not_failed(platforms, workers):
    meta = platforms.meta
    meta.publishing_quota = 1  # content_publishing_limit: the one post of the day is already made
    earlier = IgMedia("17900000000000999", meta.page.ig_user_id or "", "c0", "IMAGE", "earlier", "https://x/y.jpg")
    meta.media[earlier.id] = earlier
    post = _image_post()
    workers.worker("cpu")
    [job_id] = posts.publish_due_posts()
    deferred = wait_until(lambda: (p := posts.get_post(post.id)).status == PostStatus.SCHEDULED and p, 60,
                          what="the post to be deferred")
    assert deferred.error and deferred.error.startswith("deferred: instagram: the account has used its 1")
    assert deferred.scheduled_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=50)
    # The post is deferred inside the job, a moment before the job is recorded as succeeded.
    wait_until(lambda: get_job(job_id).status == "succeeded", 30, what="the deferring job to succeed")
    assert platforms.meta.calls_to("media") == []
    assert posts.publish_due_posts() == []  # not due again before the cap frees up
    # The reading that deferred it is recorded too: scheduling now counts against a cap of 1.
    account = social_accounts.get_account(platforms.accounts["instagram"])
    assert (account.meta["publishing_quota"], account.meta["publishing_quota_used"]) == (1, 1)
    assert caps.usage("instagram", account.id, deferred.scheduled_at).cap == 1


def test_a_31st_facebook_reel_in_24_hours_is_deferred_instead_of_sent(platforms, workers):
    # Meta allows 30 API-published Reels per Page in 24 hours and documents no error for the 31st
    # (https://developers.facebook.com/docs/video-api/guides/reels-publishing/): the job counts the studio's own.
    post = _video_post("facebook")
    earlier = [datetime.now(UTC) - timedelta(hours=20)] * 30
    factories.published_posts(platform="facebook", account_id=platforms.accounts["facebook"],
                              asset_ids=list(post.asset_ids), times=earlier)
    workers.worker("cpu")
    [job_id] = posts.publish_due_posts()
    deferred = wait_until(lambda: (p := posts.get_post(post.id)).status == PostStatus.SCHEDULED and p, 60,
                          what="the Reel to be deferred")
    assert deferred.error and "30 Reels" in deferred.error
    assert deferred.scheduled_at.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(hours=3)
    wait_until(lambda: get_job(job_id).status == "succeeded", 30, what="the deferring job to succeed")
    assert platforms.meta.calls_to("video_reels") == []  # nothing was sent to Facebook


# --- never twice -------------------------------------------------------------------------------------------------


def test_an_instagram_publish_whose_answer_was_lost_is_recovered_not_repeated(platforms, workers):
    post = _image_post()
    platforms.meta.inject("media_publish", Fault.lose_response(delay_s=3))
    published, job = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert len(platforms.meta.published_media()) == 1
    assert len(platforms.meta.calls_to("media_publish")) == 1  # recovered from the container's status
    assert job.attempts == 2


def test_a_youtube_upload_whose_last_answer_was_lost_makes_one_video(platforms, workers):
    post = _video_post("youtube")
    # Three 5 MiB chunks would be needed for 15 MiB; this 2 MiB file is one chunk: its answer is lost.
    platforms.google.inject("upload", Fault.lose_response(delay_s=3))
    published, job = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert len(platforms.google.videos()) == 1 and job.attempts == 2


def test_a_tiktok_final_chunk_whose_answer_was_lost_makes_one_post(platforms, workers):
    post = _video_post("tiktok")
    platforms.tiktok.inject("upload", Fault.lose_response(delay_s=3))
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert len(platforms.tiktok.posts()) == 1


def test_two_schedulers_and_two_workers_publish_every_post_exactly_once(platforms, workers):
    ids = [_image_post("facebook").id for _ in range(6)]
    workers.worker("cpu")
    workers.worker("cpu")
    start = threading.Barrier(2)

    def scheduler() -> None:
        start.wait()
        posts.publish_due_posts()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for post_id in ids:
        assert _settled(post_id).status == PostStatus.PUBLISHED
    assert len(platforms.meta.feed()) == 6


# --- retries, tokens, refusals --------------------------------------------------------------------------------


def test_a_rate_limited_call_is_retried_after_retry_after(platforms, workers):
    post = _video_post("tiktok")
    platforms.tiktok.inject("init", Fault.rate_limited(retry_after_s=1))
    published, job = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert [c.status for c in platforms.tiktok.calls_to("init")][:2] == [429, 200] and job.attempts == 1


def test_an_expired_token_is_refreshed_once_and_the_publish_goes_through(platforms, workers):
    post = _video_post("youtube")
    with session_scope() as session:
        before = session.get(SocialAccount, platforms.accounts["youtube"]).access_token_enc
    platforms.google.oauth.expire_access_tokens()
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert len(platforms.google.calls_to("token")) == 1  # one refresh grant
    with session_scope() as session:
        account = session.get(SocialAccount, platforms.accounts["youtube"])
    assert account.access_token_enc != before and account.status == "connected"


def test_a_token_refused_after_refresh_fails_the_post_and_asks_for_a_reconnect(platforms, workers):
    post = _image_post()
    platforms.meta.oauth.expire_access_tokens()  # Meta page tokens cannot be refreshed once dead
    published, _ = _publish(post.id, workers)
    assert published.status == PostStatus.FAILED
    assert "reconnect" in published.error
    assert social_accounts.get_account(platforms.accounts["instagram"]).status == "needs-reconnect"
    assert platforms.meta.published_media() == []


def test_a_permanent_refusal_fails_at_once_with_the_platforms_message(platforms, workers):
    post = _image_post()
    platforms.meta.fail_next_container("ERROR: the media could not be processed (2207026)")
    published, job = _publish(post.id, workers)
    assert published.status == PostStatus.FAILED and "2207026" in published.error
    assert job.attempts == 1 and platforms.meta.published_media() == []


# --- dry runs ---------------------------------------------------------------------------------------------------


def test_dry_run_mode_records_the_calls_and_sends_nothing(platforms, workers, monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")
    reload_settings()
    post = _video_post("youtube")
    published, job = _publish(post.id, workers)
    assert published.status == PostStatus.PUBLISHED and published.dry_run and published.external_id == "dry-run"
    assert job.result["dry_run"] is True and job.result["calls"]
    youtube_token = social_accounts.credentials(platforms.accounts["youtube"]).access_token
    assert youtube_token not in str(job.result)
    assert platforms.google.calls == []


def test_a_dry_run_of_one_post_leaves_it_scheduled(platforms, workers):
    post = _video_post("tiktok")
    workers.worker("cpu")
    job = posts.dry_run_post(post.id)
    finished = wait_until(lambda: (j := get_job(job.id)).status in ("succeeded", "failed") and j, 60)
    assert finished.status == "succeeded", finished.error
    assert posts.get_post(post.id).status == PostStatus.SCHEDULED
    assert platforms.tiktok.calls == [] and finished.result["calls"][0]["method"] == "POST"


def test_the_scheduler_refreshes_tokens_about_to_expire(platforms):
    from sqlalchemy import update

    from core.models import utcnow

    soon = utcnow() + timedelta(seconds=60)
    with session_scope() as session:
        session.execute(update(SocialAccount).where(SocialAccount.id == platforms.accounts["tiktok"])
                        .values(expires_at=soon))
    report = scheduler.scheduler_tick()
    assert report.tokens_refreshed == 1
    assert len(platforms.tiktok.calls_to("token")) == 1 and platforms.google.calls_to("token") == []
    refreshed = social_accounts.get_account(platforms.accounts["tiktok"])
    assert refreshed.expires_at > soon + timedelta(minutes=30)


def test_the_supervisor_publishes_due_posts_on_its_own(platforms, workers, monkeypatch):
    monkeypatch.setenv("STUDIO_SCHEDULER_INTERVAL_S", "0.5")
    reload_settings()
    post = _image_post("facebook")
    workers.supervisor("cpu,default")
    published = _settled(post.id, timeout=60)
    assert published.status == PostStatus.PUBLISHED, published.error
    assert len(platforms.meta.feed()) == 1
