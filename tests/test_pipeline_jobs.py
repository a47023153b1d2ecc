"""Pipelines run for real: a dry-run LoRA pipeline (train → generate → video) and a content pipeline
(plan → produce → schedule) through a real worker on the tiny models, and signed notifications
delivered with retries to a local receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.automation import pipelines
from core.config import reload_settings
from core.datasets.datasets import create_demo_dataset
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.models import Job, PipelineNotification, Post
from tests.conftest import wait_until
from tests.factories import days_from_today, upcoming_week
from tests.fakes.server import FakeServer, Fault, Handler
from tests.test_generation_job import tiny_studio  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub")]
SECRET = "notify-secret-for-tests-0123456789"


class Receiver(FakeServer):
    """An n8n Webhook node stand-in: keeps every notification body with its headers."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[dict[str, str], bytes]] = []

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [("notify", "POST", "/webhook/studio", self.notify)]

    async def notify(self, request: Request) -> Response:
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, await request.body()))
        return JSONResponse({"ok": True})

    def events(self) -> list[str]:
        """In the order they happened (deliveries run in parallel, so they may arrive out of order)."""
        bodies = sorted((json.loads(body) for _headers, body in self.received), key=lambda b: b["sequence"])
        return [body["event"] for body in bodies]


@pytest.fixture
def receiver(studio, monkeypatch) -> Iterator[Receiver]:
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")  # subtitles from the TTS timings
    monkeypatch.setenv("STUDIO_PUBLISH_DRY_RUN", "true")
    reload_settings()
    server = Receiver()
    with server.running():
        yield server


def _settled(pipeline_id: str, timeout: float = 180):
    return wait_until(lambda: (p := pipelines.get_pipeline(pipeline_id)).status in ("succeeded", "failed") and p,
                      timeout, interval=0.2, what=f"pipeline {pipeline_id}")


def test_a_dry_run_lora_pipeline_trains_generates_renders_and_notifies(tiny_studio, receiver, workers):  # noqa: F811
    dataset, _ = create_demo_dataset()
    workers.worker("gpu,cpu,default", threads=3)
    started = time.monotonic()
    pipeline, created = pipelines.create_pipeline("lora", {
        "datasetId": dataset.id, "trainingName": "dry run", "testPrompts": ["on a beach", "in a forest", "at night"],
        "generateVideo": True, "videoConfig": {"durationSec": 4, "aspect": "9:16", "captionStyle": "highlight"},
        "dryRun": True, "notifyUrl": f"{receiver.url}/webhook/studio",
    })
    finished = _settled(pipeline.id)
    elapsed = time.monotonic() - started
    print(f"dry-run LoRA pipeline: {elapsed:.1f} s")  # the goal: under 60 s on 2 CPU cores
    for stage, data in finished.results.items():
        runs = [jobs.get_job(job_id) for job_id in data.get("jobIds", [])]
        spans = [(j.finished_at - j.started_at).total_seconds() for j in runs if j.started_at and j.finished_at]
        print(f"  {stage}: {len(runs)} job(s), longest {max(spans, default=0):.1f} s")
    assert created and finished.status == "succeeded", (finished.error, finished.error_stage)
    view = pipelines.pipeline_view(finished)
    assert view["progressPercent"] == 100.0 and view["warnings"] == []
    assert view["result"]["lora"]["id"] and len(view["result"]["images"]) == 3
    assert view["result"]["video"]["url"] and all(image["url"] for image in view["result"]["images"])
    assert [stage["status"] for stage in view["stages"]] == ["done"] * 4
    [video_job] = [jobs.get_job(job_id) for job_id in finished.results["video"]["jobIds"]]
    assert video_job.payload["subtitles"]["mode"] == "highlight", "the caption style reaches the render"
    # Notifications are parallel jobs, so they may arrive in any order (consumers sort by `sequence`):
    # wait for all of them, then check each arrived exactly once.
    expected = {"pipeline.queued": 1, "pipeline.started": 1, "stage.started": 4, "pipeline.succeeded": 1}
    wait_until(lambda: len(receiver.events()) >= sum(expected.values()), 30, what="every notification")
    assert Counter(receiver.events()) == expected


def test_notifications_are_signed_and_retried_until_delivered(receiver, workers):
    receiver.inject("notify", Fault.server_error(503), Fault.server_error(500))
    workers.worker("cpu,default")
    pipeline, _ = pipelines.create_pipeline("content", {
        "theme": "runs", "platforms": ["tiktok"], "start": upcoming_week()[0], "end": upcoming_week()[1],
        "notifyUrl": f"{receiver.url}/webhook/studio", "planner": "template"})
    pipelines.cancel_pipeline(pipeline.id)  # a quick, fixed set of events: queued, started, stage, cancelled
    wait_until(lambda: len(receiver.received) >= 4, 60, what="four delivered notifications")
    for headers, body in receiver.received:
        expected = hmac.new(SECRET.encode(), headers["x-studio-timestamp"].encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert headers["x-studio-signature"] == f"sha256={expected}"
    assert [c.status for c in receiver.calls_to("notify")][:2] == [503, 500]

    def delivered() -> list[PipelineNotification] | None:
        with session_scope() as session:
            notes = list(session.execute(select(PipelineNotification)
                                         .where(PipelineNotification.pipeline_id == pipeline.id)).scalars())
        return notes if notes and all(n.status == "delivered" for n in notes) else None

    notes = wait_until(delivered, 30, what="every notification recorded as delivered")
    assert sum(n.attempts - 1 for n in notes) == 2  # the 503 and the 500 were each retried once
    assert sorted(n.sequence for n in notes) == list(range(1, len(notes) + 1))


def test_a_content_pipeline_plans_produces_and_schedules(tiny_studio, receiver, workers):  # noqa: F811
    workers.worker("gpu,cpu,default", threads=3)
    today = days_from_today(0)  # UTC, the studio's clock (date.today() is the machine's zone)
    monday = today + timedelta(days=7 - today.weekday())
    pipeline, _ = pipelines.create_pipeline("content", {
        "theme": "morning runs", "platforms": ["instagram", "tiktok"], "start": monday.isoformat(),
        "end": (monday + timedelta(days=6)).isoformat(), "postsPerWeek": 1, "dryRun": True,
        "tiktokPrivacyLevel": "SELF_ONLY"})  # TikTok has no default privacy: the caller picks
    finished = _settled(pipeline.id, timeout=300)
    assert finished.status == "succeeded", (finished.error, finished.error_stage, finished.warnings)
    post_ids = finished.results["scheduling"]["scheduledPostIds"]
    assert len(post_ids) == 2
    with session_scope() as session:
        made = [session.get(Post, post_id) for post_id in post_ids]
    assert {p.status for p in made} == {"scheduled"} and all(p.asset_ids for p in made)
    tiktok = next(p for p in made if p.platform == "tiktok")
    assert tiktok.video_job_id is not None  # a video platform got a video
    # Every stage lists the jobs it ran, production's generations and chained videos included (n8n follows them).
    listed = {stage["name"]: stage["jobIds"] for stage in pipelines.pipeline_view(finished)["stages"]}
    assert {job_id for p in made for job_id in (p.generate_job_id, p.video_job_id) if job_id} <= set(
        listed["production"])
    with session_scope() as session:
        ran = session.execute(select(Job.id).where(Job.pipeline_id == pipeline.id)).scalars().all()
    assert sorted(job_id for ids in listed.values() for job_id in ids) == sorted(ran)
