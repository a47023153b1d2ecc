"""The pipeline routes n8n calls: start (lora, content), read, list, cancel, retry.

On top of the API token (and the rate limit) every route gets from ``api.framework``, starting a
pipeline may carry an HMAC-SHA256 signature of its body (``core.infra.signing``): checked whenever it is
sent, required when ``STUDIO_WEBHOOK_REQUIRE_SIGNATURE`` is on, refused outside the time window
or when replayed. An ``Idempotency-Key`` header (n8n can send its execution id) makes a repeated
start return the first pipeline.
"""

from __future__ import annotations

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import (
    ApiError,
    Endpoint,
    api,
    character_id_of,
    for_character,
    hex_id,
    parse_json_object,
    query_int,
    read_body,
)
from core.automation import pipelines
from core.config import get_settings
from core.infra.redis import get_redis, redis_key
from core.infra.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, verify
from core.models import Pipeline
from core.pagination import Page

PIPELINE_KINDS = ("lora", "content")  # what n8n may start; the demo starts from the Home page and CLI
LISTED_KINDS = (*PIPELINE_KINDS, "demo")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _check_signature(request: Request, body: bytes) -> str | None:
    """The verified signature (None for an unsigned request where signing is optional)."""
    settings = get_settings()
    secret = settings.webhook_secret.get_secret_value()
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature and not settings.webhook_require_signature:
        return None
    if not secret:
        raise ApiError(401, "signed requests need STUDIO_WEBHOOK_SECRET on the studio")
    try:
        return verify(secret, body, timestamp=request.headers.get(TIMESTAMP_HEADER), signature=signature,
                      window_s=settings.webhook_signature_window_s)
    except SignatureError as error:
        raise ApiError(401, f"bad signature: {error}") from None


def _refuse_replay(signature: str, window_s: int) -> None:
    """Each signature is accepted once while its timestamp is valid; without Redis we cannot tell, so refuse."""
    key = redis_key("webhook-signature", signature.removeprefix("sha256="))
    try:
        first = get_redis().set(key, "1", nx=True, ex=2 * window_s)
    except (redis.RedisError, OSError):
        raise ApiError(503, "cannot check for replays right now (Redis unreachable); try again") from None
    if not first:
        raise ApiError(401, "bad signature: this signed request was already received (replay)")


def _pipeline_id(request: Request) -> str:
    return hex_id(request, "pipeline_id", what="pipeline")


def _start(kind: str) -> Endpoint:
    @api()
    async def start(request: Request) -> Response:
        body = await read_body(request)
        signature = _check_signature(request, body)
        data = parse_json_object(body)
        key = request.headers.get("idempotency-key")
        # A resent request with its Idempotency-Key (n8n retrying after a lost answer) gets the first
        # pipeline back; any other second arrival of a signature is a replay.
        if signature is not None and await run_in_threadpool(pipelines.find_by_key, key) is None:
            _refuse_replay(signature, get_settings().webhook_signature_window_s)
        # The character: ``character`` in the body or the query (id or slug), else the only one (400 when ambiguous).
        character = data.pop("character", request.query_params.get("character"))
        character_id = await run_in_threadpool(character_id_of, character)
        pipeline, created = await run_in_threadpool(
            lambda: pipelines.create_pipeline(kind, data, idempotency_key=key, character_id=character_id))
        view = await run_in_threadpool(pipelines.pipeline_view, pipeline)
        return JSONResponse(view, status_code=201 if created else 200,
                            headers={"Location": f"/api/pipelines/{pipeline.id}"})

    start.__name__ = f"post_{kind}_pipeline"
    return start


@api()
async def get_pipeline(request: Request) -> Response:
    pipeline = await run_in_threadpool(pipelines.get_pipeline, _pipeline_id(request))
    return JSONResponse(await run_in_threadpool(pipelines.pipeline_view, pipeline))


def _choices(request: Request, name: str, allowed: tuple[str, ...]) -> list[str] | None:
    values = [v for raw in request.query_params.getlist(name) for v in raw.split(",") if v]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ApiError(422, f"{name}: unknown value(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return values or None


@api()
async def list_pipelines(request: Request) -> Response:
    page, page_size = query_int(request, "page", 1), query_int(request, "pageSize", 20)
    statuses, kinds = _choices(request, "status", STATUSES), _choices(request, "kind", LISTED_KINDS)
    character = request.query_params.get("character")  # left out: every character's pipelines

    def listed() -> Page[Pipeline]:
        return pipelines.list_pipelines(statuses=statuses, kinds=kinds, page=page, page_size=page_size)

    found = await run_in_threadpool(listed if character is None else lambda: for_character(character, listed))
    items = [await run_in_threadpool(pipelines.pipeline_view, p) for p in found.items]
    return JSONResponse({"items": items, "total": found.total, "page": found.page, "pageSize": found.page_size})


@api()
async def post_cancel(request: Request) -> Response:
    pipeline = await run_in_threadpool(pipelines.cancel_pipeline, _pipeline_id(request))
    return JSONResponse(await run_in_threadpool(pipelines.pipeline_view, pipeline))


@api()
async def post_retry(request: Request) -> Response:
    pipeline = await run_in_threadpool(pipelines.retry_pipeline, _pipeline_id(request))
    return JSONResponse(await run_in_threadpool(pipelines.pipeline_view, pipeline))


def routes() -> list[Route]:
    return [
        *(Route(f"/api/pipelines/{kind}", _start(kind), methods=["POST"]) for kind in PIPELINE_KINDS),
        Route("/api/pipelines", list_pipelines, methods=["GET"]),
        Route("/api/pipelines/{pipeline_id}", get_pipeline, methods=["GET"]),
        Route("/api/pipelines/{pipeline_id}/cancel", post_cancel, methods=["POST"]),
        Route("/api/pipelines/{pipeline_id}/retry", post_retry, methods=["POST"]),
    ]
