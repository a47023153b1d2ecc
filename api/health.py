"""``GET /api/health``: the database, Redis, storage and workers, for load balancers and n8n.

Open to anyone (a probe has no token); the checks' details, which may name hosts, only for the API token.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import api, presents_api_token
from core.reports.health import check_all


@api(authenticated=False)
async def get_health(request: Request) -> Response:
    checks = await run_in_threadpool(check_all, include_workers=True)
    # No worker running is worth showing but is not an outage: the API still accepts jobs.
    required_ok = all(c.ok for c in checks if c.name != "workers")
    detailed = presents_api_token(request)
    body = {
        "status": "ok" if required_ok else "degraded",
        "checks": {
            c.name: {"ok": c.ok, "latencyMs": c.latency_ms, **({"detail": c.detail} if detailed else {})}
            for c in checks
        },
    }
    return JSONResponse(body, status_code=200 if required_ok else 503)


def routes() -> list[Route]:
    return [Route("/api/health", get_health, methods=["GET"])]
