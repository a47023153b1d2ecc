"""Per-account caps checked when scheduling, a content pipeline that defers over-cap posts instead of failing,
token health (valid until, renewable until, Google's Testing-mode refresh tokens) and TikTok's creator info
read for the post editor, against real PostgreSQL/SQLite and a local TikTok fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from core.automation import pipelines
from core.config import reload_settings
from core.db import session_scope
from core.jobs.lifecycle import aware
from core.library.assets import AssetSource, record_asset
from core.models import AssetKind, Pipeline, Post, PostStatus, utcnow
from core.publishing import caps, oauth, posts, social_accounts
from core.publishing.tiktok_creator import creator_info_for_account
from tests import factories
from tests.fakes.tiktok import FakeTikTok

pytestmark = pytest.mark.clock  # caps and token expiry are about times

SLOT = (datetime.now(UTC) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def dry_run(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")  # no account needed to schedule
    reload_settings()
    return studio


def _video(platform_spec: str):
    return record_asset(key=f"test/cap-video-{datetime.now().timestamp()}.mp4", kind=AssetKind.VIDEO,
                        source=AssetSource.VIDEO, content_type="video/mp4", size_bytes=1000, width=1080, height=1920,
                        meta={"duration": 12.0, "spec_report": {platform_spec: []}})


def _short(at: datetime, *, status: str = PostStatus.SCHEDULED) -> Post:
    post = posts.create_post(platform="youtube", scheduled_at=at, caption="Stretch", title="Stretch",
                             asset_ids=[_video("youtube_shorts").id or 0])
    with session_scope() as session:
        session.execute(update(Post).where(Post.id == post.id).values(status=status))
    return posts.get_post(post.id or 0)


def test_a_post_over_its_accounts_daily_cap_is_flagged_when_scheduled(dry_run):
    for hours in range(caps.DAILY_CAPS["youtube"]):  # YouTube: 6 uploads a day (1,600 of 10,000 units each)
        _short(SLOT - timedelta(hours=hours))
    seventh = posts.create_post(platform="youtube", scheduled_at=SLOT + timedelta(hours=1), caption="One more",
                                title="One more", asset_ids=[_video("youtube_shorts").id or 0])
    preview = posts.post_preview(seventh)
    assert preview.ok and any("over the daily cap" in w and "6 API posts" in w for w in preview.warnings)
    assert caps.usage("youtube", None, SLOT + timedelta(hours=1)).remaining == 0
    next_day = posts.create_post(platform="youtube", scheduled_at=SLOT + timedelta(hours=25), caption="Tomorrow",
                                 title="Tomorrow", asset_ids=[_video("youtube_shorts").id or 0])
    assert not any("daily cap" in w for w in posts.post_preview(next_day).warnings)


def test_scheduling_with_defer_moves_an_over_cap_post_to_the_first_free_time(dry_run):
    oldest = SLOT - timedelta(hours=5)
    for hours in range(6):
        _short(SLOT - timedelta(hours=hours))
    seventh = posts.create_post(platform="youtube", scheduled_at=SLOT, caption="One more", title="One more",
                                asset_ids=[_video("youtube_shorts").id or 0])
    scheduled = posts.schedule_post(seventh.id or 0, defer_over_cap=True)
    assert scheduled.status == PostStatus.SCHEDULED
    assert aware(scheduled.scheduled_at) == oldest + caps.WINDOW + timedelta(minutes=1)
    assert caps.over_cap(scheduled) is None


def test_a_content_pipeline_defers_posts_over_a_cap_instead_of_failing_them(dry_run):
    for hours in range(6):
        _short(SLOT - timedelta(hours=hours))
    over = posts.create_post(platform="youtube", scheduled_at=SLOT, caption="Pipeline post", title="Pipeline post",
                             asset_ids=[_video("youtube_shorts").id or 0])
    tiktok = posts.create_post(platform="tiktok", scheduled_at=SLOT, caption="Pipeline post",
                               asset_ids=[_video("tiktok").id or 0])
    pipeline = Pipeline(kind="content", payload={
        "theme": "runs", "platforms": ["youtube", "tiktok"], "start": SLOT.date().isoformat(),
        "end": SLOT.date().isoformat(), "tiktokPrivacyLevel": "SELF_ONLY"},
        results={"production": {"readyPostIds": [over.id, tiktok.id]}})
    result = pipelines._finish_scheduling(pipeline, [])
    assert result.error is None and result.results["scheduledPostIds"] == [over.id, tiktok.id]
    moved = posts.get_post(over.id or 0)
    assert moved.status == PostStatus.SCHEDULED and aware(moved.scheduled_at) > SLOT + timedelta(hours=18)
    assert any(f"post {over.id} (youtube) moved" in w for w in result.warnings)
    picked = posts.get_post(tiktok.id or 0)  # the pipeline's caller chose TikTok's privacy: no default
    assert picked.status == PostStatus.SCHEDULED and picked.options["privacy_level"] == "SELF_ONLY"


def test_a_tiktok_post_of_a_pipeline_without_a_privacy_choice_is_not_scheduled(dry_run):
    tiktok = posts.create_post(platform="tiktok", scheduled_at=SLOT, caption="x", asset_ids=[_video("tiktok").id or 0])
    pipeline = Pipeline(kind="content", payload={"theme": "runs", "platforms": ["tiktok"],
                                                 "start": SLOT.date().isoformat(), "end": SLOT.date().isoformat()},
                        results={"production": {"readyPostIds": [tiktok.id]}})
    result = pipelines._finish_scheduling(pipeline, [])
    assert result.error == "no post could be scheduled"
    assert any("choose who can see this post" in w for w in result.warnings)


def test_instagrams_cap_is_the_recorded_quota_total_and_the_documented_default_before_any_reading(studio):
    account = social_accounts.connect_manually(platform="instagram", external_id="17841400000000009",
                                               access_token="EAApage-token-value", page_id="104")
    assert caps.cap_for("instagram", account.id) == 50  # Meta's documented example, until a reading
    caps.record_quota(account.id, caps.QuotaReading(total=100, used=7, duration_s=86_400))
    assert caps.cap_for("instagram", account.id) == 100
    assert caps.usage("instagram", account.id, SLOT).cap == 100
    meta = social_accounts.get_account(account.id).meta
    assert meta["publishing_quota_used"] == 7 and meta["page_id"] == "104"  # merged, nothing else lost
    caps.record_quota(account.id, caps.QuotaReading(total=None, used=9))  # no config in the answer
    assert caps.cap_for("instagram", account.id) == 100
    assert social_accounts.get_account(account.id).meta["publishing_quota_used"] == 9


def test_the_31st_facebook_reel_in_24_hours_is_deferred_when_it_publishes(studio):
    page = social_accounts.connect_manually(platform="facebook", external_id="104", access_token="EAApage-token-1")
    other = social_accounts.connect_manually(platform="facebook", external_id="105", access_token="EAApage-token-2")
    video = _video("facebook_reels").id or 0
    photo = record_asset(key=f"test/cap-photo-{datetime.now().timestamp()}.jpg", kind=AssetKind.IMAGE,
                         source=AssetSource.GENERATED, content_type="image/jpeg", size_bytes=10, width=10, height=10)
    now = utcnow()
    reels = [now - timedelta(hours=23) + timedelta(minutes=n) for n in range(29)]
    factories.published_posts(platform="facebook", account_id=page.id, asset_ids=[video], times=reels)
    factories.published_posts(platform="facebook", account_id=page.id, asset_ids=[video],  # outside the window
                              times=[now - timedelta(hours=25)])
    factories.published_posts(platform="facebook", account_id=page.id, asset_ids=[photo.id or 0],  # not Reels
                              times=[now - timedelta(hours=1)] * 3)
    factories.published_posts(platform="facebook", account_id=other.id, asset_ids=[video],  # another Page
                              times=[now - timedelta(hours=1)] * 3)
    reel = posts.create_post(platform="facebook", account_id=page.id, scheduled_at=SLOT, caption="Reel",
                             asset_ids=[video])
    assert caps.reels_deferral(reel, page.id, now=now) is None  # 29 Reels: the 30th may go
    factories.published_posts(platform="facebook", account_id=page.id, asset_ids=[video], times=[now])
    until, why = caps.reels_deferral(reel, page.id, now=now) or (None, "")
    assert until == reels[0] + timedelta(hours=24, minutes=1)  # when the oldest of the 30 leaves the window
    assert "30 Reels" in why and "allows 30" in why
    photo_post = posts.create_post(platform="facebook", account_id=page.id, scheduled_at=SLOT, caption="Photo",
                                   asset_ids=[photo.id or 0])
    assert caps.reels_deferral(photo_post, page.id, now=now) is None  # the cap is for Reels only
    assert caps.reels_deferral(reel, other.id, now=now) is None


def test_token_health_warns_ahead_of_expiry_and_flags_posts_after_it(studio):
    manual = social_accounts.connect_manually(platform="tiktok", external_id="open-1", name="Mia",
                                              access_token="act.long-enough", expires_in_s=2 * 86_400)
    health = social_accounts.token_health(manual)
    assert health.state == "expiring" and health.usable_until == manual.expires_at
    assert any("stops working in 1 day" in w for w in health.warnings)
    assert social_accounts.unusable_at(manual, utcnow() + timedelta(days=1)) is None
    assert "before this post" in (social_accounts.unusable_at(manual, utcnow() + timedelta(days=3)) or "")
    later = social_accounts.token_health(manual, now=utcnow() + timedelta(days=3))
    assert later.state == "unusable"


def test_a_google_consent_screen_in_testing_gives_seven_day_refresh_tokens(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_GOOGLE_CONSENT_TESTING", "true")
    reload_settings()
    tokens = oauth.TokenSet(access_token="ya29.token-value", refresh_token="1//refresh-value",
                            expires_at=utcnow() + timedelta(hours=1))
    account = social_accounts.save_account(oauth.DiscoveredAccount("youtube", "UC1", "Chan", tokens))
    assert account.refresh_expires_at is not None
    assert timedelta(days=6, hours=23) < account.refresh_expires_at - utcnow() <= timedelta(days=7)
    health = social_accounts.token_health(account)
    assert health.state == "expiring" and health.renewable_until == account.refresh_expires_at
    assert any("Testing mode" in w for w in health.warnings)


def test_the_editor_reads_tiktoks_creator_info_for_the_account(studio, monkeypatch):
    with FakeTikTok(privacy_level_options=("FOLLOWER_OF_CREATOR", "SELF_ONLY"), stitch_disabled=True,
                    max_video_post_duration_sec=180).running() as tiktok:
        for name, value in tiktok.settings().items():
            monkeypatch.setenv(f"STUDIO_{name.upper()}", str(value))
        reload_settings()
        grant = tiktok.oauth.grant()
        account = social_accounts.connect_manually(platform="tiktok", external_id=grant.subject,
                                                   access_token=grant.access_token)
        info = creator_info_for_account(account.id)
    assert info.privacy_level_options == ("FOLLOWER_OF_CREATOR", "SELF_ONLY")
    assert info.stitch_disabled and not info.comment_disabled and info.max_video_post_duration_sec == 180
    assert info.username == "fake.creator"
