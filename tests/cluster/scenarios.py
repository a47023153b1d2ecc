"""What the multi-host test and ``bench/cluster.py`` do on a :class:`~tests.cluster.hosts.Cluster`: run batches of jobs
and time them, cut a busy host's link, lose Redis's data, and check that nothing was lost or done twice.

The test process drives the studio through core, as the app does, with the cluster's settings (``use_cluster``).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.cluster.hosts import Cluster
from tests.factories import days_from_today

TAKEOVER_GOAL_S = 30.0


@contextmanager
def use_cluster(cluster: Cluster) -> Iterator[None]:
    """This process's settings point at the cluster's services (Unix sockets); the schema is upgraded."""
    from core.config import reload_settings
    from core.db import dispose_engines, upgrade_schema
    from core.infra.redis import reset_clients
    from core.infra.storage import reset_object_store

    saved = {k: v for k, v in os.environ.items() if k.startswith("STUDIO_") or k in ("DATABASE_URL", "REDIS_URL")}

    def reset() -> None:
        reload_settings()
        dispose_engines()
        reset_clients()
        reset_object_store()

    for name in saved:
        del os.environ[name]
    os.environ.update(cluster.local_environment())
    reset()
    try:
        upgrade_schema()
        yield
    finally:
        for name in cluster.local_environment():
            os.environ.pop(name, None)
        os.environ.update(saved)
        reset()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def hosts_online() -> set[str]:
    """Host names of the worker processes announcing themselves in Redis (core.jobs.queue.list_workers)."""
    import redis

    from core.jobs.queue import list_workers

    try:
        return {w.host for w in list_workers()}
    except redis.RedisError:
        return set()


def wait_hosts(hosts: list[str], timeout: float = 90) -> None:
    wait_for(lambda: set(hosts) <= hosts_online(), timeout, f"worker hosts {hosts} online", interval=0.3)


# --- jobs -------------------------------------------------------------------------------------------------


def rows(job_ids: list[str]) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job

    with session_scope() as session:
        found = session.execute(
            select(Job.id, Job.kind, Job.status, Job.attempts, Job.worker, Job.started_at, Job.finished_at,
                   Job.result, Job.payload).where(Job.id.in_(job_ids))
        ).mappings().all()
    return {row["id"]: dict(row) for row in found}


def wait_terminal(job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    from core.models import TERMINAL_STATUSES

    def done() -> dict[str, dict[str, Any]] | None:
        current = rows(job_ids)
        return current if all(r["status"] in TERMINAL_STATUSES for r in current.values()) else None

    return wait_for(done, timeout, f"{len(job_ids)} job(s) to end", interval=0.2)


def host_of(row: dict[str, Any]) -> str:
    return str(row["worker"] or "").split(":", 1)[0]


def sleep_job(seconds: float, steps: int = 1) -> str:
    from core.jobs import lifecycle as jobs

    return jobs.create_job("sleep", {"seconds": seconds, "steps": steps}).id


def noop_job() -> str:
    from core.jobs import lifecycle as jobs

    return jobs.create_job("noop", {"note": "cluster"}).id


def plan_job(n: int) -> str:
    from core.jobs import lifecycle as jobs

    start = days_from_today(40 + n)
    return jobs.create_job("plan", {"theme": f"cluster {n}", "platforms": ["instagram"], "start": str(start),
                                    "end": str(start + timedelta(days=6)), "posts_per_week": 3,
                                    "planner": "template"}).id


def voice_job(n: int) -> str:
    from core.video.requests import submit_voice_preview

    return submit_voice_preview(voice="espeak:en-us", text=f"Cluster sample number {n}.").id


@dataclass
class Batch:
    jobs: int
    seconds: float  # first claim → last finish, from the rows
    hosts: Counter[str]

    @property
    def per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def run_batch(make: Callable[[], str], count: int, timeout: float = 300) -> Batch:
    """Create ``count`` jobs as fast as core can, wait for all, and time them from the database's own stamps."""
    from core.jobs.lifecycle import aware

    ids = [make() for _ in range(count)]
    done = wait_terminal(ids, timeout)
    failed = {i: r["status"] for i, r in done.items() if r["status"] != "succeeded"}
    assert not failed, f"jobs did not succeed: {failed}"
    first = min(aware(r["started_at"]) for r in done.values())
    last = max(aware(r["finished_at"]) for r in done.values())
    return Batch(jobs=count, seconds=(last - first).total_seconds(), hosts=Counter(host_of(r) for r in done.values()))


# --- faults ------------------------------------------------------------------------------------------------


@dataclass
class Takeover:
    """A job whose host was cut off (or whose worker was killed) and the next attempt that finished it."""

    job_id: str
    from_host: str
    seconds: float | None = None  # fault → the next attempt claimed
    to_host: str | None = None


def wait_running(job_id: str, *, progressed: float = 0.0, timeout: float = 60) -> dict[str, Any]:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job, JobStatus

    def running() -> dict[str, Any] | None:
        with session_scope() as session:
            row = session.execute(select(Job.status, Job.worker, Job.attempts, Job.progress)
                                  .where(Job.id == job_id)).mappings().first()
        ok = row and row["status"] == JobStatus.RUNNING and (row["progress"] or 0) >= progressed
        return dict(row) if ok else None

    return wait_for(running, timeout, f"job {job_id} running", interval=0.05)


def watch_takeover(takeover: Takeover, attempt: int, since: float, timeout: float = 90) -> Takeover:
    """Wait for the job's next attempt to be claimed (``attempts`` above ``attempt``) and time it from ``since``."""
    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError

    from core.db import session_scope
    from core.models import Job

    def claimed() -> tuple[int, str] | None:
        try:
            with session_scope() as session:
                row = session.execute(select(Job.attempts, Job.worker).where(Job.id == takeover.job_id)).first()
        except OperationalError:  # PostgreSQL restarting in a fault of its own
            return None
        return (row[0], row[1]) if row and row[0] > attempt else None

    _, worker = wait_for(claimed, timeout, f"job {takeover.job_id} taken over", interval=0.05)
    takeover.seconds = time.monotonic() - since
    takeover.to_host = str(worker).split(":", 1)[0]
    return takeover


def kill_worker_of(job_id: str) -> tuple[str, int]:
    """SIGKILL the worker process running this job (pid ids are global: the hosts share the PID namespace)."""
    row = rows([job_id])[job_id]
    host, pid = str(row["worker"]).split(":", 1)
    os.kill(int(pid), signal.SIGKILL)
    return host, int(pid)


# --- what must hold after every fault ------------------------------------------------------------------------


@dataclass
class Check:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated


def check_exactly_once(job_ids: list[str], cluster: Cluster, *, settle_s: float = 3.0) -> Check:
    """Every job succeeded once, nothing changed after it ended, no row or object written twice or half.

    Rows: a sleep job's result names the attempt that finished it (== its attempts), a plan job wrote one plan and
    its posts (the chaos engine's checks). Objects: a voice preview's object exists with the size its job recorded,
    and the bucket holds nothing under a job's prefix that its job did not record.
    """
    from core.models import TERMINAL_STATUSES
    from tests.chaos.engine import _changed_since, _doubled_effects, _snapshot

    check = Check()
    current = rows(job_ids)
    check.lost = sorted(i for i, r in current.items() if r["status"] not in TERMINAL_STATUSES)
    check.lost += sorted(f"{i}: {r['status']}" for i, r in current.items()
                         if r["status"] in TERMINAL_STATUSES and r["status"] != "succeeded")
    before = _snapshot(job_ids)
    time.sleep(settle_s)  # the reconcilers and the redelivered messages keep running: nothing finished may change
    check.duplicated = _changed_since(before) + _doubled_effects(job_ids)
    objects = cluster.s3_objects()
    for job_id, row in current.items():
        if row["kind"] == "voice-preview" and row["status"] == "succeeded":
            key, size = row["result"]["key"], row["result"]["bytes"]
            if objects.get(key) != size:
                check.duplicated.append(f"{job_id}: object {key} is {objects.get(key)} bytes, job recorded {size}")
    for job_id, key, thumbnail, size in _assets(job_ids):  # every recorded image is a whole object
        if objects.get(key) is None or (size is not None and objects[key] != size):
            check.duplicated.append(f"{job_id}: asset {key} recorded with {size} bytes, stored {objects.get(key)}")
        if thumbnail and thumbnail not in objects:
            check.duplicated.append(f"{job_id}: thumbnail {thumbnail} recorded but not stored")
    return check


def _assets(job_ids: list[str]) -> list[tuple[str, str, str | None, int | None]]:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Asset

    with session_scope() as session:
        found = session.execute(select(Asset.job_id, Asset.key, Asset.thumbnail_key, Asset.size_bytes)
                                .where(Asset.job_id.in_(job_ids))).all()
    return [(str(j), k, t, s) for j, k, t, s in found]


def asset_count(job_ids: list[str]) -> int:
    return len(_assets(job_ids))


def fence_refusals(cluster: Cluster, host: str) -> int:
    """How many stale attempts on ``host`` found their writes refused by the attempt fence (its log says so)."""
    return cluster.log(host).count("lost its lease; stopping")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q) - 1]


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
