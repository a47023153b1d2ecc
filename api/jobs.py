"""The job routes: start any registered job kind, read it, page through its logs, cancel, retry."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import ApiError, api, for_character, hex_id, query_int, read_json_body
from core.jobs import lifecycle as jobs
from core.jobs import logs as joblogs
from core.jobs.serialize import iso_time, job_to_dict


def _job_id(request: Request) -> str:
    return hex_id(request, "job_id", what="job")


@api()
async def post_job(request: Request) -> Response:
    body = await read_json_body(request)
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ApiError(422, "field 'kind' is required and must be a string")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise ApiError(422, "field 'payload' must be an object")
    unknown = sorted(set(body) - {"kind", "payload", "character"})
    if unknown:
        raise ApiError(422, f"unknown field(s): {', '.join(unknown)}")
    # The job belongs to the character named (id or slug), else to what its payload names (a dataset's), else
    # to the only character; several and none named: a 400.
    job = await run_in_threadpool(for_character, body.get("character"), lambda: jobs.create_job(kind, payload))
    return JSONResponse(job_to_dict(job), status_code=201, headers={"Location": f"/api/jobs/{job.id}"})


@api()
async def get_job(request: Request) -> Response:
    job = await run_in_threadpool(jobs.get_job, _job_id(request))
    return JSONResponse(job_to_dict(job))


@api()
async def get_job_logs(request: Request) -> Response:
    job_id = _job_id(request)
    await run_in_threadpool(jobs.get_job, job_id)  # 404 for unknown jobs
    after, limit = query_int(request, "after", 0), query_int(request, "limit", 500)
    page = await run_in_threadpool(joblogs.read_logs, job_id, after=after, limit=limit)
    lines = [
        {"id": e.id, "level": e.level, "message": e.message, "at": iso_time(e.created_at)}
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


def routes() -> list[Route]:
    return [
        Route("/api/jobs", post_job, methods=["POST"]),
        Route("/api/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{job_id}/logs", get_job_logs, methods=["GET"]),
        Route("/api/jobs/{job_id}/cancel", post_cancel, methods=["POST"]),
        Route("/api/jobs/{job_id}/retry", post_retry, methods=["POST"]),
    ]
