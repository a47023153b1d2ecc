"""A job as JSON: the one shape of a job outside Python, for the HTTP API and the CLI's ``--json``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.jobs.lifecycle import aware
from core.models import Job


def iso_time(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (SQLite hands times back naive)."""
    moment = aware(moment)
    return moment.isoformat() if moment else None


def job_to_dict(job: Job) -> dict[str, Any]:
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
        "createdAt": iso_time(job.created_at),
        "startedAt": iso_time(job.started_at),
        "finishedAt": iso_time(job.finished_at),
    }
