"""The small HTTP API embedded in the Streamlit server (``st.App(routes=...)``), for n8n and scripts.

Streamlit's XSRF protection does not cover custom routes, so every route but the health
probe checks the API token itself (``Authorization: Bearer …`` or ``X-Studio-Token``), in
constant time. Handlers run blocking database and Redis calls in the thread pool.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from core.config import get_settings
from core.errors import Conflict, InvalidInput, NotFound
from core.infra import strict_json
from core.infra.auth import secrets_match
from core.infra.redis import get_redis, redis_key
from core.jobs import lifecycle as jobs
from core.jobs import logs as joblogs
from core.models import Job
from core.reports import health

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"error": message, "status": status}, status_code=status, headers={**extra, **(headers or {})})


def _client_key(request: Request) -> str:
    """Who is calling, for rate limits: the token presented (hashed) and the address."""
    token = hashlib.sha256((_presented_token(request) or "").encode()).hexdigest()[:12]
    return f"{token}:{request.client.host if request.client else '-'}"


def _check_rate(request: Request) -> None:
    """A fixed one-minute window per client, reads and writes counted apart, so polling every second
    never trips it while a runaway loop of starts does. Redis down: let the call through."""
    settings = get_settings()
    kind = "read" if request.method in ("GET", "HEAD") else "write"
    limit = settings.api_reads_per_minute if kind == "read" else settings.api_writes_per_minute
    now = time.time()
    window = int(now // 60)
    key = redis_key("ratelimit", kind, _client_key(request), str(window))
    try:
        client = get_redis()
        count = client.incr(key)
        if count == 1:
            client.expire(key, 90)
    except (redis.RedisError, OSError):
        return
    if count > limit:
        wait = max(1, int(60 - now % 60))
        raise ApiError(429, f"rate limit: at most {limit} {kind} requests a minute; retry in {wait} s",
                       headers={"Retry-After": str(wait)})


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-studio-token")


def _require_token(request: Request) -> None:
    expected = get_settings().api_token.get_secret_value()
    if not secrets_match(_presented_token(request), expected):
        raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <STUDIO_API_TOKEN>')")


async def read_json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over the limit before reading them whole."""
    return parse_json_object(await read_body(request))


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        return strict_json.parse_object(body)
    except InvalidInput as error:
        raise ApiError(400, str(error)) from None


async def read_body(request: Request) -> bytes:
    """The raw body (signatures are over these bytes), refusing bodies over the limit before reading them whole."""
    limit = get_settings().max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, f"request body over the limit of {limit} bytes")
    return bytes(body)


def api(*, authenticated: bool = True) -> Callable[[Endpoint], Endpoint]:
    """Wraps an endpoint with authentication and the mapping of domain errors to JSON responses."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def wrapped(request: Request) -> Response:
            try:
                if authenticated:
                    _require_token(request)
                    await run_in_threadpool(_check_rate, request)
                return await endpoint(request)
            except ApiError as error:
                return error_response(error.status, error.message, error.headers)
            except NotFound as error:
                return error_response(404, str(error))
            except InvalidInput as error:
                return error_response(422, str(error))
            except Conflict as error:
                return error_response(409, str(error))

        wrapped.__name__ = endpoint.__name__
        return wrapped

    return decorate


def job_to_dict(job: Job) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        moment = jobs.aware(moment)
        return moment.isoformat() if moment else None

    return {
        "id": job.id,
        "kind": job.kind,
        "queue": job.queue,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "progressMessage": job.progress_message,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "payload": job.payload,
        "result": job.result,
        "error": job.error,
        "errorStage": job.error_stage,
        "cancelRequested": job.cancel_requested,
        "parentId": job.parent_id,
        "pipelineId": job.pipeline_id,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
    }


@api(authenticated=False)
async def get_health(request: Request) -> Response:
    checks = await run_in_threadpool(health.check_all, include_workers=True)
    required_ok = all(c.ok for c in checks if c.name != "workers")
    detailed = secrets_match(_presented_token(request), get_settings().api_token.get_secret_value())
    body = {
        "status": "ok" if required_ok else "degraded",
        "checks": {
            c.name: {"ok": c.ok, "latencyMs": c.latency_ms, **({"detail": c.detail} if detailed else {})}
            for c in checks
        },
    }
    return JSONResponse(body, status_code=200 if required_ok else 503)


@api()
async def post_job(request: Request) -> Response:
    body = await read_json_body(request)
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ApiError(422, "field 'kind' is required and must be a string")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise ApiError(422, "field 'payload' must be an object")
    unknown = sorted(set(body) - {"kind", "payload"})
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    job = await run_in_threadpool(jobs.create_job, kind, payload)
    return JSONResponse(job_to_dict(job), status_code=201, headers={"Location": f"/api/jobs/{job.id}"})


def _job_id(request: Request) -> str:
    job_id = request.path_params["job_id"]
    if not (len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
        raise ApiError(404, f"job {job_id!r} does not exist")
    return job_id


@api()
async def get_job(request: Request) -> Response:
    job = await run_in_threadpool(jobs.get_job, _job_id(request))
    return JSONResponse(job_to_dict(job))


@api()
async def get_job_logs(request: Request) -> Response:
    job_id = _job_id(request)
    await run_in_threadpool(jobs.get_job, job_id)  # 404 for unknown jobs
    try:
        after = int(request.query_params.get("after", "0"))
        limit = int(request.query_params.get("limit", "500"))
    except ValueError:
        raise ApiError(400, "'after' and 'limit' must be integers") from None
    page = await run_in_threadpool(joblogs.read_logs, job_id, after=after, limit=limit)
    lines = [
        {"id": e.id, "level": e.level, "message": e.message, "at": jobs.aware(e.created_at).isoformat()}
        for e in page.entries
    ]
    return JSONResponse({"lines": lines, "cursor": page.cursor})


@api()
async def post_cancel(request: Request) -> Response:
    job = await run_in_threadpool(jobs.cancel_job, _job_id(request))
    return JSONResponse(job_to_dict(job))


@api()
async def post_retry(request: Request) -> Response:
    job = await run_in_threadpool(jobs.retry_job, _job_id(request))
    return JSONResponse(job_to_dict(job))


@api()
async def get_templates(request: Request) -> Response:
    """The generation templates by name, and the files that were refused (with why)."""
    from core.generation.templates import load_templates

    catalogue = await run_in_threadpool(load_templates)
    return JSONResponse({
        "templates": [template.model_dump() for template in catalogue.templates.values()],
        "errors": catalogue.errors,
    })


@api(authenticated=False)
async def get_file(request: Request) -> Response:
    """Serves local-store downloads behind signed, expiring links (the S3 backend presigns itself)."""
    from core.infra.storage import LocalObjectStore, ObjectNotFound, get_object_store, verify_local_signature

    store = get_object_store()
    key = request.path_params["key"]
    if not isinstance(store, LocalObjectStore):
        raise ApiError(404, "file links are served by the object store")
    try:
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        raise ApiError(403, "invalid or expired link") from None
    signature = request.query_params.get("signature", "")
    signing_key = get_settings().signing_key.get_secret_value()
    if not verify_local_signature(key, expires, signature, signing_key=signing_key):
        raise ApiError(403, "invalid or expired link")
    try:
        info = await run_in_threadpool(store.stat, key)
    except ObjectNotFound:
        raise ApiError(404, "file not found") from None
    return StreamingResponse(
        store.iter_chunks(key), media_type=info.content_type or "application/octet-stream",
        headers={"Content-Length": str(info.size)},
    )


async def get_oauth_callback(request: Request) -> Response:
    """Where a provider sends the browser back after consent. Not token-protected: the one-time,
    hashed, expiring ``state`` is what proves the request came from a connection we started."""
    from urllib.parse import urlencode

    from core.errors import StudioError
    from core.publishing.social_accounts import connect_from_callback

    accounts_page = f"{get_settings().public_url.rstrip('/')}/accounts"
    params = request.query_params
    if params.get("error"):
        from core.publishing.oauth import abandon_authorization

        reason = params.get("error_description") or params.get("error")
        await run_in_threadpool(abandon_authorization, request.path_params["provider"], params.get("state", ""))
        return RedirectResponse(f"{accounts_page}?{urlencode({'oauth_error': f'consent refused: {reason}'[:300]})}",
                                status_code=303)
    try:
        connected = await run_in_threadpool(connect_from_callback, request.path_params["provider"],
                                            code=params.get("code", ""), state=params.get("state", ""))
    except StudioError as error:  # InvalidInput, OAuthError, CipherError…: messages safe to show
        return RedirectResponse(f"{accounts_page}?{urlencode({'oauth_error': str(error)[:300]})}", status_code=303)
    names = ", ".join(account.label for account in connected)
    return RedirectResponse(f"{accounts_page}?{urlencode({'connected': names[:300]})}", status_code=303)


# --- metrics (issue 10) ---------------------------------------------------------------------------------


@api(authenticated=False)  # checked below: the API token or the read-only STUDIO_METRICS_TOKEN
async def get_metrics(request: Request) -> Response:
    """Prometheus text exposition of the job, queue, worker, pipeline and post metrics (core/reports/metrics.py)."""
    from core.reports import metrics

    settings = get_settings()
    presented = _presented_token(request)
    metrics_token = settings.metrics_token.get_secret_value()
    if not (secrets_match(presented, settings.api_token.get_secret_value())
            or (metrics_token and secrets_match(presented, metrics_token))):
        raise ApiError(401, "missing or wrong token (send 'Authorization: Bearer <STUDIO_API_TOKEN or "
                            "STUDIO_METRICS_TOKEN>')")
    await run_in_threadpool(_check_rate, request)
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type=metrics.CONTENT_TYPE)


def api_routes() -> list[Route]:
    from api.pipelines import pipeline_routes

    return [
        Route("/api/health", get_health, methods=["GET"]),
        Route("/api/jobs", post_job, methods=["POST"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}/logs", get_job_logs, methods=["GET"]),
        Route("/api/jobs/{job_id}/cancel", post_cancel, methods=["POST"]),
        Route("/api/jobs/{job_id}/retry", post_retry, methods=["POST"]),
        Route("/api/templates", get_templates, methods=["GET"]),
        Route("/api/files/{key:path}", get_file, methods=["GET"]),
        Route("/api/oauth/callback/{provider}", get_oauth_callback, methods=["GET"]),
        Route("/api/metrics", get_metrics, methods=["GET"]),
        *pipeline_routes(),
    ]
