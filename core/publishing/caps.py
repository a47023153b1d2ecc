"""Per-account publishing caps, checked when a post is scheduled (not only when it publishes).

Each platform limits how many posts an account may publish through the API in a moving 24 hours:

- Instagram: the account's ``content_publishing_limit`` (``config.quota_total``; Meta's pages say 50 or
  100), https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/content_publishing_limit/
  — each time the publish job reads it (before any container) :func:`record_quota` keeps ``quota_total``,
  ``quota_usage`` and ``quota_duration`` in the account's meta, and the cap is that recorded total; 50, the
  figure of Meta's own example, until one was read;
- Facebook: 30 API-published Reels per Page, and Meta asks apps that schedule to enforce it too
  (https://developers.facebook.com/docs/video-api/guides/reels-publishing/);
- TikTok: a per-creator daily cap (``spam_risk_too_many_posts``) whose number TikTok does not publish
  (https://developers.tiktok.com/doc/content-posting-api-reference-direct-post); 15 here;
- YouTube: ``videos.insert`` costs 1,600 of a project's default 10,000 daily quota units: 6 uploads
  (https://developers.google.com/youtube/v3/docs/videos/insert).

Facebook's Reels cap is checked again when a Reel publishes (:func:`reels_deferral`): Meta documents no
error code for the 31st Reel, so the publish job counts the Page's Reels the studio itself published (and
is publishing) in the last 24 hours and defers the post rather than send it.

A post counts against the window ending at its time: the posts of the same platform and account
scheduled, publishing or published in the 24 hours before it. Over the cap, the calendar flags it and
a content pipeline moves it to the first moment the window has room (:func:`next_free_slot`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import InvalidInput
from core.infra.http_retry import RetryPolicy, send_with_retries
from core.jobs.lifecycle import aware
from core.models import Asset, AssetKind, Platform, Post, PostStatus, utcnow
from core.publishing import social_accounts

WINDOW = timedelta(hours=24)
DAILY_CAPS: dict[str, int] = {Platform.INSTAGRAM: 50, Platform.FACEBOOK: 30, Platform.TIKTOK: 15,
                              Platform.YOUTUBE: 6}
COUNTED = (PostStatus.SCHEDULED, PostStatus.PUBLISHING, PostStatus.PUBLISHED)
# https://developers.facebook.com/docs/video-api/guides/reels-publishing/ ("Limitations"): 30 API-published
# Reels per Page in a moving 24 hours. No error code is documented for going over, so nothing to wait for.
FACEBOOK_REELS_PER_DAY = 30
# A Reel published in the last 24 hours was scheduled before now; this bounds how long before (the range
# scan of ix_post_platform_scheduled). A post held back longer than this and then published is not counted.
REELS_LOOKBACK = timedelta(days=7)
MAX_SHIFTS = 50  # next_free_slot gives up after this many steps (a plan far over the cap)


@dataclass(frozen=True)
class QuotaReading:
    """What a platform's own quota endpoint said (Instagram's ``content_publishing_limit``)."""

    total: int | None  # config.quota_total; absent when the platform did not say
    used: int  # quota_usage: API posts in the moving window, made by any app
    duration_s: int | None = None  # config.quota_duration (86,400 in Meta's docs)

    @classmethod
    def from_publishing_limit(cls, body: dict[str, Any]) -> QuotaReading:
        """``GET /{ig-user}/content_publishing_limit?fields=quota_usage,config``'s answer:
        ``{"data": [{"quota_usage": 2, "config": {"quota_total": 50, "quota_duration": 86400}}]}``."""
        entry = (body.get("data") or [{}])[0]
        config = entry.get("config") or {}
        return cls(int(config.get("quota_total") or 0) or None, int(entry.get("quota_usage") or 0),
                   int(config.get("quota_duration") or 0) or None)


QUOTA_KEY = "publishing_quota"  # the account's meta key of the recorded total


def record_quota(account_id: int, reading: QuotaReading) -> None:
    """Keep a quota reading in the account's meta, where :func:`cap_for` finds the total."""
    values: dict[str, object] = {"publishing_quota_used": reading.used,
                                 "publishing_quota_read_at": utcnow().isoformat(timespec="seconds")}
    if reading.total and reading.total > 0:
        values[QUOTA_KEY] = reading.total
    if reading.duration_s:
        values["publishing_quota_duration_s"] = reading.duration_s
    social_accounts.update_meta(account_id, values)


def check_instagram_quota(account_id: int) -> QuotaReading:
    """The health check's reading: ask Instagram for the account's publishing limit now and record it."""
    account = social_accounts.get_account(account_id)
    if account.platform != Platform.INSTAGRAM:
        raise InvalidInput("only Instagram reports its publishing quota (content_publishing_limit)")
    settings = get_settings()
    token = social_accounts.credentials(account_id).access_token
    with httpx.Client(timeout=settings.publish_http_timeout_s) as http:
        response = send_with_retries(lambda: http.get(
            f"{settings.graph_api_url}/{account.external_id}/content_publishing_limit",
            params={"fields": "quota_usage,config"}, headers={"Authorization": f"OAuth {token}"}),
            policy=RetryPolicy(max_retries=settings.publish_max_retries)).response
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else f"HTTP {response.status_code}"
        raise InvalidInput(f"Instagram did not report the publishing quota: {message}")
    reading = QuotaReading.from_publishing_limit(body)
    record_quota(account_id, reading)
    return reading


@dataclass(frozen=True)
class CapUsage:
    platform: str
    account_id: int | None
    used: int
    cap: int

    @property
    def remaining(self) -> int:
        return max(0, self.cap - self.used)


def _account_id(platform: str, account_id: int | None) -> int | None:
    if account_id is not None:
        return account_id
    default = social_accounts.default_account(platform)
    return default.id if default else None


def cap_for(platform: str, account_id: int | None = None) -> int:
    """The account's recorded quota total where the platform reported one, else the documented default."""
    if account_id is not None:
        quota = social_accounts.get_account(account_id).meta.get(QUOTA_KEY)
        if isinstance(quota, int) and not isinstance(quota, bool) and quota > 0:
            return quota
    return DAILY_CAPS[platform]


def _times_in_window(platform: str, account_id: int | None, end: datetime, *,
                     exclude_post: int | None = None) -> list[datetime]:
    """When the counted posts of this platform and account fall in the 24 hours up to ``end``, oldest first."""
    default_id = social_accounts.default_account(platform)
    query = (select(col(Post.scheduled_at), col(Post.published_at), col(Post.account_id), col(Post.id))
             .where(col(Post.platform) == platform, col(Post.scheduled_at) > end - WINDOW - WINDOW,
                    col(Post.scheduled_at) <= end + WINDOW, col(Post.status).in_(COUNTED))
             .order_by(col(Post.scheduled_at)).limit(2000))  # ix_post_platform_scheduled
    with session_scope() as session:
        rows = session.execute(query).all()
    times = []
    for scheduled_at, published_at, post_account, post_id in rows:
        if post_id == exclude_post:
            continue
        effective = post_account if post_account is not None else (default_id.id if default_id else None)
        if effective != account_id:
            continue
        moment = aware(published_at or scheduled_at)
        if end - WINDOW < moment <= end:
            times.append(moment)
    return sorted(times)


def usage(platform: str, account_id: int | None, at: datetime, *, exclude_post: int | None = None) -> CapUsage:
    """How much of the cap the 24 hours up to ``at`` already use."""
    account = _account_id(platform, account_id)
    times = _times_in_window(platform, account, aware(at), exclude_post=exclude_post)
    return CapUsage(platform, account, len(times), cap_for(platform, account))


def over_cap(post: Post) -> str | None:
    """Why this post would exceed its account's cap at its time (None when it fits)."""
    if post.platform not in DAILY_CAPS:
        return None
    used = usage(post.platform, post.account_id, post.scheduled_at, exclude_post=post.id)
    if used.used < used.cap:
        return None
    label = Platform(post.platform).label
    return (f"{label} allows {used.cap} API posts per account in 24 hours; {used.used} are already planned in the "
            "24 hours before this one")


def next_free_slot(post: Post) -> datetime:
    """The first time from the post's own at which its account's window has room."""
    at = aware(post.scheduled_at)
    account = _account_id(post.platform, post.account_id)
    cap = cap_for(post.platform, account)
    for _step in range(MAX_SHIFTS):
        times = _times_in_window(post.platform, account, at, exclude_post=post.id)
        if len(times) < cap:
            return at
        at = times[len(times) - cap] + WINDOW + timedelta(minutes=1)  # when enough of them leave the window
    return at


def _is_reel(asset_ids: list[int], video_ids: set[int]) -> bool:
    """A Facebook post with a video goes out as a Reel (workers/social/facebook.py)."""
    return any(asset_id in video_ids for asset_id in asset_ids)


def _reel_times(account_id: int | None, now: datetime, *, exclude_post: int | None) -> list[datetime]:
    """When the account's Reels published (or being published) by the studio in the 24 hours up to now went out."""
    default = social_accounts.default_account(Platform.FACEBOOK)
    query = (select(col(Post.id), col(Post.account_id), col(Post.asset_ids), col(Post.published_at))
             .where(col(Post.platform) == Platform.FACEBOOK, col(Post.scheduled_at) > now - REELS_LOOKBACK,
                    col(Post.scheduled_at) <= now,
                    col(Post.status).in_((PostStatus.PUBLISHED, PostStatus.PUBLISHING)))
             .order_by(col(Post.scheduled_at)).limit(2000))  # ix_post_platform_scheduled
    with session_scope() as session:
        rows = [row for row in session.execute(query).all() if row[0] != exclude_post
                and (row[1] if row[1] is not None else (default.id if default else None)) == account_id]
        asset_ids = {asset_id for row in rows for asset_id in row[2] or []}
        videos = set(session.execute(select(col(Asset.id)).where(
            col(Asset.id).in_(asset_ids), col(Asset.kind) == AssetKind.VIDEO)).scalars()) if asset_ids else set()
    times = []
    for _post_id, _account, assets, published_at in rows:
        # A post still publishing counts as going out now (it may take the 30th place).
        moment = aware(published_at) if published_at is not None else now
        if _is_reel(assets or [], videos) and now - WINDOW < moment <= now:
            times.append(moment)
    return sorted(times)


def reels_deferral(post: Post, account_id: int, *, now: datetime | None = None) -> tuple[datetime, str] | None:
    """For a Facebook Reel about to publish: (when to try again, why) if it would be the account's 31st Reel in
    24 hours; None when it may go now (or is no Reel)."""
    if post.platform != Platform.FACEBOOK or not post.asset_ids:
        return None
    with session_scope() as session:
        is_reel = session.execute(select(col(Asset.id)).where(
            col(Asset.id).in_(post.asset_ids), col(Asset.kind) == AssetKind.VIDEO).limit(1)).first() is not None
    if not is_reel:
        return None
    now = aware(now or utcnow())
    times = _reel_times(account_id, now, exclude_post=post.id)
    if len(times) < FACEBOOK_REELS_PER_DAY:
        return None
    until = times[len(times) - FACEBOOK_REELS_PER_DAY] + WINDOW + timedelta(minutes=1)
    return until, (f"the Page already has {len(times)} Reels published through the API in the last 24 hours; "
                   f"Facebook allows {FACEBOOK_REELS_PER_DAY}")
