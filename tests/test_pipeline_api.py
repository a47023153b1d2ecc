"""The pipeline webhook routes and the orchestrator behind them: auth, signatures, validation,
idempotency, the concurrency limit, stage flow, cancel/retry, the rate limit and the notification outbox.

No worker runs here: jobs stay queued, which is what lets these tests see the queueing. A stage's jobs
"finish" by updating their rows and calling ``advance_pipeline`` (what the job-finished listener calls).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.automation import pipelines
from core.config import reload_settings
from core.db import session_scope
from core.infra.signing import sign
from core.jobs.lifecycle import execute_job
from core.models import Job, JobStatus, LoraModel, Pipeline, PipelineNotification, utcnow
from core.pagination import MAX_PAGE
from core.publishing.planning import run_plan
from core.publishing.production import production_job_finished
from tests.conftest import TEST_API_TOKEN
from tests.factories import days_from_today, upcoming_week

AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
SECRET = "whsec-test-0123456789"
PROMPTS = ["ava on a beach at dusk", "ava reading in a cafe", "ava hiking in the alps"]
MISSING = object()
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def client(studio):
    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


@pytest.fixture
def dataset(studio):
    from core.datasets.datasets import create_dataset, import_files
    from tests.factories import image_bytes

    created = create_dataset(name="Ava")
    import_files(created.id, [("a.png", image_bytes(seed=1)), ("b.png", image_bytes(seed=2))])
    return created


def _configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reload_settings()


def _lora(dataset_id: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"datasetId": dataset_id, "trainingName": "Ava v1", "testPrompts": list(PROMPTS)}
    for name, value in changes.items():
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def _content(**changes: Any) -> dict[str, Any]:
    start, end = upcoming_week()
    return {"theme": "summer hikes", "platforms": ["instagram"], "start": start, "end": end, **changes}


def _start(client: TestClient, body: dict[str, Any], kind: str = "lora", **headers: str) -> dict[str, Any]:
    response = client.post(f"/api/pipelines/{kind}", json=body, headers={**AUTH, **headers})
    assert response.status_code == 201, response.text
    return response.json()


def _get(client: TestClient, pipeline_id: str) -> dict[str, Any]:
    response = client.get(f"/api/pipelines/{pipeline_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def _signed(client: TestClient, body: bytes, *, secret: str = SECRET, timestamp: int | None = None,
            signed_body: bytes | None = None) -> Any:
    stamp, signature = sign(secret, body if signed_body is None else signed_body, timestamp)
    return client.post("/api/pipelines/lora", content=body, headers={
        **AUTH, "Content-Type": "application/json", "X-Studio-Timestamp": stamp, "X-Studio-Signature": signature})


def _count(model: Any, *where: Any) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _pipeline_jobs(pipeline_id: str, kind: str | None = None) -> list[Job]:
    query = select(Job).where(Job.pipeline_id == pipeline_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    with session_scope() as session:
        return list(session.execute(query.order_by(Job.created_at, Job.id)).scalars())


def _stage_jobs(pipeline_id: str, stage: str) -> list[Job]:
    ids = pipelines.get_pipeline(pipeline_id).results[stage]["jobIds"]
    with session_scope() as session:
        found = {job.id: job for job in session.execute(select(Job).where(Job.id.in_(ids))).scalars()}
    return [found[job_id] for job_id in ids]


def _end_job(job_id: str, status: JobStatus, *, error: str | None = None,
             result: dict[str, Any] | None = None) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            status=status, error=error, result=result, finished_at=utcnow(), updated_at=utcnow()))


def _training_saves_a_lora(pipeline_id: str) -> int:
    """The train job succeeds with a final checkpoint; returns the LoRA's id (the stage is not advanced)."""
    [train] = _pipeline_jobs(pipeline_id, "train")
    params = train.payload["params"]
    with session_scope() as session:
        lora = LoraModel(name="Ava v1 · final", job_id=train.id, step=100, final=True, family=params["family"],
                         base_model=params["base_model"], key=f"loras/{train.id}/final.safetensors")
        session.add(lora)
        session.flush()
        lora_id = lora.id
    _end_job(train.id, JobStatus.SUCCEEDED, result={"lora_id": lora_id})
    assert lora_id is not None
    return lora_id


def _generation_makes_an_image(job: Job, seed: int) -> int:
    from core.library.assets import AssetSource, store_image
    from tests.factories import image_bytes

    asset = store_image(f"generated/{job.id}/0.png", image_bytes(64, 64, seed=seed), source=AssetSource.GENERATED,
                        job_id=job.id, meta={"index": 0})
    _end_job(job.id, JobStatus.SUCCEEDED, result={"asset_ids": [asset.id]})
    assert asset.id is not None
    return asset.id


def _at_generation(client: TestClient, dataset_id: int, **changes: Any) -> tuple[str, int]:
    """A lora pipeline whose training succeeded: now at the generation stage."""
    pipeline_id = _start(client, _lora(dataset_id, **changes))["id"]
    lora_id = _training_saves_a_lora(pipeline_id)
    pipelines.advance_pipeline(pipeline_id)
    return pipeline_id, lora_id


# --- auth -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Studio-Token": "nope"}])
def test_a_start_without_the_right_token_is_401_and_writes_no_pipeline(client, dataset, headers):
    response = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=headers)
    assert response.status_code == 401
    assert "API token" in response.json()["error"]
    assert client.get("/api/pipelines", headers=headers).status_code == 401
    assert _count(Pipeline) == 0 and _count(Job) == 0


def test_a_start_with_the_token_is_201_with_the_pipeline_and_its_location(client, dataset):
    response = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers={"X-Studio-Token": TEST_API_TOKEN})
    assert response.status_code == 201, response.text
    view = response.json()
    assert response.headers["location"] == f"/api/pipelines/{view['id']}"
    assert view["kind"] == "lora" and view["status"] == "running" and view["stage"] == "training"
    assert [stage["name"] for stage in view["stages"]] == ["training", "generation", "aggregate"]
    assert _count(Pipeline) == 1


# --- signatures -------------------------------------------------------------------------------------------------


@pytest.fixture
def signing(monkeypatch, studio):
    _configure(monkeypatch, STUDIO_WEBHOOK_SECRET=SECRET)


def test_a_validly_signed_start_is_accepted(client, dataset, signing):
    response = _signed(client, json.dumps(_lora(dataset.id)).encode())
    assert response.status_code == 201, response.text
    assert _count(Pipeline) == 1


def test_a_signature_made_with_another_secret_is_401(client, dataset, signing):
    response = _signed(client, json.dumps(_lora(dataset.id)).encode(), secret="some-other-secret")
    assert response.status_code == 401
    assert "does not match" in response.json()["error"]
    assert _count(Pipeline) == 0


def test_a_body_changed_after_signing_is_401(client, dataset, signing):
    original = json.dumps(_lora(dataset.id)).encode()
    tampered = json.dumps(_lora(dataset.id, priority=10)).encode()
    response = _signed(client, tampered, signed_body=original)
    assert response.status_code == 401
    assert "does not match" in response.json()["error"]
    assert _count(Pipeline) == 0


@pytest.mark.parametrize("offset", [-1, +1], ids=["too-old", "in-the-future"])
def test_a_timestamp_outside_the_window_is_401(client, dataset, signing, studio, offset):
    stamp = int(time.time()) + offset * (studio.webhook_signature_window_s + 30)
    response = _signed(client, json.dumps(_lora(dataset.id)).encode(), timestamp=stamp)
    assert response.status_code == 401
    assert "outside" in response.json()["error"]
    assert _count(Pipeline) == 0


def test_the_same_signed_request_sent_twice_is_refused_as_a_replay(client, dataset, signing):
    body = json.dumps(_lora(dataset.id)).encode()
    stamp, signature = sign(SECRET, body)
    headers = {**AUTH, "Content-Type": "application/json", "X-Studio-Timestamp": stamp,
               "X-Studio-Signature": signature}
    assert client.post("/api/pipelines/lora", content=body, headers=headers).status_code == 201
    again = client.post("/api/pipelines/lora", content=body, headers=headers)
    assert again.status_code == 401
    assert "replay" in again.json()["error"]
    assert _count(Pipeline) == 1


def test_a_signed_request_resent_with_its_idempotency_key_gets_the_first_pipeline(client, dataset, signing):
    body = json.dumps(_lora(dataset.id)).encode()
    stamp, signature = sign(SECRET, body)
    headers = {**AUTH, "Content-Type": "application/json", "X-Studio-Timestamp": stamp,
               "X-Studio-Signature": signature, "Idempotency-Key": "n8n-execution-7"}
    first = client.post("/api/pipelines/lora", content=body, headers=headers)
    again = client.post("/api/pipelines/lora", content=body, headers=headers)  # n8n retrying a lost answer
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and _count(Pipeline) == 1


def test_an_unsigned_start_is_accepted_while_signatures_are_optional(client, dataset, signing):
    assert client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=AUTH).status_code == 201


def test_an_unsigned_start_is_401_when_signatures_are_required(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_WEBHOOK_SECRET=SECRET, STUDIO_WEBHOOK_REQUIRE_SIGNATURE="true")
    response = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=AUTH)
    assert response.status_code == 401
    assert "X-Studio-Signature" in response.json()["error"]
    assert _count(Pipeline) == 0
    assert _signed(client, json.dumps(_lora(dataset.id)).encode()).status_code == 201


def test_the_settings_refuse_required_signatures_without_a_secret(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_WEBHOOK_REQUIRE_SIGNATURE", "true")
    try:
        with pytest.raises(ValidationError, match="STUDIO_WEBHOOK_SECRET"):
            reload_settings()
    finally:
        monkeypatch.delenv("STUDIO_WEBHOOK_REQUIRE_SIGNATURE")
        reload_settings()


@pytest.mark.parametrize("timestamp,signature", [
    (b"9" * 5000, b"sha256=00"),  # past int()'s digit limit
    (None, "sha256=\u00e9".encode()),  # not ASCII: hmac.compare_digest refuses such str
], ids=["huge-timestamp", "non-ascii-signature"])
def test_a_garbled_signature_header_is_401_not_a_crash(client, dataset, signing, timestamp, signature):
    body = json.dumps(_lora(dataset.id)).encode()
    stamp = timestamp if timestamp is not None else str(int(time.time())).encode()
    response = client.post("/api/pipelines/lora", content=body, headers={
        **AUTH, "Content-Type": "application/json", "X-Studio-Timestamp": stamp, "X-Studio-Signature": signature})
    assert response.status_code == 401
    assert response.json()["error"].startswith("bad signature")
    assert _count(Pipeline) == 0


@pytest.mark.parametrize("timestamp", ["\u00b2", "-5", "1e9", " 17"])  # "²" passes str.isdigit, not int()
def test_a_timestamp_that_is_not_plain_unix_seconds_is_refused(timestamp):
    from core.infra.signing import SignatureError, verify

    with pytest.raises(SignatureError, match="unix seconds"):
        verify(SECRET, b"{}", timestamp=timestamp, signature="sha256=00", window_s=300)


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes,field", [
    ({"datasetId": MISSING}, "datasetId"),
    ({"datasetId": 0}, "datasetId"),
    ({"datasetId": 987654}, "datasetId"),
    ({"trainingName": ""}, "trainingName"),
    ({"testPrompts": []}, "testPrompts"),
    ({"testPrompts": [f"prompt {i}" for i in range(11)]}, "testPrompts"),
    ({"testPrompts": ["a beach", "   "]}, "testPrompts"),
    ({"videoConfig": {"durationSec": 0}}, "videoConfig.durationSec"),
    ({"videoConfig": {"durationSec": 61}}, "videoConfig.durationSec"),
    ({"videoConfig": {"aspect": "4:3"}}, "videoConfig.aspect"),
    ({"priority": 0}, "priority"),
    ({"priority": 11}, "priority"),
    ({"notifyUrl": "ftp://x"}, "notifyUrl"),
    ({"notifyUrl": "not a url"}, "notifyUrl"),
    ({"colour": "blue"}, "colour"),
], ids=lambda value: json.dumps(value, default=str)[:40] if isinstance(value, dict) else value)
def test_a_bad_lora_request_is_422_naming_the_field_and_writes_nothing(client, dataset, changes, field):
    response = client.post("/api/pipelines/lora", json=_lora(dataset.id, **changes), headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}:") or f"; {field}:" in response.json()["error"]
    assert _count(Pipeline) == 0 and _count(Job) == 0


def test_a_dataset_without_images_is_422_naming_the_dataset(client):
    from core.datasets.datasets import create_dataset

    empty = create_dataset(name="Empty")
    response = client.post("/api/pipelines/lora", json=_lora(empty.id), headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"].startswith("datasetId:") and "no images" in response.json()["error"]
    assert _count(Pipeline) == 0


@pytest.mark.parametrize("changes,field", [
    ({"platforms": []}, "platforms"),
    ({"platforms": ["myspace"]}, "platforms.0"),
    ({"start": str(days_from_today(36)), "end": str(days_from_today(30))}, "end"),
    ({"theme": ""}, "theme"),
    ({"platforms": ["tiktok", "tiktok"]}, "platforms"),
    ({"start": str(days_from_today(30)), "end": str(days_from_today(30 + 151))}, "end"),
    ({"planner": "llm"}, "planner"),
], ids=["no-platforms", "unknown-platform", "end-before-start", "empty-theme", "platform-twice", "too-long",
        "llm-not-configured"])
def test_a_bad_content_request_is_422_naming_the_field_and_writes_nothing(client, changes, field):
    response = client.post("/api/pipelines/content", json=_content(**changes), headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(f"{field}:")
    assert _count(Pipeline) == 0


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[1, 2]", b'"a string"'])
def test_a_body_that_is_not_a_json_object_is_400(client, body):
    response = client.post("/api/pipelines/lora", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]
    assert _count(Pipeline) == 0


def test_an_unknown_pipeline_is_404(client):
    assert client.get("/api/pipelines/" + "a" * 32, headers=AUTH).status_code == 404
    assert client.get("/api/pipelines/not-an-id", headers=AUTH).status_code == 404
    assert client.post("/api/pipelines/" + "b" * 32 + "/cancel", headers=AUTH).status_code == 404
    assert client.post("/api/pipelines/" + "c" * 32 + "/retry", headers=AUTH).status_code == 404


# --- idempotency ------------------------------------------------------------------------------------------------


def test_the_same_idempotency_key_and_body_return_the_first_pipeline(client, dataset):
    headers = {**AUTH, "Idempotency-Key": "n8n-execution-41"}
    first = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=headers)
    second = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["location"] == f"/api/pipelines/{first.json()['id']}"
    assert _count(Pipeline) == 1 and _count(Job, Job.kind == "train") == 1


def test_the_same_idempotency_key_with_another_body_is_409(client, dataset):
    headers = {**AUTH, "Idempotency-Key": "n8n-execution-42"}
    assert client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=headers).status_code == 201
    other = client.post("/api/pipelines/lora", json=_lora(dataset.id, trainingName="Ava v2"), headers=headers)
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["error"]
    assert _count(Pipeline) == 1


# --- the concurrency limit and priorities -----------------------------------------------------------------------


@BOTH_DATABASES
def test_at_most_the_limit_run_and_the_rest_wait(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_PIPELINES_MAX_RUNNING="5")
    started = [_start(client, _lora(dataset.id, trainingName=f"Ava {i}")) for i in range(6)]
    assert [view["status"] for view in started] == ["running"] * 5 + ["queued"]
    for view in started[:5]:
        [train] = _pipeline_jobs(view["id"])
        assert train.kind == "train" and train.status == JobStatus.QUEUED
        assert _get(client, view["id"])["stages"][0] == {"name": "training", "status": "running",
                                                        "jobIds": [train.id], "results": {}}
    assert _pipeline_jobs(started[5]["id"]) == []
    assert _get(client, started[5]["id"])["stage"] is None


@BOTH_DATABASES
def test_a_freed_slot_goes_to_the_highest_priority_and_a_failed_training_fails_the_pipeline(client, dataset,
                                                                                             monkeypatch):
    _configure(monkeypatch, STUDIO_PIPELINES_MAX_RUNNING="5")
    running = [_start(client, _lora(dataset.id, trainingName=f"Ava {i}"))["id"] for i in range(5)]
    low = _start(client, _lora(dataset.id, trainingName="low", priority=1))
    high = _start(client, _lora(dataset.id, trainingName="high", priority=9))
    assert low["status"] == high["status"] == "queued"

    [train] = _pipeline_jobs(running[0])
    _end_job(train.id, JobStatus.FAILED, error="CUDA out of memory")
    pipelines.advance_pipeline(running[0])

    failed = _get(client, running[0])
    assert failed["status"] == "failed" and failed["errorStage"] == "training"
    assert failed["error"] == "CUDA out of memory" and failed["finishedAt"]
    assert _get(client, high["id"])["status"] == "running"
    assert [job.kind for job in _pipeline_jobs(high["id"])] == ["train"]
    assert _get(client, low["id"])["status"] == "queued" and _pipeline_jobs(low["id"]) == []


# --- stage flow -------------------------------------------------------------------------------------------------


@BOTH_DATABASES
def test_a_trained_lora_moves_on_to_one_generate_job_per_test_prompt(client, dataset):
    pipeline_id, lora_id = _at_generation(client, dataset.id)
    view = _get(client, pipeline_id)
    assert view["status"] == "running" and view["stage"] == "generation"
    assert view["stages"][0]["status"] == "done" and view["stages"][0]["results"]["loraId"] == lora_id
    assert view["result"]["lora"]["id"] == lora_id
    assert view["result"]["lora"]["files"]["kohya"] == f"/api/loras/{lora_id}/file?format=kohya"
    generate = _stage_jobs(pipeline_id, "generation")
    assert [job.kind for job in generate] == ["generate"] * 3
    assert [job.payload["prompt"] for job in generate] == PROMPTS
    assert all(job.pipeline_id == pipeline_id and job.status == JobStatus.QUEUED for job in generate)
    assert all([lora["lora_id"] for lora in job.payload["loras"]] == [lora_id] for job in generate)
    assert 0 < view["progressPercent"] < 100


@BOTH_DATABASES
def test_some_test_prompts_failing_still_succeed_with_a_warning_naming_them(client, dataset):
    pipeline_id, _ = _at_generation(client, dataset.id)
    first, second, third = _stage_jobs(pipeline_id, "generation")
    images = [_generation_makes_an_image(first, seed=1)]
    pipelines.advance_pipeline(pipeline_id)
    assert _get(client, pipeline_id)["status"] == "running"  # two still to go
    _end_job(second.id, JobStatus.FAILED, error="NaN in the latents")
    images.append(_generation_makes_an_image(third, seed=3))
    pipelines.advance_pipeline(pipeline_id)

    view = _get(client, pipeline_id)
    assert view["status"] == "succeeded" and view["error"] is None, view
    assert view["progressPercent"] == 100
    assert len(view["warnings"]) == 1
    assert "test prompt 2" in view["warnings"][0] and PROMPTS[1] in view["warnings"][0]
    assert "NaN in the latents" in view["warnings"][0]
    assert [image["assetId"] for image in view["result"]["images"]] == images
    assert all(image["url"] for image in view["result"]["images"])
    assert view["result"]["video"] is None
    assert all(stage["status"] == "done" for stage in view["stages"])


@BOTH_DATABASES
def test_every_test_prompt_failing_fails_the_pipeline_at_generation(client, dataset):
    pipeline_id, _ = _at_generation(client, dataset.id)
    for job in _stage_jobs(pipeline_id, "generation"):
        _end_job(job.id, JobStatus.FAILED, error="out of memory")
    pipelines.advance_pipeline(pipeline_id)
    view = _get(client, pipeline_id)
    assert view["status"] == "failed" and view["errorStage"] == "generation"
    assert view["error"] == "no test prompt made an image"
    assert len(view["warnings"]) == 3 and view["result"]["images"] == []


@BOTH_DATABASES
def test_two_listeners_advancing_at_once_create_the_next_stages_jobs_once(client, dataset, monkeypatch):
    pipeline_id = _start(client, _lora(dataset.id))["id"]
    _training_saves_a_lora(pipeline_id)
    both_finished = threading.Barrier(2, timeout=20)
    training = pipelines.STAGES["lora"][0]

    def finish_together(pipeline, stage_jobs):  # both have seen the stage done before either moves it on
        both_finished.wait()
        return training.finish(pipeline, stage_jobs)

    monkeypatch.setitem(pipelines.STAGES, "lora", [dataclasses.replace(training, finish=finish_together),
                                                   *pipelines.STAGES["lora"][1:]])
    with ThreadPoolExecutor(2) as pool:
        for outcome in [pool.submit(pipelines.advance_pipeline, pipeline_id) for _ in range(2)]:
            outcome.result()
    pipelines.advance_pipeline(pipeline_id)  # a late sweep changes nothing either

    generate = _pipeline_jobs(pipeline_id, "generate")
    assert len(generate) == 3
    assert sorted(pipelines.get_pipeline(pipeline_id).results["generation"]["jobIds"]) == sorted(
        job.id for job in generate)
    assert _get(client, pipeline_id)["stage"] == "generation"


# The app process (server.py) starts a pipeline's first stage at the API's request and is then done with it: the
# workers' job-finished listener moves every later stage on. It is SIGKILLed here at the one moment that leaves work
# to nobody else: the pipeline is marked running (it holds a running slot) and its first stage is not written yet.
_STARTED_THEN_KILLED = """
import json, os, signal, sys
import core.catalogue
from core.automation import pipelines
pipelines._enter = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
pipelines.create_pipeline("lora", json.loads(sys.argv[1]))
"""


@BOTH_DATABASES
def test_an_app_killed_while_starting_a_pipeline_leaves_its_first_stage_to_the_sweep_once(client, dataset):
    from pathlib import Path

    starter = subprocess.run([sys.executable, "-c", _STARTED_THEN_KILLED, json.dumps(_lora(dataset.id))],
                             cwd=Path(__file__).resolve().parents[1], env=dict(os.environ), timeout=120)
    assert starter.returncode == -signal.SIGKILL
    [stranded] = client.get("/api/pipelines", headers=AUTH).json()["items"]
    assert stranded["status"] == "running" and stranded["stage"] is None and _pipeline_jobs(stranded["id"]) == []

    with ThreadPoolExecutor(2) as pool:  # two supervisors' scheduler ticks at once
        for outcome in [pool.submit(pipelines.sweep_pipelines) for _ in range(2)]:
            outcome.result()
    pipelines.sweep_pipelines()  # and a later one changes nothing

    [train] = _pipeline_jobs(stranded["id"])
    assert train.kind == "train" and train.status == JobStatus.QUEUED
    view = _get(client, stranded["id"])
    assert view["stage"] == "training" and view["stages"][0]["jobIds"] == [train.id]


# --- cancel and retry -------------------------------------------------------------------------------------------


@BOTH_DATABASES
def test_cancelling_stops_the_pipeline_and_its_queued_jobs_and_frees_a_slot(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_PIPELINES_MAX_RUNNING="1")
    first = _start(client, _lora(dataset.id))["id"]
    waiting = _start(client, _lora(dataset.id, trainingName="next"))["id"]
    assert _get(client, waiting)["status"] == "queued"

    response = client.post(f"/api/pipelines/{first}/cancel", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["errorStage"] == "training"
    assert [job.status for job in _pipeline_jobs(first)] == [JobStatus.CANCELLED]
    assert _get(client, waiting)["status"] == "running"
    assert [job.status for job in _pipeline_jobs(waiting, "train")] == [JobStatus.QUEUED]

    again = client.post(f"/api/pipelines/{first}/cancel", headers=AUTH)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]


def test_cancelling_a_finished_pipeline_is_409(client, dataset):
    pipeline_id = _start(client, _lora(dataset.id))["id"]
    [train] = _pipeline_jobs(pipeline_id)
    _end_job(train.id, JobStatus.FAILED, error="boom")
    pipelines.advance_pipeline(pipeline_id)
    response = client.post(f"/api/pipelines/{pipeline_id}/cancel", headers=AUTH)
    assert response.status_code == 409
    assert _get(client, pipeline_id)["status"] == "failed"


@BOTH_DATABASES
def test_retry_resumes_from_the_failed_stage_without_training_again(client, dataset):
    pipeline_id, _ = _at_generation(client, dataset.id)
    generate = _stage_jobs(pipeline_id, "generation")
    for job in generate:
        _end_job(job.id, JobStatus.FAILED, error="out of memory")
    pipelines.advance_pipeline(pipeline_id)
    assert _get(client, pipeline_id)["status"] == "failed"

    response = client.post(f"/api/pipelines/{pipeline_id}/retry", headers=AUTH)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "running" and view["stage"] == "generation"
    assert view["error"] is None and view["errorStage"] is None
    assert [job.id for job in _pipeline_jobs(pipeline_id, "generate")] == [job.id for job in generate]
    assert all(job.status == JobStatus.QUEUED and job.error is None
               for job in _pipeline_jobs(pipeline_id, "generate"))
    [train] = _pipeline_jobs(pipeline_id, "train")
    assert train.status == JobStatus.SUCCEEDED

    again = client.post(f"/api/pipelines/{pipeline_id}/retry", headers=AUTH)
    assert again.status_code == 409 and "running" in again.json()["error"]


def test_retry_keeps_a_partly_failed_stages_good_jobs(client, dataset):
    pipeline_id, _ = _at_generation(client, dataset.id)
    first, second, _ = _stage_jobs(pipeline_id, "generation")
    _generation_makes_an_image(first, seed=1)
    _end_job(second.id, JobStatus.FAILED, error="boom")
    client.post(f"/api/pipelines/{pipeline_id}/cancel", headers=AUTH)  # third is still queued: cancelled
    assert _stage_jobs(pipeline_id, "generation")[2].status == JobStatus.CANCELLED

    assert client.post(f"/api/pipelines/{pipeline_id}/retry", headers=AUTH).status_code == 200
    statuses = [job.status for job in _stage_jobs(pipeline_id, "generation")]
    assert statuses == [JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.QUEUED]
    assert _get(client, pipeline_id)["status"] == "running"


def test_a_retried_stage_reports_only_the_warnings_of_its_last_attempt(client, dataset):
    pipeline_id, _ = _at_generation(client, dataset.id)
    for job in _stage_jobs(pipeline_id, "generation"):
        _end_job(job.id, JobStatus.FAILED, error="out of memory")
    pipelines.advance_pipeline(pipeline_id)
    failed = _get(client, pipeline_id)
    assert len(failed["warnings"]) == 3 and len(failed["stages"][1]["results"]["failedWarnings"]) == 3

    retried = client.post(f"/api/pipelines/{pipeline_id}/retry", headers=AUTH).json()
    assert retried["warnings"] == [] and "failedWarnings" not in retried["stages"][1]["results"]
    first, second, third = _stage_jobs(pipeline_id, "generation")
    _end_job(first.id, JobStatus.FAILED, error="out of memory again")
    _generation_makes_an_image(second, seed=2)
    _generation_makes_an_image(third, seed=3)
    pipelines.advance_pipeline(pipeline_id)
    view = _get(client, pipeline_id)
    assert view["status"] == "succeeded" and len(view["result"]["images"]) == 2
    assert len(view["warnings"]) == 1 and "test prompt 1" in view["warnings"][0]
    assert "out of memory again" in view["warnings"][0]


# --- the rate limit ---------------------------------------------------------------------------------------------


def test_too_many_starts_a_minute_are_429_with_retry_after(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_API_WRITES_PER_MINUTE="3")
    for index in range(3):
        _start(client, _lora(dataset.id, trainingName=f"Ava {index}"))
    refused = client.post("/api/pipelines/lora", json=_lora(dataset.id), headers=AUTH)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "rate limit" in refused.json()["error"]
    assert _count(Pipeline) == 3
    assert client.get("/api/pipelines", headers=AUTH).status_code == 200  # reads are counted apart


def test_polling_is_not_limited_by_the_default_read_limit(client, dataset):
    pipeline_id = _start(client, _lora(dataset.id))["id"]
    codes = {client.get(f"/api/pipelines/{pipeline_id}", headers=AUTH).status_code for _ in range(30)}
    assert codes == {200}


def test_too_many_reads_a_minute_are_429(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_API_READS_PER_MINUTE="5")
    pipeline_id = _start(client, _lora(dataset.id))["id"]
    codes = [client.get(f"/api/pipelines/{pipeline_id}", headers=AUTH).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert client.post(f"/api/pipelines/{pipeline_id}/cancel", headers=AUTH).status_code == 200  # writes apart


# --- the notification outbox ------------------------------------------------------------------------------------


def test_a_pipeline_with_a_notify_url_writes_its_notifications_in_order(client, dataset):
    url = "https://n8n.example.com/webhook/studio"
    pipeline_id = _start(client, _lora(dataset.id, notifyUrl=url))["id"]
    with session_scope() as session:
        notes = list(session.execute(select(PipelineNotification).where(PipelineNotification.pipeline_id == pipeline_id)
                                     .order_by(PipelineNotification.sequence)).scalars())
        notify_jobs = list(session.execute(select(Job).where(Job.kind == "notify")).scalars())
    assert [(note.sequence, note.event) for note in notes] == [
        (1, "pipeline.queued"), (2, "pipeline.started"), (3, "stage.started")]
    assert all(note.url == url and note.status == "pending" for note in notes)
    assert [note.body["event"] for note in notes] == [note.event for note in notes]
    assert all(note.body["pipeline"]["id"] == pipeline_id for note in notes)
    assert notes[2].body["pipeline"]["stage"] == "training"
    assert sorted(job.payload["notification_id"] for job in notify_jobs) == sorted(note.id for note in notes)
    assert all(job.status == JobStatus.QUEUED for job in notify_jobs)


def test_a_pipeline_without_a_notify_url_writes_no_notifications(client, dataset):
    pipeline_id = _start(client, _lora(dataset.id))["id"]
    client.post(f"/api/pipelines/{pipeline_id}/cancel", headers=AUTH)
    assert _count(PipelineNotification) == 0
    assert _count(Job, Job.kind == "notify") == 0


# --- the status document ---------------------------------------------------------------------------------------


def _at_production(client: TestClient, **changes: Any) -> str:
    """A content pipeline whose plan job ran (in this process): now at production, its jobs queued."""
    pipeline_id = _start(client, _content(**changes), kind="content")["id"]
    [plan] = _stage_jobs(pipeline_id, "planning")
    execute_job(plan.id, run_plan)
    pipelines.advance_pipeline(pipeline_id)
    assert pipelines.get_pipeline(pipeline_id).stage == "production"
    return pipeline_id


@BOTH_DATABASES
def test_every_stage_of_a_content_pipeline_lists_the_jobs_it_ran(client):
    pipeline_id = _at_production(client, platforms=["instagram", "tiktok"], postsPerWeek=2)
    made = [job.id for job in _pipeline_jobs(pipeline_id) if job.kind in ("generate", "video")]
    assert made, "production made no job"
    stages = {stage["name"]: stage for stage in _get(client, pipeline_id)["stages"]}
    assert stages["production"]["jobIds"] == made
    assert stages["planning"]["jobIds"] == [job.id for job in _pipeline_jobs(pipeline_id, "plan")]
    listed = [job_id for stage in stages.values() for job_id in stage["jobIds"]]
    assert sorted(listed) == sorted(job.id for job in _pipeline_jobs(pipeline_id)), "every job, once"
    assert stages["production"]["results"] == {}, "only jobIds was added to the document"
    for job_id in made:  # n8n can follow each of them
        assert client.get(f"/api/jobs/{job_id}", headers=AUTH).json()["pipelineId"] == pipeline_id


def test_a_production_retry_lists_the_failed_jobs_and_their_replacements(client):
    pipeline_id = _at_production(client)
    first = [job.id for job in _pipeline_jobs(pipeline_id, "generate")]
    for job_id in first:
        _end_job(job_id, JobStatus.FAILED, error="boom")
        production_job_finished(job_id, "failed")
    pipelines.advance_pipeline(pipeline_id)
    assert pipelines.get_pipeline(pipeline_id).status == "failed"
    client.post(f"/api/pipelines/{pipeline_id}/retry", headers=AUTH)
    pipelines.start_waiting_pipelines()
    again = [job.id for job in _pipeline_jobs(pipeline_id, "generate")]
    assert len(again) > len(first)
    production = next(s for s in _get(client, pipeline_id)["stages"] if s["name"] == "production")
    assert production["jobIds"] == again


# --- listing ----------------------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_kind_and_paginates(client, dataset, monkeypatch):
    _configure(monkeypatch, STUDIO_PIPELINES_MAX_RUNNING="3")
    lora = [_start(client, _lora(dataset.id, trainingName=f"Ava {i}"))["id"] for i in range(4)]
    content = _start(client, _content(), kind="content")["id"]  # no slot left: it waits

    def listed(query: str) -> dict[str, Any]:
        response = client.get(f"/api/pipelines?{query}", headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    running = listed("status=running&kind=lora")
    assert running["total"] == 3 and {item["id"] for item in running["items"]} == set(lora[:3])
    assert all(item["status"] == "running" and item["kind"] == "lora" for item in running["items"])
    page = listed("status=running&kind=lora&page=2&pageSize=2")
    assert (page["total"], page["page"], page["pageSize"], len(page["items"])) == (3, 2, 2, 1)
    assert page["items"][0]["id"] not in {item["id"] for item in listed("status=running&pageSize=2")["items"]}
    assert [item["id"] for item in listed("status=queued&kind=content")["items"]] == [content]
    assert {item["id"] for item in listed("status=queued")["items"]} == {lora[3], content}
    assert listed("status=queued,running")["total"] == 5 and listed("")["total"] == 5


@BOTH_DATABASES
@pytest.mark.parametrize("query", ["page=1000000000000000000", "page=-1000000000000000000&pageSize=-5",
                                   f"page={10**40}&pageSize={10**40}"])
def test_a_page_number_of_any_size_is_served_within_the_bounds(client, dataset, query):
    _start(client, _lora(dataset.id))
    response = client.get(f"/api/pipelines?{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 1 and 1 <= body["page"] <= MAX_PAGE and 1 <= body["pageSize"] <= 100
    assert len(body["items"]) == (1 if body["page"] == 1 else 0)


@pytest.mark.parametrize("query", ["status=paused", "kind=video", "page=x", "page=1.5", "pageSize=1_000",
                                   "page=%D9%A3", "page=" + "9" * 5000])
def test_an_unknown_list_filter_is_422(client, query):
    response = client.get(f"/api/pipelines?{query}", headers=AUTH)
    assert response.status_code == 422
    assert query.split("=")[0] in response.json()["error"]
