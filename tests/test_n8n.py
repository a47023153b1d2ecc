"""The n8n workflows (n8n/*.json) end to end in a real n8n 2.8.4 against the real studio: the app server
(its /api), a worker process, tiny models, a SQLite database and signed notifications.

The LoRA workflow is started by its production webhook with a dry run; the test waits for the studio's
pipeline to succeed, for n8n to have received its signed ``pipeline.succeeded`` notification (the
notifications workflow writes each one to a folder) and for the LoRA workflow's execution to end on its
success branch (read from n8n's execution history). Without a worker: the weekly content workflow, run
once with the CLI, must ask for next Monday → Sunday, and a pipeline cancelled in the studio must end the
LoRA workflow on its failure branch. Pipeline starts are signed and the studio requires it.
Timings go to stdout (``pytest -s`` or ``-rP``).

n8n comes from ``scripts/n8n`` (cached outside the clone); a missing Node.js or a failed install fails
these tests rather than skipping them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from core.automation import pipelines
from core.db import session_scope
from core.models import JobStatus, PipelineNotification
from tests.conftest import TEST_API_TOKEN, wait_until
from tests.n8n import WORKFLOWS_DIR, N8n, N8nError, install_n8n
from tests.services import run_app_server

# A cold n8n install alone takes ~4-5 minutes (scripts/setup does it before the suite when STUDIO_DEV=1).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("offline_hub"),
              pytest.mark.timeout(900)]

LORA_WORKFLOW, CONTENT_WORKFLOW, NOTIFY_WORKFLOW = "studioLoraPipeln", "studioContentPpl", "studioNotifyHook"
WEBHOOK_SECRET = "n8n-e2e-webhook-secret"
TIMINGS: dict[str, float] = {}


def timing(name: str, seconds: float) -> None:
    TIMINGS[name] = seconds
    print(f"[n8n timing] {name}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def n8n_binary() -> Path:
    started = time.monotonic()
    try:
        binary = install_n8n()
    except N8nError as error:
        pytest.fail(str(error), pytrace=False)
    timing("install (or find the cached install)", time.monotonic() - started)
    return binary


@pytest.fixture
def dry_run_studio(studio, tiny_models, monkeypatch):
    """The studio as a dry run needs it: the tiny SD 1.5 where the "Tiny (offline demo)" preset and the
    "tiny-lora" template look (models/tiny-sd15), subtitles from the TTS timings (no whisper), signatures
    required on pipeline starts and sent on notifications."""
    studio.models_dir.mkdir(parents=True, exist_ok=True)
    (studio.models_dir / "tiny-sd15").symlink_to(tiny_models["sd15"], target_is_directory=True)
    monkeypatch.setenv("STUDIO_WHISPER_MODEL", "")
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("STUDIO_WEBHOOK_REQUIRE_SIGNATURE", "true")  # the workflows sign their starts
    from core.config import get_settings, reload_settings

    reload_settings()
    return get_settings()


@pytest.fixture
def app_server(dry_run_studio, tmp_path) -> Iterator[str]:
    """The real app (server.py: Streamlit with the /api routes) on a free port; yields its base URL."""
    with run_app_server(tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def notification_log(tmp_path) -> Path:
    """Where the notifications workflow writes each notification it accepts (N8N_NOTIFY_LOG_DIR)."""
    folder = tmp_path / "n8n-notifications"
    folder.mkdir()
    return folder


@pytest.fixture
def n8n(n8n_binary, app_server, notification_log, tmp_path) -> Iterator[N8n]:
    """A fresh n8n with the studio's credential and the three workflows; notifications and the LoRA
    workflow published (their webhooks live)."""
    instance = N8n(n8n_binary, tmp_path / "n8n", env={
        "STUDIO_URL": app_server,
        "STUDIO_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STUDIO_POLL_SECONDS": "1",
        "STUDIO_DRY_RUN": "true",
        "N8N_NOTIFY_LOG_DIR": str(notification_log),
        "N8N_RESTRICT_FILE_ACCESS_TO": str(notification_log),
    })
    instance.env["N8N_NOTIFY_URL"] = instance.webhook_url("studio-notifications")
    try:
        started = time.monotonic()
        instance.import_credentials([{
            "id": "studioApiToken01", "name": "Studio API token", "type": "httpHeaderAuth",
            "data": {"name": "Authorization", "value": f"Bearer {TEST_API_TOKEN}"},
        }])
        instance.import_workflows(*(WORKFLOWS_DIR / name for name in
                                    ("lora-pipeline.json", "content-pipeline.json", "notifications.json")))
        instance.publish(NOTIFY_WORKFLOW, LORA_WORKFLOW)
        timing("n8n import credential + 3 workflows, publish 2 (CLI)", time.monotonic() - started)
        started = time.monotonic()
        instance.start(expect_active=(NOTIFY_WORKFLOW, LORA_WORKFLOW))
        timing("n8n start until its webhooks are live", time.monotonic() - started)
    except N8nError as error:
        instance.stop()
        pytest.fail(str(error), pytrace=False)
    yield instance
    instance.stop()


def received_notifications(folder: Path, pipeline_id: str) -> list[dict]:
    return sorted((json.loads(path.read_text()) for path in folder.glob(f"{pipeline_id}-*.json")),
                  key=lambda note: note["sequence"])


def describe_failure(pipeline_id: str) -> str:
    """The pipeline view and its jobs' errors, for a failure message."""
    from core.jobs import lifecycle as jobs

    pipeline = pipelines.get_pipeline(pipeline_id)
    view = pipelines.pipeline_view(pipeline)
    job_ids = [job_id for stage in view["stages"] for job_id in stage["jobIds"]]
    errors = {job_id[:8]: (job.kind, job.status, job.error) for job_id in job_ids if (job := jobs.get_job(job_id))}
    return f"pipeline: {json.dumps(view, indent=1, default=str)}\njobs: {errors}"


def test_without_a_worker_the_content_workflow_plans_next_week_and_a_cancelled_lora_run_fails_its_workflow(
    n8n, dry_run_studio
):
    """Nothing runs the jobs here: what is checked is what n8n sends and how it reacts."""
    from core.datasets.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    def next_week() -> tuple[str, str]:
        today = datetime.now(UTC).date()
        monday = today + timedelta(days=7 - today.weekday())
        return monday.isoformat(), (monday + timedelta(days=6)).isoformat()

    before = next_week()
    n8n.execute(CONTENT_WORKFLOW)
    [content] = pipelines.list_pipelines(kinds=["content"]).items
    assert (content.payload["start"], content.payload["end"]) in {before, next_week()}  # midnight-proof
    assert content.payload["platforms"] == ["instagram", "tiktok"] and content.dry_run
    assert content.notify_url == n8n.webhook_url("studio-notifications")
    assert content.idempotency_key.startswith(f"n8n-{CONTENT_WORKFLOW}-")
    [execution] = n8n.executions(CONTENT_WORKFLOW)
    assert execution.status == "success"
    assert execution.node_output("Start content pipeline")[0]["body"]["id"] == content.id

    dataset = create_dataset(name="Ava", trigger_word="ohwx")
    import_files(dataset.id, [(f"{i}.png", image_bytes(160, 160, seed=i)) for i in range(2)])
    answer = httpx.post(n8n.webhook_url("studio-lora-pipeline"), json={"datasetId": dataset.id}, timeout=30)
    assert answer.status_code == 201, answer.text
    assert answer.json()["dryRun"] is True, "STUDIO_DRY_RUN=true in n8n's environment"
    pipelines.cancel_pipeline(answer.json()["id"])

    def lora_execution():
        runs = n8n.executions(LORA_WORKFLOW)
        return runs[0] if runs and runs[0].finished else None

    execution = wait_until(lora_execution, 60, 0.5, what="the LoRA workflow's execution to end")
    assert execution.status == "error" and execution.last_node == "Pipeline did not succeed"
    assert "cancelled" in (execution.error_message() or ""), execution.error_message()
    [failure] = execution.node_output("Failure summary")
    assert failure["outcome"] == "cancelled" and failure["pipelineId"] == answer.json()["id"]


def test_the_lora_workflow_runs_a_dry_run_pipeline_and_hears_it_succeed(n8n, notification_log, workers):
    from core.datasets.datasets import create_demo_dataset
    from core.jobs import queue

    dataset, _ = create_demo_dataset(name="Mika")
    started = time.monotonic()
    workers.worker("gpu,cpu,default", threads=2)
    wait_until(queue.list_workers, 120, 0.2, what="the worker to come up")
    timing("worker process up (ML libraries loaded)", time.monotonic() - started)
    webhook = n8n.webhook_url("studio-lora-pipeline")

    refused = httpx.post(webhook, json={"datasetId": dataset.id + 100, "dryRun": True}, timeout=30)
    assert refused.status_code == 422 and "does not exist" in refused.json()["error"], refused.text

    started = time.monotonic()
    answer = httpx.post(webhook, json={"datasetId": dataset.id, "trainingName": "n8n dry run", "dryRun": True,
                                       "videoConfig": {"durationSec": 4, "aspect": "1:1"}}, timeout=30)
    assert answer.status_code == 201, answer.text
    pipeline_id = answer.json()["id"]
    assert answer.json()["dryRun"] is True and answer.json()["kind"] == "lora"

    wait_until(lambda: pipelines.get_pipeline(pipeline_id).status in ("succeeded", "failed", "cancelled"),
               600, 0.5, what="the pipeline to end")
    timing("dry-run LoRA pipeline (webhook → succeeded in the studio)", time.monotonic() - started)
    assert pipelines.get_pipeline(pipeline_id).status == JobStatus.SUCCEEDED, describe_failure(pipeline_id)

    [listed] = pipelines.list_pipelines(statuses=["succeeded"], kinds=["lora"]).items
    view = pipelines.pipeline_view(listed)
    assert listed.id == pipeline_id and listed.dry_run and listed.payload["training_name"] == "n8n dry run"
    assert len(listed.payload["test_prompts"]) == 3, "the workflow's default prompts"
    result = view["result"]
    assert result["lora"] and result["lora"]["id"], view
    assert len(result["images"]) == 3 and all(image["url"] for image in result["images"]), view
    assert result["video"] and result["video"]["url"], view

    def outbox() -> list[PipelineNotification]:
        with session_scope() as session:
            return list(session.execute(select(PipelineNotification).where(
                PipelineNotification.pipeline_id == pipeline_id).order_by(PipelineNotification.sequence)).scalars())

    def all_heard() -> list[dict]:
        sent = outbox()
        notes = received_notifications(notification_log, pipeline_id)
        delivered = all(note.status == "delivered" for note in sent)
        return notes if delivered and len(notes) == len(sent) and notes[-1]["event"] == "pipeline.succeeded" else []

    notes = wait_until(all_heard, 60, 0.25, what="n8n to receive every notification up to pipeline.succeeded")
    timing("dry run: webhook → n8n received pipeline.succeeded", time.monotonic() - started)
    events = [note["event"] for note in notes]
    assert events[:2] == ["pipeline.queued", "pipeline.started"] and events.count("stage.started") == 4, events
    assert [note["sequence"] for note in notes] == list(range(1, len(notes) + 1)), "none lost, none twice"
    assert all(note["signed"] for note in notes), "the secret was set on both sides"
    assert [note["delivery"] for note in notes] == [f"{pipeline_id}-{n['sequence']}" for n in notes]
    succeeded = notes[-1]["pipeline"]
    assert succeeded["status"] == "succeeded" and len(succeeded["result"]["images"]) == 3

    def lora_execution():
        runs = [e for e in n8n.executions(LORA_WORKFLOW) if e.node_output("Start pipeline")
                and e.node_output("Start pipeline")[0].get("body", {}).get("id") == pipeline_id]
        return runs[0] if runs and runs[0].finished else None

    execution = wait_until(lora_execution, 60, 0.5, what="the LoRA workflow's execution to end")
    timing("dry run: webhook → n8n LoRA workflow finished", time.monotonic() - started)
    assert execution.status == "success", execution.error_message()
    assert execution.last_node == "Success summary"
    [summary] = execution.node_output("Success summary")
    assert summary["outcome"] == "succeeded" and summary["pipelineId"] == pipeline_id
    assert summary["lora"]["id"] == result["lora"]["id"] and len(summary["images"]) == 3 and summary["video"]
    assert len(execution.data["resultData"]["runData"]["Get status"]) >= 2, "it polled"

    forged = httpx.post(n8n.webhook_url("studio-notifications"), json={"event": "pipeline.succeeded"},
                        headers={"X-Studio-Timestamp": str(int(time.time())), "X-Studio-Signature": "sha256=00"})
    assert forged.status_code == 401, forged.text
    print(f"[n8n timing] summary: {json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})}")
