"""The lean per-job path (issue 25): what it skips must not change what it guarantees.

Finish listeners get only the jobs they name, with the status the fenced finish wrote (no read-back);
a finish that lost its lease calls none; the message index, written behind, is read after a flush.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.jobs import queue
from core.models import Job, JobStatus


@pytest.fixture
def heard(monkeypatch) -> dict[str, list[tuple[str, str]]]:
    """Three listeners (every job, noop jobs, pipeline jobs) recording what they were told."""
    monkeypatch.setattr(jobs, "_finish_listeners", [])
    calls: dict[str, list[tuple[str, str]]] = {"all": [], "noop": [], "pipeline": []}
    jobs.on_job_finished(lambda job_id, status: calls["all"].append((job_id, status)))
    jobs.on_job_finished(lambda job_id, status: calls["noop"].append((job_id, status)), kinds=["noop"])
    jobs.on_job_finished(lambda job_id, status: calls["pipeline"].append((job_id, status)), pipeline_jobs_only=True)
    return calls


def test_finish_listeners_get_only_the_jobs_they_name_with_the_status_written(studio, heard):
    plain = jobs.create_job("noop")
    jobs.execute_job(plain.id, lambda ctx: {"ok": True})
    in_pipeline = jobs.create_job("noop", pipeline_id="p" * 32)
    jobs.execute_job(in_pipeline.id, lambda ctx: 1 / 0)  # a permanent failure
    slept = jobs.create_job("sleep", {"seconds": 0, "steps": 1})
    jobs.execute_job(slept.id, lambda ctx: {})

    assert heard["all"] == [(plain.id, "succeeded"), (in_pipeline.id, "failed"), (slept.id, "succeeded")]
    assert heard["noop"] == [(plain.id, "succeeded"), (in_pipeline.id, "failed")]
    assert heard["pipeline"] == [(in_pipeline.id, "failed")]
    assert jobs.get_job(in_pipeline.id).status == JobStatus.FAILED


def test_a_retried_or_taken_over_attempt_calls_no_listener(studio, heard):
    flaky = jobs.create_job("sleep", {"seconds": 0, "steps": 1})

    def transient(ctx):
        raise ConnectionError("the network blinked")

    jobs.execute_job(flaky.id, transient)  # queued again for a later attempt: not finished
    assert jobs.get_job(flaky.id).status == JobStatus.QUEUED

    taken = jobs.create_job("noop")

    def taken_over(ctx):  # another attempt claims the job meanwhile: this one's writes are refused
        with session_scope() as session:
            session.execute(update(Job).where(Job.id == taken.id).values(attempts=Job.attempts + 1))
        return {"stale": True}

    jobs.execute_job(taken.id, taken_over)
    assert jobs.get_job(taken.id).result is None  # the fence held
    assert heard["all"] == []


def test_a_new_jobs_message_index_is_visible_to_the_reconciler_at_once(studio, monkeypatch):
    from core.config import reload_settings

    monkeypatch.setenv("STUDIO_RECONCILE_GRACE_S", "0")  # the reconciler looks at the job at once
    reload_settings()
    job = jobs.create_job("noop")
    assert queue.messages_present([job.id]) == {job.id: True}  # flushed before it is read
    report = jobs.reconcile()
    assert job.id not in report.requeued
