"""Google's OAuth endpoints and the YouTube Data API v3 pieces the studio uses, on one local server.

- OAuth 2.0 with PKCE: ``GET /o/oauth2/v2/auth`` (consents at once and redirects) and ``POST /token``
  (``authorization_code`` and ``refresh_token`` grants; errors as ``{"error", "error_description"}``).
- ``GET /youtube/v3/channels?part=snippet&mine=true``: the channel of the token's owner.
- The resumable upload protocol: ``POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status``
  starts a session (``200`` with its URI in ``Location``); ``PUT`` on the session URI appends a chunk
  (``Content-Range: bytes a-b/total``; ``308`` with ``Range: bytes=0-N`` until the last byte, then
  ``200`` with the video resource) or, with ``Content-Range: bytes */total`` and no body, reports
  where the upload stands. A chunk that does not start where the received bytes end is not stored:
  the answer is a ``308`` saying where to resume, as Google does. A completed session made exactly
  one video, whatever is sent to it afterwards; an unknown or expired session answers ``404``.

Stricter, as the docs say the real API is:

- ``snippet.description`` may not contain ``<`` or ``>`` (400 ``invalidDescription``;
  https://developers.google.com/youtube/v3/docs/videos#snippet.description).
- An API project that has not passed YouTube's audit (``audited=False``, the default) gets every
  ``videos.insert`` upload locked to private, whatever privacy it asked for
  (https://developers.google.com/youtube/v3/docs/videos/insert: "All videos uploaded via the
  videos.insert endpoint from unverified API projects created after 28 July 2020 will be restricted
  to private viewing mode").
- The token endpoint takes exactly the documented form-encoded fields
  (https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code and
  #offline): another ``grant_type``, a missing or unknown field, a wrong client secret, a reused or unknown
  code, a mismatched ``redirect_uri`` and an expired or revoked refresh token are refused.
- Upload sessions last a week (https://developers.google.com/youtube/v3/guides/using_resumable_upload_protocol):
  :meth:`FakeGoogle.expire_sessions` forgets them, finished ones included; the channel's uploads
  playlist (``channels?part=contentDetails`` → ``playlistItems``) still lists what they made.

API errors use Google's shape ``{"error": {"code", "message", "errors": [{"reason", "domain"}], "status"}}``;
an expired or unknown access token gets ``401``. Point the settings at :meth:`FakeGoogle.settings`.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.oauth import FakeOAuth, OAuthFailure, TokenForm, check_token_form
from tests.fakes.server import FakeServer, Handler

# https://developers.google.com/identity/protocols/oauth2/web-server#exchange-authorization-code (code_verifier
# only with PKCE) and https://developers.google.com/identity/protocols/oauth2/web-server#offline (refresh).
TOKEN_FORMS = {
    "authorization_code": TokenForm(frozenset({"client_id", "client_secret", "code", "grant_type", "redirect_uri"}),
                                    frozenset({"code_verifier"})),
    "refresh_token": TokenForm(frozenset({"client_id", "client_secret", "grant_type", "refresh_token"})),
}

CHUNK_QUANTUM = 256 * 1024  # every chunk but the last is a multiple of this
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
CLIENT_ID = "google-client-id"
CLIENT_SECRET = "google-client-secret"

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}
_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)$")


def google_error_body(status: int, reason: str, message: str, *, domain: str = "youtube.video") -> dict[str, Any]:
    """A JSON error body in Google's API shape (also handy for ``Fault.respond``)."""
    return {"error": {
        "code": status, "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
        "status": _STATUS_NAMES.get(status, "FAILED_PRECONDITION"),
    }}


def google_error(status: int, reason: str, message: str, *, domain: str = "youtube.video") -> JSONResponse:
    return JSONResponse(google_error_body(status, reason, message, domain=domain), status_code=status)


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass
class FakeVideo:
    id: str
    channel_id: str
    snippet: dict[str, Any]
    status: dict[str, Any]
    content_type: str
    data: bytes

    def resource(self) -> dict[str, Any]:
        return {"kind": "youtube#video", "id": self.id, "snippet": {**self.snippet, "channelId": self.channel_id},
                "status": {**self.status, "uploadStatus": "uploaded"}}


@dataclass
class UploadSession:
    id: str
    channel_id: str
    metadata: dict[str, Any]
    content_type: str
    total: int
    received: bytearray = field(default_factory=bytearray)
    video: FakeVideo | None = None


class FakeGoogle(FakeServer):
    def __init__(self, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 redirect_uris: set[str] | None = None, channel_id: str = "UCfakechannel0000000000",
                 channel_title: str = "Fake Channel", audited: bool = False) -> None:
        super().__init__()
        self.audited = audited
        self.oauth = FakeOAuth(client_id, client_secret, redirect_uris or {"http://127.0.0.1:8501/oauth/callback"},
                               subject=channel_id)
        self.channel_titles = {channel_id: channel_title}
        self._state_lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}
        self._videos: list[FakeVideo] = []
        self._video_ids = itertools.count(1)

    # --- for tests ----------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Settings fields that point the studio at this server."""
        return {
            "google_auth_url": self.url + "/o/oauth2/v2/auth", "google_token_url": self.url + "/token",
            "youtube_api_url": self.url + "/youtube/v3", "youtube_upload_url": self.url + "/upload/youtube/v3",
            "google_client_id": self.oauth.client_id, "google_client_secret": self.oauth.client_secret,
        }

    def videos(self, channel_id: str | None = None) -> list[FakeVideo]:
        """Videos made by completed uploads, oldest first (of one channel when given)."""
        with self._state_lock:
            return [v for v in self._videos if channel_id is None or v.channel_id == channel_id]

    def sessions(self) -> list[UploadSession]:
        with self._state_lock:
            return list(self._sessions.values())

    def expire_sessions(self) -> None:
        """Every upload session is forgotten, as Google does after about a week (404 from now on)."""
        with self._state_lock:
            self._sessions.clear()

    def chunk_ranges(self) -> list[tuple[int, int]]:
        """(first byte, last byte) of every chunk PUT received, in order (status queries left out)."""
        return self.content_ranges("upload")

    # --- routes ---------------------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("authorize", "GET", "/o/oauth2/v2/auth", self.authorize),
            ("token", "POST", "/token", self.token),
            ("channels", "GET", "/youtube/v3/channels", self.channels),
            ("playlist_items", "GET", "/youtube/v3/playlistItems", self.playlist_items),
            ("upload_start", "POST", "/upload/youtube/v3/videos", self.upload_start),
            ("upload", "PUT", "/upload/youtube/v3/videos/session/{session_id}", self.upload),
        ]

    # --- OAuth ----------------------------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        return self.oauth.authorize_response(request.query_params)

    async def token(self, request: Request) -> Response:
        form = {name: str(value) for name, value in (await request.form()).items()}
        grant_type = form.get("grant_type")
        try:
            check_token_form(form, TOKEN_FORMS, content_type=request.headers.get("content-type", ""))
            if grant_type == "authorization_code":
                issued = self.oauth.exchange_code(
                    client_id=form["client_id"], client_secret=form["client_secret"], code=form["code"],
                    redirect_uri=form["redirect_uri"], code_verifier=form.get("code_verifier", ""),
                )
            else:
                issued = self.oauth.refresh(client_id=form["client_id"], client_secret=form["client_secret"],
                                            refresh_token=form["refresh_token"])
        except OAuthFailure as failure:
            return JSONResponse({"error": failure.error, "error_description": failure.description},
                                status_code=401 if failure.error == "invalid_client" else 400)
        body: dict[str, Any] = {
            "access_token": issued.access_token, "expires_in": self.oauth.access_ttl_s, "scope": issued.scope,
            "token_type": "Bearer",
        }
        if grant_type == "authorization_code" and issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
        return JSONResponse(body)

    def _caller(self, request: Request) -> tuple[str | None, Response | None]:
        """The channel id behind the bearer token, or a 401 in Google's shape."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        verdict = self.oauth.check_bearer(token)
        if verdict != "ok":
            response = google_error(
                401, "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                  "login cookie or other valid authentication credential.", domain="global")
            response.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
            return None, response
        return self.oauth.subject_of(token), None

    # --- YouTube --------------------------------------------------------------------------------------------

    async def channels(self, request: Request) -> Response:
        channel_id, refused = self._caller(request)
        if refused is not None:
            return refused
        parts = set(request.query_params.get("part", "").split(","))
        if request.query_params.get("mine") != "true" or not parts & {"snippet", "contentDetails"}:
            return google_error(400, "invalidParameter", "This fake answers part=snippet|contentDetails&mine=true.",
                                domain="youtube.parameter")
        item: dict[str, Any] = {"kind": "youtube#channel", "id": channel_id}
        if "snippet" in parts:
            item["snippet"] = {"title": self.channel_titles.get(channel_id or "", channel_id)}
        if "contentDetails" in parts:  # the uploads playlist id is the channel id with UU for UC
            item["contentDetails"] = {"relatedPlaylists": {"uploads": "UU" + (channel_id or "")[2:]}}
        return JSONResponse({"kind": "youtube#channelListResponse", "items": [item]})

    async def playlist_items(self, request: Request) -> Response:
        """The channel's uploads, newest first, 50 at most per page (``pageToken`` pages on)."""
        channel_id, refused = self._caller(request)
        if refused is not None:
            return refused
        params = request.query_params
        if params.get("playlistId") != "UU" + (channel_id or "")[2:] or "snippet" not in params.get("part", ""):
            return google_error(404, "playlistNotFound", "The playlist identified with the request's playlistId "
                                                         "parameter cannot be found.", domain="youtube.playlistItem")
        size = max(0, min(50, int(params.get("maxResults") or 5)))
        start = int(params.get("pageToken") or 0)
        videos = list(reversed(self.videos(channel_id)))
        page = videos[start:start + size]
        body: dict[str, Any] = {"kind": "youtube#playlistItemListResponse", "items": [
            {"kind": "youtube#playlistItem", "snippet": {
                "title": v.snippet.get("title"), "publishedAt": v.snippet.get("publishedAt"),
                "resourceId": {"kind": "youtube#video", "videoId": v.id}}} for v in page]}
        if start + size < len(videos):
            body["nextPageToken"] = str(start + size)
        return JSONResponse(body)

    async def upload_start(self, request: Request) -> Response:
        channel_id, refused = self._caller(request)
        if refused is not None:
            return refused
        params = request.query_params
        if params.get("uploadType") != "resumable":
            return google_error(400, "invalidParameter", "This fake supports uploadType=resumable only.",
                                domain="global")
        parts = set(params.get("part", "").split(","))
        if not {"snippet", "status"} <= parts:
            return google_error(400, "invalidParameter", "part must name snippet and status.", domain="global")
        try:
            metadata = await request.json()
        except ValueError:
            return google_error(400, "parseError", "Parse Error", domain="global")
        snippet = metadata.get("snippet") if isinstance(metadata, dict) else None
        status = metadata.get("status") if isinstance(metadata, dict) else None
        if not isinstance(snippet, dict) or not isinstance(status, dict):
            return google_error(400, "invalidVideoMetadata", "The request metadata is invalid.")
        title = snippet.get("title")
        if not isinstance(title, str) or not 1 <= len(title) <= MAX_TITLE or "<" in title or ">" in title:
            return google_error(400, "invalidTitle", "The request metadata specifies an invalid video title.")
        description = str(snippet.get("description", ""))
        if len(description.encode()) > MAX_DESCRIPTION_BYTES or "<" in description or ">" in description:
            return google_error(400, "invalidDescription",
                                "The request metadata specifies an invalid video description.")
        if status.get("privacyStatus", "public") not in ("public", "unlisted", "private"):
            return google_error(400, "invalidVideoMetadata", "The request metadata specifies an invalid privacy "
                                                             "status.")
        content_type = request.headers.get("x-upload-content-type", "")
        length = request.headers.get("x-upload-content-length", "")
        if not content_type.startswith("video/") or not length.isdigit() or int(length) <= 0:
            return google_error(400, "badContent", "X-Upload-Content-Type (video/*) and X-Upload-Content-Length "
                                                   "are required.", domain="global")
        session = UploadSession(id=secrets.token_urlsafe(12), channel_id=channel_id or "", metadata=metadata,
                                content_type=content_type, total=int(length))
        with self._state_lock:
            self._sessions[session.id] = session
        location = f"{str(request.base_url).rstrip('/')}/upload/youtube/v3/videos/session/{session.id}"
        return Response(status_code=200, headers={"Location": location})

    @staticmethod
    def _incomplete(session: UploadSession) -> Response:
        headers = {"Range": f"bytes=0-{len(session.received) - 1}"} if session.received else {}
        return Response(status_code=308, headers=headers)

    async def upload(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token and self.oauth.check_bearer(token) != "ok":
            return self._caller(request)[1] or Response(status_code=401)
        with self._state_lock:
            session = self._sessions.get(request.path_params["session_id"])
        if session is None:
            return google_error(404, "notFound", "The upload session was not found or has expired.", domain="global")
        match = _RANGE.match(request.headers.get("content-range", "").strip())
        if match is None or int(match.group(3)) != session.total:
            return google_error(400, "badContent", f"Content-Range must be 'bytes a-b/{session.total}' or "
                                                   f"'bytes */{session.total}'.", domain="global")
        body = await request.body()
        with self._state_lock:
            if session.video is not None:  # finished: the one video, whatever was sent
                return JSONResponse(session.video.resource(), status_code=200)
            if match.group(1) is None:  # status query
                if body:
                    return google_error(400, "badContent", "A status query has no body.", domain="global")
                return self._incomplete(session)
            first, last = int(match.group(1)), int(match.group(2))
            if last < first or last >= session.total or len(body) != last - first + 1:
                return google_error(400, "badContent", "Content-Range does not match the body.", domain="global")
            if first != len(session.received):  # not where the upload stands: say where to resume
                return self._incomplete(session)
            is_last = last == session.total - 1
            if not is_last and len(body) % CHUNK_QUANTUM:
                return google_error(400, "badContent", f"Chunks but the last must be multiples of {CHUNK_QUANTUM} "
                                                       "bytes.", domain="global")
            session.received.extend(body)
            if not is_last:
                return self._incomplete(session)
            status = dict(session.metadata.get("status", {}))
            if not self.audited:  # the unaudited-project lock
                status["privacyStatus"] = "private"
            video = FakeVideo(
                id=f"vid{next(self._video_ids):08d}", channel_id=session.channel_id,
                snippet={**session.metadata.get("snippet", {}), "publishedAt": _rfc3339(time.time())},
                status=status, content_type=session.content_type, data=bytes(session.received),
            )
            session.video = video
            self._videos.append(video)
        return JSONResponse(video.resource(), status_code=200)
