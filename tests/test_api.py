"""The embedded HTTP API: authentication, limits and clear JSON errors, with nothing written on refusal."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.testclient import TestClient

from api.routes import api_routes
from core.datasets.datasets import create_dataset, import_files
from core.db import session_scope
from core.models import Job
from tests.conftest import TEST_API_TOKEN
from tests.factories import image_bytes

AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}


@pytest.fixture
def client(studio):
    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


def _jobs() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Job)).scalar_one()


def test_health_reports_each_service_without_details_for_strangers(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"database", "redis", "storage", "workers"} <= set(body["checks"])
    assert body["checks"]["database"]["ok"] is True
    assert "detail" not in body["checks"]["database"]
    assert "detail" in client.get("/api/health", headers=AUTH).json()["checks"]["database"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_job_is_created_and_read_back(client):
    created = client.post("/api/jobs", json={"kind": "sleep", "payload": {"seconds": 1}}, headers=AUTH)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued" and job["payload"]["seconds"] == 1
    assert created.headers["location"] == f"/api/jobs/{job['id']}"
    fetched = client.get(f"/api/jobs/{job['id']}", headers={"X-Studio-Token": TEST_API_TOKEN})
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Studio-Token": "nope"},
                                     {"Authorization": TEST_API_TOKEN}])
def test_missing_or_wrong_token_is_401_and_writes_nothing(client, headers):
    response = client.post("/api/jobs", json={"kind": "noop"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "API token" in response.json()["error"]
    assert client.get("/api/jobs/" + "0" * 32, headers=headers).status_code == 401
    assert _jobs() == 0


def test_oversized_body_is_413_and_writes_nothing(client, studio):
    big = json.dumps({"kind": "noop", "payload": {"note": "x" * (studio.max_request_bytes + 10)}})
    response = client.post("/api/jobs", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(studio.max_request_bytes // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/api/jobs", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    assert _jobs() == 0


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b""])
def test_malformed_json_is_400_and_writes_nothing(client, body):
    response = client.post("/api/jobs", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]
    assert _jobs() == 0


@pytest.mark.parametrize("body,fragment", [
    ({"kind": "nope"}, "unknown job kind"),
    ({"kind": "sleep", "payload": {"seconds": "soon"}}, "seconds"),
    ({"payload": {}}, "'kind' is required"),
    ({"kind": "noop", "extra": 1}, "unknown field"),
])
def test_invalid_requests_are_422_with_the_field_named(client, body, fragment):
    response = client.post("/api/jobs", json=body, headers=AUTH)
    assert response.status_code == 422
    assert fragment in response.json()["error"]
    assert _jobs() == 0


def test_unknown_job_is_404(client):
    assert client.get("/api/jobs/" + "a" * 32, headers=AUTH).status_code == 404
    assert client.get("/api/jobs/../../etc/passwd", headers=AUTH).status_code == 404
    assert client.post("/api/jobs/" + "b" * 32 + "/cancel", headers=AUTH).status_code == 404


def test_cancel_retry_and_logs_over_http(client):
    job = client.post("/api/jobs", json={"kind": "sleep"}, headers=AUTH).json()
    cancelled = client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
    assert cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH).status_code == 409
    assert client.post(f"/api/jobs/{job['id']}/retry", headers=AUTH).json()["status"] == "queued"
    logs = client.get(f"/api/jobs/{job['id']}/logs", headers=AUTH).json()
    assert [line["message"] for line in logs["lines"]] == ["cancel requested", "retry requested"]
    more = client.get(f"/api/jobs/{job['id']}/logs?after={logs['cursor']}", headers=AUTH).json()
    assert more["lines"] == [] and more["cursor"] == logs["cursor"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("after", [10**18 * 10, -(10**30), 2**63 - 1])
def test_job_logs_after_a_cursor_of_any_size_answer_without_error(client, after):
    job = client.post("/api/jobs", json={"kind": "sleep"}, headers=AUTH).json()
    client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
    response = client.get(f"/api/jobs/{job['id']}/logs?after={after}&limit={10**30}", headers=AUTH)
    assert response.status_code == 200, response.text
    lines = [line["message"] for line in response.json()["lines"]]
    assert lines == (["cancel requested"] if after < 0 else [])


@pytest.mark.parametrize("query", ["after=abc", "after=1.5", "limit=ten", "after=%EF%BC%91"])
def test_job_logs_refuse_a_parameter_that_is_not_an_integer_with_422_naming_it(client, query):
    job = client.post("/api/jobs", json={"kind": "sleep"}, headers=AUTH).json()
    response = client.get(f"/api/jobs/{job['id']}/logs?{query}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == f"{query.split('=')[0]}: must be an integer"


@pytest.mark.parametrize(("kind", "payload", "named"), [
    ("train", {"dataset_id": 999_999}, "dataset_id: dataset 999999 does not exist"),
    ("train", {"dataset_id": 10**25}, "dataset_id: dataset 10000000000000000000000000 does not exist"),
    ("caption", {"dataset_id": 999_999}, "dataset_id: dataset 999999 does not exist"),
    ("publish", {"post_id": 999_999}, "post_id: post 999999 does not exist"),
    ("plan", {"character_id": 999_999, "theme": "beach", "platforms": ["instagram"], "start": "2030-06-01",
              "end": "2030-06-07", "planner": "template"}, "character_id: character 999999 does not exist"),
])
def test_a_job_naming_a_missing_thing_in_its_body_is_422_naming_the_field(client, kind, payload, named):
    response = client.post("/api/jobs", json={"kind": kind, "payload": payload}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]
    assert _jobs() == 0


def test_a_missing_dataset_gets_the_same_answer_from_the_jobs_and_the_pipeline_routes(client):
    dataset = create_dataset(name="Ava")
    import_files(dataset.id, [("a.png", image_bytes(seed=1))])
    missing = dataset.id + 100
    job = client.post("/api/jobs", json={"kind": "train", "payload": {"dataset_id": missing}}, headers=AUTH)
    pipeline = client.post("/api/pipelines/lora", headers=AUTH, json={
        "datasetId": missing, "trainingName": "Ava v1", "testPrompts": ["ava on a beach"]})
    config = client.post("/api/jobs", json={"kind": "train", "payload": {"dataset_id": dataset.id,
                                                                         "config_id": 999}}, headers=AUTH)
    assert (job.status_code, pipeline.status_code, config.status_code) == (422, 422, 422)
    assert f"dataset_id: dataset {missing} does not exist" in job.json()["error"]
    assert f"datasetId: dataset {missing} does not exist" in pipeline.json()["error"]
    assert "config_id: LoRA config 999 does not exist" in config.json()["error"]
    assert _jobs() == 0


def test_a_training_run_is_started_over_the_api_with_the_default_config(client):
    from core.datasets.datasets import create_dataset, import_files
    from core.training import configs as lora_configs
    from tests.factories import image_bytes

    dataset = create_dataset(name="Ava")
    import_files(dataset.id, [("a.png", image_bytes(seed=5))])
    created = client.post("/api/jobs", json={"kind": "train", "payload": {"dataset_id": dataset.id}}, headers=AUTH)
    assert created.status_code == 201, created.text
    payload = created.json()["payload"]
    assert payload["config_id"] == lora_configs.get_default_config().id and payload["params"]["rank"] == 16

    empty = create_dataset(name="Empty")
    refused = client.post("/api/jobs", json={"kind": "train", "payload": {"dataset_id": empty.id}}, headers=AUTH)
    assert refused.status_code == 422 and "no images" in refused.json()["error"]
    bad = client.post("/api/jobs", json={"kind": "train", "payload": {"dataset_id": dataset.id,
                                                                       "params": {"rank": 0}}}, headers=AUTH)
    assert bad.status_code == 422 and "rank" in bad.json()["error"]
    with session_scope() as session:
        assert session.execute(select(func.count()).select_from(Job).where(Job.kind == "train")).scalar_one() == 1
