"""``GET /api/metrics``: the Prometheus text exposition of the job, queue, worker, pipeline and post
metrics (``core/reports/metrics.py``), for a scraper holding either token."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.framework import ApiError, api, check_rate, presented_token, presents_api_token
from core.config import get_settings
from core.infra.auth import secrets_match
from core.reports.metrics import CONTENT_TYPE, render


def _presents_metrics_token(request: Request) -> bool:
    metrics_token = get_settings().metrics_token.get_secret_value()
    return bool(metrics_token) and secrets_match(presented_token(request), metrics_token)


# Not api()'s token check: a scraper may hold only the read-only STUDIO_METRICS_TOKEN; checked below.
@api(authenticated=False)
async def get_metrics(request: Request) -> Response:
    if not (presents_api_token(request) or _presents_metrics_token(request)):
        raise ApiError(401, "missing or wrong token (send 'Authorization: Bearer <STUDIO_API_TOKEN or "
                            "STUDIO_METRICS_TOKEN>')")
    await run_in_threadpool(check_rate, request)
    body = await run_in_threadpool(render)
    return Response(body, media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    return [Route("/api/metrics", get_metrics, methods=["GET"])]
