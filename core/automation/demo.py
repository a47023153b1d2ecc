"""The one-command demo: the whole content pipeline on a fresh machine, through the real job lifecycle.

demo dataset (15 drawn images, here) → the ``demo`` pipeline (``core.automation.pipelines``): captions → a tiny
LoRA → 4 images with it → a 9:16 video with voice-over and subtitles → a draft post on the calendar.
``core.automation.demo_content`` says what the demo holds; here :func:`start_demo` starts it (the Home
page's button, which then watches the pipeline) and :func:`run_demo` (the CLI) also waits for it and
reports each stage with its time. The work is done by the running workers (``./scripts/run``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from core.automation import pipelines
from core.automation.demo_content import DEMO_JOB_KINDS, demo_request
from core.datasets.datasets import create_demo_dataset, get_dataset
from core.errors import NotFound, StudioError
from core.jobs import lifecycle as jobs
from core.jobs import queue
from core.jobs.kinds import get_spec
from core.models import TERMINAL_STATUSES, JobStatus, Pipeline, Platform
from core.publishing import posts

WORKER_WAIT_S = 15.0
POLL_S = 0.2


class DemoFailed(StudioError):
    """The demo cannot start (no worker) or a stage did not succeed; the message names which."""


@dataclass
class DemoReport:
    stages: list[tuple[str, float, str]] = field(default_factory=list)  # name, seconds, what came out
    jobs: list[tuple[str, float, str]] = field(default_factory=list)  # the pipeline's jobs: stage, longest s, count
    post_id: int | None = None
    pipeline_id: str | None = None

    @property
    def total_s(self) -> float:
        return sum(seconds for _name, seconds, _what in self.stages)


@dataclass(frozen=True)
class DemoStage:
    """One stage of a demo pipeline as the CLI and the Home page show it."""

    name: str
    status: str  # done | running | waiting | failed | cancelled (core.automation.pipelines.pipeline_view)
    seconds: float | None  # once done: from the previous stage's end to this one's
    what: str  # what came out, once done
    longest_job_s: float | None = None  # the longest of its jobs' run times (without queue waits)
    job_count: int = 0


# --- starting ------------------------------------------------------------------------------------------------


def _needed_queues() -> list[str]:
    return sorted({get_spec(kind).queue for kind in DEMO_JOB_KINDS})


def missing_queues() -> list[str]:
    """The queues the demo's jobs need that no live worker serves (all of them when none runs)."""
    needed = _needed_queues()
    try:
        served = {name for worker in queue.list_workers() for name in worker.queues}
    except (redis.RedisError, OSError):
        return needed  # no Redis, no worker can be reached either
    return [name for name in needed if name not in served]


def _check_workers() -> None:
    missing = missing_queues()
    if missing == _needed_queues():
        raise DemoFailed("no worker is running: start the studio first (./scripts/run), "
                         "or the workers with `python -m workers run`")
    if missing:
        raise DemoFailed(f"no worker serves the {', '.join(missing)} queue(s) the demo needs; "
                         f"start one with `python -m workers run --queues {','.join(missing)}`")


def start_demo() -> Pipeline:
    """Draw the demo dataset (~2.5 s) and queue the ``demo`` pipeline; returns at once (nothing waits).
    Raises DemoFailed when no worker would take its jobs, instead of queueing them silently."""
    _check_workers()
    dataset, _report = create_demo_dataset(name=f"Demo {datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3])
    pipeline, _created = pipelines.create_pipeline("demo", demo_request(dataset.id or 0))
    return pipeline


def latest_demo() -> Pipeline | None:
    return next(iter(pipelines.list_pipelines(kinds=["demo"], page_size=1).items), None)


# --- reporting -----------------------------------------------------------------------------------------------


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    start, end = jobs.aware(start), jobs.aware(end)
    return (end - start).total_seconds() if start and end else None


def _outcome(name: str, results: dict[str, Any]) -> str:
    """What a finished stage made, in a few words."""
    if name == "captions":
        return f"{results.get('captioned', '?')} captions"
    if name == "training":
        return f"LoRA {results.get('loraId')} ({results.get('loraName')}, step {results.get('loraStep')})"
    if name == "generation":
        return f"{len(results.get('imageAssetIds', []))} images"
    if name == "video":
        duration = results.get("duration")
        return f"video asset {results.get('videoAssetId')}" + (f", {duration:.1f} s" if duration else "")
    if name == "post" and results.get("postId") is not None:
        try:
            post = posts.get_post(int(results["postId"]))
        except NotFound:
            return f"post {results['postId']} (deleted since)"
        return f"post {post.id} on {Platform(post.platform).label}, {jobs.aware(post.scheduled_at):%a %d %b %H:%M} UTC"
    return ""


def demo_stages(pipeline: Pipeline) -> list[DemoStage]:
    """The pipeline's stages with their times, from the stage jobs' timestamps: a stage runs from the
    previous one's end (the pipeline's creation for the first) to its last job's end (the pipeline's end
    for one without jobs), so the times add up to the whole run, queue waits included."""
    view = pipelines.pipeline_view(pipeline)
    by_id = {job.id: job for job in jobs.list_jobs(pipeline_id=pipeline.id, page_size=200).items}
    boundary = pipeline.created_at
    shown = []
    for stage in view["stages"]:
        stage_jobs = [by_id[i] for i in stage["jobIds"] if i in by_id]
        seconds = longest = None
        if stage["status"] == "done":
            ends = [finished for j in stage_jobs if (finished := jobs.aware(j.finished_at)) is not None]
            end = max(ends) if ends and len(ends) == len(stage_jobs) else pipeline.finished_at
            if end is None:  # a stage without jobs that is done before the pipeline ends (none today)
                end = boundary
            seconds = max(_seconds(boundary, end) or 0.0, 0.0)
            boundary = end
            spans = [s for j in stage_jobs if (s := _seconds(j.started_at, j.finished_at)) is not None]
            longest = max(spans, default=None)
        shown.append(DemoStage(name=stage["name"], status=stage["status"], seconds=seconds,
                               what=_outcome(stage["name"], stage["results"]) if stage["status"] == "done" else "",
                               longest_job_s=longest, job_count=len(stage_jobs)))
    return shown


def _wait(fetch: Callable[[], Any], done: Callable[[Any], bool], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what} did not finish within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def run_demo(*, on_stage: Callable[[str, float, str], None] | None = None, timeout_s: float = 600) -> DemoReport:
    """Start the demo, wait for it and report each stage as it finishes with its time (the CLI);
    raises DemoFailed naming the stage that failed."""
    try:  # a studio just started may take a few seconds to announce its workers
        _wait(missing_queues, lambda missing: not missing, timeout_s=WORKER_WAIT_S, what="a worker")
    except DemoFailed:
        pass  # start_demo says what is missing
    report = DemoReport()

    def stage(name: str, seconds: float, what: str) -> None:
        report.stages.append((name, seconds, what))
        if on_stage is not None:
            on_stage(name, seconds, what)

    started = time.monotonic()
    pipeline = start_demo()
    report.pipeline_id = pipeline.id
    dataset = get_dataset(int(pipeline.payload["dataset_id"]))
    # The pipeline's clock starts at its creation, right after the dataset: the dataset's share ends there.
    stage("dataset", time.monotonic() - started - _age(pipeline),
          f"{dataset.image_count} images in dataset {dataset.id}")

    deadline = time.monotonic() + timeout_s
    reported = 0
    while True:
        pipeline = pipelines.get_pipeline(pipeline.id)
        shown = demo_stages(pipeline)
        while reported < len(shown) and shown[reported].status == "done":
            done = shown[reported]
            stage(done.name, done.seconds or 0.0, done.what)
            if done.longest_job_s is not None:
                report.jobs.append((done.name, done.longest_job_s, f"{done.job_count} job(s)"))
            reported += 1
        if pipeline.status in TERMINAL_STATUSES:
            break
        if time.monotonic() > deadline:
            raise DemoFailed(f"the demo did not finish within {timeout_s:.0f} s (pipeline {pipeline.id}, "
                             f"at {pipeline.stage})")
        time.sleep(POLL_S)
    if pipeline.status != JobStatus.SUCCEEDED:
        raise DemoFailed(f"{pipeline.error_stage or pipeline.stage}: {pipeline.error or pipeline.status}")
    report.post_id = pipeline.results.get("post", {}).get("postId")
    return report


def _age(pipeline: Pipeline) -> float:
    """How long ago the pipeline was created (a few milliseconds here)."""
    return max(_seconds(pipeline.created_at, datetime.now(UTC)) or 0.0, 0.0)
