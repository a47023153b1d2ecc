"""Meta's Graph API as the Instagram and Facebook Page clients (and ``core/publishing/oauth.py``) use it.

Served under ``/v21.0`` (give clients ``meta.url + "/v21.0"`` as ``graph_api_url`` and
``meta.url + "/video-upload/v21.0"`` as ``facebook_upload_url``), with in-memory Pages, Instagram
users, media containers, media, Page posts and reels:

- Instagram: ``POST /{ig-user}/media`` (containers stay ``IN_PROGRESS`` for ``container_polls``
  status reads, then ``FINISHED``), ``GET /{container}?fields=status_code,status``,
  ``POST /{ig-user}/media_publish``, ``GET /{ig-user}/media``;
- Facebook: ``POST /{page}/photos`` (``published=false``), ``POST``/``GET /{page}/feed``,
  ``POST /{page}/video_reels`` (start, finish), the upload host ``POST /video-upload/v21.0/{video}``
  (``file_url`` header), ``GET /{video}?fields=status`` with its three phases;
- OAuth: ``GET /v21.0/dialog/oauth``, ``GET|POST /v21.0/oauth/access_token`` (code + PKCE, and
  ``fb_exchange_token`` for a long-lived token), ``GET /v21.0/me/accounts`` (Pages with their tokens).
  The token endpoint takes exactly the documented fields (:data:`TOKEN_FORMS`): a ``grant_type`` on the code
  exchange, a missing or unknown field, a wrong secret, a reused code or another ``redirect_uri`` is refused.

Every call checks its access token with :class:`FakeOAuth` (an expired one answers code 190, as
Meta does) and its parameters (a missing ``image_url`` answers code 100). Media links are recorded
in ``media_urls``; with ``fetch_media=True`` they are also fetched, and a link that does not answer
200 fails the way Meta fails it (code 9004 for images, a container or upload ``ERROR`` for videos).
``serve_file`` hosts bytes on the fake itself for such tests.

Stricter, as Meta's docs say the real API is:

- ``GET /{ig-user}/content_publishing_limit`` reports the moving 24-hour quota, and ``media_publish``
  beyond it answers code 9 / subcode 2207042
  (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/content_publishing_limit/,
  https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/error-codes/).
- A fetched feed image outside 4:5–1.91:1 is refused with 36003 / 2207009 (same error-codes page).
- ``is_ai_generated`` on a container is kept on the media (the AI info label, June 2026:
  https://developers.facebook.com/documentation/instagram-platform/changelog).
- ``GET /{page}/feed`` pages: at most ``limit`` (default 25, at most 100) posts a page, then
  ``paging.cursors.after`` / ``paging.next`` (https://developers.facebook.com/docs/graph-api/results).
"""

from __future__ import annotations

import io
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tests.fakes.oauth import FakeOAuth, OAuthFailure, TokenForm, check_token_form
from tests.fakes.server import FakeServer, Fault, Handler

V = "/v21.0"
LONG_LIVED_TTL_S = 5_184_000  # 60 days
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8501/oauth/callback"
# The two token requests Meta documents. The code exchange has no grant_type
# (https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow#confirm), plus the PKCE
# verifier (https://developers.facebook.com/docs/facebook-login/guides/advanced/oidc-token); the long-lived
# token exchange (https://developers.facebook.com/docs/facebook-login/guides/access-tokens/get-long-lived).
TOKEN_FORMS = {
    "": TokenForm(frozenset({"client_id", "client_secret", "code", "redirect_uri"}), frozenset({"code_verifier"})),
    "fb_exchange_token": TokenForm(frozenset({"grant_type", "client_id", "client_secret", "fb_exchange_token"})),
}


def graph_error_body(code: int, message: str, *, subcode: int | None = None,
                     type_: str = "OAuthException") -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_, "code": code,
                             "fbtrace_id": secrets.token_urlsafe(8)}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def graph_error(code: int, message: str, *, subcode: int | None = None, status: int = 400) -> JSONResponse:
    return JSONResponse(graph_error_body(code, message, subcode=subcode), status_code=status)


def graph_fault(code: int, message: str, *, subcode: int | None = None, status: int = 400) -> Fault:
    """A Graph API error answered instead of acting: ``meta.inject("feed", graph_fault(368, "…"))``."""
    return Fault.respond(status, graph_error_body(code, message, subcode=subcode))


def _graph_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch))


def _top_fields(fields: str) -> set[str]:
    """Top-level names of a ``fields`` parameter: ``id,attachments{target{id}}`` → {id, attachments}."""
    names, depth, current = set(), 0, ""
    for char in fields:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    names.add(current.strip())
    return {name.split(".")[0] for name in names if name}


def _pick(node: dict[str, Any], fields: str | None) -> dict[str, Any]:
    wanted = _top_fields(fields) if fields else set()
    return {"id": node["id"], **{k: v for k, v in node.items() if k in wanted and v is not None}}


class GraphRefusal(Exception):
    def __init__(self, code: int, message: str, subcode: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode = code, message, subcode


@dataclass
class FakePage:
    id: str
    name: str
    ig_user_id: str | None = None
    ig_username: str | None = None


@dataclass
class Container:
    id: str
    ig_user_id: str
    media_type: str  # IMAGE | REELS
    url: str
    caption: str
    polls_left: int
    status_code: str = "IN_PROGRESS"  # IN_PROGRESS | FINISHED | ERROR | EXPIRED | PUBLISHED
    status: str = "In Progress"
    outcome: tuple[str, str] = ("FINISHED", "Finished")  # what it turns into when polls_left reaches 0
    media_id: str | None = None
    is_ai_generated: bool = False


@dataclass
class IgMedia:
    id: str
    ig_user_id: str
    container_id: str
    media_type: str
    caption: str
    media_url: str
    created: float = field(default_factory=time.time)
    is_ai_generated: bool = False

    @property
    def permalink(self) -> str:
        return f"https://www.instagram.com/p/IG{self.id[-8:]}/"

    def node(self) -> dict[str, Any]:
        reel = self.media_type == "REELS"
        return {"id": self.id, "caption": self.caption, "media_type": "VIDEO" if reel else "IMAGE",
                "media_product_type": "REELS" if reel else "FEED",
                "media_url": self.media_url, "permalink": self.permalink, "timestamp": _graph_time(self.created),
                "is_ai_generated": self.is_ai_generated}


@dataclass
class Photo:
    id: str
    page_id: str
    url: str
    published: bool = False


@dataclass
class PagePost:
    id: str  # "<page-id>_<post-id>"
    page_id: str
    message: str
    photo_ids: list[str]
    created: float = field(default_factory=time.time)

    @property
    def permalink_url(self) -> str:
        page_id, _, post = self.id.partition("_")
        return f"https://www.facebook.com/{page_id}/posts/{post}"

    def node(self) -> dict[str, Any]:
        attachments = {"data": [{"media_type": "photo", "type": "photo", "target": {"id": photo_id}}
                                for photo_id in self.photo_ids]} if self.photo_ids else None
        return {"id": self.id, "message": self.message, "created_time": _graph_time(self.created),
                "permalink_url": self.permalink_url, "attachments": attachments}


@dataclass
class Video:
    id: str
    page_id: str
    upload_polls_left: int
    processing_polls_left: int
    file_url: str | None = None
    uploading: str = "not_started"  # not_started | in_progress | complete | error
    processing: str = "not_started"
    publishing: str = "not_started"
    errors: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    published_at: float | None = None
    fails_with: str | None = None  # an upload error to report once uploading finishes

    def status(self) -> dict[str, Any]:
        video_status = ("error" if "error" in (self.uploading, self.processing)
                        else "ready" if self.processing == "complete"
                        else "processing" if self.processing == "in_progress" or self.uploading == "complete"
                        else "upload_in_progress" if self.uploading == "in_progress" else "uploading")
        publishing: dict[str, Any] = {"status": self.publishing}
        if self.published_at is not None:
            publishing |= {"publish_status": "published", "publish_time": int(self.published_at)}
        uploading: dict[str, Any] = {"status": self.uploading}
        if self.uploading == "error":
            uploading["errors"] = self.errors
        return {"video_status": video_status, "uploading_phase": uploading,
                "processing_phase": {"status": self.processing}, "publishing_phase": publishing}

    def node(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status(), "description": self.description or None,
                "permalink_url": f"/reel/{self.id}" if self.published_at is not None else None}


class FakeMeta(FakeServer):
    def __init__(self, *, app_id: str = "meta-app-id", app_secret: str = "meta-app-secret",  # noqa: S107
                 redirect_uris: set[str] | None = None, pages: list[FakePage] | None = None,
                 container_polls: int = 2, video_upload_polls: int = 1, video_processing_polls: int = 1,
                 fetch_media: bool = False, publishing_quota: int = 100) -> None:
        super().__init__()
        self.publishing_quota = publishing_quota  # API posts per IG user in a moving 24 hours
        self.oauth = FakeOAuth(client_id=app_id, client_secret=app_secret,
                               redirect_uris=set(redirect_uris or {DEFAULT_REDIRECT_URI}), issue_refresh_tokens=False)
        self.pages = {page.id: page for page in (pages or [
            FakePage("104000000000001", "Studio Test Page", "17841400000000001", "studio.test")])}
        self.container_polls = container_polls
        self.video_upload_polls = video_upload_polls
        self.video_processing_polls = video_processing_polls
        self.fetch_media = fetch_media
        self.media_urls: list[str] = []  # every image_url / video_url / url / file_url received
        self.fetched_urls: list[str] = []  # those fetched (fetch_media=True)
        self.containers: dict[str, Container] = {}
        self.media: dict[str, IgMedia] = {}
        self.photos: dict[str, Photo] = {}
        self.posts: dict[str, PagePost] = {}
        self.videos: dict[str, Video] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self._next_container_outcome: list[tuple[str, str]] = []
        self._next_video_failures: list[str] = []
        self._ids = itertools.count(17_900_000_000_000_001)
        self._state = threading.Lock()

    # --- test helpers ---------------------------------------------------------------------------------------

    @property
    def page(self) -> FakePage:
        """The first Page (the default one has an Instagram account linked)."""
        return next(iter(self.pages.values()))

    def page_token(self, page_id: str | None = None) -> str:
        """A Page access token, as ``/me/accounts`` hands it out (Instagram calls use it too)."""
        return self.oauth.grant(subject=f"page:{page_id or self.page.id}").access_token

    def user_token(self) -> str:
        return self.oauth.grant().access_token

    def published_media(self, ig_user_id: str | None = None) -> list[IgMedia]:
        ig_user_id = ig_user_id or self.page.ig_user_id
        with self._state:
            return [m for m in self.media.values() if m.ig_user_id == ig_user_id]

    def feed(self, page_id: str | None = None) -> list[PagePost]:
        page_id = page_id or self.page.id
        with self._state:
            return [p for p in self.posts.values() if p.page_id == page_id]

    def published_reels(self, page_id: str | None = None) -> list[Video]:
        page_id = page_id or self.page.id
        with self._state:
            return [v for v in self.videos.values() if v.page_id == page_id and v.published_at is not None]

    @property
    def publish_count(self) -> int:
        """Everything made public, on every account: Instagram media, Page posts and reels."""
        with self._state:
            return (len(self.media) + len(self.posts)
                    + sum(1 for v in self.videos.values() if v.published_at is not None))

    def fail_next_container(self, status: str = "ERROR: the media could not be processed (2207026)",
                            status_code: str = "ERROR") -> None:
        """The next container ends in ``status_code`` (ERROR or EXPIRED) instead of FINISHED."""
        with self._state:
            self._next_container_outcome.append((status_code, status))

    def expire_container(self, container_id: str) -> None:
        with self._state:
            container = self.containers[container_id]
            container.status_code, container.status = "EXPIRED", "Expired"

    def fail_next_video(self, message: str = "The video file could not be fetched from the URL.") -> None:
        """The next reel's upload ends with an error in its ``uploading_phase``."""
        with self._state:
            self._next_video_failures.append(message)

    def serve_file(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Host bytes on the fake (``GET /files/{name}``); returns their URL."""
        self.files[name] = (data, content_type)
        return f"{self.url}/files/{name}"

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _id(self) -> str:
        return str(next(self._ids))

    @staticmethod
    async def _params(request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        if request.method == "POST":
            body = await request.body()
            content_type = request.headers.get("content-type", "")
            if "application/json" in content_type and body:
                data = json.loads(body)
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()})
            elif body:
                params.update(dict(parse_qsl(body.decode(), keep_blank_values=True)))
        return params

    @staticmethod
    def _token(request: Request, params: dict[str, str]) -> str | None:
        if params.get("access_token"):
            return params["access_token"]
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() in ("oauth", "bearer") and value.strip() else None

    def _authenticate(self, request: Request, params: dict[str, str], page_id: str | None) -> str:
        """The token's subject; refuses expired, invalid and other Pages' tokens the way Meta does."""
        token = self._token(request, params)
        if not token:
            raise GraphRefusal(104, "An access token is required to request this resource.")
        verdict = self.oauth.check_bearer(token)
        if verdict == "expired":
            raise GraphRefusal(190, "Error validating access token: Session has expired.", 463)
        if verdict != "ok":
            raise GraphRefusal(190, "Invalid OAuth access token - Cannot parse access token")
        subject = self.oauth.subject_of(token) or ""
        if page_id is not None and subject.startswith("page:") and subject != f"page:{page_id}":
            raise GraphRefusal(200, "(#200) The Page access token does not belong to this Page")
        return subject

    def _graph(self, handler: Any) -> Handler:
        """Turn a handler that returns JSON (or raises GraphRefusal) into a Starlette endpoint."""
        async def endpoint(request: Request) -> Response:
            params = await self._params(request)
            try:
                result = await handler(request, params)
            except GraphRefusal as refusal:
                return graph_error(refusal.code, refusal.message, subcode=refusal.subcode)
            return result if isinstance(result, Response) else JSONResponse(result)
        return endpoint

    async def _fetchable(self, url: str) -> bool:
        return await self._fetch(url) != b""

    async def _fetch(self, url: str) -> bytes | None:
        """The media's bytes (b"" when the link fails); None when this fake does not fetch media."""
        if not self.fetch_media:
            return None
        self.fetched_urls.append(url)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(url)
        except httpx.HTTPError:
            return b""
        return response.content if response.status_code == 200 else b""

    def published_in_last_day(self, ig_user_id: str) -> int:
        since = time.time() - 86_400
        return sum(1 for m in self.published_media(ig_user_id) if m.created >= since)

    def _ig_user(self, ig_user_id: str) -> FakePage:
        for page in self.pages.values():
            if page.ig_user_id == ig_user_id:
                return page
        raise GraphRefusal(100, f"Unsupported request. Object with ID '{ig_user_id}' does not exist, cannot be "
                                "loaded due to missing permissions, or does not support this operation.", 33)

    def _page(self, page_id: str) -> FakePage:
        if page_id not in self.pages:
            raise GraphRefusal(100, f"Unsupported request. Object with ID '{page_id}' does not exist, cannot be "
                                    "loaded due to missing permissions, or does not support this operation.", 33)
        return self.pages[page_id]

    # --- Instagram ----------------------------------------------------------------------------------------

    async def create_container(self, request: Request, params: dict[str, str]) -> Any:
        page = self._ig_user(request.path_params["node"])
        self._authenticate(request, params, page.id)
        media_type = params.get("media_type", "IMAGE").upper()
        caption = params.get("caption", "")
        if media_type == "VIDEO":
            raise GraphRefusal(100, "The VIDEO media type is no longer supported. Use REELS to publish videos.",
                               2207067)
        if media_type == "REELS":
            url = params.get("video_url")
            if not url:
                raise GraphRefusal(100, "(#100) The parameter video_url is required.")
        elif media_type == "IMAGE":
            url = params.get("image_url")
            if not url:
                raise GraphRefusal(100, "(#100) The parameter image_url is required.")
        else:
            raise GraphRefusal(100, "(#100) Param media_type must be one of {IMAGE, REELS, CAROUSEL, STORIES}")
        if len(caption) > 2200:
            raise GraphRefusal(100, "(#100) The caption is too long: the limit is 2200 characters.", 2207059)
        self.media_urls.append(url)
        content = await self._fetch(url)
        fetched = content != b""
        if not fetched and media_type == "IMAGE":
            raise GraphRefusal(9004, "Media download has failed. The media URI doesn't meet our requirements.", 2207052)
        if content and media_type == "IMAGE":
            with Image.open(io.BytesIO(content)) as image:
                width, height = image.size
            if not 4 / 5 <= width / height <= 1.91:
                raise GraphRefusal(36003, f"The submitted image with aspect ratio ({width}, {height}) cannot be "
                                          "published. Please submit an image with a valid aspect ratio.", 2207009)
        with self._state:
            outcome = (self._next_container_outcome.pop(0) if self._next_container_outcome
                       else ("FINISHED", "Finished"))
            if not fetched:
                outcome = ("ERROR", "ERROR: Media download has failed. The media URI doesn't meet our requirements.")
            container = Container(self._id(), page.ig_user_id or "", media_type, url, caption,
                                  self.container_polls, outcome=outcome,
                                  is_ai_generated=params.get("is_ai_generated", "").lower() == "true")
            if container.polls_left <= 0:
                container.status_code, container.status = outcome
            self.containers[container.id] = container
        return {"id": container.id}

    async def media_publish(self, request: Request, params: dict[str, str]) -> Any:
        page = self._ig_user(request.path_params["node"])
        self._authenticate(request, params, page.id)
        creation_id = params.get("creation_id")
        if not creation_id:
            raise GraphRefusal(100, "(#100) The parameter creation_id is required.")
        with self._state:
            container = self.containers.get(creation_id)
            if container is None or container.ig_user_id != page.ig_user_id:
                raise GraphRefusal(100, "(#100) Param creation_id is not a valid media container.")
            if container.status_code == "PUBLISHED":
                raise GraphRefusal(9007, "The media has already been published.", 2207006)
            if container.status_code != "FINISHED":
                raise GraphRefusal(9007, "Media ID is not available: the media is not ready for publishing.",
                                   2207027)
            since = time.time() - 86_400
            used = sum(1 for m in self.media.values() if m.ig_user_id == page.ig_user_id and m.created >= since)
            if used >= self.publishing_quota:
                raise GraphRefusal(9, "Application request limit reached: the maximum number of posts that can "
                                      "be published via the Content Publishing API has been reached.", 2207042)
            media = IgMedia(self._id(), container.ig_user_id, container.id, container.media_type,
                            container.caption, container.url, is_ai_generated=container.is_ai_generated)
            self.media[media.id] = media
            container.status_code, container.status, container.media_id = "PUBLISHED", "Published", media.id
        return {"id": media.id}

    async def publishing_limit(self, request: Request, params: dict[str, str]) -> Any:
        page = self._ig_user(request.path_params["node"])
        self._authenticate(request, params, page.id)
        entry: dict[str, Any] = {"quota_usage": self.published_in_last_day(page.ig_user_id or "")}
        if "config" in (params.get("fields") or ""):
            entry["config"] = {"quota_total": self.publishing_quota, "quota_duration": 86_400}
        return {"data": [entry]}

    async def media_list(self, request: Request, params: dict[str, str]) -> Any:
        page = self._ig_user(request.path_params["node"])
        self._authenticate(request, params, page.id)
        limit = max(1, min(100, int(params.get("limit") or 25)))
        media = sorted(self.published_media(page.ig_user_id), key=lambda m: m.created, reverse=True)
        return {"data": [_pick(m.node(), params.get("fields") or "id") for m in media[:limit]]}

    # --- Facebook Page --------------------------------------------------------------------------------------

    async def upload_photo(self, request: Request, params: dict[str, str]) -> Any:
        page = self._page(request.path_params["node"])
        self._authenticate(request, params, page.id)
        url = params.get("url")
        if not url:
            raise GraphRefusal(100, "(#100) Missing parameter: url or source is required.")
        self.media_urls.append(url)
        if not await self._fetchable(url):
            raise GraphRefusal(324, "(#324) Missing or invalid image file")
        published = params.get("published", "true").lower() not in ("false", "0")
        with self._state:
            photo = Photo(self._id(), page.id, url, published)
            self.photos[photo.id] = photo
            if published:  # a photo posted straight away is a post of its own
                post = PagePost(f"{page.id}_{self._id()}", page.id, params.get("caption", ""), [photo.id])
                self.posts[post.id] = post
                return {"id": photo.id, "post_id": post.id}
        return {"id": photo.id}

    async def create_post(self, request: Request, params: dict[str, str]) -> Any:
        page = self._page(request.path_params["node"])
        self._authenticate(request, params, page.id)
        photo_ids = []
        for key in sorted(k for k in params if k.startswith("attached_media")):
            try:
                photo_ids.append(str(json.loads(params[key])["media_fbid"]))
            except (ValueError, KeyError, TypeError):
                raise GraphRefusal(100, f"(#100) param {key} must be a JSON object with media_fbid") from None
        message = params.get("message", "")
        if not message and not photo_ids and not params.get("link"):
            raise GraphRefusal(100, "(#100) A post needs a message, a link or attached media.")
        with self._state:
            for photo_id in photo_ids:
                photo = self.photos.get(photo_id)
                if photo is None or photo.page_id != page.id:
                    raise GraphRefusal(100, f"(#100) Invalid media_fbid {photo_id}")
                if photo.published:
                    raise GraphRefusal(100, f"(#100) Photo {photo_id} is already published", 1366051)
            for photo_id in photo_ids:
                self.photos[photo_id].published = True
            post = PagePost(f"{page.id}_{self._id()}", page.id, message, photo_ids)
            self.posts[post.id] = post
        return {"id": post.id}

    async def feed_list(self, request: Request, params: dict[str, str]) -> Any:
        page = self._page(request.path_params["node"])
        self._authenticate(request, params, page.id)
        limit = max(1, min(100, int(params.get("limit") or 25)))
        start = int(params.get("after") or 0)
        posts = sorted(self.feed(page.id), key=lambda p: (p.created, p.id), reverse=True)
        body: dict[str, Any] = {"data": [_pick(p.node(), params.get("fields") or "id,message,created_time")
                                         for p in posts[start:start + limit]]}
        if start + limit < len(posts):
            after = str(start + limit)
            body["paging"] = {"cursors": {"after": after},
                              "next": f"{str(request.url).split('?')[0]}?limit={limit}&after={after}"}
        return body

    async def video_reels(self, request: Request, params: dict[str, str]) -> Any:
        page = self._page(request.path_params["node"])
        self._authenticate(request, params, page.id)
        phase = params.get("upload_phase")
        if phase == "start":
            with self._state:
                video = Video(self._id(), page.id, self.video_upload_polls, self.video_processing_polls,
                              fails_with=self._next_video_failures.pop(0) if self._next_video_failures else None)
                self.videos[video.id] = video
            return {"video_id": video.id, "upload_url": f"{self.url}/video-upload/v21.0/{video.id}"}
        if phase != "finish":
            raise GraphRefusal(100, "(#100) upload_phase must be one of {start, finish}")
        if params.get("video_state", "").upper() not in ("PUBLISHED", "DRAFT", "SCHEDULED"):
            raise GraphRefusal(100, "(#100) video_state must be one of {PUBLISHED, DRAFT, SCHEDULED}")
        with self._state:
            video = self.videos.get(params.get("video_id") or "")
            if video is None or video.page_id != page.id:
                raise GraphRefusal(100, "(#100) Invalid video_id")
            if video.uploading != "complete":
                raise GraphRefusal(6000, "There was a problem uploading your video file: the upload is not "
                                         "complete.", 1363019)
            if video.published_at is not None:
                raise GraphRefusal(100, "(#100) This video has already been published.")
            video.description = params.get("description", "")
            if params["video_state"].upper() == "PUBLISHED":
                video.published_at = time.time()
                video.processing = "in_progress" if video.processing_polls_left > 0 else "complete"
                video.publishing = "in_progress" if video.processing_polls_left > 0 else "complete"
        return {"success": True}

    async def video_upload(self, request: Request, params: dict[str, str]) -> Any:
        video_id = request.path_params["video"]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        subject = self._authenticate(request, {"access_token": token.strip()} if scheme == "OAuth" else {}, None)
        file_url = request.headers.get("file_url")
        with self._state:
            video = self.videos.get(video_id)
        if video is None or (subject.startswith("page:") and subject != f"page:{video.page_id}"):
            return JSONResponse({"debug_info": {"retriable": False, "type": "NotAuthorizedError",
                                                "message": "No upload session for this video"}}, status_code=400)
        if not file_url:
            return JSONResponse({"debug_info": {"retriable": False, "type": "ProcessingFailedError",
                                                "message": "Request has no file_url header and no body"}},
                                status_code=400)
        self.media_urls.append(file_url)
        fetched = await self._fetchable(file_url)
        with self._state:
            video.file_url = file_url
            if not fetched:
                video.fails_with = video.fails_with or "The video file could not be fetched from file_url."
            video.uploading = "in_progress" if video.upload_polls_left > 0 else "complete"
            self._settle_upload(video)
        return {"success": True}

    @staticmethod
    def _settle_upload(video: Video) -> None:
        if video.uploading == "complete" and video.fails_with:
            video.uploading = "error"
            video.errors = [{"code": 1363040, "message": video.fails_with}]

    # --- any node -------------------------------------------------------------------------------------------

    async def node(self, request: Request, params: dict[str, str]) -> Any:
        node_id = request.path_params["node"]
        fields = params.get("fields")
        with self._state:
            obj: Any = (self.containers.get(node_id) or self.media.get(node_id) or self.posts.get(node_id)
                        or self.videos.get(node_id) or self.photos.get(node_id))
        if obj is None:
            page = self.pages.get(node_id)
            if page is None:
                raise GraphRefusal(100, f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot "
                                        "be loaded due to missing permissions, or does not support this operation.", 33)
            self._authenticate(request, params, page.id)
            return _pick({"id": page.id, "name": page.name}, fields or "name")
        owner = obj.page_id if hasattr(obj, "page_id") else self._ig_user(obj.ig_user_id).id
        self._authenticate(request, params, owner)
        with self._state:
            if isinstance(obj, Container):
                if obj.status_code == "IN_PROGRESS":
                    obj.polls_left -= 1
                    if obj.polls_left <= 0:
                        obj.status_code, obj.status = obj.outcome
                return _pick({"id": obj.id, "status_code": obj.status_code, "status": obj.status},
                             fields or "id")
            if isinstance(obj, Video):
                if obj.uploading == "in_progress":
                    obj.upload_polls_left -= 1
                    if obj.upload_polls_left <= 0:
                        obj.uploading = "complete"
                        self._settle_upload(obj)
                elif obj.processing == "in_progress":
                    obj.processing_polls_left -= 1
                    if obj.processing_polls_left <= 0:
                        obj.processing = obj.publishing = "complete"
                return _pick(obj.node(), fields or "id")
            if isinstance(obj, Photo):
                return _pick({"id": obj.id, "link": obj.url}, fields or "id")
            return _pick(obj.node(), fields or "id")

    async def file(self, request: Request) -> Response:
        found = self.files.get(request.path_params["name"])
        if found is None:
            return Response("not found", status_code=404)
        return Response(found[0], media_type=found[1])

    # --- OAuth ------------------------------------------------------------------------------------------

    async def dialog(self, request: Request, params: dict[str, str]) -> Any:
        try:
            location = self.oauth.authorize_params(params)
        except OAuthFailure as failure:
            code = 191 if failure.error == "redirect_uri_mismatch" else 100
            return graph_error(code, f"{failure.error}: {failure.description}")
        return RedirectResponse(location, status_code=302)

    async def access_token(self, request: Request, params: dict[str, str]) -> Any:
        try:
            grant_type = check_token_form(params, TOKEN_FORMS)
            if grant_type == "fb_exchange_token":
                if (params["client_id"], params["client_secret"]) != (self.oauth.client_id, self.oauth.client_secret):
                    raise OAuthFailure("invalid_client", "Error validating client secret.")
                current = params["fb_exchange_token"]
                verdict = self.oauth.check_bearer(current)
                if verdict != "ok":
                    raise GraphRefusal(190, f"Error validating access token: the token is {verdict}.",
                                       463 if verdict == "expired" else None)
                issued = self.oauth.grant(subject=self.oauth.subject_of(current))
                issued.expires_at = time.time() + LONG_LIVED_TTL_S
                return {"access_token": issued.access_token, "token_type": "bearer", "expires_in": LONG_LIVED_TTL_S}
            issued = self.oauth.exchange_code(
                client_id=params["client_id"], client_secret=params["client_secret"], code=params["code"],
                redirect_uri=params["redirect_uri"], code_verifier=params.get("code_verifier"),
            )
        except OAuthFailure as failure:
            raise GraphRefusal(100, f"{failure.error}: {failure.description}", 36008) from None
        return {"access_token": issued.access_token, "token_type": "bearer",
                "expires_in": max(0, int(issued.expires_at - time.time()))}

    async def accounts(self, request: Request, params: dict[str, str]) -> Any:
        subject = self._authenticate(request, params, None)
        if subject.startswith("page:"):
            raise GraphRefusal(100, "(#100) Tried accessing nonexisting field (accounts) on node type (Page)")
        data = []
        for page in self.pages.values():
            entry: dict[str, Any] = {"id": page.id, "name": page.name, "access_token": self.page_token(page.id),
                                     "category": "Digital creator", "tasks": ["CREATE_CONTENT", "MANAGE"]}
            if page.ig_user_id:
                entry["instagram_business_account"] = {"id": page.ig_user_id, "username": page.ig_username}
            data.append(entry)
        return {"data": data}

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("oauth_dialog", "GET", f"{V}/dialog/oauth", self._graph(self.dialog)),
            ("oauth_token", "GET", f"{V}/oauth/access_token", self._graph(self.access_token)),
            ("oauth_token", "POST", f"{V}/oauth/access_token", self._graph(self.access_token)),
            ("accounts", "GET", f"{V}/me/accounts", self._graph(self.accounts)),
            ("media", "POST", f"{V}/{{node}}/media", self._graph(self.create_container)),
            ("media_list", "GET", f"{V}/{{node}}/media", self._graph(self.media_list)),
            ("publishing_limit", "GET", f"{V}/{{node}}/content_publishing_limit", self._graph(self.publishing_limit)),
            ("media_publish", "POST", f"{V}/{{node}}/media_publish", self._graph(self.media_publish)),
            ("photos", "POST", f"{V}/{{node}}/photos", self._graph(self.upload_photo)),
            ("feed", "POST", f"{V}/{{node}}/feed", self._graph(self.create_post)),
            ("feed_list", "GET", f"{V}/{{node}}/feed", self._graph(self.feed_list)),
            ("video_reels", "POST", f"{V}/{{node}}/video_reels", self._graph(self.video_reels)),
            ("video_upload", "POST", "/video-upload/v21.0/{video}", self._graph(self.video_upload)),
            ("node", "GET", f"{V}/{{node}}", self._graph(self.node)),
            ("files", "GET", "/files/{name}", self.file),
        ]
