"""Handlers of the basic job kinds. A handler gets a JobContext and returns a result dict."""

from __future__ import annotations

import time
from typing import Any

from core.errors import PermanentJobError, TransientError
from core.job_kinds import NoopPayload, SleepPayload
from core.jobs import JobContext


def noop(ctx: JobContext) -> dict[str, Any]:
    payload: NoopPayload = ctx.payload  # type: ignore[assignment]
    return {"note": payload.note}


def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleeps in steps, checkpointing each one, so a redelivered attempt resumes where it stopped."""
    payload: SleepPayload = ctx.payload  # type: ignore[assignment]
    if ctx.attempt <= payload.transient_failures:
        raise TransientError(f"simulated transient failure on attempt {ctx.attempt}")
    start = int((ctx.checkpoint or {}).get("step", 0))
    ctx.stage("sleeping")
    if start:
        ctx.log(f"resuming at step {start}/{payload.steps}")
    step_s = payload.seconds / payload.steps
    for step in range(start, payload.steps):
        if payload.fail_at_step == step:
            raise PermanentJobError(f"simulated failure at step {step}")
        time.sleep(step_s)
        ctx.save_checkpoint({"step": step + 1})
        ctx.progress((step + 1) / payload.steps, f"step {step + 1}/{payload.steps}")
    ctx.log(f"slept {payload.seconds:g} s in {payload.steps} steps")
    return {"steps": payload.steps, "resumed_from": start, "attempt": ctx.attempt}
