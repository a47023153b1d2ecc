"""Prometheus metrics about jobs, queues, workers, pipelines and posts, computed at scrape time.

Every value is read from the database and Redis when Prometheus scrapes ``GET /api/metrics``,
by a custom collector: each app process answers the same, and nothing is lost when one
restarts (no in-process counters). The queries are grouped counts on indexed columns, and the
duration quantiles look at a bounded window of recent jobs.

Per-worker message metrics (Dramatiq's own Prometheus middleware) are served by the workers
themselves when ``STUDIO_WORKER_METRICS_PORT`` is set; see ``core.jobs.queue``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.db import session_scope
from core.jobs import queue
from core.jobs.kinds import Queue
from core.models import Job, JobStatus, Pipeline, Post, utcnow
from core.reports import monitoring

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
IN_PROGRESS = (JobStatus.QUEUED, JobStatus.RUNNING)
DURATION_WINDOW = timedelta(hours=24)  # quantiles over jobs that finished in this window…
DURATION_SAMPLE = 5_000  # …at most this many of the newest
QUANTILES = (0.5, 0.95)

_logger = logging.getLogger("studio.metrics")
# SQLModel's types do not declare the __table__ that SQLAlchemy gives every table class.
_JOBS = Job.__table__  # type: ignore[attr-defined]
_PIPELINES = Pipeline.__table__  # type: ignore[attr-defined]
_POSTS = Post.__table__  # type: ignore[attr-defined]

# The statements, kept as module values so the tests can EXPLAIN them.
JOBS_BY_STATUS_AND_KIND = select(_JOBS.c.kind, _JOBS.c.status, func.count()).group_by(_JOBS.c.kind, _JOBS.c.status)
PIPELINES_BY_STATUS = select(_PIPELINES.c.status, func.count()).group_by(_PIPELINES.c.status)
POSTS_BY_STATUS = select(_POSTS.c.status, func.count()).group_by(_POSTS.c.status)


def recent_durations_statement(since: Any) -> Any:
    """Succeeded jobs created since ``since``, newest first, bounded (ix_job_status_created)."""
    return (
        select(_JOBS.c.kind, _JOBS.c.started_at, _JOBS.c.finished_at)
        .where(_JOBS.c.status == str(JobStatus.SUCCEEDED), _JOBS.c.created_at >= since)
        .order_by(_JOBS.c.created_at.desc())
        .limit(DURATION_SAMPLE)
    )


class StudioCollector(Collector):
    """Yields the studio's metrics from the database and Redis on every collect()."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("studio_metrics_source_up",
                               "Whether the last scrape could read the source (1) or not (0).", labels=["source"])
        try:
            yield from self._database_metrics()
            up.add_metric(["database"], 1)
        except Exception:
            _logger.warning("metrics: database unavailable", exc_info=True)
            up.add_metric(["database"], 0)
        try:
            yield from self._redis_metrics()
            up.add_metric(["redis"], 1)
        except Exception:
            _logger.warning("metrics: redis unavailable", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    def describe(self) -> Iterable[Metric]:
        return []  # computed at collect time only; never run at registration

    # --- database -------------------------------------------------------------------------------------

    def _database_metrics(self) -> list[Metric]:
        since = utcnow() - DURATION_WINDOW
        with session_scope() as session:
            job_rows = session.execute(JOBS_BY_STATUS_AND_KIND).all()
            duration_rows = session.execute(recent_durations_statement(since)).all()
            pipeline_rows = session.execute(PIPELINES_BY_STATUS).all()
            post_rows = session.execute(POSTS_BY_STATUS).all()

        finished = CounterMetricFamily("studio_jobs", "Jobs that reached a final status, by kind and status.",
                                       labels=["kind", "status"])
        in_progress = GaugeMetricFamily("studio_jobs_in_progress", "Jobs queued or running now, by kind and status.",
                                        labels=["kind", "status"])
        for kind, status, count in sorted(job_rows):
            family = finished if status in FINISHED else in_progress
            family.add_metric([kind, status], count)

        by_kind: dict[str, list[float]] = {}
        for kind, started, finished_at in duration_rows:
            if started is not None and finished_at is not None:
                by_kind.setdefault(kind, []).append(max((finished_at - started).total_seconds(), 0.0))
        hours = DURATION_WINDOW.total_seconds() / 3600
        durations = Metric("studio_job_duration_seconds", f"Run time of succeeded jobs created in the last "
                           f"{hours:g} h (newest {DURATION_SAMPLE} at most), by kind.", "summary")
        for kind, values in sorted(by_kind.items()):
            values.sort()
            for q in QUANTILES:  # the same percentiles as the Monitoring page
                quantile = monitoring.percentile(values, q * 100)
                assert quantile is not None  # values holds at least the run that made this kind appear
                durations.add_sample("studio_job_duration_seconds", {"kind": kind, "quantile": f"{q:g}"}, quantile)
            durations.add_sample("studio_job_duration_seconds_count", {"kind": kind}, len(values))
            durations.add_sample("studio_job_duration_seconds_sum", {"kind": kind}, sum(values))

        pipelines = GaugeMetricFamily("studio_pipelines", "Pipelines by status.", labels=["status"])
        for status, count in sorted(pipeline_rows):
            pipelines.add_metric([status], count)
        posts = GaugeMetricFamily("studio_posts", "Posts by status.", labels=["status"])
        for status, count in sorted(post_rows):
            posts.add_metric([status], count)
        return [finished, in_progress, durations, pipelines, posts]

    # --- Redis ----------------------------------------------------------------------------------------

    def _redis_metrics(self) -> list[Metric]:
        depth = GaugeMetricFamily("studio_queue_depth", "Messages waiting in a queue, not yet fetched by a worker.",
                                  labels=["queue"])
        delayed = GaugeMetricFamily("studio_queue_delayed", "Delayed messages waiting for their time, by queue.",
                                    labels=["queue"])
        dead = GaugeMetricFamily("studio_queue_dead", "Dead-lettered messages, by queue.", labels=["queue"])
        for stat in monitoring.queue_stats():  # the same counts as the Monitoring page
            depth.add_metric([stat.name], stat.ready)
            delayed.add_metric([stat.name], stat.delayed)
            dead.add_metric([stat.name], stat.dead)

        workers = queue.list_workers()
        alive = GaugeMetricFamily("studio_workers_alive", "Worker processes that announced themselves recently.",
                                  value=len(workers))
        threads = GaugeMetricFamily("studio_worker_threads", "Worker threads consuming each queue.", labels=["queue"])
        for name in Queue.ALL:
            threads.add_metric([name], sum(w.threads for w in workers if name in w.queues))
        return [depth, delayed, dead, alive, threads]


_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    global _registry
    if _registry is None:
        fresh = CollectorRegistry(auto_describe=False)
        fresh.register(StudioCollector())
        _registry = fresh
    return _registry


def render() -> bytes:
    """The Prometheus text exposition of every studio metric, read now (blocking: DB and Redis)."""
    started = time.perf_counter()
    body = generate_latest(registry())
    took = GaugeMetricFamily("studio_metrics_scrape_seconds", "How long computing this scrape took.",
                             value=time.perf_counter() - started)
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Static([took]))
    return body + generate_latest(extra)


class _Static(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics
