"""Facebook Page publishing: photo posts through the Page feed, videos through the Reels Publishing API.

Photo (https://developers.facebook.com/docs/pages-api/posts):
  ``POST /{page-id}/photos`` with ``url`` and ``published=false`` uploads an unpublished photo (safe to
  repeat; its id is saved); the final call ``POST /{page-id}/feed`` with ``message`` and
  ``attached_media[0]={"media_fbid": …}`` makes the post. After a lost answer, the Page feed is
  searched for a post whose attachment is our photo.

Video (https://developers.facebook.com/docs/video-api/guides/reels-publishing):
  ``POST /{page-id}/video_reels upload_phase=start`` → ``video_id``; the hosted file is handed to the
  upload host (``POST {facebook_upload_url}/{video_id}`` with ``file_url``); ``GET /{video_id}?fields=status``
  until the upload is complete; the final call ``upload_phase=finish`` with ``video_state=PUBLISHED``.
  After a lost answer, the video's ``publishing_phase`` says whether the finish took effect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from workers.social.base import PlannedCall, PlatformRejected, Published, PublishRequest
from workers.social.meta_common import GraphClient, GraphTransient, shown_url

MESSAGE_MAX_CHARS = 63_206
PUBLISHED_PHASES = frozenset({"complete", "in_progress", "published"})
FEED_PAGE = 100  # the Graph API's largest page
FEED_PAGES_SCANNED = 20  # up to 2,000 posts back
CLOCK_SKEW_S = 600.0


class FacebookClient(GraphClient):
    platform = "facebook"

    @property
    def page(self) -> str:
        return self.credentials.external_id

    @property
    def upload_api(self) -> str:
        return self.settings.facebook_upload_url.rstrip("/")

    # --- before any call ----------------------------------------------------------------------------------

    def validate(self, request: PublishRequest) -> None:
        self.single_media(request, what="A Facebook Page post")
        if len(request.text) > MESSAGE_MAX_CHARS:
            raise PlatformRejected(
                self.platform, f"the text has {len(request.text)} characters; Facebook allows {MESSAGE_MAX_CHARS}")

    def plan(self, request: PublishRequest) -> list[PlannedCall]:
        self.validate(request)
        media = request.media[0]
        if media.kind == "image":
            return [
                PlannedCall("POST", f"{self.api}/{self.page}/photos",
                            {"url": shown_url(media.url), "published": "false"}),
                PlannedCall("POST", f"{self.api}/{self.page}/feed", {
                    "message": request.text, "attached_media[0]": json.dumps({"media_fbid": "{photo-id}"})}),
                PlannedCall("GET", f"{self.api}/{{post-id}}", {"fields": "permalink_url"}),
            ]
        return [
            PlannedCall("POST", f"{self.api}/{self.page}/video_reels", {"upload_phase": "start"}),
            PlannedCall("POST", f"{self.upload_api}/{{video-id}}", {"file_url": shown_url(media.url)}),
            PlannedCall("GET", f"{self.api}/{{video-id}}", {"fields": "status", "repeat": "until uploaded"}),
            PlannedCall("POST", f"{self.api}/{self.page}/video_reels", {
                "upload_phase": "finish", "video_id": "{video-id}", "video_state": "PUBLISHED",
                "description": request.text}),
            PlannedCall("GET", f"{self.api}/{{video-id}}", {"fields": "permalink_url,status"}),
        ]

    # --- prepare ------------------------------------------------------------------------------------------

    def prepare(self, request: PublishRequest, state: dict[str, Any],
                save_state: Callable[[dict[str, Any]], None]) -> None:
        if request.media[0].kind == "image":
            self._prepare_photo(request, state, save_state)
        else:
            self._prepare_video(request, state, save_state)

    def _prepare_photo(self, request: PublishRequest, state: dict[str, Any],
                       save_state: Callable[[dict[str, Any]], None]) -> None:
        if state.get("photo_id"):
            return
        body = self.post(f"{self.page}/photos", {"url": request.media[0].url, "published": "false"})
        state["photo_id"] = self.field(body, "id", "POST /photos")
        state["photo_uploaded_at"] = time.time()
        save_state(state)
        self.log(f"facebook: unpublished photo {state['photo_id']} uploaded")

    def _prepare_video(self, request: PublishRequest, state: dict[str, Any],
                       save_state: Callable[[dict[str, Any]], None]) -> None:
        if not state.get("video_id"):
            body = self.post(f"{self.page}/video_reels", {"upload_phase": "start"})
            state["video_id"] = self.field(body, "video_id", "video_reels start")
            state["upload_url"] = body.get("upload_url")
            save_state(state)
            self.log(f"facebook: reel upload session {state['video_id']} started")
        video_id = state["video_id"]
        if not state.get("uploaded"):
            # Repeating this is safe: the upload host fetches the same file for the same video.
            self.check_upload(self.send(
                "POST", f"{self.upload_api}/{video_id}",
                headers={"Authorization": f"OAuth {self.credentials.access_token}",
                         "file_url": request.media[0].url},
            ))
            state["uploaded"] = True
            save_state(state)
        # Meta processes the reel after the finish call, so waiting here is for the upload only.
        self.poll(f"video {video_id} upload", lambda: self._uploaded(video_id))

    def check_upload(self, response: httpx.Response) -> None:
        body = self.body(response)
        if body.get("success") is not True:
            raise PlatformRejected(self.platform, f"the video upload was not accepted: {str(body)[:200]}")

    def _video_status(self, video_id: str) -> dict[str, Any]:
        status = self.get(video_id, fields="status").get("status") or {}
        failed = [
            f"{phase.removesuffix('_phase')}: {_phase_errors(status[phase])}"
            for phase in ("uploading_phase", "processing_phase", "publishing_phase")
            if isinstance(status.get(phase), dict) and status[phase].get("status") == "error"
        ]
        if failed or status.get("video_status") == "error":
            raise PlatformRejected(self.platform, "Facebook could not process the video: "
                                   + ("; ".join(failed) or "video_status is error"))
        return status

    def _uploaded(self, video_id: str) -> bool | None:
        status = self._video_status(video_id)
        return True if (status.get("uploading_phase") or {}).get("status") == "complete" else None

    # --- publish ------------------------------------------------------------------------------------------

    def publish(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        if request.media[0].kind == "image":
            return self._publish_photo(request, state)
        return self._publish_video(request, state)

    def _publish_photo(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        photo_id = state.get("photo_id")
        if not photo_id:
            raise PlatformRejected(self.platform, "nothing to publish: prepare uploaded no photo")
        body = self.post(f"{self.page}/feed", {
            "message": request.text, "attached_media[0]": json.dumps({"media_fbid": photo_id}),
        }, idempotent=False)
        post_id = self.field(body, "id", "POST /feed")
        self.log(f"facebook: published post {post_id}")
        permalink = self.best_effort(
            "the permalink", lambda: self.get(post_id, fields="permalink_url").get("permalink_url"))
        return Published(post_id, permalink or f"https://www.facebook.com/{post_id}")

    def _publish_video(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        video_id = state.get("video_id")
        if not video_id or not state.get("uploaded"):
            raise PlatformRejected(self.platform, "nothing to publish: prepare uploaded no video")
        body = self.post(f"{self.page}/video_reels", {
            "upload_phase": "finish", "video_id": video_id, "video_state": "PUBLISHED",
            "description": request.text,
        }, idempotent=False)
        if body.get("success") is not True:
            raise PlatformRejected(self.platform, f"the reel was not published: {str(body)[:200]}")
        self.log(f"facebook: published reel {video_id}")
        return Published(video_id, self._video_permalink(video_id))

    def _video_permalink(self, video_id: str) -> str:
        body = self.best_effort("the permalink", lambda: self.get(video_id, fields="permalink_url,status")) or {}
        link = str(body.get("permalink_url") or f"/reel/{video_id}")
        return link if link.startswith("http") else f"https://www.facebook.com{link}"

    # --- recover ------------------------------------------------------------------------------------------

    def recover(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        if request.media[0].kind == "image":
            return self._recover_photo(state)
        return self._recover_video(state)

    def _recover_photo(self, state: dict[str, Any]) -> Published | None:
        photo_id = state.get("photo_id")
        if not photo_id:
            return None
        since = float(state.get("photo_uploaded_at") or 0) - CLOCK_SKEW_S
        params: dict[str, Any] = {"fields": "id,permalink_url,created_time,attachments{target{id}}",
                                  "limit": FEED_PAGE}
        for _page in range(FEED_PAGES_SCANNED):
            feed = self.get(f"{self.page}/feed", **params)
            posts = feed.get("data") or []
            for post in posts:  # newest first
                if photo_id in _attachment_targets(post.get("attachments")):
                    self.log(f"facebook: the lost publish took effect as post {post['id']}")
                    return Published(str(post["id"]),
                                     post.get("permalink_url") or f"https://www.facebook.com/{post['id']}")
            after = ((feed.get("paging") or {}).get("cursors") or {}).get("after")
            older = bool(posts) and _graph_epoch(posts[-1].get("created_time")) < since
            if not after or not (feed.get("paging") or {}).get("next") or older:
                self.log(f"facebook: no post in the Page feed carries photo {photo_id}: the publish did not take "
                         "effect")
                return None
            params["after"] = after
        # Not found in the posts scanned, yet not past the upload either: publishing again could post twice.
        raise GraphTransient(f"facebook: photo {photo_id} was not found in the latest "
                             f"{FEED_PAGE * FEED_PAGES_SCANNED} Page posts; will look again")

    def _recover_video(self, state: dict[str, Any]) -> Published | None:
        video_id = state.get("video_id")
        if not video_id or not state.get("uploaded"):
            return None
        publishing = self._video_status(video_id).get("publishing_phase") or {}
        if publishing.get("status") in PUBLISHED_PHASES or publishing.get("publish_status") == "published":
            self.log(f"facebook: the lost finish of reel {video_id} took effect")
            return Published(video_id, self._video_permalink(video_id))
        self.log(f"facebook: reel {video_id} publishing is {publishing.get('status')}: the finish did not take effect")
        return None


def _attachment_targets(attachments: Any) -> set[str]:
    """Ids of what a post's attachments point at (sub-attachments included)."""
    found: set[str] = set()
    for item in (attachments or {}).get("data") or []:
        if target_id := (item.get("target") or {}).get("id"):
            found.add(str(target_id))
        found |= _attachment_targets(item.get("subattachments"))
    return found


def _phase_errors(phase: dict[str, Any]) -> str:
    errors = phase.get("errors") or []
    return "; ".join(str(e.get("message") or e) for e in errors if isinstance(e, dict)) or "error"


def _graph_epoch(value: Any) -> float:
    """A Graph time (``2026-12-07T10:00:00+0000``) as epoch seconds; unreadable ones count as new."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return float("inf")
