"""The server's outer guard, an ASGI middleware around everything ``st.App`` serves (the UI, Streamlit's own
``/_stcore`` routes and ``/api``), handed to ``st.App(middleware=...)`` by server.py:

- security headers on every response (no framing, no MIME sniffing, no referrer; ``no-store`` on /api);
- Streamlit's upload endpoint only for sessions that are logged in, within a per-session and a total budget of
  bytes held in memory (Streamlit keeps uploads in memory until the widget or the session lets go);
- ``/_stcore/metrics`` only for a holder of the API or metrics token (it shows when the owner is online);
- ``/media`` files (what pages drew) only for the logged-in session that drew them, from its own address;
- every ``/api`` and ``/_stcore`` request without the API token, and every websocket opened, rate limited per
  client address (which only a
  trusted proxy may name: server.py gives uvicorn's forwarded-IPs list STUDIO_TRUSTED_PROXIES);
- websocket messages that clear the global caches dropped (any visitor could send one).

What a session is (logged in, bytes held) is asked through the callables server.py passes in, so this module
knows nothing of the UI's session state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit.proto.BackMsg_pb2 import BackMsg

from api.framework import presented_token, presents_api_token
from core.config import get_settings
from core.infra.auth import secrets_match
from core.infra.rate_limit import seconds_to_wait

_UPLOAD = re.compile(r"^/_stcore/upload_file/([^/]+)/([^/]+)$")
_METRICS = "/_stcore/metrics"
_MEDIA = "/media/"
# Open routes that cost the server work per request. Not counted: static files (the page's scripts), /media/
# (a page of 48 thumbnails is 48 requests; their ids are unguessable and each lives only with its session).
_LIMITED_PREFIXES = ("/api/", "/_stcore/")
_DROPPED_BACKMSGS = frozenset({"clear_cache", "set_run_on_save"})
_MB = 1024 * 1024

SECURITY_HEADERS = {
    "x-frame-options": "SAMEORIGIN",  # components (the calendar) are same-origin iframes
    "content-security-policy": "frame-ancestors 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True)
class SessionHooks:
    """What the guard asks Streamlit's runtime (ui/server_hooks.py)."""

    logged_in: Callable[[str, str | None], bool]  # (session id, client host) -> logged in, from this client
    held_bytes: Callable[[str], tuple[int, int]]  # session id -> (its uploaded bytes, every session's)
    media_visible: Callable[[str, str | None], bool]  # (media file id, client host) -> a logged-in session's file


class StudioGuard:
    def __init__(self, app: ASGIApp, hooks: SessionHooks) -> None:
        self.app = app
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = await self._refusal(request)
        if refusal is not None:
            status, message, headers = refusal
            await _send_error(send, status, message, headers)
            return
        await self.app(scope, receive, _with_headers(send, api=request.url.path.startswith("/api/")))

    async def _refusal(self, request: Request) -> tuple[int, str, dict[str, str]] | None:
        path = request.url.path
        if (upload := _UPLOAD.match(path)) and request.method == "PUT":
            # The logged-in session is the permission (a dataset upload is one request per file: no rate limit).
            return self._upload_refusal(request, upload.group(1))
        tokened = path.startswith(("/api/", _METRICS)) and _presents_a_token(request)
        if path.startswith(_LIMITED_PREFIXES) and not tokened:
            if wait := await run_in_threadpool(_over_public_limit, request):
                limit = get_settings().public_requests_per_minute
                return 429, f"rate limit: at most {limit} requests a minute; retry in {wait} s", {
                    "Retry-After": str(wait)}
        if path == _METRICS and not tokened:
            return 404, "not found", {}
        if path.startswith(_MEDIA):
            file_id = path.removeprefix(_MEDIA).split(".", 1)[0]
            if not self.hooks.media_visible(file_id, request.client.host if request.client else None):
                return 404, "not found", {}
        return None

    def _upload_refusal(self, request: Request, session_id: str) -> tuple[int, str, dict[str, str]] | None:
        client = request.client.host if request.client else None
        if not self.hooks.logged_in(session_id, client):
            return 403, "log in before uploading", {}
        declared = request.headers.get("content-length", "")
        if not (declared.isascii() and declared.isdigit()):
            return 411, "an upload needs a Content-Length", {}
        settings = get_settings()
        own, total = self.hooks.held_bytes(session_id)
        if own + int(declared) > settings.upload_session_budget_mb * _MB:
            return 413, f"this session holds {settings.upload_session_budget_mb} MB of uploads already", {}
        if total + int(declared) > settings.upload_total_budget_mb * _MB:
            return 503, "the server holds too many uploads right now; try again later", {"Retry-After": "60"}
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await run_in_threadpool(_over_public_limit, HTTPConnection(scope)):
            await send({"type": "websocket.close", "code": 1008})  # before accepting: the client sees a 403
            return

        async def filtered() -> Message:
            while True:
                message = await receive()
                if not _dropped(message):
                    return message

        await self.app(scope, filtered, send)


def _presents_a_token(request: Request) -> bool:
    metrics_token = get_settings().metrics_token.get_secret_value()
    return presents_api_token(request) or (
        bool(metrics_token) and secrets_match(presented_token(request), metrics_token))


def _dropped(message: Message) -> bool:
    """A BackMsg that clears every user's caches (or turns on rerun-on-save): no visitor may send one."""
    data = message.get("bytes") if message["type"] == "websocket.receive" else None
    if not data:
        return False
    back = BackMsg()
    try:
        back.ParseFromString(data)
    except Exception:  # noqa: BLE001 (not a BackMsg: Streamlit closes the connection itself)
        return False
    return back.WhichOneof("type") in _DROPPED_BACKMSGS


def _over_public_limit(request: HTTPConnection) -> int:
    """Seconds to wait when this client address has used up its minute, else 0 (also when Redis is down).
    Blocking (Redis): call it through ``run_in_threadpool``."""
    client = request.client.host if request.client else "-"
    return seconds_to_wait("public", client, get_settings().public_requests_per_minute)


def _with_headers(send: Send, *, api: bool) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            extra = {**SECURITY_HEADERS, **({"cache-control": "no-store"} if api else {})}
            headers += [(name.encode(), value.encode()) for name, value in extra.items()
                        if name.encode() not in present]
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _send_error(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    sending = _with_headers(send, api=True)  # a refusal is never worth caching
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           *((name.lower().encode(), value.encode()) for name, value in headers.items())]
    await sending({"type": "http.response.start", "status": status, "headers": raw})
    await sending({"type": "http.response.body", "body": body})
