"""The ``notify`` job: POST one pipeline notification to its URL, signed; retried with backoff by the
job lifecycle (5xx, 429, timeouts) until it is delivered or its attempts run out."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import col

from core.automation.pipelines import NotifyPayload
from core.config import get_settings
from core.db import get_or_raise, session_scope
from core.errors import PermanentJobError, TransientError
from core.infra.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from core.jobs.lifecycle import JobContext
from core.models import PipelineNotification, utcnow


def _record(notification_id: int, **values: Any) -> None:
    with session_scope() as session:
        session.execute(update(PipelineNotification).where(col(PipelineNotification.id) == notification_id)
                        .values(**values))


def deliver(ctx: JobContext[NotifyPayload]) -> dict[str, Any]:
    payload = ctx.payload
    note = get_or_raise(PipelineNotification, payload.notification_id, f"notification {payload.notification_id}")
    if note.status == "delivered":
        return {"delivered": True, "already": True}
    settings = get_settings()
    body = json.dumps({**note.body, "sentAt": utcnow().isoformat()}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Studio-Event": note.event,
               "X-Studio-Delivery": f"{note.pipeline_id}-{note.sequence}"}
    secret = settings.webhook_secret.get_secret_value()
    if secret:
        stamp, signature = sign(secret, body)
        headers.update({TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature})
    _record(note.id or 0, attempts=PipelineNotification.attempts + 1)
    try:
        response = httpx.post(note.url, content=body, headers=headers, timeout=settings.notify_timeout_s)
    except httpx.HTTPError as error:
        _record(note.id or 0, last_error=f"{type(error).__name__}: {error}"[:1000])
        raise TransientError(f"notification to {note.url} failed: {type(error).__name__}") from None
    if response.status_code >= 300:
        reason = f"HTTP {response.status_code}: {response.text[:200]}"
        _record(note.id or 0, last_error=reason)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"notification to {note.url} got {reason}")
        _record(note.id or 0, status="failed")
        raise PermanentJobError(f"notification to {note.url} was refused: {reason}")
    _record(note.id or 0, status="delivered", delivered_at=utcnow(), last_error=None)
    ctx.log(f"delivered {note.event} #{note.sequence} to {note.url}")
    return {"delivered": True, "status": response.status_code}
