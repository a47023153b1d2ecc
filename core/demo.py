"""The one-command demo: the whole content pipeline on a fresh machine, through the real job lifecycle.

demo dataset (15 drawn images) → captions (the caption model) → a dry-run LoRA pipeline (a tiny
LoRA, 4 images with it, a 9:16 video with voice-over and subtitles) → a draft post on the calendar.
It runs in the caller's process (the CLI) and waits on the database; the work is done by the running
workers, so it needs the studio up (``./scripts/run``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core import jobs, pipelines, posts, queue
from core.datasets import create_demo_dataset
from core.errors import StudioError
from core.models import TERMINAL_STATUSES, JobStatus

DEMO_PROMPTS = ["smiling on a sunny beach", "hiking a forest trail", "stretching after a run", "city rooftop at dusk"]
WORKER_WAIT_S = 15.0
DEMO_CAPTION = "Four places I trained this week. Which one would you pick? #fitness #outdoors"


class DemoFailed(StudioError):
    """A demo stage did not succeed; the message names the stage and the job's error."""


@dataclass
class DemoReport:
    stages: list[tuple[str, float, str]] = field(default_factory=list)  # name, seconds, what came out
    jobs: list[tuple[str, float, str]] = field(default_factory=list)  # the pipeline's jobs: stage, longest s, count
    post_id: int | None = None
    pipeline_id: str | None = None

    @property
    def total_s(self) -> float:
        return sum(seconds for _name, seconds, _what in self.stages)


def _wait(fetch: Callable[[], Any], done: Callable[[Any], bool], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what} did not finish within {timeout_s:.0f} s")
        time.sleep(0.2)


def run_demo(*, on_stage: Callable[[str, float, str], None] | None = None, timeout_s: float = 600) -> DemoReport:
    """Run every stage and report each one's time; raises DemoFailed naming the stage that failed."""
    try:  # a studio just started may take a few seconds to announce its workers
        _wait(queue.list_workers, bool, timeout_s=WORKER_WAIT_S, what="a worker")
    except DemoFailed:
        raise DemoFailed("no worker is running: start the studio first (./scripts/run)") from None
    report = DemoReport()

    def stage(name: str, started: float, what: str) -> None:
        report.stages.append((name, time.monotonic() - started, what))
        if on_stage is not None:
            on_stage(*report.stages[-1])

    started = time.monotonic()
    dataset, imported = create_demo_dataset(name=f"Demo {datetime.now(UTC):%Y-%m-%d %H:%M:%S}")
    stage("dataset", started, f"{len(imported.added)} images in dataset {dataset.id}")

    started = time.monotonic()
    captions = jobs.create_job("caption", {"dataset_id": dataset.id})
    captioned = _wait(lambda: jobs.get_job(captions.id), lambda j: j.status in TERMINAL_STATUSES,
                      timeout_s=timeout_s, what="captioning")
    if captioned.status != JobStatus.SUCCEEDED:
        raise DemoFailed(f"captions: {captioned.error or captioned.status}")
    stage("captions", started, f"{(captioned.result or {}).get('captioned', '?')} captions")

    started = time.monotonic()
    pipeline, _ = pipelines.create_pipeline("lora", {
        "datasetId": dataset.id, "trainingName": "demo", "testPrompts": DEMO_PROMPTS, "generateVideo": True,
        "videoConfig": {"durationSec": 8, "aspect": "9:16", "script": DEMO_CAPTION.split("#")[0].strip()},
        "dryRun": True,
    })
    report.pipeline_id = pipeline.id
    finished = _wait(lambda: pipelines.get_pipeline(pipeline.id), lambda p: p.status in TERMINAL_STATUSES,
                     timeout_s=timeout_s, what="the LoRA pipeline")
    if finished.status != JobStatus.SUCCEEDED:
        raise DemoFailed(f"{finished.error_stage}: {finished.error}")
    for name in ("training", "generation", "video"):
        stage_jobs = [jobs.get_job(i) for i in finished.results.get(name, {}).get("jobIds", [])]
        spans = [(jobs.aware(j.finished_at) - jobs.aware(j.started_at)).total_seconds()
                 for j in stage_jobs if j.started_at and j.finished_at]
        report.jobs.append((name, max(spans, default=0.0), f"{len(stage_jobs)} job(s)"))
    stage("LoRA → images → video", started,
          f"LoRA {finished.results['training']['loraId']}, {len(finished.results['generation']['imageAssetIds'])} "
          f"images, video asset {finished.results['video']['videoAssetId']}")

    started = time.monotonic()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=19, minute=0, second=0, microsecond=0)
    post = posts.create_post(platform="tiktok", scheduled_at=tomorrow, caption=DEMO_CAPTION,
                             asset_ids=[int(finished.results["video"]["videoAssetId"])])
    report.post_id = post.id
    stage("draft post", started, f"post {post.id} on TikTok, {tomorrow:%a %d %b %H:%M} UTC")
    return report
