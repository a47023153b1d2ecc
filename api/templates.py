"""``GET /api/templates``: the generation templates n8n can start jobs from."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.framework import api
from core.generation.templates import load_templates


@api()
async def get_templates(request: Request) -> Response:
    """The generation templates by name, and the files that were refused (with why)."""
    catalogue = await run_in_threadpool(load_templates)
    return JSONResponse({
        "templates": [template.model_dump() for template in catalogue.templates.values()],
        "errors": catalogue.errors,
    })


def routes() -> list[Route]:
    return [Route("/api/templates", get_templates, methods=["GET"])]
