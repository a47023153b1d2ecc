"""TikTok's OAuth endpoints and the Content Posting API (Direct Post, ``FILE_UPLOAD``) on one local server.

- ``GET /v2/auth/authorize/`` (consents at once, redirects with ``code`` and ``state``) and
  ``POST /v2/oauth/token/`` (``authorization_code`` with PKCE, ``refresh_token``).
- ``GET /v2/user/info/?fields=…``: the token owner's ``open_id``, ``display_name``, ``username``.
- ``POST /v2/post/publish/video/init/`` checks the post and the chunk plan as TikTok documents it
  (:func:`chunk_plan_error`), answers ``publish_id`` and an ``upload_url`` on this same server.
- ``PUT /upload/video/?upload_id=…&upload_token=…`` takes the chunks in order (``206``; ``201`` after the
  last), and the finished upload becomes one post after ``processing_polls`` status fetches.
- ``POST /v2/post/publish/status/fetch/``: ``PROCESSING_UPLOAD`` (with ``uploaded_bytes``) → ``PUBLISH_COMPLETE``
  (with TikTok's spelling ``publicaly_available_post_id``, filled for public posts only) or ``FAILED``.

Errors have TikTok's shape ``{"error": {"code", "message", "log_id"}}``. What the real API refuses, the
fake refuses too, each rule beside the doc it comes from:

- ``/user/info/`` fields are scope-gated: ``username`` (and the other profile fields) need
  ``user.info.profile``, the counts ``user.info.stats``; otherwise 401 ``scope_not_authorized``.
- ``/v2/oauth/token/`` takes exactly the documented form-encoded fields, the client named ``client_key``
  (https://developers.tiktok.com/doc/oauth-user-access-token-management): another ``grant_type``, a missing
  or unknown field (``client_id``), a wrong secret, a reused or unknown code, a mismatched ``redirect_uri``,
  a Desktop app's missing ``code_verifier`` and an expired (365 days) or revoked refresh token are refused.
- The app type (``app_type``) sets the Login Kit rules: a Desktop app registers only loopback
  redirects with a port and expects a hex-encoded SHA-256 challenge; a Web app only https redirects.
- ``POST /v2/post/publish/creator_info/query/`` answers the creator's privacy options, disabled
  interactions and longest allowed video; init refuses a ``privacy_level`` outside those options
  (``privacy_level_option_mismatch``), and an app that has not passed TikTok's audit (``audited=False``,
  the default) may only post ``SELF_ONLY``, from an account set to private (``private_account``), for at most
  5 users in 24 hours (``reached_active_user_cap``). Branded content (``brand_content_toggle``) cannot be private.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.oauth import FakeOAuth, OAuthFailure, TokenForm, check_token_form, s256, s256_hex
from tests.fakes.server import FakeServer, Handler

# https://developers.tiktok.com/doc/oauth-user-access-token-management: "code_verifier: Required for mobile and
# desktop app only" (the token handler makes it required for a Desktop app).
TOKEN_FORMS = {
    "authorization_code": TokenForm(frozenset({"client_key", "client_secret", "code", "grant_type", "redirect_uri"}),
                                    frozenset({"code_verifier"})),
    "refresh_token": TokenForm(frozenset({"client_key", "client_secret", "grant_type", "refresh_token"})),
}

# TikTok writes "5 MB", "64 MB", "128 MB" without saying which MB; the fake reads each the stricter way.
MIN_CHUNK = 5 * 1024 * 1024
MAX_CHUNK = 64_000_000
MAX_LAST_CHUNK = 128_000_000
MAX_CHUNKS = 1000
MAX_VIDEO_SIZE = 4 * 1024 ** 3
MAX_TITLE_UTF16 = 2200
UNAUDITED_USER_CAP = 5  # users who may post through an unaudited client in 24 hours
PRIVACY_LEVELS = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
# https://developers.tiktok.com/bulletin/user-info-scope-migration and
# https://developers.tiktok.com/doc/tiktok-api-v2-get-user-info: the scope each user field needs.
FIELD_SCOPES = {
    "open_id": "user.info.basic", "union_id": "user.info.basic", "avatar_url": "user.info.basic",
    "avatar_url_100": "user.info.basic", "avatar_large_url": "user.info.basic",
    "display_name": "user.info.basic", "bio_description": "user.info.profile",
    "profile_deep_link": "user.info.profile", "is_verified": "user.info.profile", "username": "user.info.profile",
    "follower_count": "user.info.stats", "following_count": "user.info.stats",
    "likes_count": "user.info.stats", "video_count": "user.info.stats",
}
APP_TYPES = ("desktop", "web")
CLIENT_KEY = "tiktok-client-key"
CLIENT_SECRET = "tiktok-client-secret"

_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")


def redirect_uri_error(app_type: str, uri: str) -> str | None:
    """Why TikTok would not accept this redirect URI for this app type (None when it would).

    Desktop (https://developers.tiktok.com/doc/login-kit-desktop/): http or https, only ``localhost`` or
    ``127.0.0.1``, with a port. Web (https://developers.tiktok.com/doc/login-kit-web): https only.
    Both: absolute, no query, no fragment.
    """
    parts = urlsplit(uri)
    if parts.query or parts.fragment or not parts.netloc:
        return "redirect URIs must be absolute and static (no query, no fragment)"
    if app_type == "web":
        return None if parts.scheme == "https" else "a Web app's redirect URI must begin with https"
    if parts.scheme not in ("http", "https") or parts.hostname not in ("localhost", "127.0.0.1"):
        return "a Desktop app's redirect URI must be http(s)://localhost or 127.0.0.1"
    return None if parts.port else "a Desktop app's redirect URI must have a port number"


def chunk_plan_error(video_size: int, chunk_size: int, total_chunk_count: int) -> str | None:
    """Why TikTok would refuse this ``source_info`` (None when it is fine), per its media transfer guide."""
    if not 0 < video_size <= MAX_VIDEO_SIZE:
        return f"video_size must be between 1 byte and {MAX_VIDEO_SIZE} bytes"
    if chunk_size <= 0 or total_chunk_count <= 0:
        return "chunk_size and total_chunk_count must be positive"
    if video_size < MIN_CHUNK and (chunk_size != video_size or total_chunk_count != 1):
        return "a video under 5 MB is uploaded whole: chunk_size = video_size, total_chunk_count = 1"
    if video_size >= MIN_CHUNK and not MIN_CHUNK <= chunk_size <= MAX_CHUNK and chunk_size != video_size:
        return "chunk_size must be between 5 MB and 64 MB"
    if chunk_size > MAX_CHUNK:
        return "a video over 64 MB is uploaded in several chunks"
    if total_chunk_count != video_size // chunk_size:
        return "total_chunk_count must be video_size / chunk_size, rounded down"
    if not 1 <= total_chunk_count <= MAX_CHUNKS:
        return f"between 1 and {MAX_CHUNKS} chunks"
    if video_size - (total_chunk_count - 1) * chunk_size > MAX_LAST_CHUNK:
        return "the last chunk may be at most 128 MB"
    return None


def tiktok_error_body(code: str, message: str) -> dict[str, Any]:
    """A JSON error body in TikTok's shape (also handy for ``Fault.respond``)."""
    return {"error": {"code": code, "message": message, "log_id": f"fake{secrets.token_hex(8)}"}}


def tiktok_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(tiktok_error_body(code, message), status_code=status)


def _ok(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"data": data, "error": {"code": "ok", "message": "", "log_id": f"fake{secrets.token_hex(8)}"}})


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class FakePost:
    id: str
    open_id: str
    publish_id: str
    title: str
    privacy_level: str
    is_aigc: bool
    post_info: dict[str, Any]
    content_type: str
    data: bytes


@dataclass
class PublishTask:
    publish_id: str
    upload_id: str
    upload_token: str
    open_id: str
    post_info: dict[str, Any]
    video_size: int
    chunk_size: int
    total_chunk_count: int
    received: bytearray = field(default_factory=bytearray)
    status: str = "PROCESSING_UPLOAD"
    fail_reason: str = ""
    polls_left: int = 0
    post: FakePost | None = None


class FakeTikTok(FakeServer):
    def __init__(self, *, client_key: str = CLIENT_KEY, client_secret: str = CLIENT_SECRET,
                 redirect_uris: set[str] | None = None, open_id: str = "openid-fake-0001",
                 username: str = "fake.creator", display_name: str = "Fake Creator", audited: bool = False,
                 processing_polls: int = 1, app_type: str = "desktop",
                 privacy_level_options: tuple[str, ...] = PRIVACY_LEVELS, comment_disabled: bool = False,
                 duet_disabled: bool = False, stitch_disabled: bool = False,
                 max_video_post_duration_sec: int = 600, private_account: bool = True) -> None:
        super().__init__()
        assert app_type in APP_TYPES
        self.app_type = app_type
        # Desktop apps hex-encode the S256 challenge (login-kit-desktop); Web apps use RFC 7636's base64url.
        self.oauth = FakeOAuth(client_key, client_secret, redirect_uris or {"http://127.0.0.1:8501/oauth/callback"},
                               subject=open_id, challenge_of=s256_hex if app_type == "desktop" else s256,
                               pkce_refusal=("invalid_request", "Code verifier or code challenge is invalid."))
        # What creator_info/query answers (https://developers.tiktok.com/doc/content-posting-api-reference-query-creator-info/)
        self.creator = {"creator_avatar_url": "https://p16.example/avatar.jpg", "creator_username": username,
                        "creator_nickname": display_name, "privacy_level_options": list(privacy_level_options),
                        "comment_disabled": comment_disabled, "duet_disabled": duet_disabled,
                        "stitch_disabled": stitch_disabled, "max_video_post_duration_sec": max_video_post_duration_sec}
        self.users = {open_id: {"open_id": open_id, "username": username, "display_name": display_name}}
        self.audited = audited
        # An unaudited client may post only from accounts set to private, for at most 5 users in 24 hours.
        self.private_account = private_account
        self._posters: dict[str, float] = {}  # open_id → when it last started a post (the 24-hour user cap)
        self.processing_polls = processing_polls  # status fetches answering PROCESSING_* once the upload is whole
        self.processing_fail_reason = ""  # set to make processing end FAILED with this fail_reason
        self._state_lock = threading.Lock()
        self._tasks: dict[str, PublishTask] = {}
        self._posts: list[FakePost] = []
        self._ids = itertools.count(1)

    # --- for tests ----------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Settings fields that point the studio at this server."""
        return {"tiktok_auth_url": self.url + "/v2/auth/authorize/", "tiktok_api_url": self.url + "/v2",
                "tiktok_client_key": self.oauth.client_id, "tiktok_client_secret": self.oauth.client_secret,
                "tiktok_app_type": self.app_type, "tiktok_app_audited": self.audited}

    def posts(self, open_id: str | None = None) -> list[FakePost]:
        """Posts made from completed uploads, oldest first (of one creator when given)."""
        with self._state_lock:
            return [p for p in self._posts if open_id is None or p.open_id == open_id]

    def tasks(self) -> list[PublishTask]:
        with self._state_lock:
            return list(self._tasks.values())

    def expire_uploads(self) -> None:
        """Upload URLs of unfinished uploads lapse (TikTok gives an hour): those publishes end FAILED."""
        with self._state_lock:
            for task in self._tasks.values():
                if len(task.received) < task.video_size:
                    task.status, task.fail_reason = "FAILED", "internal"

    def chunk_ranges(self) -> list[tuple[int, int]]:
        """(first byte, last byte) of every chunk PUT received, in order."""
        return self.content_ranges("upload")

    # --- routes ---------------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("authorize", "GET", "/v2/auth/authorize/", self.authorize),
            ("token", "POST", "/v2/oauth/token/", self.token),
            ("user_info", "GET", "/v2/user/info/", self.user_info),
            ("creator_info", "POST", "/v2/post/publish/creator_info/query/", self.creator_info),
            ("init", "POST", "/v2/post/publish/video/init/", self.init),
            ("upload", "PUT", "/upload/video/", self.upload),
            ("status", "POST", "/v2/post/publish/status/fetch/", self.status),
        ]

    # --- OAuth ----------------------------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        problem = redirect_uri_error(self.app_type, request.query_params.get("redirect_uri", ""))
        if problem:
            return JSONResponse({"error": "invalid_request", "error_description": problem}, status_code=400)
        return self.oauth.authorize_response(request.query_params, client_id_param="client_key")

    async def token(self, request: Request) -> Response:
        form = {name: str(value) for name, value in (await request.form()).items()}
        forms = dict(TOKEN_FORMS)
        if self.app_type == "desktop":  # "code_verifier: Required for mobile and desktop app only"
            code = forms["authorization_code"]
            forms["authorization_code"] = TokenForm(code.required | {"code_verifier"})
        try:
            grant_type = check_token_form(form, forms, content_type=request.headers.get("content-type", ""))
            if grant_type == "authorization_code":
                issued = self.oauth.exchange_code(
                    client_id=form["client_key"], client_secret=form["client_secret"], code=form["code"],
                    redirect_uri=form["redirect_uri"], code_verifier=form.get("code_verifier", ""),
                )
            else:
                issued = self.oauth.refresh(client_id=form["client_key"], client_secret=form["client_secret"],
                                            refresh_token=form["refresh_token"])
        except OAuthFailure as failure:
            return JSONResponse({"error": failure.error, "error_description": failure.description,
                                 "log_id": f"fake{secrets.token_hex(8)}"}, status_code=400)
        return JSONResponse({
            "access_token": issued.access_token, "expires_in": self.oauth.access_ttl_s, "open_id": issued.subject,
            "refresh_expires_in": 31_536_000, "refresh_token": issued.refresh_token, "scope": issued.scope,
            "token_type": "Bearer",
        })

    def _caller(self, request: Request) -> tuple[str, Response | None]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.oauth.check_bearer(token) != "ok":
            return "", tiktok_error(401, "access_token_invalid",
                                    "The access token is invalid or not found in the request.")
        return self.oauth.subject_of(token) or "", None

    async def user_info(self, request: Request) -> Response:
        open_id, refused = self._caller(request)
        if refused is not None:
            return refused
        fields = [f for f in request.query_params.get("fields", "").split(",") if f]
        if not fields:
            return tiktok_error(400, "invalid_params", "fields is required")
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        granted = self.oauth.scope_of(token)
        missing = sorted({FIELD_SCOPES.get(name, "?") for name in fields} - granted)
        if missing:  # the whole call is refused, not just the field
            return tiktok_error(401, "scope_not_authorized",
                                f"The user did not authorize the scope required for completing this request "
                                f"({', '.join(missing)}).")
        user = self.users.get(open_id, {"open_id": open_id})
        return _ok({"user": {name: user[name] for name in fields if name in user}})

    # --- Content Posting ------------------------------------------------------------------------------------

    async def creator_info(self, request: Request) -> Response:
        _open_id, refused = self._caller(request)
        if refused is not None:
            return refused
        return _ok(dict(self.creator))

    def _unaudited_refusal(self, open_id: str, privacy: Any) -> Response | None:
        """An unaudited client's limits (https://developers.tiktok.com/doc/content-sharing-guidelines): SELF_ONLY
        only, from an account set to private, and at most 5 users posting in a 24-hour window
        (reached_active_user_cap: https://developers.tiktok.com/doc/content-posting-api-reference-direct-post)."""
        if privacy != "SELF_ONLY" or not self.private_account:
            return tiktok_error(403, "unaudited_client_can_only_post_to_private_accounts",
                                "Unaudited clients can only post to private accounts (privacy_level SELF_ONLY).")
        now = time.time()
        with self._state_lock:
            recent = {user for user, at in self._posters.items() if at > now - 86_400}
            if open_id not in recent and len(recent) >= UNAUDITED_USER_CAP:
                return tiktok_error(403, "reached_active_user_cap",
                                    "The daily quota for active publishing users from your client is reached.")
            self._posters[open_id] = now
        return None

    async def init(self, request: Request) -> Response:
        open_id, refused = self._caller(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return tiktok_error(400, "invalid_params", "the body is not JSON")
        post_info = body.get("post_info") if isinstance(body, dict) else None
        source = body.get("source_info") if isinstance(body, dict) else None
        if not isinstance(post_info, dict) or not isinstance(source, dict):
            return tiktok_error(400, "invalid_params", "post_info and source_info are required")
        title = post_info.get("title", "")
        if not isinstance(title, str) or utf16_units(title) > MAX_TITLE_UTF16:
            return tiktok_error(400, "invalid_params", f"title is longer than {MAX_TITLE_UTF16} UTF-16 runes")
        privacy = post_info.get("privacy_level")
        if privacy not in PRIVACY_LEVELS:
            return tiktok_error(400, "invalid_params", f"privacy_level {privacy!r} is not valid")
        # https://developers.tiktok.com/doc/content-posting-api-reference-direct-post: "privacy_level must be
        # one of the privacy_level_options returned by creator_info" (error privacy_level_option_mismatch).
        if privacy not in self.creator["privacy_level_options"]:
            return tiktok_error(400, "privacy_level_option_mismatch",
                                f"privacy_level {privacy} is not among the creator's privacy_level_options")
        # Same page: branded content cannot be posted privately ("Branded content visibility cannot be private").
        if post_info.get("brand_content_toggle") and privacy == "SELF_ONLY":
            return tiktok_error(400, "invalid_params", "branded content cannot be posted with privacy SELF_ONLY")
        if not self.audited and (refused := self._unaudited_refusal(open_id, privacy)):
            return refused
        if source.get("source") != "FILE_UPLOAD":
            return tiktok_error(400, "invalid_params", "this fake supports source FILE_UPLOAD only")
        try:
            size, chunk, count = (int(source[name]) for name in ("video_size", "chunk_size", "total_chunk_count"))
        except (KeyError, TypeError, ValueError):
            return tiktok_error(400, "invalid_params", "video_size, chunk_size and total_chunk_count are required")
        problem = chunk_plan_error(size, chunk, count)
        if problem:
            return tiktok_error(400, "invalid_params", problem)
        number = next(self._ids)
        task = PublishTask(publish_id=f"v_pub_file~v2-1.{7_300_000_000_000_000_000 + number}",
                           upload_id=str(number), upload_token=secrets.token_urlsafe(12), open_id=open_id,
                           post_info=post_info, video_size=size, chunk_size=chunk, total_chunk_count=count)
        with self._state_lock:
            self._tasks[task.publish_id] = task
        upload_url = (f"{str(request.base_url).rstrip('/')}/upload/video/?upload_id={task.upload_id}"
                      f"&upload_token={task.upload_token}")
        return _ok({"publish_id": task.publish_id, "upload_url": upload_url})

    def _task_for_upload(self, upload_id: str, upload_token: str) -> PublishTask | None:
        for task in self._tasks.values():
            if task.upload_id == upload_id and secrets.compare_digest(task.upload_token, upload_token):
                return task
        return None

    async def upload(self, request: Request) -> Response:
        body = await request.body()
        with self._state_lock:
            task = self._task_for_upload(request.query_params.get("upload_id", ""),
                                         request.query_params.get("upload_token", ""))
            if task is None or task.status == "FAILED":
                return tiktok_error(404, "invalid_params", "the upload URL is unknown or has expired")
            if len(task.received) == task.video_size:  # whole already: nothing more happens
                return Response(status_code=201)
            if request.headers.get("content-type") not in VIDEO_TYPES:
                return tiktok_error(400, "invalid_params", f"Content-Type must be one of {', '.join(VIDEO_TYPES)}")
            match = _RANGE.match(request.headers.get("content-range", "").strip())
            if match is None or int(match.group(3)) != task.video_size:
                return tiktok_error(400, "invalid_params",
                                    f"Content-Range must be 'bytes first-last/{task.video_size}'")
            first, last = int(match.group(1)), int(match.group(2))
            if len(body) != last - first + 1 or request.headers.get("content-length") != str(len(body)):
                return tiktok_error(400, "invalid_params", "Content-Range and Content-Length do not match the body")
            index = first // task.chunk_size if task.chunk_size else 0
            is_last = index == task.total_chunk_count - 1
            expected_end = task.video_size if is_last else first + task.chunk_size
            if first % task.chunk_size or last + 1 != expected_end:
                return tiktok_error(400, "invalid_params", f"chunk {index} must be bytes "
                                                           f"{index * task.chunk_size}-{expected_end - 1}")
            if first != len(task.received):  # chunks go in order
                return tiktok_error(416, "invalid_params", f"expected the chunk starting at byte {len(task.received)}")
            task.received.extend(body)
            if not is_last:
                return Response(status_code=206,
                                headers={"Content-Range": f"bytes 0-{len(task.received) - 1}/{task.video_size}"})
            task.polls_left = self.processing_polls
            if not self.processing_fail_reason:
                post_info = task.post_info
                task.post = FakePost(
                    id=str(7_400_000_000_000_000_000 + next(self._ids)), open_id=task.open_id,
                    publish_id=task.publish_id, title=post_info.get("title", ""),
                    privacy_level=post_info["privacy_level"], is_aigc=bool(post_info.get("is_aigc", False)),
                    post_info=post_info, content_type=request.headers.get("content-type", ""),
                    data=bytes(task.received),
                )
                self._posts.append(task.post)
        return Response(status_code=201)

    async def status(self, request: Request) -> Response:
        open_id, refused = self._caller(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return tiktok_error(400, "invalid_params", "the body is not JSON")
        publish_id = body.get("publish_id") if isinstance(body, dict) else None
        with self._state_lock:
            task = self._tasks.get(str(publish_id or ""))
            if task is None or task.open_id != open_id:
                return tiktok_error(400, "invalid_publish_id", "publish_id does not exist or is not yours")
            whole = len(task.received) == task.video_size
            if whole and task.status == "PROCESSING_UPLOAD":
                if task.polls_left > 0:
                    task.polls_left -= 1
                elif self.processing_fail_reason and task.post is None:
                    task.status, task.fail_reason = "FAILED", self.processing_fail_reason
                else:
                    task.status = "PUBLISH_COMPLETE"
            data: dict[str, Any] = {"status": task.status, "uploaded_bytes": len(task.received)}
            if task.status == "FAILED":
                data["fail_reason"] = task.fail_reason
            if task.status == "PUBLISH_COMPLETE":
                public = task.post is not None and task.post.privacy_level == "PUBLIC_TO_EVERYONE"
                data["publicaly_available_post_id"] = [int(task.post.id)] if public and task.post else []
        return _ok(data)
