"""The small HTTP framework under every route of the embedded API (``st.App(routes=...)``): the endpoint
wrapper, JSON errors, body limits, the token check and the rate limit. It knows no route; the route
tables (``api.jobs``, ``api.pipelines``…) build on it, never the reverse.

Streamlit's XSRF protection does not cover custom routes, so every route but the health
probe checks the API token itself (``Authorization: Bearer …`` or ``X-Studio-Token``), in
constant time. Handlers run blocking database and Redis calls in the thread pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.characters.characters import CharacterChoiceError, resolve_character
from core.characters.scope import character_scope
from core.config import get_settings
from core.errors import Conflict, InvalidInput, NotFound
from core.fields import parse_int
from core.infra import strict_json
from core.infra.auth import secrets_match
from core.infra.rate_limit import seconds_to_wait

Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")

_HEX_ID_LENGTH = 32  # job and pipeline ids are uuid4().hex


# --- errors ----------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A refusal with its HTTP status; ``api()`` turns it into the JSON error body."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape every route answers with: ``{"error": …, "status": …}``."""
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"error": message, "status": status}, status_code=status, headers={**extra, **(headers or {})})


# --- the endpoint wrapper --------------------------------------------------------------------------------


def api(*, authenticated: bool = True) -> Callable[[Endpoint], Endpoint]:
    """Wraps an endpoint with authentication and the mapping of domain errors to JSON responses."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def wrapped(request: Request) -> Response:
            try:
                if authenticated:
                    _require_token(request)
                    await run_in_threadpool(check_rate, request)
                return await endpoint(request)
            except ApiError as error:
                return error_response(error.status, error.message, error.headers)
            except InvalidInput as error:  # before NotFound: a MissingReference (named in the body) is both
                return error_response(422, str(error))
            except NotFound as error:
                return error_response(404, str(error))
            except Conflict as error:
                return error_response(409, str(error))

        wrapped.__name__ = endpoint.__name__
        return wrapped

    return decorate


# --- tokens ----------------------------------------------------------------------------------------------


def presented_token(request: Request) -> str | None:
    """The token the caller sent: ``Authorization: Bearer …``, else ``X-Studio-Token``."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-studio-token")


def presents_api_token(request: Request) -> bool:
    """Whether the caller sent STUDIO_API_TOKEN (compared in constant time)."""
    return secrets_match(presented_token(request), get_settings().api_token.get_secret_value())


def _require_token(request: Request) -> None:
    if not presents_api_token(request):
        raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <STUDIO_API_TOKEN>')")


# --- rate limit ------------------------------------------------------------------------------------------


def _client_key(request: Request) -> str:
    """Who is calling, for rate limits: the token presented (hashed) and the address."""
    token = hashlib.sha256((presented_token(request) or "").encode()).hexdigest()[:12]
    return f"{token}:{request.client.host if request.client else '-'}"


def check_rate(request: Request) -> None:
    """A one-minute moving window per client, reads and writes counted apart, so polling every second
    never trips it while a runaway loop of starts does. Redis down: let the call through.
    Blocking (Redis): call it through ``run_in_threadpool``."""
    settings = get_settings()
    kind = "read" if request.method in ("GET", "HEAD") else "write"
    limit = settings.api_reads_per_minute if kind == "read" else settings.api_writes_per_minute
    if wait := seconds_to_wait(f"api-{kind}", _client_key(request), limit):
        raise ApiError(429, f"rate limit: at most {limit} {kind} requests a minute; retry in {wait} s",
                       headers={"Retry-After": str(wait)})


# --- bodies ----------------------------------------------------------------------------------------------


async def read_json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over the limit before reading them whole."""
    return parse_json_object(await read_body(request))


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (strict: no duplicate keys, no NaN…), or a 400."""
    try:
        return strict_json.parse_object(body)
    except InvalidInput as error:
        raise ApiError(400, str(error)) from None


async def read_body(request: Request, *, limit: int | None = None) -> bytes:
    """The raw body (signatures are over these bytes), refusing bodies over the limit (the settings' unless a
    route allows a larger upload) before reading them whole."""
    limit = limit if limit is not None else get_settings().max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        length = parse_int(declared)
        if length is None:
            raise ApiError(400, "invalid Content-Length header")
        if length > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    return bytes(body)


# --- query parameters ------------------------------------------------------------------------------------


def query_int(request: Request, name: str, default: int) -> int:
    """An integer query parameter, or a 422 naming it. Any size is accepted: the core functions clamp
    pages and cursors to what the database can hold (``core.pagination``)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = parse_int(raw, signed=True)
    if value is None:
        raise ApiError(422, f"{name}: must be an integer")
    return value


# --- path parameters -------------------------------------------------------------------------------------


def hex_id(request: Request, parameter: str, *, what: str) -> str:
    """The path's id of a job or pipeline; anything that cannot be one is a 404 without asking the database."""
    value: str = request.path_params[parameter]
    if not (len(value) == _HEX_ID_LENGTH and all(c in "0123456789abcdef" for c in value)):
        raise ApiError(404, f"{what} {value!r} does not exist")
    return value


# --- the character a request works for ---------------------------------------------------------------------------


def character_id_of(ref: object) -> int:
    """The character a request names (``character``: an id or a slug). Left out: the studio's only active
    character (the default while there is none); a 400 when it names none or, left out, several exist.
    Blocking: call it inside ``run_in_threadpool``."""
    if (ref is not None and not isinstance(ref, str | int)) or isinstance(ref, bool):
        raise ApiError(400, "character: an id or a slug")
    try:
        return resolve_character(ref).id or 0
    except CharacterChoiceError as error:
        raise ApiError(400, f"character: {error}") from None


def for_character(ref: object, work: Callable[[], T]) -> T:
    """Run ``work`` for the character ``ref`` names (``character_id_of``): what it lists is that character's, what
    it makes belongs to it. Blocking: call it inside ``run_in_threadpool``."""
    with character_scope(character_id_of(ref)):
        return work()
