"""Instagram (Business or Creator account) publishing through the Instagram Graph API content publishing flow.

https://developers.facebook.com/docs/instagram-platform/content-publishing

1. ``POST /{ig-user-id}/media`` makes a media container (``image_url``, or ``media_type=REELS`` +
   ``video_url``) that Meta fetches and processes. Unpublished containers expire, so making one is
   safe to repeat; its id is saved at once and a retry reuses it.
2. ``GET /{container-id}?fields=status_code,status`` until ``FINISHED``.
3. ``POST /{ig-user-id}/media_publish`` with ``creation_id``: the final call (never sent twice).
4. After a lost answer, the container's ``status_code`` says whether it was published (``PUBLISHED``);
   the media is then found in the account's latest media by its caption.

Before any container, ``GET /{ig-user-id}/content_publishing_limit`` says how much of the account's
moving 24-hour publishing quota is used
(https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/content_publishing_limit/);
a spent quota defers the post (:class:`PublishDeferred`) instead of failing it.

AI label: ``is_ai_generated=true`` on the container applies Instagram's "AI info" label (Content
Publishing API, June 2026: https://developers.facebook.com/documentation/instagram-platform/changelog);
the caption disclosure stays too. Feed images must be between 4:5 and 1.91:1 (error 36003 otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.models import utcnow
from core.publishing.caps import QuotaReading
from workers.social.base import PlannedCall, PlatformRejected, PublishDeferred, Published, PublishRequest
from workers.social.meta_common import CAP_RETRY, HASHTAG, MENTION, GraphClient, GraphTransient, shown_url

CAPTION_MAX_CHARS = 2200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20
JPEG_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
FEED_ASPECT = (4 / 5, 1.91)  # width / height of a feed image
CLOCK_SKEW_S = 600.0  # Meta's clock against ours, when matching a recovered post by its time


class InstagramClient(GraphClient):
    platform = "instagram"

    @property
    def user(self) -> str:
        return self.credentials.external_id

    # --- before any call ----------------------------------------------------------------------------------

    def validate(self, request: PublishRequest) -> None:
        media = self.single_media(request, what="Instagram")
        if media.kind == "image" and media.content_type.lower() not in JPEG_TYPES:
            raise PlatformRejected(
                self.platform, f"Instagram takes JPEG images only through its API; this image is {media.content_type}")
        if media.kind == "image" and media.width and media.height:
            low, high = FEED_ASPECT
            if not low <= media.width / media.height <= high:
                raise PlatformRejected(self.platform, f"Instagram feed images must be 4:5 to 1.91:1; this one is "
                                                      f"{media.width}×{media.height}")
        if len(request.text) > CAPTION_MAX_CHARS:
            raise PlatformRejected(
                self.platform, f"the caption has {len(request.text)} characters; Instagram allows {CAPTION_MAX_CHARS}")
        for pattern, what, limit in ((HASHTAG, "hashtags", MAX_HASHTAGS), (MENTION, "@mentions", MAX_MENTIONS)):
            if (found := len(pattern.findall(request.text))) > limit:
                raise PlatformRejected(self.platform, f"the caption has {found} {what}; Instagram allows {limit}")

    def _container_fields(self, request: PublishRequest) -> dict[str, str]:
        media = request.media[0]
        label = {"is_ai_generated": "true"} if request.ai_generated else {}
        if media.kind == "image":
            return {"image_url": media.url, "caption": request.text, **label}
        return {"media_type": "REELS", "video_url": media.url, "caption": request.text, "share_to_feed": "true",
                **label}

    def plan(self, request: PublishRequest) -> list[PlannedCall]:
        self.validate(request)
        fields = self._container_fields(request)
        fields = {**fields, **{k: shown_url(v) for k, v in fields.items() if k.endswith("_url")}}
        return [
            PlannedCall("GET", f"{self.api}/{self.user}/content_publishing_limit",
                        {"fields": "quota_usage,config"}),
            PlannedCall("POST", f"{self.api}/{self.user}/media", fields),
            PlannedCall("GET", f"{self.api}/{{container-id}}", {"fields": "status_code,status",
                                                               "repeat": "until FINISHED"}),
            PlannedCall("POST", f"{self.api}/{self.user}/media_publish", {"creation_id": "{container-id}"}),
            PlannedCall("GET", f"{self.api}/{{media-id}}", {"fields": "permalink"}),
        ]

    # --- prepare: the media container ---------------------------------------------------------------------

    def prepare(self, request: PublishRequest, state: dict[str, Any],
                save_state: Callable[[dict[str, Any]], None]) -> None:
        if not state.get("container_id"):
            self._check_quota()
        while True:
            reused = bool(state.get("container_id"))
            container_id = state.get("container_id") or self._create_container(request, state, save_state)
            status_code, status = self._wait_for(container_id)
            if status_code == "FINISHED":
                return
            if status_code == "PUBLISHED":  # only if a publish went through unrecorded; publish will say so
                self.log(f"instagram: container {container_id} is already published")
                return
            if status_code == "EXPIRED":
                state.pop("container_id", None)
                state.pop("container_created_at", None)
                save_state(state)
                if reused:  # a container kept from an earlier attempt outlived its 24 hours: make a new one
                    self.log(f"instagram: container {container_id} expired; making a new one")
                    continue
            raise PlatformRejected(self.platform, f"Instagram could not process the media: {status or status_code}")

    def _check_quota(self) -> None:
        """Defer, before any container, when the account's publishing quota is spent."""
        body = self.get(f"{self.user}/content_publishing_limit", fields="quota_usage,config")
        self.quota = QuotaReading.from_publishing_limit(body)
        used, total = self.quota.used, self.quota.total or 0
        if total and used >= total:
            raise PublishDeferred(self.platform, f"the account has used its {total} API posts of the last 24 hours",
                                  until=utcnow() + CAP_RETRY)
        self.log(f"instagram: {used} of {total or '?'} posts of the 24-hour publishing quota used")

    def _create_container(self, request: PublishRequest, state: dict[str, Any],
                          save_state: Callable[[dict[str, Any]], None]) -> str:
        body = self.post(f"{self.user}/media", self._container_fields(request))
        container_id = self.field(body, "id", "POST /media")
        state["container_id"] = container_id
        state["container_created_at"] = time.time()
        save_state(state)
        self.log(f"instagram: media container {container_id} created")
        return container_id

    def _wait_for(self, container_id: str) -> tuple[str, str]:
        def probe() -> tuple[str, str] | None:
            body = self.get(container_id, fields="status_code,status")
            status_code = str(body.get("status_code") or "IN_PROGRESS")
            return None if status_code == "IN_PROGRESS" else (status_code, str(body.get("status") or ""))

        return self.poll(f"media container {container_id}", probe)

    # --- publish and recover ------------------------------------------------------------------------------

    def publish(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        container_id = state.get("container_id")
        if not container_id:
            raise PlatformRejected(self.platform, "nothing to publish: prepare made no media container")
        body = self.post(f"{self.user}/media_publish", {"creation_id": container_id}, idempotent=False)
        media_id = self.field(body, "id", "POST /media_publish")
        self.log(f"instagram: published media {media_id}")
        permalink = self.best_effort("the permalink", lambda: self.get(media_id, fields="permalink").get("permalink"))
        return Published(media_id, permalink)

    def recover(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        container_id = state.get("container_id")
        if not container_id:
            return None
        status_code = self.get(container_id, fields="status_code").get("status_code")
        if status_code != "PUBLISHED":
            self.log(f"instagram: container {container_id} is {status_code}: the publish did not take effect")
            return None
        listing = self.get(f"{self.user}/media", fields="id,caption,permalink,timestamp", limit=25)
        since = float(state.get("container_created_at") or 0) - CLOCK_SKEW_S
        for item in listing.get("data") or []:  # newest first
            if item.get("caption", "") == request.text and _timestamp(item.get("timestamp")) >= since:
                self.log(f"instagram: the lost publish took effect as media {item['id']}")
                return Published(str(item["id"]), item.get("permalink"))
        # Published for certain, so publishing again would post twice: let the job retry the lookup.
        raise GraphTransient(
            f"instagram: container {container_id} was published, but its media is not among the account's latest 25")


def _timestamp(value: Any) -> float:
    """A Graph timestamp (``2024-05-01T12:00:00+0000``) as epoch seconds; unreadable ones count as new."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return float("inf")
