"""What the Instagram and Facebook Page clients share: Graph API calls, its error format, status polling.

Graph API errors look like ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``
(https://developers.facebook.com/docs/graph-api/guides/error-handling). They are read by code, not by
HTTP status, because Meta sends most of them, rate limits included, as HTTP 400:

- 190 (and 102): the token expired or was revoked → :class:`TokenExpired`;
- 4, 17, 32, 613 and the 80001–80014 business-use-case limits, or HTTP 429 → :class:`GraphRateLimited`;
- 1, 2, or any error flagged ``is_transient`` → :class:`GraphTransient`; so are Instagram's -1 and -2
  (2207001 "server error", 2207003 download timeout, 2207032 "re-create media", 2207053 "unknown upload
  error": "try again", https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/error-codes/);
- 9 with subcode 2207042, Instagram's daily publishing cap (same page) → :class:`PublishDeferred`: the
  post waits an hour and tries again (it is not a failure);
- anything else (100 invalid parameter, 10/200 permission, 368 policy, 9004 media fetch failed…)
  → :class:`PlatformRejected` with Meta's own message.

The access token travels as the ``access_token`` form field on POSTs (Graph API convention) and in
the ``Authorization: OAuth`` header on GETs: httpx logs every request URL at INFO, and the workers
log at INFO, so a token in a query string would end up in the logs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.errors import TransientError
from core.models import utcnow
from workers.social.base import (
    MediaFile,
    PlatformClient,
    PlatformRejected,
    PublishDeferred,
    PublishRequest,
    TokenExpired,
)

T = TypeVar("T")

TOKEN_CODES = frozenset({102, 190})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TRANSIENT_CODES = frozenset({1, 2, -1, -2})
CAP_SUBCODES = frozenset({2207042})  # "reached the maximum number of posts" of the Content Publishing API
CAP_RETRY = timedelta(hours=1)  # the cap is a moving 24-hour window: look again in an hour


class GraphRateLimited(TransientError):
    """Meta's rate limit (codes 4/17/32/613/800xx, or HTTP 429 after the retries ran out)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # from X-Business-Use-Case-Usage, when Meta says


class GraphTransient(TransientError):
    """A temporary Graph API failure (codes 1 and 2, ``is_transient``) or an answer we could not read."""


class MediaNotReady(TransientError):
    """Meta was still processing the media when ``publish_status_timeout_s`` ran out; a retry resumes waiting."""


def graph_error(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a Graph API answer, or None when it has none."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return None


def _regain_access_s(response: httpx.Response) -> float | None:
    """Minutes until access comes back, as ``X-Business-Use-Case-Usage`` tells it, in seconds."""
    raw = response.headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0)
            for entries in usage.values() for entry in entries
        ]
    except (ValueError, AttributeError, TypeError):
        return None
    return max(minutes) * 60 if minutes and max(minutes) > 0 else None


def check_graph_response(platform: str, response: httpx.Response) -> None:
    """Raise the typed error a Graph API (or rupload) error answer stands for; return on success."""
    status = response.status_code
    if 200 <= status < 300:
        return
    error = graph_error(response) or {}
    code = error.get("code")
    subcode = error.get("error_subcode")
    message = str(error.get("message") or "").strip()
    if not error:
        # The video upload host answers {"debug_info": {"type", "message", "retriable"}}.
        debug = _json_or_empty(response).get("debug_info")
        if isinstance(debug, dict):
            message = str(debug.get("message") or debug.get("type") or "").strip()
            if debug.get("retriable"):
                raise GraphTransient(f"{platform}: upload failed for now: {message} (HTTP {status})")
    detail = message or f"HTTP {status} {response.reason_phrase}".strip()
    where = f"code {code}" + (f"/{subcode}" if subcode else "") if code is not None else f"HTTP {status}"
    if subcode in CAP_SUBCODES:
        raise PublishDeferred(platform, f"the account's daily publishing limit is reached ({where}): {detail}",
                              until=utcnow() + CAP_RETRY)
    if code in TOKEN_CODES:
        raise TokenExpired(f"{platform}: the access token is no longer valid ({where}): {detail}")
    if status == 429 or code in RATE_LIMIT_CODES:
        raise GraphRateLimited(f"{platform}: rate limited ({where}): {detail}",
                               retry_after_s=_regain_access_s(response))
    if code in TRANSIENT_CODES or error.get("is_transient") or status >= 500:
        raise GraphTransient(f"{platform}: temporary error ({where}): {detail}")
    raise PlatformRejected(platform, f"{detail} ({where})", status=status)


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def shown_url(url: str) -> str:
    """A media link as a dry run records it: without its query (presigned links carry signatures)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="…" if parts.query else "", fragment=""))


HASHTAG = re.compile(r"(?<![\w&])#\w+")
MENTION = re.compile(r"(?<![\w.])@[\w.]+")


class GraphClient(PlatformClient):
    """A :class:`PlatformClient` speaking the Graph API (``settings.graph_api_url``) with a Page token."""

    @property
    def api(self) -> str:
        return self.settings.graph_api_url.rstrip("/")

    def check(self, response: httpx.Response) -> None:
        check_graph_response(self.platform, response)

    # --- calls --------------------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.send("GET", f"{self.api}/{path}", params=params,
                             headers={"Authorization": f"OAuth {self.credentials.access_token}"})
        return self.body(response)

    def post(self, path: str, data: dict[str, Any], *, idempotent: bool = True) -> dict[str, Any]:
        response = self.send("POST", f"{self.api}/{path}", idempotent=idempotent,
                             data={**data, "access_token": self.credentials.access_token})
        return self.body(response)

    def body(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GraphTransient(f"{self.platform}: unreadable answer from {response.request.url.path}")
        return body

    def field(self, body: dict[str, Any], name: str, call: str) -> str:
        value = body.get(name)
        if not value:
            raise GraphTransient(f"{self.platform}: {call} answered without {name!r}: {str(body)[:200]}")
        return str(value)

    def best_effort(self, what: str, call: Callable[[], T]) -> T | None:
        """A read after the post is live (its permalink): a failure there must not fail the job."""
        try:
            return call()
        except (TransientError, PlatformRejected, httpx.HTTPError) as error:
            self.log(f"{self.platform}: could not read {what}: {error}")
            return None

    def poll(self, what: str, probe: Callable[[], T | None]) -> T:
        """Call ``probe`` every ``publish_status_poll_s`` until it returns something, or time runs out."""
        deadline = time.monotonic() + self.settings.publish_status_timeout_s
        while True:
            result = probe()
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                raise MediaNotReady(
                    f"{self.platform}: {what} still processing after {self.settings.publish_status_timeout_s:.0f} s")
            time.sleep(self.settings.publish_status_poll_s)

    # --- validation ---------------------------------------------------------------------------------------

    def single_media(self, request: PublishRequest, *, what: str) -> MediaFile:
        """The one image or video of a post; anything else is refused before any call."""
        if not request.media:
            raise PlatformRejected(self.platform, f"{what} needs one image or video; this post has none")
        if len(request.media) > 1:
            raise PlatformRejected(
                self.platform, f"{what} takes one image or video per post; this post has {len(request.media)} "
                "(posts with several files are not supported)")
        media = request.media[0]
        if media.kind not in ("image", "video"):
            raise PlatformRejected(self.platform, f"{what} cannot post a {media.kind!r} file")
        return media
