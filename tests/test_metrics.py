"""GET /api/metrics: Prometheus text computed from the database and Redis at scrape time, behind a token."""

from __future__ import annotations

import socket

import dramatiq
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from core.config import reload_settings
from core.db import session_scope
from core.jobs import lifecycle as jobs
from core.models import JobStatus, Pipeline, Post, utcnow
from core.reports import metrics
from tests.conftest import TEST_API_TOKEN, wait_until

AUTH = {"Authorization": f"Bearer {TEST_API_TOKEN}"}


@pytest.fixture
def client(studio):
    from api.routes import api_routes

    with TestClient(Starlette(routes=api_routes())) as test_client:
        yield test_client


def _scrape(client: TestClient, headers: dict[str, str] | None = None) -> dict[tuple[str, frozenset], float]:
    response = client.get("/api/metrics", headers=AUTH if headers is None else headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-Studio-Token": "nope"}])
def test_metrics_need_the_api_token(client, headers):
    response = client.get("/api/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "studio_" not in response.text


def test_a_separate_metrics_token_reads_metrics_but_starts_no_jobs(client, monkeypatch):
    monkeypatch.setenv("STUDIO_METRICS_TOKEN", "scraper-token-0123456789")
    reload_settings()
    scraper = {"Authorization": "Bearer scraper-token-0123456789"}
    assert "studio_metrics_source_up" in {name for name, _ in _scrape(client, scraper)}
    assert client.post("/api/jobs", json={"kind": "noop"}, headers=scraper).status_code == 401


def test_every_metric_family_is_exposed_and_parseable(client):
    jobs.create_job("noop", {})
    samples = _scrape(client)
    names = {name for name, _ in samples}
    assert {"studio_jobs_in_progress", "studio_queue_depth", "studio_queue_delayed", "studio_workers_alive",
            "studio_worker_threads", "studio_metrics_source_up", "studio_metrics_scrape_seconds"} <= names
    assert _value(samples, "studio_metrics_source_up", source="database") == 1
    assert _value(samples, "studio_metrics_source_up", source="redis") == 1
    assert _value(samples, "studio_jobs_in_progress", kind="noop", status="queued") == 1
    assert _value(samples, "studio_workers_alive") == 0


def test_a_queued_message_with_no_worker_counts_in_the_queue_depth(client):
    before = _value(_scrape(client), "studio_queue_depth", queue="default")
    jobs.create_job("noop", {})
    jobs.create_job("noop", {})
    assert _value(_scrape(client), "studio_queue_depth", queue="default") == before + 2
    assert _value(_scrape(client), "studio_queue_depth", queue="cpu") == 0


@pytest.mark.integration
def test_jobs_total_counts_a_noop_job_run_by_a_real_worker(client, workers):
    before = _value(_scrape(client), "studio_jobs_total", kind="noop", status="succeeded")
    workers.worker("default")
    job = jobs.create_job("noop", {})
    wait_until(lambda: jobs.get_job(job.id).status == JobStatus.SUCCEEDED, 30, what="the noop job to succeed")
    samples = _scrape(client)
    assert _value(samples, "studio_jobs_total", kind="noop", status="succeeded") == before + 1
    assert _value(samples, "studio_jobs_in_progress", kind="noop", status="queued") == 0
    assert _value(samples, "studio_job_duration_seconds_count", kind="noop") >= 1
    assert _value(samples, "studio_job_duration_seconds", kind="noop", quantile="0.95") >= 0
    wait_until(lambda: _value(_scrape(client), "studio_workers_alive") >= 1, 15, what="the worker to announce itself")
    assert _value(_scrape(client), "studio_worker_threads", queue="default") >= 1


def test_pipelines_and_posts_are_counted_by_status(client):
    with session_scope() as session:
        session.add_all([Pipeline(kind="lora", status="running"), Pipeline(kind="lora", status="running"),
                         Pipeline(kind="content", status="failed"),
                         Post(platform="instagram", status="scheduled", scheduled_at=utcnow())])
    samples = _scrape(client)
    assert _value(samples, "studio_pipelines", status="running") == 2
    assert _value(samples, "studio_pipelines", status="failed") == 1
    assert _value(samples, "studio_posts", status="scheduled") == 1
    assert _value(samples, "studio_posts", status="published") == 0


def test_the_scrape_queries_are_served_by_indexes(studio):
    statements = [metrics.JOBS_BY_STATUS_AND_KIND, metrics.recent_durations_statement(utcnow()),
                  metrics.PIPELINES_BY_STATUS, metrics.POSTS_BY_STATUS]
    with session_scope() as session:
        bind = session.get_bind()
        for statement in statements:
            sql = str(statement.compile(bind, compile_kwargs={"literal_binds": True}))
            plan = " | ".join(row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)
    grouped = str(metrics.JOBS_BY_STATUS_AND_KIND.compile(bind))
    with session_scope() as session:
        plan = " | ".join(row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {grouped}")))
    assert "COVERING INDEX" in plan  # the table itself is never read


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.integration
def test_workers_serve_dramatiq_metrics_on_their_own_port_when_enabled(studio, workers, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("STUDIO_WORKER_METRICS_PORT", str(port))
    monkeypatch.setenv("STUDIO_WORKER_METRICS_HOST", "127.0.0.1")
    workers.worker("default")
    job = jobs.create_job("noop", {})
    wait_until(lambda: jobs.get_job(job.id).status == JobStatus.SUCCEEDED, 30, what="the noop job to succeed")

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return ""

    def processed() -> float:
        return sum(sample.value for family in text_string_to_metric_families(scrape()) for sample in family.samples
                   if sample.name == "dramatiq_messages_total" and sample.labels.get("actor_name") == "noop")

    assert wait_until(processed, 15, what="dramatiq_messages_total for noop") == 1


def test_the_app_broker_leaves_dramatiq_metrics_alone_even_when_enabled(studio, monkeypatch):
    from core.jobs.queue import make_broker
    from workers.metrics import install_worker_metrics

    monkeypatch.setenv("STUDIO_WORKER_METRICS_PORT", str(_free_port()))
    broker = make_broker(reload_settings())
    install_worker_metrics(broker, reload_settings())
    assert any(type(m).__name__ == "WorkerMetrics" for m in broker.middleware)
    broker.enqueue(dramatiq.Message(queue_name="default", actor_name="noop", args=("x",), kwargs={},
                                    options={"retries": 1}))  # no process_boot here: the hooks are no-ops
    broker.close()
