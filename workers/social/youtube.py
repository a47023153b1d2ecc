"""YouTube Shorts through the Data API v3 resumable upload protocol.

A Short is an ordinary video upload (vertical, up to 3 minutes); YouTube decides the shelf.

- :meth:`YouTubeClient.prepare` starts a resumable session (``POST …/videos?uploadType=resumable``
  with the metadata) and keeps its URI in ``state["session_uri"]``. An unfinished session publishes
  nothing, so starting one again is harmless.
- :meth:`YouTubeClient.publish` is the upload itself: the last byte makes the video, so every chunk
  ``PUT`` is sent with ``idempotent=False`` (a timeout or 5xx raises ``OutcomeUnknown``). Each ``308``
  answer says how far the server got (``Range: bytes=0-N``) and the next chunk starts there.
- :meth:`YouTubeClient.recover` asks the session where it stands (``Content-Range: bytes */total``):
  the video resource means the upload finished; a ``308`` means it did not, and the next publish
  resumes from the reported offset. Sessions last a week
  (https://developers.google.com/youtube/v3/guides/using_resumable_upload_protocol), finished ones
  included: an expired session (404/410) is therefore not proof that nothing was uploaded, so the
  channel's uploads playlist is searched for the video (same title, uploaded after the session began)
  before the session is dropped and prepare starts another.

An API project that has not passed YouTube's audit gets every upload locked to private
(https://developers.google.com/youtube/v3/docs/videos/insert): the video resource's ``privacyStatus``
is compared with the one asked for, and a difference is recorded on the post as a notice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from core.errors import TransientError
from workers.social.base import (
    PlannedCall,
    PlatformClient,
    PlatformRejected,
    Published,
    PublishRequest,
    TokenExpired,
)

MIB = 1024 * 1024
CHUNK_QUANTUM = 256 * 1024  # Google: every chunk but the last is a multiple of 256 KiB
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
MAX_TAGS_CHARS = 500
PRIVACY = ("public", "unlisted", "private")
CATEGORY_PEOPLE_AND_BLOGS = "22"
QUOTA_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded"})
STALLED_ANSWERS = 3  # 308s in a row that report no progress before giving up on this attempt
CLOCK_SKEW_S = 600.0  # Google's clock against ours, when matching a recovered upload by its time
UPLOADS_SCANNED = 200  # newest uploads searched for a lost one (4 pages of 50)

_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


class QuotaExceeded(TransientError):
    """YouTube's daily quota or a rate limit (403 quotaExceeded / rateLimitExceeded): retry later."""


class UploadSessionExpired(TransientError):
    """The resumable session is gone (404/410): nothing was published; a new session is needed."""


def tags_length(tags: list[str]) -> int:
    """How YouTube counts ``snippet.tags`` against its 500 characters: a tag with a space counts its
    quotation marks, and the commas between tags count too."""
    return sum(len(tag) + (2 if " " in tag else 0) for tag in tags) + max(0, len(tags) - 1)


def _google_error(response: httpx.Response) -> tuple[str, str]:
    """(message, first reason) of a Google error response, tolerating bodies that are not JSON."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        errors = error.get("errors") or [{}]
        reason = str(errors[0].get("reason", "")) if isinstance(errors[0], dict) else ""
        return str(error.get("message") or f"HTTP {response.status_code}"), reason
    text = response.text.strip()[:300]
    return text or f"HTTP {response.status_code}", ""


def _server_offset(response: httpx.Response) -> int:
    """The next byte to send after a 308: one past the ``Range`` end, or 0 when the server has nothing."""
    match = _RANGE.search(response.headers.get("range", ""))
    return int(match.group(2)) + 1 if match else 0


class YouTubeClient(PlatformClient):
    platform = "youtube"

    # --- errors ----------------------------------------------------------------------------------------

    def check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:  # 2xx, and 308 "resume incomplete" of the upload protocol
            return
        message, reason = _google_error(response)
        if status == 401:
            raise TokenExpired(f"YouTube refused the access token: {message}")
        if status in (403, 429) and reason in QUOTA_REASONS:
            raise QuotaExceeded(f"YouTube quota or rate limit ({reason}): {message}")
        if status in (404, 410) and response.request.method == "PUT":
            raise UploadSessionExpired(f"the YouTube upload session expired ({message})")
        raise PlatformRejected(self.platform, f"{message} ({reason})" if reason else message, status=status)

    # --- before any call -------------------------------------------------------------------------------

    @staticmethod
    def _tags(request: PublishRequest) -> list[str]:
        return [tag.lstrip("#").strip() for tag in request.hashtags if tag.lstrip("#").strip()]

    def validate(self, request: PublishRequest) -> None:
        def refuse(message: str) -> None:
            raise PlatformRejected(self.platform, message)

        if len(request.media) != 1 or request.media[0].kind != "video":
            refuse("a YouTube Short is exactly one video")
        media = request.media[0]
        if not media.content_type.startswith("video/") or media.size <= 0:
            refuse(f"the file is not a video YouTube can take ({media.content_type}, {media.size} bytes)")
        title = request.title.strip()
        if not 1 <= len(title) <= MAX_TITLE:
            refuse(f"the title must be 1 to {MAX_TITLE} characters (it has {len(title)})")
        if "<" in title or ">" in title:
            refuse("the title may not contain < or >")
        if "<" in request.text or ">" in request.text:  # snippet.description: "all valid UTF-8 except < and >"
            refuse("the description may not contain < or > (YouTube refuses it with invalidDescription)")
        if len(request.text.encode()) > MAX_DESCRIPTION_BYTES:
            refuse(f"the description is over {MAX_DESCRIPTION_BYTES} bytes ({len(request.text.encode())})")
        if tags_length(self._tags(request)) > MAX_TAGS_CHARS:
            refuse(f"the tags add up to over {MAX_TAGS_CHARS} characters")
        if request.options.get("privacy", "public") not in PRIVACY:
            refuse(f"privacy must be one of {', '.join(PRIVACY)}")

    def _metadata(self, request: PublishRequest) -> dict[str, Any]:
        return {
            "snippet": {"title": request.title.strip(), "description": request.text, "tags": self._tags(request),
                        "categoryId": CATEGORY_PEOPLE_AND_BLOGS},
            "status": {"privacyStatus": request.options.get("privacy", "public"),
                       "selfDeclaredMadeForKids": bool(request.options.get("made_for_kids", False)),
                       "containsSyntheticMedia": request.ai_generated},
        }

    @property
    def chunk_size(self) -> int:
        return self.settings.publish_chunk_mb * MIB  # a whole number of MiB is a multiple of 256 KiB

    @property
    def _start_url(self) -> str:
        return f"{self.settings.youtube_upload_url}/videos?uploadType=resumable&part=snippet,status"

    def plan(self, request: PublishRequest) -> list[PlannedCall]:
        media = request.media[0]
        calls = [PlannedCall("POST", self._start_url, {
            **self._metadata(request), "X-Upload-Content-Type": media.content_type,
            "X-Upload-Content-Length": media.size,
        })]
        for first in range(0, media.size, self.chunk_size):
            last = min(first + self.chunk_size, media.size) - 1
            calls.append(PlannedCall("PUT", "<upload session URI>", {"Content-Range": f"bytes {first}-{last}/"
                                                                                       f"{media.size}"}))
        return calls

    # --- the calls -------------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.access_token}"}

    def prepare(self, request: PublishRequest, state: dict[str, Any],
                save_state: Callable[[dict[str, Any]], None]) -> None:
        media = request.media[0]
        if state.get("session_uri") and state.get("video_size") == media.size:
            save_state(state)  # keeps an offset recover noted
            return
        response = self.send("POST", self._start_url, json=self._metadata(request), headers={
            **self._auth(), "X-Upload-Content-Type": media.content_type, "X-Upload-Content-Length": str(media.size),
        })
        session_uri = response.headers.get("location")
        if not session_uri:
            raise TransientError(f"YouTube started no upload session (HTTP {response.status_code}, no Location)")
        state.update(session_uri=session_uri, video_size=media.size, upload_offset=0,
                     session_started_at=time.time())
        save_state(state)
        self.log(f"youtube: upload session started for {media.size / MIB:.1f} MiB")

    def _published(self, response: httpx.Response, state: dict[str, Any], request: PublishRequest) -> Published:
        try:
            resource = response.json()
            video_id = str(resource["id"])
        except (ValueError, KeyError, TypeError) as error:
            raise TransientError(f"YouTube finished the upload but sent no video id (HTTP "
                                 f"{response.status_code})") from error
        state.update(video_id=video_id, upload_offset=state.get("video_size", 0))
        return self._result(video_id, request, (resource.get("status") or {}).get("privacyStatus"))

    def _result(self, video_id: str, request: PublishRequest, privacy: str | None) -> Published:
        asked = request.options.get("privacy", "public")
        notice = None
        if privacy and privacy != asked:
            notice = (f"YouTube made the video {privacy}, not {asked}: uploads from an API project that has not "
                      "passed YouTube's audit are locked to private until the project is audited")
            self.log(f"youtube: {notice}")
        return Published(external_id=video_id, permalink=f"https://youtube.com/shorts/{video_id}", notice=notice)

    def _put(self, session_uri: str, *, idempotent: bool, content: bytes, content_range: str,
             content_type: str) -> httpx.Response:
        return self.send("PUT", session_uri, idempotent=idempotent, content=content, follow_redirects=False,
                         headers={**self._auth(), "Content-Range": content_range, "Content-Type": content_type})

    def publish(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        media = request.media[0]
        session_uri = state.get("session_uri")
        if not session_uri:
            raise UploadSessionExpired("no YouTube upload session to publish to (prepare starts one)")
        total = media.size
        offset = int(state.get("upload_offset") or 0)
        if offset:
            self.log(f"youtube: resuming the upload at {offset / MIB:.1f} of {total / MIB:.1f} MiB")
        stalled = 0
        while True:
            end = min(offset + self.chunk_size, total)
            try:
                response = self._put(session_uri, idempotent=False, content=media.read(offset, end - offset),
                                     content_range=f"bytes {offset}-{end - 1}/{total}",
                                     content_type=media.content_type)
            except UploadSessionExpired:
                for key in ("session_uri", "upload_offset"):
                    state.pop(key, None)
                raise
            if response.status_code in (200, 201):
                published = self._published(response, state, request)
                self.log(f"youtube: uploaded {total / MIB:.1f} MiB, video {published.external_id}")
                return published
            if response.status_code != 308:
                raise TransientError(f"YouTube answered HTTP {response.status_code} to an upload chunk")
            reached = _server_offset(response)
            stalled = stalled + 1 if reached <= offset else 0
            if stalled >= STALLED_ANSWERS:
                raise TransientError(f"the YouTube upload is not progressing (the server stays at byte {reached})")
            offset = reached
            state["upload_offset"] = offset
            self.log(f"youtube: uploaded {offset / MIB:.1f} of {total / MIB:.1f} MiB")

    def recover(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        session_uri = state.get("session_uri")
        if not session_uri:
            return None
        try:
            response = self._put(session_uri, idempotent=True, content=b"",
                                 content_range=f"bytes */{request.media[0].size}",
                                 content_type=request.media[0].content_type)
        except UploadSessionExpired:
            found = self._find_upload(request, state)
            if found is not None:
                self.log(f"youtube: the upload session expired, but it had made video {found.external_id}")
                return found
            for key in ("session_uri", "upload_offset"):
                state.pop(key, None)
            self.log("youtube: the upload session expired before finishing; a new one will be started")
            return None
        if response.status_code in (200, 201):
            return self._published(response, state, request)
        if response.status_code == 308:
            state["upload_offset"] = _server_offset(response)
            self.log(f"youtube: the upload had not finished; it will resume at byte {state['upload_offset']}")
            return None
        raise TransientError(f"YouTube answered HTTP {response.status_code} to an upload status query")

    def _find_upload(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        """The video an expired session made, from the channel's uploads playlist: same title, uploaded
        after the session began (channels.list contentDetails → playlistItems.list, newest first)."""
        api = self.settings.youtube_api_url
        channel = self.send("GET", f"{api}/channels", params={"part": "contentDetails", "mine": "true"},
                            headers=self._auth()).json()
        items = channel.get("items") or [{}]
        uploads = ((items[0].get("contentDetails") or {}).get("relatedPlaylists") or {}).get("uploads")
        if not uploads:
            raise TransientError("YouTube did not name the channel's uploads playlist")
        since = float(state.get("session_started_at") or 0) - CLOCK_SKEW_S
        title = request.title.strip()
        params = {"part": "snippet", "playlistId": uploads, "maxResults": "50"}
        for _page in range(UPLOADS_SCANNED // 50):
            page = self.send("GET", f"{api}/playlistItems", params=params, headers=self._auth()).json()
            for item in page.get("items") or []:
                snippet = item.get("snippet") or {}
                if snippet.get("title") == title and _epoch(snippet.get("publishedAt")) >= since:
                    video_id = str((snippet.get("resourceId") or {}).get("videoId") or "")
                    if video_id:
                        state.update(video_id=video_id, upload_offset=state.get("video_size", 0))
                        return self._result(video_id, request, None)
            if not page.get("nextPageToken"):
                return None
            params["pageToken"] = str(page["nextPageToken"])
        return None


def _epoch(value: Any) -> float:
    """An RFC 3339 time (``2026-12-07T10:00:00Z``) as epoch seconds; unreadable ones count as new."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")
