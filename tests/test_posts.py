"""Posts and their lifecycle: editing, moving, platform checks, scheduling, and the claim that
keeps two schedulers from publishing one post twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from core.config import reload_settings
from core.db import session_scope
from core.errors import Conflict, InvalidInput
from core.library.assets import AssetSource, record_asset
from core.models import AssetKind, Job, Post, PostStatus
from core.publishing import posts
from core.publishing.checks import compose_text, normalize_hashtags, preview_post

pytestmark = pytest.mark.clock  # also run at awkward moments (tests/clock.py): scheduling, due posts and moves

NOW = datetime.now(UTC)


@pytest.fixture
def dry_run(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")
    return reload_settings()


def _image(width: int = 1080, height: int = 1350, **fields):
    key = f"test/image-{width}x{height}-{datetime.now().timestamp()}.png"
    return record_asset(key=key, kind=AssetKind.IMAGE, source=AssetSource.GENERATED, content_type="image/png",
                        size_bytes=1000, width=width, height=height, **fields)


def _video(spec_report: dict | None = None, *, width: int = 1080, height: int = 1920, duration: float = 12.0):
    meta = {"duration": duration}
    if spec_report is not None:
        meta["spec_report"] = spec_report
    return record_asset(key=f"test/video-{datetime.now().timestamp()}.mp4", kind=AssetKind.VIDEO,
                        source=AssetSource.VIDEO, content_type="video/mp4", size_bytes=5_000_000, width=width,
                        height=height, meta=meta)


def _post(**fields) -> Post:
    values = {"platform": "instagram", "scheduled_at": NOW + timedelta(days=1), "caption": "Morning run"}
    return posts.create_post(**{**values, **fields})


# --- the text and the checks ---------------------------------------------------------------------------------


def test_hashtags_are_normalised_from_text_or_lists_without_duplicates():
    assert normalize_hashtags("#Run, morning  #run #Sun") == ["Run", "morning", "Sun"]
    assert normalize_hashtags(["#a b", "c"]) == ["a", "b", "c"]


def test_the_ai_disclosure_goes_into_the_text_only_where_the_platform_has_no_flag():
    instagram = compose_text("instagram", "Hi", ["run"], ai_generated=True)
    assert instagram == "Hi\n\n#run\n\nAI-generated content."
    assert "AI-generated" not in compose_text("tiktok", "Hi", ["run"], ai_generated=True)
    assert "AI-generated" not in compose_text("instagram", "Hi", [], ai_generated=False)


def test_the_preview_truncates_like_the_app_and_counts_hashtags(studio):
    image = _image()
    preview = preview_post(platform="instagram", caption="x" * 300, hashtags=["a", "b"], assets=[image])
    assert preview.truncated and preview.shown.endswith("… more") and len(preview.shown) < 140
    assert preview.hashtag_count == 2 and preview.ok
    assert preview.media[0].aspect == "4:5"


def test_platform_limits_are_errors_that_name_the_platform(studio):
    image = _image()
    too_many = preview_post(platform="instagram", caption="hi", hashtags=[f"t{i}" for i in range(31)],
                            assets=[image])
    assert any("at most 30 hashtags" in e for e in too_many.errors)
    too_long = preview_post(platform="tiktok", caption="x" * 2300, hashtags=[], assets=[_video()])
    assert any("TikTok" in e and "2,200" in e for e in too_long.errors)
    youtube = preview_post(platform="youtube", caption="desc", hashtags=[], title="", assets=[image])
    assert "YouTube Shorts needs a title" in youtube.errors
    assert any("does not take a image" in e for e in youtube.errors)


def test_an_image_outside_instagrams_feed_ratios_and_a_measured_video_failure_are_errors(studio):
    # Instagram's API refuses feed images outside 4:5–1.91:1 (error 36003 / 2207009), so it cannot be scheduled.
    wide = preview_post(platform="instagram", caption="hi", hashtags=[], assets=[_image(1920, 800)])
    assert not wide.ok and any("4:5 to 1.91:1" in e for e in wide.errors)
    tall = preview_post(platform="instagram", caption="hi", hashtags=[], assets=[_image(1080, 1920)])
    assert not tall.ok
    for width, height in ((1080, 1350), (1080, 1080), (1910, 1000)):  # the edges are allowed
        assert preview_post(platform="instagram", caption="hi", hashtags=[], assets=[_image(width, height)]).ok
    failing = _video({"youtube_shorts": ["YouTube Shorts: 16:9 is not a Shorts aspect"]})
    preview = preview_post(platform="youtube", caption="hi", hashtags=[], title="A title", assets=[failing])
    assert "YouTube Shorts: 16:9 is not a Shorts aspect" in preview.errors
    unmeasured_wide = preview_post(platform="tiktok", caption="hi", hashtags=[],
                                   assets=[_video(width=1920, height=1080)], options={"privacy_level": "SELF_ONLY"})
    assert not unmeasured_wide.ok


def test_a_youtube_description_with_angle_brackets_cannot_be_scheduled(studio):
    # snippet.description: "all valid UTF-8 characters except < and >" (invalidDescription otherwise).
    video = _video({"youtube_shorts": []})
    hearts = preview_post(platform="youtube", caption="Love this run <3", hashtags=[], title="Run", assets=[video])
    assert not hearts.ok and any("'<' or '>'" in e for e in hearts.errors)
    arrow = preview_post(platform="youtube", caption="Warm-up -> run", hashtags=[], title="Run", assets=[video])
    assert not arrow.ok
    assert preview_post(platform="youtube", caption="Love this run", hashtags=[], title="Run", assets=[video]).ok


def test_a_tiktok_post_needs_its_privacy_chosen_there_is_no_default(studio, monkeypatch):
    video = _video({"tiktok": []})
    unchosen = preview_post(platform="tiktok", caption="hi", hashtags=[], assets=[video])
    assert not unchosen.ok and any("choose who can see" in e for e in unchosen.errors)
    # An unaudited TikTok app (the default) may post only "Only me" (SELF_ONLY):
    # https://developers.tiktok.com/doc/content-sharing-guidelines
    followers = preview_post(platform="tiktok", caption="hi", hashtags=[], assets=[video],
                             options={"privacy_level": "FOLLOWER_OF_CREATOR"})
    assert not followers.ok and any("not passed TikTok's audit" in e and "5 users" in e for e in followers.errors)
    assert preview_post(platform="tiktok", caption="hi", hashtags=[], assets=[video],
                        options={"privacy_level": "SELF_ONLY"}).ok
    monkeypatch.setenv("STUDIO_TIKTOK_APP_AUDITED", "true")
    reload_settings()
    assert preview_post(platform="tiktok", caption="hi", hashtags=[], assets=[video],
                        options={"privacy_level": "FOLLOWER_OF_CREATOR"}).ok


# --- editing and moving ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_post_is_created_edited_and_moved(studio):
    post = _post(hashtags="#run #sun")
    assert post.status == PostStatus.DRAFT and post.hashtags == ["run", "sun"]
    edited = posts.update_post(post.id, caption="Evening run", hashtags=["dusk"])
    assert edited.caption == "Evening run" and edited.hashtags == ["dusk"]
    later = NOW + timedelta(days=3, hours=2)
    moved = posts.move_post(post.id, later)
    assert abs((posts.get_post(post.id).scheduled_at.replace(tzinfo=UTC) - later).total_seconds()) < 1
    assert moved.status == PostStatus.DRAFT


def test_bad_edits_are_refused_and_change_nothing(studio):
    post = _post()
    with pytest.raises(InvalidInput, match="unknown platform"):
        posts.update_post(post.id, platform="myspace")
    with pytest.raises(InvalidInput, match="cannot set"):
        posts.update_post(post.id, status="published")
    with pytest.raises(InvalidInput, match="time zone"):
        posts.move_post(post.id, datetime(2027, 1, 1, 10, 0))
    assert posts.get_post(post.id).platform == "instagram"


def test_published_posts_cannot_be_moved_or_edited(studio):
    post = _post()
    with session_scope() as session:
        session.get(Post, post.id).status = PostStatus.PUBLISHED
    with pytest.raises(Conflict, match="published posts cannot be changed or moved"):
        posts.move_post(post.id, NOW + timedelta(days=5))
    with pytest.raises(Conflict):
        posts.update_post(post.id, caption="changed")
    stored = posts.get_post(post.id)
    assert stored.caption == "Morning run"
    assert abs((stored.scheduled_at.replace(tzinfo=UTC) - post.scheduled_at).total_seconds()) < 1


# --- scheduling and claiming ------------------------------------------------------------------------------------


def test_scheduling_is_refused_with_every_reason_until_the_post_can_publish(studio):
    post = _post()
    with pytest.raises(InvalidInput) as refused:
        posts.schedule_post(post.id)
    assert "needs media" in str(refused.value) and "no Instagram account is connected" in str(refused.value)
    assert posts.get_post(post.id).status == PostStatus.DRAFT


def test_a_valid_post_schedules_and_unschedules(dry_run):
    post = _post(asset_ids=[_image().id])
    assert posts.schedule_post(post.id).status == PostStatus.SCHEDULED
    with pytest.raises(InvalidInput, match="would no longer publish"):
        posts.update_post(post.id, asset_ids=[])
    assert posts.get_post(post.id).asset_ids  # the refused edit left the media in place
    assert posts.unschedule_post(post.id).status == PostStatus.DRAFT


def test_due_posts_are_claimed_once_with_their_job_in_the_same_transaction(dry_run):
    due = _post(asset_ids=[_image().id], scheduled_at=NOW - timedelta(minutes=1))
    future = _post(asset_ids=[_image().id], scheduled_at=NOW + timedelta(hours=2))
    for post in (due, future):
        posts.schedule_post(post.id)
    claimed = posts.publish_due_posts()
    assert len(claimed) == 1
    stored = posts.get_post(due.id)
    assert stored.status == PostStatus.PUBLISHING and stored.publish_job_id == claimed[0]
    with session_scope() as session:
        job = session.get(Job, claimed[0])
    assert job.kind == "publish" and job.payload == {"post_id": due.id, "dry_run": True}
    assert posts.publish_due_posts() == []  # nothing left to claim
    assert posts.get_post(future.id).status == PostStatus.SCHEDULED


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_two_schedulers_racing_claim_each_post_exactly_once(dry_run):
    ids = []
    for _ in range(12):
        post = _post(asset_ids=[_image().id], scheduled_at=NOW - timedelta(minutes=1))
        posts.schedule_post(post.id)
        ids.append(post.id)
    results: list[list[str]] = [[], [], []]
    start = threading.Barrier(3)

    def scheduler(slot: int) -> None:
        start.wait()
        results[slot] = posts.publish_due_posts()

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)) == 12
    with session_scope() as session:
        jobs = session.execute(select(func.count()).select_from(Job).where(Job.kind == "publish")).scalar_one()
        job_ids = set(session.execute(select(Post.publish_job_id).where(Post.id.in_(ids))).scalars())
    assert jobs == 12 and job_ids == set(claimed)


def test_a_failed_publish_job_fails_its_post_and_the_post_can_be_retried(dry_run):
    post = _post(asset_ids=[_image().id], scheduled_at=NOW - timedelta(minutes=1))
    posts.schedule_post(post.id)
    [job_id] = posts.publish_due_posts()
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status, job.error = "failed", "PlatformRejected: bad media"
    posts.publish_job_finished(job_id, "failed")
    failed = posts.get_post(post.id)
    assert failed.status == PostStatus.FAILED and failed.error == "PlatformRejected: bad media"
    retried = posts.retry_post(post.id)
    assert retried.status == PostStatus.SCHEDULED and retried.scheduled_at.replace(tzinfo=UTC) >= NOW


def test_posts_between_reads_one_calendar_range_through_the_index(studio):
    for day in range(10):
        _post(scheduled_at=NOW + timedelta(days=day))
    window = posts.posts_between(NOW + timedelta(days=2) - timedelta(minutes=1), NOW + timedelta(days=5))
    assert len(window) == 3
    with session_scope() as session:
        rows = session.execute(text(
            "EXPLAIN QUERY PLAN SELECT * FROM post WHERE scheduled_at >= :start AND scheduled_at < :end "
            "ORDER BY scheduled_at, id"), {"start": NOW, "end": NOW + timedelta(days=5)}).all()
    assert "ix_post_scheduled" in " ".join(str(row[-1]) for row in rows)


def test_the_media_of_a_scheduled_post_cannot_be_purged(dry_run):
    from core.library.assets import purge_assets, trash_assets

    image = _image()
    post = _post(asset_ids=[image.id])
    posts.schedule_post(post.id)
    trash_assets([image.id])
    with pytest.raises(Conflict, match=f"media of scheduled post {post.id}"):
        purge_assets([image.id])
    posts.unschedule_post(post.id)
    assert purge_assets([image.id]) == 1
