"""The Monitoring page and core.reports.monitoring against real Redis, real worker processes and real rows."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from core.config import reload_settings
from core.db import get_engine, session_scope
from core.infra.redis import get_redis, redis_key, reset_clients
from core.jobs import lifecycle as jobs
from core.jobs import queue
from core.models import Job, JobStatus, utcnow
from core.reports import monitoring
from tests.apptest import click, open_page
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.clock]  # clock: statistics by time window

H200 = monitoring.GpuStat(index=0, name="NVIDIA H200", utilization_pct=37.0, memory_used_mib=40_960.0,
                          memory_total_mib=143_771.0, temperature_c=45.0)


def _stat(name: str) -> monitoring.QueueStat:
    return next(s for s in monitoring.queue_stats() if s.name == name)


def _insert(kind: str, status: str, *, duration_s: float, finished_ago: timedelta, error: str | None = None) -> Job:
    finished = utcnow() - finished_ago
    job = Job(kind=kind, queue="cpu", status=status, started_at=finished - timedelta(seconds=duration_s),
              finished_at=finished, created_at=finished - timedelta(seconds=duration_s + 1),
              error=error, error_stage="render" if error else None)
    with session_scope() as session:
        session.add(job)
    return job


# --- queues -------------------------------------------------------------------------------------------


def test_queue_counts_match_the_messages_really_waiting_in_redis(studio):
    first, *_ = [jobs.create_job("sleep", {"seconds": 1}) for _ in range(3)]
    delayed = jobs.new_job("sleep", {"seconds": 1})
    with session_scope() as session:
        session.add(delayed)
    queue.enqueue(delayed.id, kind="sleep", queue="cpu", delay_ms=60_000)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == first.id).values(created_at=utcnow() - timedelta(seconds=120)))

    cpu = _stat("cpu")
    assert (cpu.ready, cpu.delayed, cpu.in_flight, cpu.dead) == (3, 1, 0, 0)
    assert cpu.oldest_queued_job_id == first.id
    assert 120 <= (cpu.oldest_queued_age_s or 0) < 150
    gpu = _stat("gpu")
    assert (gpu.ready, gpu.delayed, gpu.oldest_queued_age_s) == (0, 0, None)


def test_a_cancelled_job_no_longer_counts_as_the_oldest_queued(studio):
    old = jobs.create_job("sleep", {"seconds": 1})
    young = jobs.create_job("sleep", {"seconds": 1})
    jobs.cancel_job(old.id)
    assert _stat("cpu").oldest_queued_job_id == young.id


# --- workers --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_running_worker_is_alive_with_its_job_and_shows_as_lost_within_seconds_of_a_sigkill(workers):
    job = jobs.create_job("sleep", {"seconds": 60})
    process = workers.worker(queues="cpu,default", threads=1)

    def alive_with_job() -> monitoring.WorkerStat | None:
        return next((w for w in monitoring.worker_stats()
                     if w.pid == process.pid and w.state == "alive" and any(j.id == job.id for j in w.jobs)), None)

    worker = wait_until(alive_with_job, timeout=60, interval=0.2, what="the worker to run the job")
    assert worker.host == socket.gethostname() and worker.queues == ["cpu", "default"] and worker.threads == 1

    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    killed_at = time.monotonic()
    wait_until(lambda: any(w.pid == process.pid and w.state == "lost" for w in monitoring.worker_stats()),
               timeout=5, interval=0.1, what="the killed worker to show as lost")
    assert time.monotonic() - killed_at < 5
    assert not any(w.pid == process.pid and w.state == "alive" for w in monitoring.worker_stats())


def test_a_lost_worker_is_forgotten_after_the_horizon(studio):
    get_redis().hset(redis_key("monitor:workers-seen"), "gone:1", (
        '{"id": "gone:1", "host": "gone", "pid": 1, "queues": ["gpu"], "threads": 1, '
        f'"started_at": {time.time() - 100}, "last_seen": {time.time() - 60}}}'))
    assert [w.state for w in monitoring.worker_stats()] == ["lost"]
    assert monitoring.worker_stats(lost_horizon_s=30) == []
    assert monitoring.worker_stats() == []  # forgotten for good


# --- job statistics -------------------------------------------------------------------------------------


def test_job_stats_give_exact_percentiles_failure_rates_and_throughput_per_window(studio):
    for second in range(1, 101):  # 100 successes lasting 1…100 s, within the hour
        _insert("noop", "succeeded", duration_s=second, finished_ago=timedelta(minutes=30, seconds=second))
    for index in range(25):
        _insert("noop", "failed", duration_s=1000, finished_ago=timedelta(minutes=10, seconds=index), error="boom")
    for _ in range(4):
        _insert("sleep", "succeeded", duration_s=7, finished_ago=timedelta(hours=3))
    _insert("sleep", "cancelled", duration_s=1, finished_ago=timedelta(hours=3))
    _insert("sleep", "succeeded", duration_s=500, finished_ago=timedelta(days=3))
    _insert("noop", "running", duration_s=1, finished_ago=timedelta(minutes=1))  # not finished: never counted

    hour = {k.kind: k for k in monitoring.job_stats("1h").kinds}
    assert list(hour) == ["noop"]
    noop = hour["noop"]
    assert (noop.succeeded, noop.failed, noop.finished) == (100, 25, 125)
    assert noop.failure_rate == pytest.approx(0.2)
    assert noop.throughput_per_hour == pytest.approx(125)
    assert (noop.p50_s, noop.p95_s, noop.sample) == (pytest.approx(50), pytest.approx(95), 100)

    day = {k.kind: k for k in monitoring.job_stats("24h").kinds}
    assert (day["sleep"].succeeded, day["sleep"].cancelled, day["sleep"].failure_rate) == (4, 1, 0.0)
    assert day["sleep"].p95_s == pytest.approx(7)
    assert day["noop"].throughput_per_hour == pytest.approx(125 / 24)
    week = {k.kind: k for k in monitoring.job_stats("7d").kinds}
    assert (week["sleep"].succeeded, week["sleep"].p95_s) == (5, pytest.approx(500))

    failures = monitoring.latest_failures(limit=10)
    assert len(failures) == 10 and all(f.kind == "noop" and f.error == "boom" for f in failures)
    assert failures == sorted(failures, key=lambda f: f.finished_at, reverse=True)


def test_percentiles_use_the_nearest_rank():
    assert monitoring.percentile([], 50) is None
    assert monitoring.percentile([3.0], 95) == 3.0
    assert monitoring.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert monitoring.percentile([float(v) for v in range(1, 21)], 95) == 19.0


# --- health -------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_reports_a_stopped_redis_as_down_within_seconds(studio, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    reload_settings()
    reset_clients()
    started = time.monotonic()
    report = monitoring.health()
    assert time.monotonic() - started < 5
    checks = {c.name: c for c in report.checks}
    assert not checks["redis"].ok and checks["database"].ok and checks["storage"].ok
    assert {d.name for d in report.disks} == {"data", "storage", "models"}
    assert all(0 < d.free_bytes <= d.total_bytes for d in report.disks)
    with pytest.raises(monitoring.ServiceDown):
        monitoring.queue_stats()

    at = open_page("pages/monitoring.py")
    assert any("Redis is unreachable" in e.value for e in at.error)
    assert any(m.label == "redis" and m.value == "DOWN" for m in at.metric)


# --- the page -----------------------------------------------------------------------------------------


def test_the_page_says_there_is_no_gpu_instead_of_showing_zeros(studio, monkeypatch):
    def no_gpu() -> list[monitoring.GpuStat]:
        raise monitoring.GpuUnavailable("no NVIDIA driver")

    monkeypatch.setattr(monitoring, "gpu_reader", no_gpu)
    jobs.create_job("sleep", {"seconds": 1})
    at = open_page("pages/monitoring.py")
    assert at.title[0].value == "Monitoring"
    assert any(i.value.startswith("No GPU: no NVIDIA driver") for i in at.info)
    assert not any(m.label == "Memory" for m in at.metric)
    assert any(m.label == "cpu · ready" and m.value == "1" for m in at.metric)
    assert [h.value for h in at.subheader] == ["Queues", "Workers", "Jobs", "Health", "Hardware"]


def test_the_page_shows_each_gpus_memory_utilisation_and_temperature(studio, monkeypatch):
    monkeypatch.setattr(monitoring, "gpu_reader", lambda: [H200])
    at = open_page("pages/monitoring.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Memory"] == "40.0 / 140.4 GiB"
    assert (metrics["Utilisation"], metrics["Temperature"]) == ("37 %", "45 °C")
    assert any("NVIDIA H200" in m.value for m in at.markdown)
    assert not any(i.value.startswith("No GPU") for i in at.info)


def test_a_failure_on_the_page_can_be_retried(studio):
    failed = _insert("noop", "failed", duration_s=2, finished_ago=timedelta(minutes=5), error="RuntimeError: boom")
    at = open_page("pages/monitoring.py")
    assert any("RuntimeError: boom" in c.value for c in at.caption)
    at.segmented_control(key="monitoring.window").set_value("1h").run()
    kinds = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(kinds["kind"]) == ["noop"] and list(kinds["failed"]) == [1]
    click(at, f"monitoring.retry.{failed.id}")
    assert jobs.get_job(failed.id).status == JobStatus.QUEUED
    assert not any(b.key == f"monitoring.retry.{failed.id}" for b in at.button)


def _chart_y_ranges(at) -> list[list[float] | None]:
    """The y-axis range each Plotly chart on the page asks for (None: left to Plotly's autorange)."""
    return [json.loads(chart.proto.spec)["layout"].get("yaxis", {}).get("range") for chart in at.get("plotly_chart")]


def test_the_job_charts_start_at_zero_even_when_nothing_failed(studio):
    for index in range(3):  # no failure: a failure rate of 0 % everywhere
        _insert("noop", "succeeded", duration_s=2, finished_ago=timedelta(minutes=5 + index))
    at = open_page("pages/monitoring.py")
    ranges = _chart_y_ranges(at)
    assert len(ranges) == 2, "the throughput and failure-rate charts"
    assert all(r is not None and r[0] == 0 and r[1] > 0 for r in ranges), ranges


# --- query plans --------------------------------------------------------------------------------------


def _sqlite_plan(statement) -> str:
    engine = get_engine()
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        return " | ".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


def test_the_monitoring_queries_are_index_scans_on_sqlite(studio):
    since = utcnow() - timedelta(days=1)
    plans = {
        "ix_job_status_finished": [monitoring._counts_statement(since), monitoring._failures_statement(10)],
        "ix_job_kind_status_finished": [monitoring._durations_statement("noop", since)],
        "ix_job_status_queue_created": [monitoring._oldest_queued_statement("cpu")],
    }
    for index, statements in plans.items():
        for statement in statements:
            plan = _sqlite_plan(statement)
            assert f"INDEX {index}" in plan, plan
            assert "TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_the_real_nvml_reader_names_why_there_is_no_gpu_or_reads_the_gpus():
    from core.reports.monitoring import GpuUnavailable, read_nvml_gpus

    try:
        gpus = read_nvml_gpus()
    except GpuUnavailable as error:  # this CPU machine: NVML is installed, the driver is not
        assert str(error).startswith("no NVIDIA driver")
    else:  # a GPU machine
        assert gpus and all(gpu.memory_total_mib > 0 for gpu in gpus)
