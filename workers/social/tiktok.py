"""TikTok through the Content Posting API v2: Direct Post with a chunked ``FILE_UPLOAD``.

- :meth:`TikTokClient.prepare` initialises the post (``POST /post/publish/video/init/``) and keeps
  ``publish_id`` and ``upload_url`` in ``state``. An init whose upload never completes posts nothing,
  so making another one is harmless.
- :meth:`TikTokClient.publish` is the upload: the last chunk makes TikTok post the video, so chunk
  ``PUT``\\ s go with ``idempotent=False``. Then it polls ``/post/publish/status/fetch/`` until
  ``PUBLISH_COMPLETE`` (or ``FAILED``).
- :meth:`TikTokClient.recover` fetches the status by ``publish_id``: a whole upload (processing, posted,
  sent to the inbox) took effect; an upload TikTok has not received whole did not, and the next
  publish resumes after the bytes TikTok reports (``uploaded_bytes``), chunks going in order.

Creator info first (https://developers.tiktok.com/doc/content-posting-api-reference-direct-post): before
each init the client asks ``/post/publish/creator_info/query/`` and checks the post against it
(:mod:`core.publishing.tiktok_creator`): the privacy level the user chose (there is no default: TikTok's
UX rules make the user pick) must be one of ``privacy_level_options``, interactions the creator turned
off stay off, and the video may not be longer than ``max_video_post_duration_sec``. An app that has not
passed TikTok's audit may only post ``SELF_ONLY`` (``unaudited_client_can_only_post_to_private_accounts``):
with ``STUDIO_TIKTOK_APP_AUDITED=false`` (the default) the client refuses any other level before calling.
Commercial content goes as ``brand_content_toggle`` / ``brand_organic_toggle``; ``is_aigc`` labels
AI-generated content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from core.errors import TransientError
from core.models import utcnow
from core.publishing.tiktok_creator import CreatorInfo, interaction_flags, post_problems, unaudited_problem
from workers.social.base import (
    PlannedCall,
    PlatformClient,
    PlatformRejected,
    PublishDeferred,
    Published,
    PublishRequest,
    TokenExpired,
)

MIB = 1024 * 1024
# TikTok's media transfer guide says "5 MB", "64 MB" and "128 MB" without saying which MB: each limit
# is read the stricter way, so a plan is valid under both readings.
MIN_CHUNK = 5 * MIB
MAX_CHUNK = 64_000_000
MAX_LAST_CHUNK = 128_000_000
MAX_CHUNKS = 1000
MAX_VIDEO_SIZE = 4 * 1024 ** 3
MAX_TITLE_UTF16 = 2200
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")

TOKEN_CODES = frozenset({"access_token_invalid", "token_expired"})
UNKNOWN_PUBLISH_CODES = frozenset({"invalid_publish_id"})
TOOK_EFFECT = frozenset({"PROCESSING_UPLOAD", "PROCESSING_DOWNLOAD", "SEND_TO_USER_INBOX", "PUBLISH_COMPLETE"})
# The daily caps (https://developers.tiktok.com/doc/content-posting-api-reference-direct-post): the creator's
# API posts ("the daily post cap from the API is reached for the current user") and an app's active users.
CAP_CODES = frozenset({"spam_risk_too_many_posts", "reached_active_user_cap"})
CAP_RETRY = timedelta(hours=1)
RETRYABLE_FAIL_REASONS = frozenset({"internal"})  # TikTok's own failure: a new init may well succeed


class TikTokRateLimited(TransientError):
    """TikTok's rate limit (``rate_limit_exceeded``) outlasted the retries of one call."""


class StillProcessing(TransientError):
    """The upload is whole but TikTok had not finished posting it within publish_status_timeout_s."""


class UploadLost(TransientError):
    """The upload URL is unknown or expired: nothing was posted; a new init is needed."""


class TikTokRejected(PlatformRejected):
    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__("tiktok", message, status=status)
        self.code = code


@dataclass(frozen=True)
class ChunkPlan:
    """What ``source_info`` announces and how the file is cut: every chunk is ``chunk_size`` bytes
    but the last, which takes the remainder (``video_size - (total_chunk_count - 1) * chunk_size``)."""

    video_size: int
    chunk_size: int
    total_chunk_count: int

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of each chunk, in order."""
        starts = [i * self.chunk_size for i in range(self.total_chunk_count)]
        ends = [*starts[1:], self.video_size]
        return [(start, end - start) for start, end in zip(starts, ends, strict=True)]


def chunk_plan(video_size: int, preferred_chunk: int) -> ChunkPlan:
    """TikTok's chunk rules: a chunk is 5–64 MB, the last may be up to 128 MB, a file under 5 MB (or
    no bigger than one chunk) goes whole, and total_chunk_count = floor(video_size / chunk_size)."""
    if video_size <= 0:
        raise ValueError("an empty file cannot be uploaded")
    chunk = min(max(preferred_chunk, MIN_CHUNK), MAX_CHUNK)
    if video_size <= chunk:
        return ChunkPlan(video_size, video_size, 1)
    count = video_size // chunk
    if video_size - (count - 1) * chunk > MAX_LAST_CHUNK or count > MAX_CHUNKS:  # unreachable within the limits
        raise ValueError(f"{video_size} bytes cannot be cut into TikTok chunks of {chunk} bytes")
    return ChunkPlan(video_size, chunk, count)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _tiktok_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of a TikTok answer; code "ok" when it reports no error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        return code or "unknown", str(error.get("message") or code)
    if isinstance(error, str):  # the OAuth endpoints' {"error": "...", "error_description": "..."}
        return error, str(body.get("error_description") or error) if isinstance(body, dict) else error
    if response.status_code < 400:
        return "ok", ""
    return "unknown", response.text.strip()[:300] or f"HTTP {response.status_code}"


class TikTokClient(PlatformClient):
    platform = "tiktok"

    # --- errors ----------------------------------------------------------------------------------------

    def check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400 and not response.headers.get("content-type", "").startswith("application/json"):
            return  # the upload's 206/201 carry no JSON
        code, message = _tiktok_error(response)
        if status < 400 and code == "ok":
            return
        if code in TOKEN_CODES or (status == 401 and code not in ("scope_not_authorized",)):
            raise TokenExpired(f"TikTok refused the access token: {message} ({code})")
        if code == "rate_limit_exceeded":
            raise TikTokRateLimited(f"TikTok rate limit: {message}")
        if code in CAP_CODES:  # nothing was posted: try again later instead of failing the post
            raise PublishDeferred(self.platform, f"{message} ({code})", until=utcnow() + CAP_RETRY)
        if status in (404, 410) and response.request.method == "PUT":
            raise UploadLost(f"the TikTok upload URL is unknown or expired: {message}")
        raise TikTokRejected(f"{message} ({code})", code=code, status=status)

    # --- before any call -------------------------------------------------------------------------------

    def validate(self, request: PublishRequest) -> None:
        def refuse(message: str) -> None:
            raise PlatformRejected(self.platform, message)

        if len(request.media) != 1 or request.media[0].kind != "video":
            refuse("a TikTok post here is exactly one video")
        media = request.media[0]
        if media.content_type not in VIDEO_TYPES:
            refuse(f"TikTok takes MP4, MOV or WebM videos, not {media.content_type}")
        if not 0 < media.size <= MAX_VIDEO_SIZE:
            refuse(f"the video must be between 1 byte and 4 GB ({media.size} bytes)")
        if utf16_units(request.text) > MAX_TITLE_UTF16:
            refuse(f"the caption is over {MAX_TITLE_UTF16} characters ({utf16_units(request.text)} UTF-16 units)")
        privacy = request.options.get("privacy_level")
        if not privacy:
            refuse("choose who can see this TikTok post (privacy_level); TikTok's rules forbid a default")
        if privacy not in PRIVACY_LEVELS:
            refuse(f"privacy_level must be one of {', '.join(PRIVACY_LEVELS)}")
        if request.options.get("brand_content_toggle") and privacy == "SELF_ONLY":
            refuse("branded content (a paid partnership) cannot be posted as SELF_ONLY")
        if unaudited := unaudited_problem(privacy, audited=self.settings.tiktok_app_audited):
            refuse(unaudited)  # before any call: TikTok would answer unaudited_client_can_only_post_to_private_accounts
        try:
            self.chunk_plan(media.size)
        except ValueError as error:
            refuse(str(error))

    def chunk_plan(self, video_size: int) -> ChunkPlan:
        return chunk_plan(video_size, self.settings.publish_chunk_mb * MIB)

    def _init_body(self, request: PublishRequest, plan: ChunkPlan,
                   creator: CreatorInfo | None = None) -> dict[str, Any]:
        options = request.options
        flags = (interaction_flags(creator, options) if creator is not None
                 else {f"disable_{n}": bool(options.get(f"disable_{n}", False)) for n in ("comment", "duet", "stitch")})
        post_info: dict[str, Any] = {"title": request.text, "privacy_level": options.get("privacy_level"),
                                     **flags, "is_aigc": request.ai_generated}
        for toggle in ("brand_content_toggle", "brand_organic_toggle"):  # commercial content disclosure
            if options.get(toggle):
                post_info[toggle] = True
        return {
            "post_info": post_info,
            "source_info": {"source": "FILE_UPLOAD", "video_size": plan.video_size, "chunk_size": plan.chunk_size,
                            "total_chunk_count": plan.total_chunk_count},
        }

    @property
    def _init_url(self) -> str:
        return f"{self.settings.tiktok_api_url}/post/publish/video/init/"

    @property
    def _creator_info_url(self) -> str:
        return f"{self.settings.tiktok_api_url}/post/publish/creator_info/query/"

    @property
    def _status_url(self) -> str:
        return f"{self.settings.tiktok_api_url}/post/publish/status/fetch/"

    def plan(self, request: PublishRequest) -> list[PlannedCall]:
        media = request.media[0]
        chunks = self.chunk_plan(media.size)
        calls = [PlannedCall("POST", self._creator_info_url),
                 PlannedCall("POST", self._init_url, self._init_body(request, chunks))]
        for offset, length in chunks.ranges():
            calls.append(PlannedCall("PUT", "<upload_url from init>", {
                "Content-Type": media.content_type, "Content-Length": length,
                "Content-Range": f"bytes {offset}-{offset + length - 1}/{media.size}",
            }))
        calls.append(PlannedCall("POST", self._status_url, {"publish_id": "<publish_id from init>"}))
        return calls

    # --- the calls -------------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.access_token}"}

    @staticmethod
    def _forget_upload(state: dict[str, Any]) -> None:
        for key in ("publish_id", "upload_url", "chunk_size", "total_chunk_count", "upload_offset"):
            state.pop(key, None)

    def prepare(self, request: PublishRequest, state: dict[str, Any],
                save_state: Callable[[dict[str, Any]], None]) -> None:
        media = request.media[0]
        chunks = self.chunk_plan(media.size)
        if state.get("publish_id") and state.get("upload_url") and state.get("chunk_size") == chunks.chunk_size:
            save_state(state)  # keeps an offset recover noted
            return
        creator = self._creator_info()
        if problems := post_problems(creator, request.options, media.duration_s,
                                     audited=self.settings.tiktok_app_audited):
            raise TikTokRejected("; ".join(problems), code="creator_info")
        response = self.send("POST", self._init_url, json=self._init_body(request, chunks, creator),
                             headers=self._auth())
        data = response.json().get("data") or {}
        if not data.get("publish_id") or not data.get("upload_url"):
            raise TransientError("TikTok's init answer has no publish_id or upload_url")
        state.update(publish_id=data["publish_id"], upload_url=data["upload_url"], chunk_size=chunks.chunk_size,
                     total_chunk_count=chunks.total_chunk_count, upload_offset=0)
        save_state(state)
        self.log(f"tiktok: post initialised ({chunks.total_chunk_count} chunk(s) of {chunks.chunk_size} bytes)")

    def _creator_info(self) -> CreatorInfo:
        """What this creator may post now; asked before every new post, as TikTok requires."""
        response = self.send("POST", self._creator_info_url, json={}, headers=self._auth())
        data = response.json().get("data")
        return CreatorInfo.from_api(data if isinstance(data, dict) else {})

    def publish(self, request: PublishRequest, state: dict[str, Any]) -> Published:
        media = request.media[0]
        if not state.get("upload_url"):
            raise UploadLost("no TikTok upload URL to publish to (prepare makes one)")
        chunks = ChunkPlan(media.size, int(state["chunk_size"]), int(state["total_chunk_count"]))
        ranges = chunks.ranges()
        index = min(int(state.get("upload_offset") or 0) // chunks.chunk_size, len(ranges))
        if index:
            self.log(f"tiktok: resuming the upload at chunk {index + 1} of {len(ranges)}")
        resynced = False
        while index < len(ranges):
            start, length = ranges[index]
            try:
                response = self.send("PUT", state["upload_url"], idempotent=False, content=media.read(start, length),
                                     headers={"Content-Type": media.content_type, "Content-Length": str(length),
                                              "Content-Range": f"bytes {start}-{start + length - 1}/{media.size}"})
            except UploadLost:
                self._forget_upload(state)
                raise
            except TikTokRejected as error:
                if error.status != 416 or resynced:  # 416: not the chunk TikTok expects next
                    raise
                resynced = True
                uploaded = int(self._fetch_status(state["publish_id"]).get("uploaded_bytes") or 0)
                index = min(uploaded // chunks.chunk_size, len(ranges))
                self.log(f"tiktok: TikTok has {uploaded} bytes; continuing from chunk {index + 1}")
                continue
            if response.status_code not in (200, 201, 206):
                raise TransientError(f"TikTok answered HTTP {response.status_code} to an upload chunk")
            state["upload_offset"] = start + length
            index += 1
        self.log(f"tiktok: uploaded {media.size / MIB:.1f} MiB; waiting for TikTok to post it")
        return self._wait_for_post(state)

    def _fetch_status(self, publish_id: str) -> dict[str, Any]:
        response = self.send("POST", self._status_url, json={"publish_id": publish_id}, headers=self._auth())
        data = response.json().get("data")
        return data if isinstance(data, dict) else {}

    def _wait_for_post(self, state: dict[str, Any], data: dict[str, Any] | None = None) -> Published:
        deadline = time.monotonic() + self.settings.publish_status_timeout_s
        while True:
            if data is None:
                data = self._fetch_status(state["publish_id"])
            status = data.get("status")
            if status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX"):
                return self._published(state, data)
            if status == "FAILED":
                reason = data.get("fail_reason") or "unknown"
                raise TikTokRejected(f"TikTok could not post the video ({reason})", code=str(reason))
            if time.monotonic() >= deadline:
                raise StillProcessing(f"TikTok is still processing the post ({status}); checking again later")
            time.sleep(self.settings.publish_status_poll_s)
            data = None

    def _published(self, state: dict[str, Any], data: dict[str, Any]) -> Published:
        post_ids = data.get("publicaly_available_post_id") or []  # sic: TikTok's spelling
        if post_ids:
            post_id = str(post_ids[0])
            username = self.credentials.meta.get("username")
            permalink = f"https://www.tiktok.com/@{username}/video/{post_id}" if username else None
            return Published(external_id=post_id, permalink=permalink)
        # A private post (or one still in moderation) has no public id: the publish_id is the reference.
        return Published(external_id=str(state["publish_id"]), permalink=None)

    def recover(self, request: PublishRequest, state: dict[str, Any]) -> Published | None:
        publish_id = state.get("publish_id")
        if not publish_id:
            return None
        try:
            data = self._fetch_status(publish_id)
        except TikTokRejected as error:
            if error.code not in UNKNOWN_PUBLISH_CODES:
                raise
            self._forget_upload(state)
            self.log("tiktok: TikTok does not know the publish_id; a new init will be made")
            return None
        status = data.get("status")
        uploaded = data.get("uploaded_bytes")
        whole = uploaded is None or int(uploaded) >= request.media[0].size
        if status == "FAILED" and (not whole or data.get("fail_reason") in RETRYABLE_FAIL_REASONS):
            self._forget_upload(state)
            self.log(f"tiktok: the earlier attempt posted nothing ({data.get('fail_reason') or 'upload incomplete'}); "
                     "a new init will be made")
            return None
        if status == "PROCESSING_UPLOAD" and not whole:
            assert uploaded is not None  # not whole: TikTok said how many bytes it has
            chunk = int(state.get("chunk_size") or 0)
            state["upload_offset"] = int(uploaded) // chunk * chunk if chunk else 0
            self.log(f"tiktok: the upload had not finished; it will resume at byte {state['upload_offset']}")
            return None
        if status not in TOOK_EFFECT and status != "FAILED":
            raise TransientError(f"TikTok reports an unknown post status {status!r}")
        return self._wait_for_post(state, data)
