"""The full route table of the embedded API, which ``server.py`` hands to ``st.App(routes=...)``.

Each concern's module keeps its own routes; this one only lists the modules, in the order of the
README's route table (Starlette tries routes in list order).
"""

from __future__ import annotations

from starlette.routing import Route

from api import files, health, jobs, loras, metrics, models, oauth, pipelines, templates


def api_routes() -> list[Route]:
    return [
        *health.routes(),
        *jobs.routes(),
        *templates.routes(),
        *files.routes(),
        *loras.routes(),
        *models.routes(),
        *oauth.routes(),
        *metrics.routes(),
        *pipelines.routes(),
    ]
