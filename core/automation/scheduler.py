"""The scheduler tick: the periodic sweep the worker supervisor runs every ``scheduler_interval_s``.

It sits above publishing and the pipelines (it advances both), so neither has to import the other
to be swept.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.automation import pipelines
from core.publishing import posts, production, social_accounts


@dataclass(frozen=True)
class SchedulerReport:
    claimed: list[str]
    failed_swept: int
    tokens_refreshed: int = 0


def scheduler_tick() -> SchedulerReport:
    """Refresh expiring tokens, advance content production and pipelines, publish due posts, and fail
    posts whose publish job died silently."""
    refreshed = social_accounts.refresh_expiring()
    production.sweep_production()
    pipelines.sweep_pipelines()
    return SchedulerReport(claimed=posts.publish_due_posts(), failed_swept=posts.sweep_publishing(),
                           tokens_refreshed=refreshed)
