"""A job as JSON: the one shape of a job outside Python, for the HTTP API and the CLI's ``--json``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.jobs.lifecycle import aware
from core.models import Job


def _iso(moment: datetime | None) -> str | None:
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
        "createdAt": _iso(job.created_at),
        "startedAt": _iso(job.started_at),
        "finishedAt": _iso(job.finished_at),
    }
