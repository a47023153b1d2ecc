"""Faults across hosts, each run on a live cluster with jobs in flight and checked for lost or doubled work.

Each function makes its jobs, injects one fault at a moment when jobs are running, waits for every job to end and
returns a :class:`FaultResult`: the takeovers it timed (fault → next attempt claimed), and the exactly-once check
(rows and objects, ``scenarios.check_exactly_once``). ``bench/cluster.py`` prints them as a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.hosts import S3, Cluster
from tests.cluster.scenarios import (
    Check,
    Takeover,
    asset_count,
    check_exactly_once,
    fence_refusals,
    host_of,
    hosts_online,
    noop_job,
    percentile,
    plan_job,
    rows,
    sleep_job,
    voice_job,
    wait_for,
    wait_hosts,
    wait_terminal,
    watch_takeover,
)


@dataclass
class FaultResult:
    name: str
    jobs: int = 0
    takeovers: list[Takeover] = field(default_factory=list)
    check: Check = field(default_factory=Check)
    note: str = ""

    @property
    def redelivery_s(self) -> list[float]:
        return sorted(t.seconds for t in self.takeovers if t.seconds is not None)

    @property
    def p50_s(self) -> float | None:
        return percentile(self.redelivery_s, 50)

    @property
    def max_s(self) -> float | None:
        return max(self.redelivery_s, default=None)


def mixed_jobs(cluster: Cluster, *, per_host: int = 4, seconds: float = 4.0) -> list[str]:
    """Sleep jobs that checkpoint twice a second (enough to keep every thread busy), two plans, two voice previews."""
    hosts = max(len(hosts_online()), 1)
    ids = [sleep_job(seconds, steps=int(seconds * 2)) for _ in range(per_host * hosts)]
    return ids + [plan_job(n) for n in range(2)] + [voice_job(n) for n in range(2)] + [noop_job()]


def running_on(job_ids: list[str], host: str | None = None, worker: str | None = None) -> list[dict]:
    found = [dict(r, id=i) for i, r in rows(job_ids).items() if r["status"] == "running"]
    if host is not None:
        found = [r for r in found if host_of(r) == host]
    if worker is not None:
        found = [r for r in found if r["worker"] == worker]
    return found


def _busiest_host(job_ids: list[str]) -> str:
    def busy() -> str | None:
        counts: dict[str, int] = {}
        for row in running_on(job_ids):
            counts[host_of(row)] = counts.get(host_of(row), 0) + 1
        return max(counts, key=lambda h: counts[h]) if counts else None

    return wait_for(busy, 60, "a host running jobs", interval=0.05)


def _takeovers(running: list[dict], since: float, timeout: float = 90) -> list[Takeover]:
    return [watch_takeover(Takeover(r["id"], host_of(r)), r["attempts"], since, timeout) for r in running]


def link_cut(cluster: Cluster) -> FaultResult:
    """A worker host's link cut mid-job: its jobs finish elsewhere; back online, its stale writes are fenced off."""
    result = FaultResult("worker host link cut mid-job")
    ids = mixed_jobs(cluster)
    victim = _busiest_host(ids)
    time.sleep(0.5)  # past the first checkpoint
    running = running_on(ids, host=victim)
    refused = fence_refusals(cluster, victim)
    cut_at = time.monotonic()
    cluster.cut(victim)
    try:
        result.takeovers = _takeovers(running, cut_at)
    finally:
        cluster.restore(victim)
    wait_terminal(ids, 120)
    wait_for(lambda: fence_refusals(cluster, victim) > refused, 90, f"{victim}'s stale attempts to be fenced off")
    wait_for(lambda: victim in hosts_online(), 60, f"{victim} back online")
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    result.note = (f"{len(running)} job(s) on {victim}; {fence_refusals(cluster, victim) - refused} stale attempt(s) "
                   "refused by the fence")
    return result


def worker_kill(cluster: Cluster) -> FaultResult:
    """SIGKILL of the worker process of a running job: the broker redelivers its messages to any host."""
    from tests.cluster.scenarios import kill_worker_of

    result = FaultResult("worker process SIGKILLed")
    ids = mixed_jobs(cluster)
    _busiest_host(ids)
    time.sleep(0.5)
    victim = running_on(ids)[0]
    running = running_on(ids, worker=victim["worker"])
    kill_worker_of(victim["id"])
    result.takeovers = _takeovers(running, time.monotonic())
    wait_terminal(ids, 120)
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    result.note = f"{len(running)} job(s) on {victim['worker']}"
    return result


def kill_then_redis_loss(cluster: Cluster) -> FaultResult:
    """A worker killed, then Redis restarted empty 2 s later: its jobs' messages are gone (the 60-66 s case)."""
    from tests.cluster.scenarios import kill_worker_of

    result = FaultResult("worker killed, then Redis restarted empty")
    ids = mixed_jobs(cluster)
    _busiest_host(ids)
    time.sleep(0.5)
    victim = running_on(ids)[0]
    running = running_on(ids, worker=victim["worker"])
    kill_worker_of(victim["id"])
    killed_at = time.monotonic()
    time.sleep(2)
    cluster.restart_redis_empty()
    result.takeovers = _takeovers(running, killed_at)
    wait_terminal(ids, 180)
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    result.note = f"{len(running)} job(s) whose message Redis lost"
    return result


def redis_loss(cluster: Cluster) -> FaultResult:
    """Redis restarted empty with jobs queued and running: the reconcilers re-enqueue what the database says."""
    result = FaultResult("Redis restarted empty")
    ids = mixed_jobs(cluster, per_host=8)
    _busiest_host(ids)
    queued = sum(1 for r in rows(ids).values() if r["status"] == "queued")
    cluster.restart_redis_empty()
    wait_terminal(ids, 180)
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    result.note = f"{queued} job(s) were queued when it lost them"
    return result


def postgres_restart(cluster: Cluster) -> FaultResult:
    """PostgreSQL stopped (immediate) for 2 s and started with jobs running: workers reconnect, no job sticks."""
    result = FaultResult("PostgreSQL restarted")
    ids = mixed_jobs(cluster)
    _busiest_host(ids)
    cluster.restart_postgres(down_s=2)
    wait_terminal(ids, 180)
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    return result


def app_restart(cluster: Cluster) -> FaultResult:
    """The app host SIGKILLed and started again while jobs created through its API run on the worker hosts."""
    result = FaultResult("app host restarted")
    made = [cluster.app_request("POST", "/api/jobs", json={"kind": "sleep", "payload": {"seconds": 3, "steps": 6}})
            for _ in range(6)]
    assert all(r.status_code in (200, 201, 202) for r in made), [r.text for r in made]
    ids = [r.json()["id"] for r in made]
    _busiest_host(ids)
    cluster.stop_process("app", kill=True)
    cluster.start_app()
    done = wait_for(lambda: all(cluster.app_request("GET", f"/api/jobs/{i}").json()["status"] == "succeeded"
                                for i in ids), 120, "the API to report every job succeeded", interval=0.5)
    assert done
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    return result


def _pipeline_rows(pipeline_ids: list[str]) -> dict[str, list[dict]]:
    """Each pipeline's jobs (kind, status, id), oldest first, from the database."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job

    with session_scope() as session:
        found = session.execute(select(Job.pipeline_id, Job.id, Job.kind, Job.status)
                                .where(Job.pipeline_id.in_(pipeline_ids))
                                .order_by(Job.created_at, Job.id)).all()
    made: dict[str, list[dict]] = {pipeline_id: [] for pipeline_id in pipeline_ids}
    for pipeline_id, job_id, kind, status in found:
        made[pipeline_id].append({"id": job_id, "kind": kind, "status": status})
    return made


def _pipeline_problems(views: dict[str, dict], made: dict[str, list[dict]]) -> list[str]:
    """A succeeded content pipeline ran one plan job and one generation per planned post, each once and listed by its
    stage, and scheduled every post (the jobs' own effects are checked by check_exactly_once)."""
    problems = []
    for pipeline_id, view in views.items():
        kinds = [job["kind"] for job in made[pipeline_id]]
        stages = {stage["name"]: stage for stage in view["stages"]}
        posts = stages["planning"]["results"].get("postIds", [])
        listed = sorted(job_id for stage in view["stages"] for job_id in stage["jobIds"])
        if view["status"] != "succeeded":
            problems.append(f"pipeline {pipeline_id}: {view['status']} ({view.get('error')})")
        elif kinds.count("plan") != 1 or kinds.count("generate") != len(posts) or not posts:
            problems.append(f"pipeline {pipeline_id}: jobs {kinds} for {len(posts)} post(s)")
        elif listed != sorted(job["id"] for job in made[pipeline_id]):
            problems.append(f"pipeline {pipeline_id}: its stages list {len(listed)} job(s), it ran {len(kinds)}")
        elif sorted(stages["scheduling"]["results"].get("scheduledPostIds", [])) != sorted(posts):
            problems.append(f"pipeline {pipeline_id}: scheduled {stages['scheduling']['results']} of posts {posts}")
    return problems


def pipelines_app_restart(cluster: Cluster, *, count: int = 3) -> FaultResult:
    """Content pipelines (dry runs: plan → a tiny SD image per post → schedule) started through the app host's API,
    the app host SIGKILLed while their jobs run on the worker hosts and started again, polled through it again.

    The app only starts a pipeline's first stage; the workers' job-finished listener moves the later ones on, and the
    supervisors' scheduler sweep covers a process that died between two steps (one killed right after marking a
    pipeline running, before its first stage, is ``tests/test_pipeline_api.py``'s case). Needs ``start_gpu_host``.
    """
    from tests.factories import upcoming_week

    result = FaultResult("app host restarted while pipelines run")
    start, end = upcoming_week(in_days=50)
    made = [cluster.app_request("POST", "/api/pipelines/content", headers={"Idempotency-Key": f"restart-{n}"},
                                json={"theme": f"restart {n}", "platforms": ["instagram"], "start": start,
                                      "end": end, "postsPerWeek": 2, "dryRun": True})
            for n in range(count)]
    assert all(r.status_code in (200, 201) for r in made), [r.text for r in made]
    ids = [r.json()["id"] for r in made]

    def producing() -> bool:
        return any(job["kind"] == "generate" and job["status"] == "running"
                   for jobs in _pipeline_rows(ids).values() for job in jobs)

    wait_for(producing, 240, "a pipeline's image being generated", interval=0.2)
    stages = {i: cluster.app_request("GET", f"/api/pipelines/{i}").json()["stage"] for i in ids}
    cluster.stop_process("app", kill=True)
    cluster.start_app()

    def views() -> dict[str, dict] | None:
        found = {i: cluster.app_request("GET", f"/api/pipelines/{i}").json() for i in ids}
        return found if all(v["status"] in ("succeeded", "failed", "cancelled") for v in found.values()) else None

    ended = wait_for(views, 400, "the API to report every pipeline ended", interval=1.0)
    jobs = _pipeline_rows(ids)
    job_ids = [job["id"] for found in jobs.values() for job in found]
    result.jobs, result.check = len(job_ids), check_exactly_once(job_ids, cluster)
    result.check.duplicated += _pipeline_problems(ended, jobs)
    at = ", ".join(sorted(str(stage) for stage in stages.values()))
    result.note = (f"{count} content pipelines made through its API, at stages {at} when it was killed; "
                   "polled through it again")
    return result


GPU_HOST = "g1"
GPU_HOST = "g1"


def start_gpu_host(cluster: Cluster, tiny_sd15: Path) -> None:
    """A GPU-queue worker host (on this CPU) with the tiny SD 1.5 where the seeded "tiny-lora" template looks."""
    for data in (cluster.root / GPU_HOST / "data", cluster.root / "test" / "data"):  # its host, and the app side
        target = data / "models" / "tiny-sd15"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(tiny_sd15, target_is_directory=True)
    cluster.start_worker_host(GPU_HOST, queues="gpu", last_octet=20, env={"HF_HUB_OFFLINE": "1"})
    wait_hosts([GPU_HOST], 240)


def s3_outage(cluster: Cluster, *, outage_s: float = 20.0) -> FaultResult:
    """The S3 host's link cut for ``outage_s`` while images are generated and uploaded (needs ``start_gpu_host``).

    An upload that cannot reach S3 fails the attempt as transient (StorageUnavailable) and the job retries with
    backoff; an image is recorded (an Asset row) only once its object is stored, so no row names a missing or
    half-written object and no job stores an image twice.
    """
    from core.generation.requests import submit_generation

    result = FaultResult("S3 unreachable mid-upload")
    ids = [submit_generation(template="tiny-lora", prompt=f"outage {n}", width=64, height=64, steps=2, seed=n,
                             count=3, batch_size=1).id for n in range(3)]
    wait_for(lambda: asset_count(ids) >= 1, 300, "a first image stored", interval=0.1)
    cluster.cut(S3)
    time.sleep(outage_s)
    cluster.restore(S3)
    done = wait_terminal(ids, 300)
    result.jobs, result.check = len(ids), check_exactly_once(ids, cluster)
    retried = sum(1 for r in done.values() if r["attempts"] > 1)
    result.note = f"{outage_s:.0f} s outage; {retried} of {len(ids)} job(s) retried; {asset_count(ids)} images stored"
    return result


FAULTS: dict[str, Callable[[Cluster], FaultResult]] = {
    "link-cut": link_cut,
    "worker-kill": worker_kill,
    "kill-then-redis-loss": kill_then_redis_loss,
    "redis-loss": redis_loss,
    "postgres-restart": postgres_restart,
    "app-restart": app_restart,
    "pipelines-app-restart": pipelines_app_restart,
    "s3-outage": s3_outage,
}
