"""Posts on the calendar: draft → scheduled → publishing → published | failed.

A post is handed to a worker only by :func:`_claim`: one conditional UPDATE moves it from
``scheduled`` to ``publishing`` and the publish job is inserted in the same transaction, so two
schedulers (or a scheduler and a "publish now" click) can never publish it twice, and a crash
between the two leaves nothing half-done. What each platform accepts is in ``core.publishing.checks``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import func, select, update
from sqlmodel import col

from core.characters.scope import in_scope, owner, scoped
from core.config import get_settings
from core.db import affected_rows, get_or_raise, session_scope
from core.errors import Conflict, InvalidInput, referenced_by
from core.jobs.kinds import JobSpec, Payload, Queue, register
from core.jobs.lifecycle import aware, create_job, enqueue_new, get_job, new_job
from core.library.ids import unique_asset_ids
from core.models import Asset, Job, JobStatus, Platform, Post, PostStatus, PublishRecord, utcnow
from core.publishing import caps, social_accounts
from core.publishing.checks import PostPreview, normalize_hashtags, preview_post
from core.publishing.tiktok_creator import PRIVACY_LABELS

_logger = logging.getLogger("studio.posts")

PUBLISH_KIND = "publish"
LOCKED = frozenset({PostStatus.PUBLISHING, PostStatus.PUBLISHED})
EDITABLE_FIELDS = frozenset({"platform", "scheduled_at", "title", "caption", "hashtags", "image_prompt",
                             "asset_ids", "account_id", "ai_generated", "options"})
PRIVACY_CHOICES = ("public", "unlisted", "private")


class PublishPayload(Payload):
    """Publish one post to its platform (or, as a dry run, record what would be sent)."""

    post_id: int = Field(ge=1)
    dry_run: bool = False


def prepare_publish_payload(payload: PublishPayload) -> tuple[PublishPayload, int | None]:
    with referenced_by("post_id"):
        post = get_post(payload.post_id)
    return payload, post.character_id


# --- reading -----------------------------------------------------------------------------------------------


def get_post(post_id: int) -> Post:
    return get_or_raise(Post, post_id, f"post {post_id}")


def posts_between(start: datetime, end: datetime, *, platforms: Sequence[str] | None = None,
                  statuses: Sequence[str] | None = None, character_id: int | None = None,
                  limit: int = 2000) -> list[Post]:
    """The posts scheduled in [start, end) — what one calendar view shows (an index range scan)."""
    query = select(Post).where(col(Post.scheduled_at) >= start, col(Post.scheduled_at) < end)
    if platforms:
        query = query.where(col(Post.platform).in_(list(platforms)))
    if statuses:
        query = query.where(col(Post.status).in_(list(statuses)))
    if character_id is not None:
        query = query.where(col(Post.character_id) == character_id)
    else:
        query = scoped(query, col(Post.character_id))
    with session_scope() as session:
        return list(session.execute(query.order_by(col(Post.scheduled_at), col(Post.id)).limit(limit)).scalars())


def count_by_status() -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(col(Post.status), func.count()).group_by(col(Post.status))).all()
    return {status: int(count) for status, count in rows}


def upcoming_posts(*, limit: int = 5) -> list[Post]:
    with session_scope() as session:
        return list(session.execute(
            select(Post).where(col(Post.status) == PostStatus.SCHEDULED, col(Post.scheduled_at) >= utcnow(),
                               *in_scope(col(Post.character_id)))
            .order_by(col(Post.scheduled_at)).limit(limit)).scalars())


def post_assets(post: Post) -> list[Asset]:
    if not post.asset_ids:
        return []
    with session_scope() as session:
        found = {a.id: a for a in session.execute(select(Asset).where(col(Asset.id).in_(post.asset_ids))).scalars()}
    missing = [i for i in post.asset_ids if i not in found]
    if missing:
        raise InvalidInput(f"post {post.id} uses asset(s) {', '.join(map(str, missing))}, which no longer exist")
    return [found[i] for i in post.asset_ids]


def post_preview(post: Post) -> PostPreview:
    """The post as it will appear, with everything that would stop it from being published."""
    try:
        assets = post_assets(post)
    except InvalidInput as error:
        assets = []
        missing = str(error)
    else:
        missing = ""
    preview = preview_post(platform=post.platform, caption=post.caption, hashtags=post.hashtags, title=post.title,
                           assets=assets, ai_generated=post.ai_generated, options=post.options)
    if missing:
        preview.errors.insert(0, missing)
    account = publishing_account(post)
    if not get_settings().publish_dry_run and account is None:
        preview.errors.append(f"no {Platform(post.platform).label} account is connected (Social accounts page), "
                              "and dry-run mode is off")
    if post.status not in LOCKED:
        if (over := caps.over_cap(post)) is not None:
            preview.warnings.append(f"over the daily cap: {over}")
        if account is not None and (unusable := social_accounts.unusable_at(account, aware(post.scheduled_at))):
            preview.warnings.append(f"the account will not be able to post then: {unusable}")
    return preview


def publishing_account(post: Post) -> social_accounts.AccountView | None:
    if post.account_id is not None:
        account = social_accounts.get_account(post.account_id)
        return account if account.status == social_accounts.CONNECTED else None
    return social_accounts.default_account(post.platform)


# --- writing -----------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise InvalidInput("a post's time needs a time zone")
    return moment.astimezone(UTC)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot set {', '.join(sorted(unknown))} on a post")
    cleaned = dict(values)
    if "platform" in cleaned:
        try:
            cleaned["platform"] = Platform(cleaned["platform"]).value
        except ValueError:
            raise InvalidInput(f"unknown platform {cleaned['platform']!r}; choose one of: "
                               f"{', '.join(p.value for p in Platform)}") from None
    if "scheduled_at" in cleaned:
        cleaned["scheduled_at"] = _utc(cleaned["scheduled_at"])
    if "hashtags" in cleaned:
        cleaned["hashtags"] = normalize_hashtags(cleaned["hashtags"])
    if "asset_ids" in cleaned:
        cleaned["asset_ids"] = unique_asset_ids(list(cleaned["asset_ids"]))
    if "title" in cleaned and len(cleaned["title"]) > 200:
        raise InvalidInput("the title is longer than 200 characters")
    if "options" in cleaned:
        privacy = cleaned["options"].get("privacy")
        if privacy is not None and privacy not in PRIVACY_CHOICES:
            raise InvalidInput(f"privacy must be one of: {', '.join(PRIVACY_CHOICES)}")
        level = cleaned["options"].get("privacy_level")
        if level is not None and level not in PRIVACY_LABELS:
            raise InvalidInput(f"privacy_level must be one of: {', '.join(PRIVACY_LABELS)}")
    if cleaned.get("account_id") is not None:
        account = social_accounts.get_account(int(cleaned["account_id"]))
        platform = cleaned.get("platform")
        if platform is not None and account.platform != platform:
            raise InvalidInput(f"account {account.id} is a {account.platform} account, not {platform}")
    return cleaned


def create_post(*, platform: str, scheduled_at: datetime, caption: str = "", hashtags: Sequence[str] | str = (),
                title: str = "", image_prompt: str = "", asset_ids: Sequence[int] = (),
                account_id: int | None = None, ai_generated: bool = True, options: dict[str, Any] | None = None,
                plan_id: int | None = None, character_id: int | None = None) -> Post:
    """A new draft post."""
    values = _clean(dict(platform=platform, scheduled_at=scheduled_at, caption=caption, hashtags=hashtags,
                         title=title, image_prompt=image_prompt, asset_ids=asset_ids, account_id=account_id,
                         ai_generated=ai_generated, options=options or {}))
    post = Post(status=PostStatus.DRAFT, plan_id=plan_id, character_id=owner(character_id), **values)
    with session_scope() as session:
        session.add(post)
    return post


def _locked_message(post: Post) -> str:
    return f"post {post.id} is {post.status}; published posts cannot be changed or moved"


def update_post(post_id: int, **changes: Any) -> Post:
    """Edit a draft, scheduled or failed post. A scheduled post must still pass its checks."""
    values = _clean(changes)
    with session_scope() as session:
        post = session.get(Post, post_id, with_for_update=True)
        if post is None:
            raise InvalidInput(f"post {post_id} does not exist")
        if post.status in LOCKED:
            raise Conflict(_locked_message(post))
        if "platform" in values and "account_id" not in values and values["platform"] != post.platform:
            values["account_id"] = None  # the old account belongs to the old platform
        for name, value in values.items():
            setattr(post, name, value)
        if post.status == PostStatus.SCHEDULED:
            preview = post_preview(post)
            if not preview.ok:
                raise InvalidInput("the scheduled post would no longer publish: " + "; ".join(preview.errors))
        post.updated_at = utcnow()
        session.flush()
        return post


def move_post(post_id: int, scheduled_at: datetime) -> Post:
    """Drag and drop on the calendar: a new time, same status. Published posts stay where they are."""
    when = _utc(scheduled_at)
    with session_scope() as session:
        moved = affected_rows(session.execute(
            update(Post).where(col(Post.id) == post_id, col(Post.status).not_in(list(LOCKED)))
            .values(scheduled_at=when, updated_at=utcnow())))
    post = get_post(post_id)
    if not moved:
        raise Conflict(_locked_message(post))
    return post


def schedule_post(post_id: int, *, defer_over_cap: bool = False) -> Post:
    """Draft (or failed) → scheduled, once every platform check passes; it publishes at its time.

    A post over its account's daily cap is scheduled with a warning in its preview, or, with
    ``defer_over_cap`` (content pipelines), moved to the first time the cap has room.
    """
    post = get_post(post_id)
    if post.status in LOCKED:
        raise Conflict(_locked_message(post))
    if defer_over_cap and caps.over_cap(post) is not None:
        later = caps.next_free_slot(post)
        _logger.info("post %s moved from %s to %s: over its account's daily cap", post_id, post.scheduled_at, later)
        post = update_post(post_id, scheduled_at=later)
    preview = post_preview(post)
    if not preview.ok:
        raise InvalidInput("cannot schedule: " + "; ".join(preview.errors))
    return _set_status(post_id, PostStatus.SCHEDULED, allowed=(PostStatus.DRAFT, PostStatus.FAILED,
                                                                PostStatus.SCHEDULED))


def unschedule_post(post_id: int) -> Post:
    return _set_status(post_id, PostStatus.DRAFT, allowed=(PostStatus.SCHEDULED, PostStatus.FAILED))


def _set_status(post_id: int, status: PostStatus, *, allowed: Sequence[str]) -> Post:
    with session_scope() as session:
        changed = affected_rows(session.execute(
            update(Post).where(col(Post.id) == post_id, col(Post.status).in_(list(allowed)))
            .values(status=status, error=None, updated_at=utcnow())))
    post = get_post(post_id)
    if not changed:
        raise Conflict(f"post {post_id} is {post.status}; it cannot become {status}")
    return post


def delete_post(post_id: int) -> None:
    with session_scope() as session:
        post = session.get(Post, post_id, with_for_update=True)
        if post is None:
            raise InvalidInput(f"post {post_id} does not exist")
        if post.status == PostStatus.PUBLISHING:
            raise Conflict(f"post {post_id} is being published; delete it when that finishes")

        for record in session.execute(select(PublishRecord).where(col(PublishRecord.post_id) == post_id)).scalars():
            session.delete(record)
        session.delete(post)


# --- publishing ---------------------------------------------------------------------------------------------


def _claim(post_id: int, *, due_before: datetime | None, dry_run: bool) -> Job | None:
    """scheduled → publishing with its job, atomically; None if another claim won (or it is not due)."""
    job = new_job(PUBLISH_KIND, {"post_id": post_id, "dry_run": dry_run})
    conditions = [col(Post.id) == post_id, col(Post.status) == PostStatus.SCHEDULED]
    if due_before is not None:
        conditions.append(col(Post.scheduled_at) <= due_before)
    with session_scope() as session:
        claimed = affected_rows(session.execute(update(Post).where(*conditions).values(
            status=PostStatus.PUBLISHING, publish_job_id=job.id, error=None, updated_at=utcnow())))
        if not claimed:
            return None
        session.add(job)
    enqueue_new(job)
    return job


def publish_now(post_id: int) -> Job:
    """Schedule for now and hand it to a worker at once."""
    post = schedule_post(post_id)
    job = _claim(post.id or post_id, due_before=None, dry_run=get_settings().publish_dry_run)
    if job is None:
        raise Conflict(f"post {post_id} was claimed by the scheduler already")
    return job


def dry_run_post(post_id: int) -> Job:
    """A dry run of one post: validates and records the calls it would make; the post is left as it is."""
    return create_job(PUBLISH_KIND, {"post_id": post_id, "dry_run": True})


def retry_post(post_id: int) -> Post:
    """A failed post goes back on the schedule (now, if its time has passed)."""
    post = get_post(post_id)
    if post.status != PostStatus.FAILED:
        raise Conflict(f"only failed posts can be retried; post {post_id} is {post.status}")
    scheduled_at = aware(post.scheduled_at)
    assert scheduled_at is not None  # the column is NOT NULL
    if scheduled_at < utcnow():
        move_post(post_id, utcnow())
    return schedule_post(post_id)


def publish_due_posts(*, now: datetime | None = None, limit: int = 100) -> list[str]:
    """The scheduler: claim every post whose time has come. Safe with any number of schedulers."""
    now = now or utcnow()
    dry_run = get_settings().publish_dry_run
    with session_scope() as session:
        due = session.execute(select(col(Post.id))
                              .where(col(Post.status) == PostStatus.SCHEDULED, col(Post.scheduled_at) <= now)
                              .order_by(col(Post.scheduled_at)).limit(limit)).scalars().all()
    jobs = [job for post_id in due if (job := _claim(post_id, due_before=now, dry_run=dry_run)) is not None]
    return [job.id for job in jobs]


def defer_post(post_id: int, *, job_id: str, until: datetime, reason: str) -> None:
    """A platform cap stopped the publish before it took effect: back to 'scheduled' at ``until``, with the
    reason shown on the post (only for the job that claimed it)."""
    with session_scope() as session:
        session.execute(update(Post)
                        .where(col(Post.id) == post_id, col(Post.publish_job_id) == job_id,
                               col(Post.status) == PostStatus.PUBLISHING)
                        .values(status=PostStatus.SCHEDULED, scheduled_at=_utc(until),
                                error=f"deferred: {reason}", updated_at=utcnow()))


def publish_job_finished(job_id: str, status: str) -> None:
    """A publish job that failed or was cancelled fails its post (success is written by the job itself)."""
    if status == JobStatus.SUCCEEDED:
        return
    job = get_job(job_id)
    with session_scope() as session:
        session.execute(update(Post)
                        .where(col(Post.publish_job_id) == job_id, col(Post.status) == PostStatus.PUBLISHING)
                        .values(status=PostStatus.FAILED, error=job.error or f"publish job {status}",
                                updated_at=utcnow()))


def sweep_publishing(*, older_than: timedelta = timedelta(seconds=30)) -> int:
    """Posts left 'publishing' by a job that ended without telling them (a crash in between)."""
    fixed = 0
    with session_scope() as session:
        stuck = session.execute(
            select(col(Post.id), col(Post.publish_job_id), col(Job.status))
            .join(Job, col(Job.id) == col(Post.publish_job_id))
            .where(col(Post.status) == PostStatus.PUBLISHING, col(Post.updated_at) < utcnow() - older_than,
                   col(Job.status).in_([JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUCCEEDED]))
            .limit(500)).all()
    for _post_id, job_id, status in stuck:
        if status == JobStatus.SUCCEEDED:
            _logger.warning("post with publish job %s stayed 'publishing' after success", job_id)
            continue
        publish_job_finished(job_id, status)
        fixed += 1
    return fixed


# --- the job kinds of this domain (core.catalogue loads them all) ---

register(JobSpec(
    PUBLISH_KIND, Queue.CPU, PublishPayload,
    "Publishes a post to Instagram, Facebook, YouTube or TikTok (never twice).",
    max_attempts=5, time_limit_s=3600, prepare=prepare_publish_payload,
))
