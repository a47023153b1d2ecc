"""The publish job: one post to one platform, never twice.

Stages: validate → (dry run: record the planned calls and stop) → recover a lost final call →
prepare (uploads, containers) → mark the PublishRecord *committing* → the final call → record
the post as published. A retry after any crash re-enters here; the record tells it where it
was. An expired token is refreshed once; a second refusal asks the user to reconnect.
"""

from __future__ import annotations

import hashlib
import hmac
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import select, update
from sqlmodel import col

from core.config import get_settings
from core.db import session_scope
from core.errors import InvalidInput, PermanentJobError
from core.infra.storage import get_object_store, validate_key
from core.jobs.lifecycle import JobContext
from core.library.assets import download_url
from core.models import AssetKind, Platform, Post, PostStatus, PublishRecord, utcnow
from core.publishing import caps, posts, social_accounts
from core.publishing.checks import compose_text
from core.publishing.posts import PublishPayload
from workers.social import client_class
from workers.social.base import (
    Credentials,
    MediaFile,
    PlatformClient,
    PublishDeferred,
    Published,
    PublishRequest,
    TokenExpired,
)

COMMITTING = "committing"
PUBLISHED = "published"
PREPARING = "preparing"


LINK_LIFETIME = timedelta(hours=6)  # platforms fetch media minutes after the call, sometimes later


def _as_jpeg(post: Post, asset: Any, path: Path) -> tuple[Path, str]:
    """Instagram's API takes only JPEG images: a PNG is re-encoded and stored beside the post."""
    jpeg = path.with_suffix(".jpg")
    with Image.open(path) as image:
        image.convert("RGB").save(jpeg, "JPEG", quality=95, subsampling=0)
    # The key goes out in a link to Meta: a keyed digest makes it unguessable yet the same on every retry.
    digest = hmac.new(get_settings().signing_key.get_secret_value().encode(), f"{post.id}/{asset.id}".encode(),
                      hashlib.sha256).hexdigest()[:32]
    key = validate_key(f"posts/{post.id}/instagram-{asset.id}-{digest}.jpg")
    store = get_object_store()
    store.put_file(key, jpeg, "image/jpeg")
    return jpeg, store.presigned_get_url(key, LINK_LIFETIME)


def _media_file(post: Post, asset: Any, folder: Path) -> MediaFile:
    """The asset downloaded once into the job's folder (uploads read it in chunks) and a link to it."""
    path = folder / f"asset-{asset.id}"
    store = get_object_store()
    with path.open("wb") as handle:
        for chunk in store.iter_chunks(asset.key):
            handle.write(chunk)
    content_type, url = asset.content_type, download_url(asset, expires=LINK_LIFETIME)
    if post.platform == Platform.INSTAGRAM and asset.kind == AssetKind.IMAGE and content_type != "image/jpeg":
        path, url = _as_jpeg(post, asset, path)
        content_type = "image/jpeg"

    def read(offset: int, length: int) -> bytes:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    return MediaFile(
        asset_id=asset.id, kind=asset.kind, content_type=content_type, size=path.stat().st_size, url=url,
        read=read, width=asset.width, height=asset.height, duration_s=(asset.meta or {}).get("duration"),
    )


def _request(post: Post, folder: Path) -> PublishRequest:
    media = [_media_file(post, asset, folder) for asset in posts.post_assets(post)]
    text = compose_text(post.platform, post.caption, post.hashtags, ai_generated=post.ai_generated)
    title = post.title or (post.caption.split("\n")[0][:100] if post.platform == Platform.YOUTUBE else "")
    return PublishRequest(post_id=post.id or 0, platform=post.platform, text=text, title=title,
                          hashtags=list(post.hashtags), media=media, ai_generated=post.ai_generated,
                          options=dict(post.options))


def _record(post: Post, account_id: int | None) -> PublishRecord:
    with session_scope() as session:
        record = session.execute(select(PublishRecord).where(
            col(PublishRecord.post_id) == post.id, col(PublishRecord.platform) == post.platform)).scalar_one_or_none()
        if record is None:
            record = PublishRecord(post_id=post.id or 0, platform=post.platform, account_id=account_id)
            session.add(record)
            session.flush()
        return record


def _save_record(record_id: int, **values: Any) -> None:
    with session_scope() as session:
        session.execute(update(PublishRecord).where(col(PublishRecord.id) == record_id)
                        .values(updated_at=utcnow(), **values))


def _mark_published(post: Post, ctx: JobContext, published: Published, *, record_id: int | None,
                    dry_run: bool = False) -> None:
    """The record and the post say 'published' together (only for the job that claimed the post)."""
    with session_scope() as session:
        if record_id is not None:
            session.execute(update(PublishRecord).where(col(PublishRecord.id) == record_id).values(
                phase=PUBLISHED, external_id=published.external_id, permalink=published.permalink,
                updated_at=utcnow()))
        session.execute(update(Post).where(col(Post.id) == post.id, col(Post.publish_job_id) == ctx.job_id).values(
            status=PostStatus.PUBLISHED, external_id=published.external_id, permalink=published.permalink,
            published_at=utcnow(), dry_run=dry_run, error=published.notice, updated_at=utcnow()))


def _account(post: Post) -> social_accounts.AccountView:
    account = posts.publishing_account(post)
    if account is None:
        raise PermanentJobError(f"no connected {Platform(post.platform).label} account to publish with; "
                                "connect one on the Social accounts page")
    return account


def _client(post: Post, account_id: int, http: httpx.Client, ctx: JobContext, *, refresh: bool) -> PlatformClient:
    try:
        creds = social_accounts.credentials(account_id, force_refresh=refresh)
    except InvalidInput as error:
        if refresh:  # the platform refused the token and it cannot be renewed here
            social_accounts.mark_needs_reconnect(account_id, f"the platform refused the token; {error}")
            raise PermanentJobError(f"the platform refused the token and {error}; reconnect the account") from None
        raise PermanentJobError(str(error)) from None
    except social_accounts.oauth.OAuthError as error:
        raise PermanentJobError(f"the token could not be refreshed ({error}); reconnect the account") from None
    credentials = Credentials(account_id=creds.account_id, external_id=creds.external_id,
                              access_token=creds.access_token, meta=creds.meta)
    return client_class(post.platform)(http, get_settings(), credentials, lambda line: ctx.log(line))


def _publish_with(client: PlatformClient, request: PublishRequest, record_id: int, ctx: JobContext) -> Published:
    with session_scope() as session:
        record = session.get(PublishRecord, record_id)  # fresh: an earlier try may have moved it on
    assert record is not None
    state = dict(record.state)

    def save_state(new_state: dict[str, Any]) -> None:
        snapshot = dict(new_state)  # clients usually pass ``state`` itself
        state.clear()
        state.update(snapshot)
        _save_record(record_id, state=snapshot)

    client.validate(request)
    if record.phase == COMMITTING:
        ctx.stage("recover")
        found = client.recover(request, state)
        save_state(state)
        if found is not None:
            ctx.log(f"the earlier publish call took effect: {found.external_id}")
            return found
        ctx.log("the earlier publish call did not take effect; publishing again", level="warning")
        _save_record(record_id, phase=PREPARING)
    ctx.stage("prepare")
    try:
        client.prepare(request, state, save_state)
    finally:  # a deferral for a spent quota records the reading too
        if client.quota is not None:
            caps.record_quota(client.credentials.account_id, client.quota)
    _save_record(record_id, phase=COMMITTING, state=dict(state))  # before the call that cannot be undone
    ctx.stage("publish")
    return client.publish(request, state)


def _with_one_refresh(run: Callable[[bool], Published], account_id: int) -> Published:
    try:
        return run(False)
    except TokenExpired:
        pass
    try:
        return run(True)
    except TokenExpired as error:
        social_accounts.mark_needs_reconnect(account_id, f"token refused after a refresh: {error}")
        raise PermanentJobError("the platform refused the token even after a refresh; reconnect the account") from None


def publish(ctx: JobContext[PublishPayload]) -> dict[str, Any]:
    payload = ctx.payload
    post = posts.get_post(payload.post_id)
    claimed = post.publish_job_id == ctx.job_id
    if claimed and post.status == PostStatus.PUBLISHED:
        return {"post_id": post.id, "external_id": post.external_id, "already": True}
    if claimed and post.status != PostStatus.PUBLISHING:
        raise PermanentJobError(f"post {post.id} is {post.status}, no longer waiting to be published")
    settings = get_settings()
    dry_run = payload.dry_run or settings.publish_dry_run
    ctx.stage("validate")
    preview = posts.post_preview(post)
    if not preview.ok:
        raise PermanentJobError("the post cannot be published: " + "; ".join(preview.errors))
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="publish-")))
        request = _request(post, folder)
        http = stack.enter_context(httpx.Client(timeout=settings.publish_http_timeout_s))
        if dry_run:
            return _dry_run(post, request, http, ctx, claimed=claimed)
        account = _account(post)
        record = _record(post, account.id)
        if record.phase == PUBLISHED:
            published = Published(record.external_id or "", record.permalink)
        elif record.phase != COMMITTING and (reels := caps.reels_deferral(post, account.id)):
            # Meta documents no error for the 31st Reel in 24 hours: count the studio's own and wait instead.
            return _defer(post, ctx, PublishDeferred(post.platform, reels[1], until=reels[0]),
                          record_id=record.id or 0)
        else:
            try:
                published = _with_one_refresh(
                    lambda refresh: _publish_with(_client(post, account.id, http, ctx, refresh=refresh), request,
                                                  record.id or 0, ctx),
                    account.id)
            except PublishDeferred as deferred:
                return _defer(post, ctx, deferred, record_id=record.id or 0)
        ctx.stage("record")
        _mark_published(post, ctx, published, record_id=record.id)
    ctx.log(f"published on {Platform(post.platform).label}: {published.permalink or published.external_id}")
    return {"post_id": post.id, "external_id": published.external_id, "permalink": published.permalink}


def _defer(post: Post, ctx: JobContext, deferred: PublishDeferred, *, record_id: int) -> dict[str, Any]:
    """The account's cap is reached: the post goes back to 'scheduled' at the time the cap frees up."""
    _save_record(record_id, phase=PREPARING)  # the final call did not take effect
    posts.defer_post(post.id or 0, job_id=ctx.job_id, until=deferred.until, reason=str(deferred))
    ctx.log(f"deferred to {deferred.until.isoformat(timespec='minutes')}: {deferred}", level="warning")
    return {"post_id": post.id, "deferred_until": deferred.until.isoformat(), "reason": str(deferred)}


def _dry_run(post: Post, request: PublishRequest, http: httpx.Client, ctx: JobContext, *,
             claimed: bool) -> dict[str, Any]:
    """Validate as a publish would and record the calls it would make; no platform is called."""
    placeholder = Credentials(account_id=0, external_id="<account id>", access_token="", meta={})
    client = client_class(post.platform)(http, get_settings(), placeholder, lambda line: ctx.log(line))
    client.validate(request)
    calls = [asdict(call) for call in client.plan(request)]
    for call in calls:
        ctx.log(f"dry run: would {call['method']} {call['url']}")
    if claimed:
        _mark_published(post, ctx, Published(external_id="dry-run", permalink=None), record_id=None, dry_run=True)
    media = [{"asset_id": m.asset_id, "kind": m.kind, "size": m.size} for m in request.media]
    return {"post_id": post.id, "dry_run": True, "text": request.text, "media": media, "calls": calls,
            "kinds": sorted({m.kind for m in request.media if m.kind in (AssetKind.IMAGE, AssetKind.VIDEO)})}
